//! `ProbeStep` as a run step: it changes nothing, and its verify fails the run (naming each
//! failing probe) unless every probe passes.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use upgrade_core::executor::{Executor, RunOutcome, Step};
use upgrade_verify::step::ProbeStep;
use upgrade_verify::{Check, ProbeSpec, Retry};

fn probe(name: &str, url: &str) -> ProbeSpec {
    ProbeSpec::new(name, Check::mlflow_health(url)).with_retry(Retry {
        attempts: 2,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(20),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_fails_naming_each_failing_probe() {
    let app = axum::Router::new()
        .route("/up/health", get(|| async { "OK" }))
        .route(
            "/down/health",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "starting") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut executor =
        Executor::open(&dir.path().join("journal.jsonl"), &dir.path().join("snap")).unwrap();
    let healthy = ProbeStep {
        id: "mlflow/health".into(),
        component: "mlflow".into(),
        probes: vec![probe("up", &format!("{base}/up"))],
    };
    assert!(healthy.description().contains("/up/health"));
    let steps: [&dyn Step; 1] = [&healthy];
    assert_eq!(
        executor.start("run-ok", &steps).await.unwrap(),
        RunOutcome::Completed
    );

    let unhealthy = ProbeStep {
        id: "mlflow/health".into(),
        component: "mlflow".into(),
        probes: vec![
            probe("up", &format!("{base}/up")),
            probe("down", &format!("{base}/down")),
        ],
    };
    let steps: [&dyn Step; 1] = [&unhealthy];
    match executor.start("run-failing", &steps).await.unwrap() {
        RunOutcome::RolledBack { error, .. } => {
            assert!(error.contains("probe failed: down ("), "{error}");
            assert!(error.contains("503"), "{error}");
            assert!(!error.contains("up ("), "only failing probes: {error}");
        }
        other => panic!("expected the run to roll back, got {other:?}"),
    }
}
