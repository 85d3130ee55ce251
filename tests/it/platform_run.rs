//! A multi-component upgrade run (Terraform + two Helm components + a custom-resource
//! backup) with the real terraform and the real helm 4 against kube-sim, killed at every
//! step boundary, then resumed (it must finish) or rolled back (the platform must be back
//! exactly where the lockfile says it was).
//!
//! The kill is real: the test binary re-executes itself as the run (`platform_run_child`)
//! with `PLATFORM_RUN_KILL_AT`, which it turns into the executor's `kill_at` option, and the
//! run aborts at that boundary. kube-sim lives in the
//! parent, so the cluster outlives the killed run, as a real one would.

use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{Boundary, Executor, ExecutorOptions, RunOutcome, Step};
use upgrade_core::lockfile::PlatformLock;
use upgrade_demo::sample::{STEP_IDS, SamplePlatform, Tools};
use upgrade_flows::flows::lock::{material_drift, read_live_with};
use upgrade_kube::backup::{backup, platform_kinds};
use upgrade_test::TestContext;

const CHILD_VAR: &str = "PLATFORM_RUN_CHILD_DIR";
/// `<step>:<boundary>` where the child run kills itself (the test's own variable).
const KILL_AT_VAR: &str = "PLATFORM_RUN_KILL_AT";

pub(crate) fn sample(root: PathBuf) -> SamplePlatform {
    SamplePlatform {
        root,
        fixtures: TestContext::fixtures_dir(),
        tools: Tools {
            terraform: upgrade_test::require_tool("terraform"),
            helm: upgrade_test::require_tool("helm4"),
        },
    }
}

/// A fresh sample platform on a fresh kube-sim.
pub(crate) async fn platform(paths: &SamplePlatform) -> SimCluster {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(paths.kubeconfig())
        .start()
        .await
        .expect("kube-sim starts");
    for node in ["node-a", "node-b"] {
        sim.add_node(node, "v1.30.4-eks-a737599").unwrap();
    }
    paths
        .build(&sim)
        .await
        .expect("the sample platform deploys");
    sim
}

async fn steps(paths: &SamplePlatform) -> Vec<Box<dyn Step>> {
    paths.upgrade_steps(&[]).await.expect("steps")
}

/// The run as a separate process (the test binary re-executed with `CHILD_VAR` set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_run_child() {
    let Some(root) = std::env::var_os(CHILD_VAR) else {
        return; // an ordinary test run: nothing to do
    };
    let paths = sample(root.into());
    let steps = steps(&paths).await;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let kill_at = std::env::var(KILL_AT_VAR).ok().and_then(|spec| {
        let (step, boundary) = spec.rsplit_once(':')?;
        Some((step.to_string(), Boundary::from_name(boundary)?))
    });
    let mut executor = Executor::open(&paths.journal(), &paths.snapshots())
        .unwrap()
        .options(ExecutorOptions { kill_at });
    let outcome = executor.start("run-1", &refs).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed);
}

