//! A Karpenter upgrade through library calls only: the plan, the run record (format, step
//! kinds, absolute paths), the refusals that change nothing, and a rollback from a fresh
//! context that rebuilds the steps from the record.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use upgrade_flows::context::FlowContext;
use upgrade_flows::error::{EXIT_BLOCKED, EXIT_INVALID, FlowError};
use upgrade_flows::events::{CollectEvents, Event, Phase};
use upgrade_flows::flows::helm_component::{self, ComponentUpgradeSpec};
use upgrade_flows::flows::rollback::{self, RollbackSpec};
use upgrade_flows::record::RunRecord;
use upgrade_helm::Helm;
use upgrade_kube::connect::ConnectOptions;

use crate::world::{World, chart};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_run_is_recorded_and_undone_from_its_record() {
    let world = World::new().await;
    let events = Arc::new(CollectEvents::default());
    let values_before = std::fs::read(&world.values).unwrap();

    // Without an expected cluster the plan may be shown but not applied.
    let unguarded = world.flows(false, Arc::clone(&events)).await;
    let planned = helm_component::plan(&unguarded, &world.spec())
        .await
        .unwrap();
    assert_eq!(planned.plan().command, "upgrade-karpenter");
    assert_eq!(
        planned
            .plan()
            .steps
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        [
            "karpenter/backup",
            "karpenter/pin-image-tag",
            "karpenter/helm-upgrade",
            "karpenter/verify"
        ]
    );
    let err = planned.apply(&unguarded).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_INVALID, "{err}");
    assert!(
        err.to_string().contains("no expected cluster was named"),
        "{err}"
    );
    assert_eq!(world.chart_version().await, "1.5.0");
    assert!(!unguarded.state().journal().exists(), "nothing recorded");

    // Applied with the interlock: recorded before the first step, then run.
    let ctx = world.flows(true, Arc::clone(&events)).await;
    let report = helm_component::plan(&ctx, &world.spec())
        .await
        .unwrap()
        .apply(&ctx)
        .await
        .unwrap();
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
    assert_eq!(report.exit_code(), 0);
    assert_eq!(world.chart_version().await, "1.6.0");
    assert!(events.events().contains(&Event::StepFinished {
        step: "karpenter/helm-upgrade".into(),
        phase: Phase::Apply,
        error: None,
    }));

    let record = RunRecord::read(&ctx.state().runs(), &report.run_id).unwrap();
    assert_eq!(record.format, 1);
    assert_eq!(record.flow, "helm-component-upgrade");
    assert_eq!(record.started_by, "library");
    let kinds: Vec<&str> = record
        .steps
        .iter()
        .map(|s| s.record.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "kube-cr-backup",
            "helm-values-pin",
            "helm-upgrade",
            "kube-workloads-ready"
        ]
    );
    let pin = &record.steps[1].record.spec;
    assert!(
        PathBuf::from(pin["path"].as_str().unwrap()).is_absolute(),
        "{pin}"
    );
    let upgrade = &record.steps[2].record.spec;
    assert_eq!(
        upgrade["chart"]["version"], "1.6.0",
        "the chart's own spelling"
    );
    assert!(
        PathBuf::from(upgrade["options"]["values_files"][0].as_str().unwrap()).is_absolute(),
        "{upgrade}"
    );

    // Going back to 1.5.0 by hand would be a downgrade, which the plan says.
    let mut back = world.spec();
    back.version = "1.5.0".into();
    back.image_tag = None;
    back.chart = chart("1.5.0").display().to_string();
    let planned = helm_component::plan(&ctx, &back).await.unwrap();
    assert!(
        planned
            .plan()
            .findings
            .iter()
            .any(|f| f.contains("is a downgrade")),
        "{:?}",
        planned.plan()
    );

    // Another process (a fresh context) undoes the run from its record alone.
    let fresh = world.flows(true, Arc::new(CollectEvents::default())).await;
    let undo = rollback::plan(
        &fresh,
        &RollbackSpec {
            run_id: Some(report.run_id.clone()),
            component: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(undo.undoable(), 4, "{:?}", undo.plan());
    let undone = undo.apply(&fresh).await.unwrap();
    assert!(
        undone.outcome.starts_with("rolled back 4 step(s)"),
        "{}",
        undone.outcome
    );
    assert_eq!(world.chart_version().await, "1.5.0");
    assert_eq!(std::fs::read(&world.values).unwrap(), values_before);
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_name_the_field_and_the_fix_and_change_nothing() {
    let world = World::new().await;
    let ctx = world.flows(true, Arc::new(CollectEvents::default())).await;
    let cases: Vec<(ComponentUpgradeSpec, &str)> = vec![
        (
            ComponentUpgradeSpec {
                version: "1.6".into(),
                ..world.spec()
            },
            "`version`: `1.6` is not a chart version",
        ),
        (
            ComponentUpgradeSpec {
                values: world.ctx.work().join("missing.yaml"),
                ..world.spec()
            },
            "`values`: cannot read the values file",
        ),
        (
            ComponentUpgradeSpec {
                version: "1.7.0".into(),
                ..world.spec()
            },
            "`version`: the chart at",
        ),
        (
            ComponentUpgradeSpec {
                image_tag_key: "controller.image.nope".into(),
                ..world.spec()
            },
            "`image_tag_key`:",
        ),
    ];
    for (spec, expected) in cases {
        let err = match helm_component::plan(&ctx, &spec).await {
            Ok(planned) => panic!("{expected}: planned {:?}", planned.plan()),
            Err(err) => err,
        };
        assert!(matches!(err, FlowError::Invalid(_)), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_INVALID);
        assert!(err.to_string().starts_with(expected), "{expected}: {err}");
    }
    assert_eq!(world.chart_version().await, "1.5.0");

    // Blockers: the cluster outside the chart's kubeVersion.
    world.sim.set_server_version("v1.36.0-eks-a737599");
    let planned = helm_component::plan(&ctx, &world.spec()).await.unwrap();
    assert!(!planned.plan().blockers.is_empty(), "{:?}", planned.plan());
    let err = planned.apply(&ctx).await.unwrap_err();
    assert_eq!(err.exit_code(), EXIT_BLOCKED);
    assert!(err.blocked_plan().is_some());
    assert_eq!(world.chart_version().await, "1.5.0");
    assert!(!ctx.state().journal().exists(), "nothing recorded");
    world.sim.shutdown().await;
}

/// The child process of [`a_killed_library_run_resumes_under_its_own_id`]: the upgrade,
/// killed after Helm's apply by the executor's test option.
const CHILD_VAR: &str = "FLOWS_RESUME_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_child() {
    let Some(spec) = std::env::var_os(CHILD_VAR) else {
        return; // an ordinary test run: nothing to do
    };
    let child: serde_json::Value = serde_json::from_str(&spec.to_string_lossy()).unwrap();
    let path = |key: &str| PathBuf::from(child[key].as_str().unwrap());
    let home = path("home");
    let helm = Helm::builder()
        .program(path("helm"))
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .kubeconfig(path("kubeconfig"))
        .context(kube_sim::CONTEXT_NAME)
        .build()
        .unwrap();
    let ctx = FlowContext::connect(ConnectOptions {
        kubeconfig: Some(path("kubeconfig")),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(child["url"].as_str().unwrap().into()),
    })
    .await
    .unwrap()
    .state_dir(path("state"))
    .helm(Arc::new(helm))
    // The killed run's lease outlives it until it expires: keep that short here.
    .lock_ttl(Duration::from_secs(2))
    .executor_options(upgrade_core::executor::ExecutorOptions {
        kill_at: Some((
            "karpenter/helm-upgrade".into(),
            upgrade_core::executor::Boundary::AfterApply,
        )),
    })
    .build();
    let spec: ComponentUpgradeSpec = serde_json::from_value(child["spec"].clone()).unwrap();
    let planned = helm_component::plan(&ctx, &spec).await.unwrap();
    let _ = planned.apply(&ctx).await;
    unreachable!("the executor kills the process after the Helm upgrade is applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_library_run_resumes_under_its_own_id() {
    let world = World::new().await;
    let state = world.ctx.work().join("state");
    let child = serde_json::json!({
        "home": world.ctx.home(),
        "helm": world.ctx.require_tool("helm4"),
        "kubeconfig": world.sim.kubeconfig_path(),
        "url": world.sim.url(),
        "state": state,
        "spec": world.spec(),
    });
    let mut cmd = upgrade_core::ProcessBuilder::new(std::env::current_exe().unwrap());
    cmd.args([
        "library::resume_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, child.to_string())
    .timeout(Duration::from_secs(180));
    let out = cmd.output_async().await.unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "killed at the boundary: {}{}",
        out.stdout_lossy(),
        out.stderr_lossy()
    );
    let runs = || {
        std::fs::read_dir(state.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let recorded = runs();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let killed = recorded[0].trim_end_matches(".json").to_string();
    // The dead run's upgrade lease expires by itself (nobody renews it).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A new run is refused while that one is unfinished; nothing is changed or recorded.
    let ctx = world.flows(true, Arc::new(CollectEvents::default())).await;
    let err = helm_component::plan(&ctx, &world.spec())
        .await
        .unwrap()
        .apply(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_INVALID, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("run `{killed}` did not finish")),
        "{err}"
    );

    // Resumed: the plan takes the unfinished run's id, the run finishes under it, and no
    // second record appears.
    let resuming = FlowContext::connect(ConnectOptions {
        kubeconfig: Some(world.sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(world.sim.url().to_string()),
    })
    .await
    .unwrap()
    .state_dir(&state)
    .helm(Arc::new(world.helm()))
    .resume(true)
    .build();
    let planned = helm_component::plan(&resuming, &world.spec())
        .await
        .unwrap();
    assert_eq!(planned.plan().run_id, killed);
    let report = planned.apply(&resuming).await.unwrap();
    assert_eq!(report.run_id, killed);
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
    assert_eq!(runs(), recorded, "no orphan record");
    assert_eq!(world.chart_version().await, "1.6.0");
    world.sim.shutdown().await;
}
