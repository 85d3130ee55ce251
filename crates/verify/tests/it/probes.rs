//! Probes against KServe's real ModelServer, and the failures a server can give.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;
use upgrade_test::{TestContext, require_venv_tool};
use upgrade_verify::{Check, ProbeSpec, Prober, Report, Retry, Status};

use crate::common::{Server, free_port};

fn fast_retry(attempts: u32) -> Retry {
    Retry {
        attempts,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_v1_and_v2_against_the_real_model_server() {
    let ctx = TestContext::new();
    let python = require_venv_tool("python");
    let port = free_port();
    let mut cmd = upgrade_core::ProcessBuilder::new(python);
    ctx.apply_env(&mut cmd);
    cmd.arg(TestContext::fixtures_dir().join("kserve/iris_server.py"))
        .args(["--model_name", "sklearn-iris", "--http_port"])
        .arg(port.to_string())
        .arg("--grpc_port")
        .arg(free_port().to_string());
    let mut server = Server::start("kserve ModelServer", cmd);
    let url = format!("http://127.0.0.1:{port}");
    server
        .wait_ready(
            &format!("{url}/v1/models/sklearn-iris"),
            Duration::from_secs(120),
        )
        .await;

    let prober = Prober::new().unwrap();
    let two_flowers = Check::KserveV1 {
        url: url.clone(),
        model: "sklearn-iris".into(),
        instances: json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]),
    };
    let findings = prober
        .run_all(&[
            ProbeSpec::new("iris-v1", Check::kserve_v1(&url, "sklearn-iris")),
            ProbeSpec::new("iris-v2", Check::kserve_v2(&url, "sklearn-iris")),
            ProbeSpec::new("iris-v1-two", two_flowers),
            ProbeSpec::new("wrong-model", Check::kserve_v1(&url, "no-such-model"))
                .with_retry(fast_retry(2)),
        ])
        .await;
    let report = Report::new(findings.clone());
    let text = report.text();
    // The iris classes: setosa (0) for the first flower, virginica (2) for the second.
    assert_eq!(findings[0].status, Status::Pass, "{text}");
    assert_eq!(findings[0].actual, "200 predictions [0]", "{text}");
    assert_eq!(findings[1].status, Status::Pass, "{text}");
    assert_eq!(
        findings[1].actual, "200 1 output, `output-0` data [0]",
        "{text}"
    );
    assert_eq!(findings[2].actual, "200 predictions [0,2]", "{text}");
    assert_eq!(findings[3].status, Status::Fail, "{text}");
    assert!(
        findings[3].actual.starts_with("status 404, body")
            && findings[3].actual.contains("no-such-model"),
        "{text}"
    );
    assert!(findings[3].actual.ends_with("(after 2 attempts)"), "{text}");
    assert_eq!(report.exit_code(), 4);
}

/// A server that misbehaves in the ways a real one cannot be made to on demand.
async fn misbehaving_server() -> String {
    let flaky = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new()
        .route(
            "/v1/models/{name}",
            post(
                |axum::extract::Path(name): axum::extract::Path<String>| async move {
                    match name.as_str() {
                        "wrong-shape:predict" => {
                            (StatusCode::OK, json!({"predictions": "setosa"}).to_string())
                        }
                        "crashing:predict" => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"error": "model crashed"}).to_string(),
                        ),
                        _ => (
                            StatusCode::NOT_FOUND,
                            json!({"error": "not found"}).to_string(),
                        ),
                    }
                },
            ),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/flaky",
            get(move || {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    } else {
                        (StatusCode::OK, "ready")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn bad_responses_timeouts_and_refused_connections_are_failures() {
    let url = misbehaving_server().await;
    let refused = format!("http://127.0.0.1:{}", free_port());
    let prober = Prober::new().unwrap();
    let specs = [
        ProbeSpec::new("wrong-shape", Check::kserve_v1(&url, "wrong-shape")),
        ProbeSpec::new("crashing", Check::kserve_v1(&url, "crashing")),
        ProbeSpec::new("slow", Check::http_get(format!("{url}/slow")))
            .with_timeout(Duration::from_millis(300)),
        ProbeSpec::new("refused", Check::mlflow_health(&refused)),
        ProbeSpec::new("flaky", Check::http_get(format!("{url}/flaky"))),
    ];
    let specs: Vec<ProbeSpec> = specs
        .into_iter()
        .map(|s| s.with_retry(fast_retry(3)))
        .collect();
    let report = Report::new(prober.run_all(&specs).await);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"127\.0\.0\.1:\d+", "[ADDR]");
    settings.bind(|| {
        insta::assert_snapshot!(report.text(), @r#"
        FAIL wrong-shape  POST http://[ADDR]/v1/models/wrong-shape:predict
             expected: 200 with `predictions`: an array of 1 item
             got:      200 without a `predictions` array: `{"predictions":"setosa"}` (after 3 attempts)
        FAIL crashing  POST http://[ADDR]/v1/models/crashing:predict
             expected: 200 with `predictions`: an array of 1 item
             got:      status 500, body `{"error":"model crashed"}` (after 3 attempts)
        FAIL slow  GET http://[ADDR]/slow
             expected: status 200
             got:      no response within 300ms (timed out; raise the probe's timeout if the service is just slow) (after 3 attempts)
        FAIL refused  GET http://[ADDR]/health
             expected: 200 with body `OK`
             got:      connection refused (is the server running and the URL right?) (after 3 attempts)
        PASS flaky  GET http://[ADDR]/flaky
             got:      status 200 (attempt 3 of 3)
        1 passed, 0 warnings, 4 failed (exit 4)
        "#);
    });
}

#[tokio::test]
async fn verify_runs_the_configured_probes_into_a_report() {
    let url = misbehaving_server().await;
    let config = upgrade_verify::VerifyConfig::from_yaml(&format!(
        r#"
probes:
  - name: flaky
    check: {{ type: http, url: "{url}/flaky", body_contains: ready }}
    retry: {{ attempts: 3, backoff: 10ms }}
  - name: slow
    check: {{ type: http, url: "{url}/slow" }}
    timeout: 200ms
    retry: {{ attempts: 1 }}
"#
    ))
    .unwrap();
    let report = upgrade_verify::verify(&config, None).await.unwrap();
    let statuses: Vec<Status> = report.findings.iter().map(|f| f.status).collect();
    assert_eq!(statuses, [Status::Pass, Status::Fail], "{}", report.text());
    assert_eq!(report.exit_code(), 4);
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(json["findings"][1]["status"], "fail");

    let baseline = upgrade_verify::Baseline::from_json(
        r#"{"prometheus":"http://p","captured_at":"2026-11-22T01:00:00Z","values":{}}"#,
    )
    .unwrap();
    let err = upgrade_verify::verify(&config, Some(&baseline))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: a baseline was given but the configuration has no `prometheus` section to compare it with"
    );
}