async fn kill_run_at(paths: &SamplePlatform, step: &str, boundary: Boundary) {
    let mut child = ProcessBuilder::new(std::env::current_exe().unwrap());
    child
        .args([
            "platform_run::platform_run_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, &paths.root)
        .env(KILL_AT_VAR, format!("{step}:{}", boundary.name()))
        .timeout(Duration::from_secs(300));
    match child.output_async().await {
        Ok(out) if out.status.code().is_none() => {}
        Ok(out) => panic!(
            "the run was to be killed at {step}:{} but exited with {}:\n{}\n{}",
            boundary.name(),
            out.status,
            out.stdout_lossy(),
            out.stderr_lossy()
        ),
        Err(e) => panic!("{e}"),
    }
}

async fn isvc_specs(paths: &SamplePlatform) -> Vec<serde_json::Value> {
    let taken = backup(
        &paths.cluster().await.unwrap(),
        &platform_kinds("kserve")[..1],
        None,
    )
    .await
    .unwrap();
    taken.objects.iter().map(|o| o["spec"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_boundary_of_a_real_run_survives_a_kill() {
    let ctx = TestContext::new();
    let mut scenarios = 0;
    let mut survived = 0;
    let mut failures = Vec::new();
    for (i, step) in STEP_IDS.iter().enumerate() {
        for (j, boundary) in Boundary::FORWARD.into_iter().enumerate() {
            for resume in [true, false] {
                scenarios += 1;
                let paths = sample(ctx.root().join(format!("s{i}{j}{}", u8::from(resume))));
                let sim = platform(&paths).await;
                let helm = paths.helm().unwrap();
                let locked: PlatformLock =
                    read_live_with(&helm, &paths.spec(), "1.30").await.unwrap();
                let tfvars_before = std::fs::read(paths.tf_dir().join("terraform.tfvars")).unwrap();
                let isvcs_before = isvc_specs(&paths).await;

                kill_run_at(&paths, step, boundary).await;

                let steps = steps(&paths).await;
                let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
                let mut executor = Executor::open(&paths.journal(), &paths.snapshots()).unwrap();
                let unfinished = executor.unfinished().unwrap();
                assert!(
                    unfinished.is_some(),
                    "{step}:{}: the killed run is found unfinished",
                    boundary.name()
                );
                let live_after = |what: &str| format!("{step}:{} {what}", boundary.name());
                let ok = if resume {
                    let outcome = executor.resume(&refs).await.unwrap();
                    let live = read_live_with(&helm, &paths.spec(), "1.30").await.unwrap();
                    let tfvars =
                        std::fs::read_to_string(paths.tf_dir().join("terraform.tfvars")).unwrap();
                    let done = outcome == RunOutcome::Completed
                        && live.components["karpenter"].chart_version == "1.6.0"
                        && live.components["kserve"].chart_version == "0.15.0"
                        && tfvars.contains("node_group_version = \"1.31\"");
                    if !done {
                        failures.push(format!("{} resume: {outcome:?} {live:?}", live_after("")));
                    }
                    done
                } else {
                    let report = executor.rollback(None, None, &refs, "test").await.unwrap();
                    let live = read_live_with(&helm, &paths.spec(), "1.30").await.unwrap();
                    let drift = material_drift(&locked, &live);
                    let tfvars_back = std::fs::read(paths.tf_dir().join("terraform.tfvars"))
                        .unwrap()
                        == tfvars_before;
                    let isvcs_back = isvc_specs(&paths).await == isvcs_before;
                    let back =
                        report.blocked.is_none() && drift.is_empty() && tfvars_back && isvcs_back;
                    if !back {
                        failures.push(format!(
                        "{} rollback: blocked {:?}, drift {:?}, tfvars back {tfvars_back}, isvcs back {isvcs_back}",
                        live_after(""),
                        report.blocked,
                        drift.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                    ));
                    }
                    back
                };
                if ok {
                    survived += 1;
                }
                sim.shutdown().await;
            }
        }
    }
    println!(
        "survived {survived} of {scenarios} kill points (real terraform + helm 4 on kube-sim)"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(survived, scenarios);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_the_first_holds_the_lock() {
    use upgrade_flows::context::FlowContext;
    use upgrade_flows::report::Plan;
    use upgrade_flows::run::Planned;
    use upgrade_kube::connect::ConnectOptions;
    use upgrade_kube::lock::{LockOptions, UpgradeLock};
    let ctx = TestContext::new();
    let paths = sample(ctx.root().join("lock"));
    let sim = platform(&paths).await;
    let cluster = paths.cluster().await.unwrap();
    let first = UpgradeLock::acquire(
        &cluster,
        LockOptions::new("runner-1/run-a"),
        "karpenter/helm-upgrade",
    )
    .await
    .unwrap();
    let flows = FlowContext::builder(
        cluster.clone(),
        ConnectOptions {
            kubeconfig: Some(paths.kubeconfig()),
            ..ConnectOptions::default()
        },
    )
    .state_dir(paths.root.join(".upgrade"))
    .lock_holder("runner-2/run-b")
    .lock_ttl(Duration::from_secs(30))
    .build();
    let planned = || async {
        let steps = steps(&paths).await;
        let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
        let plan = Plan::new("sample", "kube-sim", "run-b", &refs);
        Planned::new("sample", &serde_json::json!({}), plan, steps)
    };
    let err = planned().await.apply(&flows).await.unwrap_err();
    assert_eq!(
        err.exit_code(),
        2,
        "a held lock is refused, nothing changed: {err}"
    );
    assert!(
        err.to_string()
            .contains("held by `runner-1/run-a` (step: karpenter/helm-upgrade)"),
        "{err}"
    );
    assert!(
        !flows.state().journal().exists(),
        "a refused run records nothing"
    );

    first.release().await.unwrap();
    let report = planned().await.apply(&flows).await.unwrap();
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
    assert!(
        flows.state().runs().join("run-b.json").is_file(),
        "the run is recorded"
    );
    sim.shutdown().await;
}
