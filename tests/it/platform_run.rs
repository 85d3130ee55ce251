//! A multi-component upgrade run (Terraform + two Helm components + a custom-resource
//! backup) with the real terraform and the real helm 4 against kube-sim, killed at every
//! step boundary, then resumed (it must finish) or rolled back (the platform must be back
//! exactly where the lockfile says it was).
//!
//! The kill is real: the test binary re-executes itself as the run (`platform_run_child`)
//! with `UPGRADE_FAULT_KILL_AT`, and the run aborts at that boundary. kube-sim lives in the
//! parent, so the cluster outlives the killed run, as a real one would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_bins::platform::{PlatformSpec, material_drift, read_live};
use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{Boundary, Executor, RunOutcome, Step};
use upgrade_core::lockfile::PlatformLock;
use upgrade_helm::step::HelmUpgradeStep;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, RollbackOptions, UpgradeOptions, WaitMode};
use upgrade_kube::backup::{BackupKind, backup, platform_kinds};
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::step::CrBackupStep;
use upgrade_test::TestContext;
use upgrade_tf::step::{ApplyPolicy, TfvarsChangeStep};
use upgrade_tf::{AsyncTerraform, Terraform};

const CHILD_VAR: &str = "PLATFORM_RUN_CHILD_DIR";
const STEP_IDS: [&str; 4] = [
    "terraform/node-group-version",
    "kserve/backup-inferenceservices",
    "karpenter/helm-upgrade",
    "kserve/helm-upgrade",
];

/// Everything a run needs, all under one folder so the child can find it from one path.
struct Paths {
    root: PathBuf,
}

impl Paths {
    fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    fn tf_dir(&self) -> PathBuf {
        self.root.join("platform-run")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig.yaml")
    }
    fn journal(&self) -> PathBuf {
        self.root.join("state/journal.jsonl")
    }
    fn snapshots(&self) -> PathBuf {
        self.root.join("state/snapshots")
    }
}

fn tool(name: &str) -> PathBuf {
    upgrade_test::require_tool(name)
}

fn pinned(cmd: &mut ProcessBuilder, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("NO_COLOR", "1")
        .env("TF_CLI_CONFIG_FILE", home.join("terraformrc"))
        .env_remove("KUBECONFIG");
}

fn terraform(paths: &Paths) -> AsyncTerraform {
    let mut base = ProcessBuilder::new(tool("terraform"));
    pinned(&mut base, &paths.home());
    Terraform::builder(paths.tf_dir())
        .base_command(base)
        .build()
        .expect("terraform handle")
        .into()
}

fn helm(paths: &Paths) -> Arc<Helm> {
    let home = paths.home();
    Arc::new(
        Helm::builder()
            .program(tool("helm4"))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .kubeconfig(paths.kubeconfig())
            .context(kube_sim::CONTEXT_NAME)
            .build()
            .expect("helm handle"),
    )
}

fn chart(name: &str, version: &str) -> ChartRef {
    let path = TestContext::fixtures_dir()
        .join("charts")
        .join(name)
        .join(version);
    let mut chart = ChartRef::parse(path.to_str().unwrap()).unwrap();
    chart.version = Some(version.to_string());
    chart
}

fn upgrade_options(values: &str) -> UpgradeOptions {
    UpgradeOptions {
        create_namespace: true,
        values_files: vec![TestContext::fixtures_dir().join("helm-values").join(values)],
        wait: WaitMode::Ready,
        timeout: Duration::from_secs(60),
        ..UpgradeOptions::default()
    }
}

async fn cluster(paths: &Paths) -> Cluster {
    let url = kube_url(&paths.kubeconfig());
    Cluster::connect(&ConnectOptions {
        kubeconfig: Some(paths.kubeconfig()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(url),
    })
    .await
    .expect("connect to kube-sim")
}

fn kube_url(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server line")
        .trim_matches('"')
        .to_string()
}

fn isvc_kinds() -> Vec<BackupKind> {
    platform_kinds("kserve")
}

async fn steps(paths: &Paths) -> Vec<Box<dyn Step>> {
    let helm = helm(paths);
    let rollback = RollbackOptions {
        wait: WaitMode::Ready,
        timeout: Duration::from_secs(60),
        ..RollbackOptions::default()
    };
    vec![
        Box::new(TfvarsChangeStep {
            id: STEP_IDS[0].into(),
            component: "terraform".into(),
            tf: terraform(paths),
            tfvars: paths.tf_dir().join("terraform.tfvars"),
            variable: "node_group_version".into(),
            value: "1.31".into(),
            irreversible: None,
            policy: ApplyPolicy::default(),
        }),
        Box::new(CrBackupStep {
            id: STEP_IDS[1].into(),
            component: "kserve".into(),
            cluster: cluster(paths).await,
            kinds: isvc_kinds(),
            namespace: None,
        }),
        Box::new(HelmUpgradeStep {
            id: STEP_IDS[2].into(),
            component: "karpenter".into(),
            helm: helm.clone(),
            release: ReleaseRef::new("karpenter", "karpenter"),
            chart: chart("karpenter", "1.6.0"),
            options: upgrade_options("karpenter-values.yaml"),
            restore_source: Some(chart("karpenter", "1.5.0")),
            rollback: rollback.clone(),
        }),
        Box::new(HelmUpgradeStep {
            id: STEP_IDS[3].into(),
            component: "kserve".into(),
            helm,
            release: ReleaseRef::new("kserve", "kserve"),
            chart: chart("kserve", "0.15.0"),
            options: upgrade_options("kserve-values.yaml"),
            restore_source: Some(chart("kserve", "0.14.1")),
            rollback,
        }),
    ]
}

fn spec(paths: &Paths) -> PlatformSpec {
    PlatformSpec {
        cluster_name: "kube-sim".into(),
        cluster_version: "1.30".into(),
        components: vec![
            (
                "karpenter".into(),
                ReleaseRef::new("karpenter", "karpenter"),
                "fixtures/charts/karpenter".into(),
            ),
            (
                "kserve".into(),
                ReleaseRef::new("kserve", "kserve"),
                "fixtures/charts/kserve".into(),
            ),
        ],
        terraform_dir: Some(paths.tf_dir()),
    }
}

const ISVC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris, namespace: mlops}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
"#;

