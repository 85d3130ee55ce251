//! The real MLflow tracking server on SQLite: `mlflow db upgrade` of a store written by MLflow
//! 2.9.2, then the health and experiment probes against a server on the upgraded store.

use std::time::Duration;

use serde_json::json;
use upgrade_test::{TestContext, require_venv_tool};
use upgrade_verify::{Check, ProbeSpec, Prober, Report, Retry, Status};

use upgrade_verify::metrics::default_vars;
use upgrade_verify::{Baseline, MetricSpec, Prometheus};

use crate::common::{PrometheusServer, Server, free_port};
use crate::prometheus::wait_for_data;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_upgrade_of_an_older_store_then_the_probes_pass() {
    let ctx = TestContext::new();
    let mlflow = require_venv_tool("mlflow");
    // fixtures/mlflow/store-mlflow-2.9.2.db: written by MLflow 2.9.2 (scripts/make-mlflow-old-store.sh).
    let store = ctx.copy_fixture("mlflow/store-mlflow-2.9.2.db");
    let store_uri = format!("sqlite:///{}", store.display());

    assert_eq!(
        schema_revision(&ctx, &store),
        "acf3f17fdcc7",
        "the fixture is MLflow 2.9.2's schema"
    );

    let mut upgrade = upgrade_core::ProcessBuilder::new(&mlflow);
    ctx.apply_env(&mut upgrade);
    upgrade
        .args(["db", "upgrade"])
        .arg(&store_uri)
        .timeout(Duration::from_secs(300));
    upgrade
        .exec_async()
        .await
        .expect("mlflow db upgrade succeeds");
    let upgraded = schema_revision(&ctx, &store);
    assert_ne!(
        upgraded, "acf3f17fdcc7",
        "mlflow db upgrade moved the schema on"
    );

    let port = free_port();
    let mut cmd = upgrade_core::ProcessBuilder::new(&mlflow);
    ctx.apply_env(&mut cmd);
    cmd.arg("server")
        .args(["--backend-store-uri", &store_uri])
        .arg("--default-artifact-root")
        .arg(ctx.work().join("artifacts"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--expose-prometheus")
        .arg(ctx.work().join("prometheus-multiproc"));
    let mut server = Server::start("mlflow server", cmd);
    let url = format!("http://127.0.0.1:{port}");
    server
        .wait_ready(&format!("{url}/health"), Duration::from_secs(180))
        .await;

    // A new experiment through the REST API, next to the one the old MLflow wrote.
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/api/2.0/mlflow/experiments/create"))
        .json(&json!({"name": "iris-after-upgrade"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["experiment_id"].is_string(), "{created}");

    let once = Retry::once();
    let findings = Prober::new()
        .unwrap()
        .run_all(&[
            ProbeSpec::new("mlflow-health", Check::mlflow_health(&url)),
            ProbeSpec::new(
                "old-experiment",
                Check::mlflow_experiment(&url, "iris-before-upgrade"),
            ),
            ProbeSpec::new(
                "new-experiment",
                Check::mlflow_experiment(&url, "iris-after-upgrade"),
            ),
            ProbeSpec::new(
                "missing-experiment",
                Check::mlflow_experiment(&url, "never-created"),
            )
            .with_retry(once),
        ])
        .await;
    let text = Report::new(findings.clone()).text();
    assert_eq!(findings[0].actual, "200 `OK`", "{text}");
    assert_eq!(findings[1].status, Status::Pass, "{text}");
    assert_eq!(
        findings[1].actual, "200 experiment `iris-before-upgrade` (id 1) active",
        "{text}"
    );
    assert_eq!(findings[2].status, Status::Pass, "{text}");
    assert_eq!(findings[3].status, Status::Fail, "{text}");
    assert!(findings[3].actual.starts_with("status 404"), "{text}");
    assert!(
        findings[3].actual.contains("RESOURCE_DOES_NOT_EXIST"),
        "{text}"
    );

    // The MLflow default metrics, against the server's own /metrics scraped by Prometheus.
    let client = reqwest::Client::new();
    let experiment_read =
        format!("{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=iris-after-upgrade");
    tokio::spawn(async move {
        loop {
            let _ = client.get(&experiment_read).send().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let target = format!("127.0.0.1:{port}").parse().unwrap();
    let prom_server = PrometheusServer::start(&ctx, "mlflow", target).await;
    let prom = Prometheus::new(&prom_server.url, Duration::from_secs(5)).unwrap();
    let mut vars = default_vars();
    vars.insert("mlflow_selector".into(), r#"job="mlflow""#.into());
    vars.insert("window".into(), "4s".into());
    let metrics = MetricSpec::mlflow_defaults();
    wait_for_data(&prom, &metrics[1].render(&vars).unwrap()).await;
    let baseline = Baseline::capture(&prom, &metrics, &vars).await.unwrap();
    assert_eq!(
        baseline.values["mlflow-error-rate"].value,
        Some(0.0),
        "{baseline:?}"
    );
    let p95 = baseline.values["mlflow-p95-latency-s"]
        .value
        .expect("a p95 latency");
    assert!(p95 > 0.0 && p95 < 5.0, "{p95}");
}

/// The store's Alembic schema revision, read with the venv's Python.
fn schema_revision(ctx: &TestContext, store: &std::path::Path) -> String {
    let mut python = upgrade_core::ProcessBuilder::new(require_venv_tool("python"));
    ctx.apply_env(&mut python);
    python
        .arg("-c")
        .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select version_num from alembic_version').fetchone()[0])")
        .arg(store);
    python
        .exec()
        .expect("read the schema revision")
        .stdout_lossy()
        .trim()
        .to_string()
}
