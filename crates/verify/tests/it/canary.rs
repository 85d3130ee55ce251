//! The canary rollout on kube-sim. kube-sim has no KServe controller, so a small fake one in
//! this test plays its part: when the InferenceService's generation changes it writes the
//! status KServe would (observedGeneration, Ready, the canary and stable revisions), or
//! Ready=False for a model that "fails to load". Traffic metrics come from a real Prometheus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use upgrade_test::TestContext;
use upgrade_verify::canary::{
    self, CanaryAnalysis, CanaryEvent, CanaryOutcome, CanaryPlan, FindingsFuture, MemoryRecorder,
    PrometheusAnalysis, StepContext, inference_service_resource,
};
use upgrade_verify::metrics::default_vars;
use upgrade_verify::{MetricSpec, Prometheus, Status};

use crate::common::{FakeTraffic, PrometheusServer};
use crate::prometheus::{generate, wait_for_data};

const CRD_AND_ISVC: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: inferenceservices.serving.kserve.io
spec:
  group: serving.kserve.io
  scope: Namespaced
  names: {kind: InferenceService, plural: inferenceservices, singular: inferenceservice, shortNames: [isvc]}
  versions:
    - name: v1beta1
      served: true
      storage: true
      subresources: {status: {}}
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris, namespace: mlops}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: s3://models/iris/v1
"#;

const STABLE: &str = "iris-predictor-00001";
const CANARY: &str = "iris-predictor-00002";

