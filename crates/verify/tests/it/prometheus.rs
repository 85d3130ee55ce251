//! A real Prometheus scraping a metrics endpoint the test controls: a steady service passes
//! the comparison, a rising error rate and latency fail it, an unreachable Prometheus is a
//! failing finding.

use std::time::{Duration, Instant};

use upgrade_test::TestContext;
use upgrade_verify::metrics::{Vars, default_vars};
use upgrade_verify::{Baseline, Error, MetricSpec, Prometheus, Report, Status};

use crate::common::{FakeTraffic, PrometheusServer, free_port};

fn vars() -> Vars {
    let mut vars = default_vars();
    vars.insert("service".into(), "iris".into());
    vars.insert("window".into(), "4s".into());
    vars
}

/// Polls `query` until Prometheus has a value for it.
pub async fn wait_for_data(prom: &Prometheus, query: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = prom.query(query).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no data for {query} after 30s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Adds traffic every 100ms until the test ends: (ok, errors, latency_ms) per tick from `shape`.
pub fn generate(
    traffic: &FakeTraffic,
    revision: &str,
    shape: std::sync::Arc<std::sync::Mutex<(u64, u64, f64)>>,
) {
    let traffic = traffic.clone();
    let revision = revision.to_string();
    tokio::spawn(async move {
        loop {
            let (ok, errors, latency) = *shape.lock().unwrap();
            traffic.serve(&revision, ok, errors, latency);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rising_error_rate_fails_the_comparison() {
    let ctx = TestContext::new();
    let traffic = FakeTraffic::default();
    let target = traffic.start().await;
    let shape = std::sync::Arc::new(std::sync::Mutex::new((50, 0, 20.0)));
    generate(&traffic, "iris-predictor-00001", shape.clone());
    let server = PrometheusServer::start(&ctx, "fake-kserve", target).await;
    let prom = Prometheus::new(&server.url, Duration::from_secs(5)).unwrap();
    let metrics = MetricSpec::kserve_defaults();
    let vars = vars();
    let error_rate = metrics[0].render(&vars).unwrap();
    wait_for_data(&prom, &error_rate).await;
    // Let the window fill with the steady traffic.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let baseline = Baseline::capture(&prom, &metrics, &vars).await.unwrap();
    assert_eq!(baseline.values["kserve-error-rate"].value, Some(0.0));
    // 20ms falls in the (10, 25] bucket; the quantile interpolates within it.
    assert_eq!(baseline.values["kserve-p95-latency-ms"].value, Some(24.25));
    let reread = Baseline::from_json(&baseline.to_json()).unwrap();
    assert_eq!(reread, baseline);

    let steady = Report::new(baseline.compare(&prom, &metrics, &vars).await);
    assert_eq!(steady.exit_code(), 0, "{}", steady.text());

    // The upgrade breaks it: one request in five fails and they are slow.
    *shape.lock().unwrap() = (40, 10, 200.0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = Report::new(baseline.compare(&prom, &metrics, &vars).await);
    let text = after.text();
    assert_eq!(after.exit_code(), 4, "{text}");
    let err = &after.findings[0];
    assert_eq!(err.status, Status::Fail, "{text}");
    assert!(err.actual.ends_with("(above the limit)"), "{text}");
    let latency = &after.findings[1];
    assert_eq!(latency.status, Status::Fail, "{text}");
    assert!(
        latency.actual.contains("above the baseline 24.25"),
        "{text}"
    );

    // Queries Prometheus cannot answer as one number are findings with the reason.
    let broken = MetricSpec::new("typo", "sum(rate(revision_app_request_count[4s]");
    let many = MetricSpec::new("unaggregated", "revision_app_request_count");
    for (spec, expected) in [
        (
            broken,
            "Prometheus refused the query (400 Bad Request, bad_data)",
        ),
        (many, "the query returned 2 series; aggregate it to one"),
    ] {
        let err = prom.query(&spec.query).await.unwrap_err();
        assert!(err.starts_with(expected), "{err}");
        let Error::Prometheus { problem, .. } =
            Baseline::capture(&prom, &[spec], &vars).await.unwrap_err()
        else {
            panic!("a Prometheus error")
        };
        assert!(problem.starts_with(expected), "{problem}");
    }
}

#[tokio::test]
async fn an_unreachable_prometheus_is_a_failure_never_a_pass() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let prom = Prometheus::new(&url, Duration::from_secs(2)).unwrap();
    let metrics = MetricSpec::kserve_defaults();
    let vars = vars();
    let err = Baseline::capture(&prom, &metrics, &vars).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "capturing the baseline of `kserve-error-rate` failed: Prometheus at {url} is unreachable: connection refused"
        )),
        "{err}"
    );
    let baseline = Baseline::from_json(&format!(
        r#"{{"prometheus":"{url}","captured_at":"2026-11-22T01:00:00Z","values":{{
            "kserve-error-rate":{{"query":{q0},"value":0.0}},
            "kserve-p95-latency-ms":{{"query":{q1},"value":20.0}}}}}}"#,
        q0 = serde_json::to_string(&metrics[0].render(&vars).unwrap()).unwrap(),
        q1 = serde_json::to_string(&metrics[1].render(&vars).unwrap()).unwrap(),
    ))
    .unwrap();
    let report = Report::new(baseline.compare(&prom, &metrics, &vars).await);
    assert_eq!(report.exit_code(), 4);
    for f in &report.findings {
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.expected, "a value from Prometheus");
        assert!(
            f.actual.contains("is unreachable: connection refused"),
            "{}",
            f.actual
        );
    }
}
