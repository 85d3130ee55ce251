//! Safety paths of a library run: a stop during the Helm upgrade is rolled back by Helm
//! itself, and the upgrade lease survives API errors while the API servers roll, until it
//! would expire (then the run stops without rolling back, recorded).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kube_sim::{FaultConfig, FaultKind};
use upgrade_core::executor::{Step, StepFuture, StepRecord};
use upgrade_core::journal::{Journal, Outcome};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_flows::error::{EXIT_STOPPED, FlowError};
use upgrade_flows::flows::helm_component;
use upgrade_flows::report::Plan;
use upgrade_flows::run::Planned;
use upgrade_helm::{ReleaseRef, ReleaseStatus};

use crate::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_helm_upgrade_is_rolled_back_by_helm() {
    let world = World::new().await;
    // The new pods never become Ready, so `helm upgrade --wait` is still running when the
    // stop comes.
    let values = world.ctx.work().join("never-ready.yaml");
    std::fs::write(
        &values,
        format!(
            "{}podAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
            std::fs::read_to_string(&world.values).unwrap()
        ),
    )
    .unwrap();
    let stop = StopSignal::new();
    let ctx = world.flows_watching(&stop, Duration::from_secs(30)).await;
    let spec = helm_component::ComponentUpgradeSpec {
        values: values.clone(),
        timeout: Duration::from_secs(120),
        ..world.spec()
    };
    let planned = helm_component::plan(&ctx, &spec).await.unwrap();
    let run_id = planned.plan().run_id.clone();
    let ctrl_c = {
        let helm = world.helm();
        let stop = stop.clone();
        tokio::spawn(async move {
            let release = ReleaseRef::new("karpenter", "karpenter");
            for _ in 0..600 {
                let history = helm.history(&release).await.unwrap_or_default();
                if history.last().is_some_and(|r| r.status.is_pending()) {
                    stop.stop();
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        })
    };
    let err = planned.apply(&ctx).await.unwrap_err();
    assert!(ctrl_c.await.unwrap(), "the Helm upgrade never started");
    let FlowError::Stopped(report) = &err else {
        panic!("expected a stopped run, got {err:?}");
    };
    assert_eq!(err.exit_code(), EXIT_STOPPED);
    assert!(
        report
            .outcome
            .starts_with("stopped on request: failed at karpenter/helm-upgrade")
            && report.outcome.contains("was stopped on request")
            && report.outcome.ends_with("rolled back 3 step(s)"),
        "{}",
        report.outcome
    );
    // Helm's own rollback ran: the release is deployed at 1.5.0 again.
    assert_eq!(world.chart_version().await, "1.5.0");
    let history = world
        .helm()
        .history(&ReleaseRef::new("karpenter", "karpenter"))
        .await
        .unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        last.status,
        ReleaseStatus::Deployed,
        "the release is left so: {history:?}"
    );
    let run = Journal::run(&ctx.state().journal(), &run_id)
        .unwrap()
        .unwrap();
    assert_eq!(run.outcome, Some(Outcome::RolledBack));
    // The signal is settled: the next run in this process is not stopped by the old request.
    assert!(!stop.is_stopped());
    world.sim.shutdown().await;
}

/// A step that takes `seconds`, watching the run's stop signal, and counts its rollbacks.
struct Slow {
    id: &'static str,
    seconds: u64,
    stop: StopSignal,
    rollbacks: Arc<AtomicU32>,
}

#[derive(serde::Serialize)]
struct NoSpec;

impl Step for Slow {
    fn id(&self) -> &str {
        self.id
    }
    fn component(&self) -> &str {
        "test"
    }
    fn description(&self) -> String {
        format!("wait {}s", self.seconds)
    }
    fn record(&self) -> StepRecord {
        StepRecord {
            kind: "test-slow".into(),
            spec: serde_json::json!({ "seconds": self.seconds }),
        }
    }
    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.stop
                .pause(Duration::from_secs(self.seconds))
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            self.rollbacks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn slow_run(ctx_stop: &StopSignal, seconds: u64, rollbacks: &Arc<AtomicU32>) -> Planned {
    let step = Slow {
        id: "test/slow",
        seconds,
        stop: ctx_stop.clone(),
        rollbacks: Arc::clone(rollbacks),
    };
    let run_id = format!("slow-{}", std::process::id());
    let plan = Plan::new("test-slow", "kube-sim", &run_id, &[&step as &dyn Step]);
    Planned::new("test-slow", &NoSpec, plan, vec![Box::new(step)])
}

fn lease_faults(kind: FaultKind) -> FaultConfig {
    FaultConfig {
        seed: 11,
        ..FaultConfig::default()
    }
    .rule(Some("update"), Some("leases"), 1.0, kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_survives_api_errors_shorter_than_itself() {
    let world = World::new().await;
    let stop = StopSignal::new();
    // Renewed every 1.3 s; the errors outlast a renewal but not the lease.
    let ctx = world.flows_watching(&stop, Duration::from_secs(4)).await;
    let rollbacks = Arc::new(AtomicU32::new(0));
    let planned = slow_run(&stop, 6, &rollbacks);
    let sim = &world.sim;
    let faults = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        // API servers rolling: 503s, then answers lost after the write went through.
        sim.set_faults(lease_faults(FaultKind::ServiceUnavailable));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        sim.set_faults(lease_faults(FaultKind::DropResponse));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        sim.set_faults(FaultConfig::default());
    };
    let (result, ()) = tokio::join!(planned.apply(&ctx), faults);
    let report = result.unwrap_or_else(|e| panic!("the run was stopped: {e}"));
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
    assert_eq!(rollbacks.load(Ordering::SeqCst), 0);
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_in_time_stops_the_run_without_rolling_back() {
    let world = World::new().await;
    let stop = StopSignal::new();
    let ctx = world.flows_watching(&stop, Duration::from_secs(3)).await;
    let rollbacks = Arc::new(AtomicU32::new(0));
    let planned = slow_run(&stop, 60, &rollbacks);
    let run_id = planned.plan().run_id.clone();
    world
        .sim
        .set_faults(lease_faults(FaultKind::ServiceUnavailable));
    let started = std::time::Instant::now();
    let err = planned.apply(&ctx).await.unwrap_err();
    world.sim.set_faults(FaultConfig::default());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped only after {:?}",
        started.elapsed()
    );
    let FlowError::Stopped(report) = &err else {
        panic!("expected a stopped run, got {err:?}");
    };
    assert!(
        report.outcome.contains("the upgrade lock was lost")
            && report.outcome.contains("nothing was rolled back"),
        "{}",
        report.outcome
    );
    assert_eq!(
        rollbacks.load(Ordering::SeqCst),
        0,
        "no rollback without the lock"
    );
    let run = Journal::run(&ctx.state().journal(), &run_id)
        .unwrap()
        .unwrap();
    assert_eq!(
        run.outcome,
        Some(Outcome::Stopped),
        "recorded, with a way back"
    );
    world.sim.shutdown().await;
}

/// Every run writes `kube-system/upgrade-status` for itself, except over another run's
/// record of surge nodes (the only place that run's rollback finds them): that stays until
/// the rollback has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_another_runs_surge_record_in_upgrade_status() {
    use upgrade_flows::flows::emergency::{EmergencyAction, EmergencySpec, plan_emergency};
    use upgrade_kube::status::UpgradeStatus;

    let world = crate::world::World::new().await;
    let ctx = world
        .flows(
            true,
            std::sync::Arc::new(upgrade_flows::events::CollectEvents::default()),
        )
        .await;
    let leftover = UpgradeStatus {
        run_id: "nodes-earlier".into(),
        surged: vec!["node-surge-1".into()],
        ..UpgradeStatus::default()
    };
    leftover.publish(ctx.cluster()).await.unwrap();
    let scale = |replicas| EmergencySpec {
        namespace: "karpenter".into(),
        deployment: "karpenter".into(),
        action: EmergencyAction::Scale(replicas),
        timeout_secs: 60,
    };
    plan_emergency(&ctx, &scale(1))
        .await
        .unwrap()
        .apply(&ctx)
        .await
        .unwrap();
    let status = UpgradeStatus::read(ctx.cluster()).await.unwrap().unwrap();
    assert_eq!(status, leftover, "the surge record is left as it was");

    // Without surge nodes to remember, the next run's status replaces it.
    UpgradeStatus {
        surged: Vec::new(),
        ..leftover
    }
    .publish(ctx.cluster())
    .await
    .unwrap();
    let report = plan_emergency(&ctx, &scale(1))
        .await
        .unwrap()
        .apply(&ctx)
        .await
        .unwrap();
    let status = UpgradeStatus::read(ctx.cluster()).await.unwrap().unwrap();
    assert_eq!(status.run_id, report.run_id);
    assert!(
        status
            .render()
            .contains("emergency/karpenter/karpenter (complete)"),
        "{}",
        status.render()
    );
    world.sim.shutdown().await;
}