/// Plays KServe's controller: reconciles every generation change into a status.
fn fake_kserve_controller(api: Api<DynamicObject>) {
    tokio::spawn(async move {
        loop {
            if let Ok(obj) = api.get("iris").await {
                let generation = obj.metadata.generation.unwrap_or(1);
                if obj.data["status"]["observedGeneration"].as_i64() != Some(generation) {
                    let uri = obj.data["spec"]["predictor"]["model"]["storageUri"]
                        .as_str()
                        .unwrap_or("");
                    // With no canary traffic the stable revision serves everything: Ready.
                    let no_canary =
                        obj.data["spec"]["predictor"]["canaryTrafficPercent"] == json!(0);
                    let loads = !uri.contains("broken") || no_canary;
                    let created = if uri.ends_with("/v1") { STABLE } else { CANARY };
                    let condition = if loads {
                        json!({"type": "Ready", "status": "True"})
                    } else {
                        json!({"type": "Ready", "status": "False", "reason": "ModelLoadFailed", "message": "model at s3://models/iris/broken failed to load"})
                    };
                    let status = json!({"status": {
                        "observedGeneration": generation,
                        "conditions": [condition],
                        "components": {"predictor": {
                            "latestCreatedRevision": created,
                            "latestRolledoutRevision": STABLE,
                        }},
                    }});
                    let _ = api
                        .patch_status("iris", &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

async fn cluster() -> (kube_sim::SimCluster, Api<DynamicObject>) {
    let sim = kube_sim::SimCluster::builder().start().await.unwrap();
    sim.load_yaml(CRD_AND_ISVC).unwrap();
    let api = Api::namespaced_with(
        sim.client().unwrap(),
        "mlops",
        &inference_service_resource(),
    );
    fake_kserve_controller(api.clone());
    (sim, api)
}

fn plan(storage_uri: &str) -> CanaryPlan {
    CanaryPlan {
        ready_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(50),
        settle: Duration::from_millis(200),
        ..CanaryPlan::new("mlops", "iris", storage_uri)
    }
}

/// Traffic for both revisions, a real Prometheus scraping it, and the analysis over it.
async fn analysis_over(
    ctx: &TestContext,
    canary_errors: u64,
) -> (PrometheusServer, PrometheusAnalysis) {
    let traffic = FakeTraffic::default();
    let target = traffic.start().await;
    generate(&traffic, STABLE, Arc::new(Mutex::new((50, 0, 20.0))));
    generate(
        &traffic,
        CANARY,
        Arc::new(Mutex::new((50 - canary_errors, canary_errors, 20.0))),
    );
    let server = PrometheusServer::start(ctx, "fake-kserve", target).await;
    let prom = Prometheus::new(&server.url, Duration::from_secs(5)).unwrap();
    let mut vars = default_vars();
    vars.insert("service".into(), "iris".into());
    vars.insert("window".into(), "4s".into());
    let metrics = MetricSpec::kserve_defaults();
    let mut canary_vars = vars.clone();
    canary_vars.insert("revision".into(), CANARY.into());
    wait_for_data(&prom, &metrics[0].render(&canary_vars).unwrap()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    (server, PrometheusAnalysis::new(prom, metrics, vars))
}

/// Runs the default plan to `s3://models/iris/v2`, recording in memory.
async fn run_to_v2(
    sim: &kube_sim::SimCluster,
    analysis: &dyn CanaryAnalysis,
) -> (CanaryOutcome, MemoryRecorder) {
    let mut recorder = MemoryRecorder::default();
    let outcome = canary::run(
        sim.client().unwrap(),
        &plan("s3://models/iris/v2"),
        analysis,
        &mut recorder,
    )
    .await
    .unwrap();
    (outcome, recorder)
}

fn predictor(api_obj: &DynamicObject) -> Value {
    api_obj.data["spec"]["predictor"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_step_by_step() {
    let ctx = TestContext::new();
    let (sim, api) = cluster().await;
    let (_prom, analysis) = analysis_over(&ctx, 0).await;
    let (outcome, recorder) = run_to_v2(&sim, &analysis).await;
    let CanaryOutcome::Promoted { findings } = outcome else {
        panic!("promoted, got {outcome:?}\n{:#?}", recorder.events)
    };
    assert_eq!(findings.len(), 6, "two metrics at three steps");
    assert!(
        findings.iter().all(|f| f.status == Status::Pass),
        "{findings:#?}"
    );
    let percents: Vec<u8> = recorder
        .events
        .iter()
        .filter_map(|e| match e {
            CanaryEvent::TrafficSet { percent } => Some(*percent),
            _ => None,
        })
        .collect();
    assert_eq!(percents, [10, 50, 100]);
    assert_eq!(
        recorder.events.first(),
        Some(&CanaryEvent::Started {
            from: "s3://models/iris/v1".into(),
            to: "s3://models/iris/v2".into()
        })
    );
    assert!(recorder.events.contains(&CanaryEvent::Ready {
        percent: 10,
        canary_revision: Some(CANARY.into()),
        stable_revision: Some(STABLE.into()),
    }));
    assert_eq!(recorder.events.last(), Some(&CanaryEvent::Promoted));
    let isvc = api.get("iris").await.unwrap();
    assert_eq!(
        predictor(&isvc),
        json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/iris/v2"}})
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_to_zero() {
    let ctx = TestContext::new();
    let (sim, api) = cluster().await;
    // One canary request in five fails; the stable revision serves cleanly.
    let (_prom, analysis) = analysis_over(&ctx, 10).await;
    let (outcome, recorder) = run_to_v2(&sim, &analysis).await;
    let CanaryOutcome::RolledBack {
        at_percent,
        reason,
        stable_storage_uri,
        ..
    } = outcome
    else {
        panic!("rolled back, got {outcome:?}")
    };
    assert_eq!(at_percent, 10);
    assert_eq!(stable_storage_uri, "s3://models/iris/v1");
    assert!(
        reason.starts_with(
            "canary at 10% failed its analysis: kserve-error-rate: 0.2 (above the limit)"
        ),
        "{reason}"
    );
    let isvc = api.get("iris").await.unwrap();
    assert_eq!(predictor(&isvc)["canaryTrafficPercent"], json!(0));
    assert!(matches!(
        recorder.events.last(),
        Some(CanaryEvent::RolledBack {
            at_percent: 10,
            ready: true,
            ..
        })
    ));
    sim.shutdown().await;
}

/// An analysis that must not run: readiness failed first.
struct Unreachable;

impl CanaryAnalysis for Unreachable {
    fn analyze<'a>(&'a self, step: &'a StepContext) -> FindingsFuture<'a> {
        panic!("no analysis may run when the step is not ready: {step:?}")
    }
}

#[tokio::test]
async fn a_canary_that_never_gets_ready_is_rolled_back() {
    let (sim, api) = cluster().await;
    let mut recorder = MemoryRecorder::default();
    let outcome = canary::run(
        sim.client().unwrap(),
        &plan("s3://models/iris/broken"),
        &Unreachable,
        &mut recorder,
    )
    .await
    .unwrap();
    let CanaryOutcome::RolledBack {
        at_percent, reason, ..
    } = outcome
    else {
        panic!("rolled back, got {outcome:?}")
    };
    assert_eq!(at_percent, 10);
    assert_eq!(
        reason,
        "not ready within 3s: Ready is False (ModelLoadFailed: model at s3://models/iris/broken failed to load)"
    );
    let isvc = api.get("iris").await.unwrap();
    assert_eq!(predictor(&isvc)["canaryTrafficPercent"], json!(0));
    assert!(matches!(
        recorder.events.last(),
        Some(CanaryEvent::RolledBack { ready: true, .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_inference_service_is_a_clear_error() {
    let (sim, _api) = cluster().await;
    let err = canary::run(
        sim.client().unwrap(),
        &CanaryPlan::new("mlops", "nope", "s3://x"),
        &Unreachable,
        &mut MemoryRecorder::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "InferenceService mlops/nope does not exist; check the namespace and name"
    );
    sim.shutdown().await;
}

/// An analysis that fails from a given percentage on, and remembers what it saw.
struct FailsFrom(u8, Mutex<Vec<u8>>);

impl CanaryAnalysis for FailsFrom {
    fn analyze<'a>(&'a self, step: &'a StepContext) -> FindingsFuture<'a> {
        self.1.lock().unwrap().push(step.percent);
        let status = if step.percent >= self.0 {
            Status::Fail
        } else {
            Status::Pass
        };
        let finding = upgrade_verify::Finding::new(
            "kserve-error-rate",
            status,
            "q",
            "stable 0 + 0.02",
            "0.3",
        );
        Box::pin(async move { vec![finding] })
    }
}

#[tokio::test]
async fn as_executor_steps_the_rollout_is_journaled_and_rolled_back() {
    use upgrade_core::executor::{Executor, RunOutcome, Step};
    use upgrade_core::journal::{Event, Journal};

    let (sim, api) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let plan = Arc::new(plan("s3://models/iris/v2"));
    let analysis = Arc::new(FailsFrom(50, Mutex::new(Vec::new())));
    let steps = canary::executor_steps(
        sim.client().unwrap(),
        plan,
        analysis.clone(),
        upgrade_core::process::StopSignal::global(),
    )
    .unwrap();
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let ids: Vec<&str> = refs.iter().map(|s| s.id()).collect();
    assert_eq!(
        ids,
        [
            "mlops/iris/canary-10",
            "mlops/iris/canary-50",
            "mlops/iris/canary-100",
            "mlops/iris/canary-promote"
        ]
    );
    assert!(refs[3].irreversible().is_some());

    let mut executor = Executor::open(&journal, &dir.path().join("snapshots")).unwrap();
    let outcome = executor.start("canary-iris", &refs).await.unwrap();
    let RunOutcome::RolledBack {
        failed_step,
        error,
        rollback,
    } = outcome
    else {
        panic!("rolled back, got {outcome:?}")
    };
    assert_eq!(failed_step, "mlops/iris/canary-50");
    assert_eq!(
        error,
        "canary at 50% failed its analysis: kserve-error-rate: 0.3 (expected stable 0 + 0.02)"
    );
    assert_eq!(
        rollback.rolled_back,
        ["mlops/iris/canary-50", "mlops/iris/canary-10"]
    );
    assert_eq!(*analysis.1.lock().unwrap(), [10, 50]);
    // All traffic went back to stable, and the predictor names the stable model again.
    let isvc = api.get("iris").await.unwrap();
    assert_eq!(
        predictor(&isvc),
        json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/iris/v1"}})
    );
    let events: Vec<Event> = Journal::read_entries(&journal)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Verified { step } if step == "mlops/iris/canary-10")),
        "{events:#?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn as_executor_steps_a_healthy_rollout_completes_with_promotion() {
    use upgrade_core::executor::{Executor, RunOutcome, Step};

    let (sim, api) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(plan("s3://models/iris/v2"));
    let analysis = Arc::new(FailsFrom(101, Mutex::new(Vec::new())));
    let steps = canary::executor_steps(
        sim.client().unwrap(),
        plan,
        analysis.clone(),
        upgrade_core::process::StopSignal::global(),
    )
    .unwrap();
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut executor = Executor::open(
        &dir.path().join("journal.jsonl"),
        &dir.path().join("snapshots"),
    )
    .unwrap();
    assert_eq!(
        executor.start("canary-iris", &refs).await.unwrap(),
        RunOutcome::Completed
    );
    assert_eq!(*analysis.1.lock().unwrap(), [10, 50, 100]);
    let isvc = api.get("iris").await.unwrap();
    assert_eq!(
        predictor(&isvc),
        json!({"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/iris/v2"}})
    );
    sim.shutdown().await;
}