/// A fresh platform: Terraform applied at 1.30, karpenter 1.5.0 and kserve 0.14.1 deployed,
/// one InferenceService.
async fn platform(paths: &Paths) -> SimCluster {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(paths.kubeconfig())
        .start()
        .await
        .expect("kube-sim starts");
    for node in ["node-a", "node-b"] {
        sim.add_node(node, "v1.30.4-eks-a737599").unwrap();
    }
    std::fs::create_dir_all(paths.home().join(".config")).unwrap();
    std::fs::write(paths.home().join("terraformrc"), "").unwrap();
    copy_dir(
        &TestContext::fixtures_dir().join("terraform/platform-run"),
        &paths.tf_dir(),
    );
    let tf = terraform(paths);
    tf.init(Default::default()).await.expect("terraform init");
    let run = tf.plan(Default::default()).await.expect("terraform plan");
    let reviewed = tf.review(run.plan, Default::default()).await.unwrap();
    tf.apply(reviewed.approve().unwrap(), Default::default())
        .await
        .expect("terraform apply");
    let helm = helm(paths);
    for (name, version, values) in [
        ("karpenter", "1.5.0", "karpenter-values.yaml"),
        ("kserve", "0.14.1", "kserve-values.yaml"),
    ] {
        helm.upgrade(
            &ReleaseRef::new(name, name),
            &chart(name, version),
            &upgrade_options(values),
        )
        .await
        .unwrap_or_else(|e| panic!("install {name}: {e}"));
    }
    sim.load_yaml(ISVC).expect("InferenceService created");
    sim
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The run as a separate process (the test binary re-executed with `CHILD_VAR` set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_run_child() {
    let Some(root) = std::env::var_os(CHILD_VAR) else {
        return; // an ordinary test run: nothing to do
    };
    let paths = Paths { root: root.into() };
    let steps = steps(&paths).await;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut executor = Executor::open(&paths.journal(), &paths.snapshots()).unwrap();
    let outcome = executor.start("run-1", &refs).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed);
}

async fn kill_run_at(paths: &Paths, step: &str, boundary: Boundary) {
    let mut child = ProcessBuilder::new(std::env::current_exe().unwrap());
    child
        .args([
            "platform_run::platform_run_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, &paths.root)
        .env(
            upgrade_core::env_vars::UPGRADE_FAULT_KILL_AT,
            format!("{step}:{}", boundary.name()),
        )
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

async fn isvc_specs(paths: &Paths) -> Vec<serde_json::Value> {
    let taken = backup(&cluster(paths).await, &isvc_kinds()[..1], None)
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
                let paths = Paths {
                    root: ctx.root().join(format!("s{i}{j}{}", u8::from(resume))),
                };
                let sim = platform(&paths).await;
                let helm = helm(&paths);
                let locked: PlatformLock = read_live(&helm, &spec(&paths)).await.unwrap();
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
                    let live = read_live(&helm, &spec(&paths)).await.unwrap();
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
                    let live = read_live(&helm, &spec(&paths)).await.unwrap();
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
    use upgrade_bins::run::{Finished, OnUnfinished, RunSettings, run_locked};
    use upgrade_kube::lock::{LockOptions, UpgradeLock};
    let ctx = TestContext::new();
    let paths = Paths {
        root: ctx.root().join("lock"),
    };
    let sim = platform(&paths).await;
    let cluster = cluster(&paths).await;
    let first = UpgradeLock::acquire(
        &cluster,
        LockOptions::new("runner-1/run-a"),
        "karpenter/helm-upgrade",
    )
    .await
    .unwrap();
    let settings = RunSettings {
        journal: paths.journal(),
        snapshots: paths.snapshots(),
        holder: "runner-2/run-b".into(),
        lock_ttl: Duration::from_secs(30),
    };
    let steps = steps(&paths).await;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let err = run_locked(&cluster, &settings, "run-b", &refs, OnUnfinished::Refuse)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("held by `runner-1/run-a` (step: karpenter/helm-upgrade)"),
        "{text}"
    );
    assert!(!paths.journal().exists(), "a refused run records nothing");

    first.release().await.unwrap();
    let finished = run_locked(&cluster, &settings, "run-b", &refs, OnUnfinished::Refuse)
        .await
        .unwrap();
    assert_eq!(finished, Finished::Ran(RunOutcome::Completed));
    sim.shutdown().await;
}
