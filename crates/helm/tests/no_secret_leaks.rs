//! A `--set` password reaches no log line (every level, every thread), no error and no report.
//! One test per binary: it installs the process-wide log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{HELMS, closed_kubeconfig, fixture_chart, helm_builder, helm_for};
use upgrade_helm::{ChartRef, ReleaseRef, SetValue, TemplateOptions, UpgradeOptions};
use upgrade_test::TestContext;

const PASSWORD: &str = "pw-0a1b2c3d-never-logged";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_password_appears_in_no_log_error_or_report() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let ctx = TestContext::new();
    let kubeconfig = closed_kubeconfig(&ctx);
    let mut shown = Vec::new();
    for tool in HELMS {
        // A failing write: the error and its debug form.
        let helm = helm_builder(&ctx, tool)
            .kubeconfig(&kubeconfig)
            .build()
            .unwrap();
        let o = UpgradeOptions {
            set: vec![SetValue::new("db.password", PASSWORD)],
            ..UpgradeOptions::default()
        };
        let err = helm
            .upgrade(
                &ReleaseRef::new("mlflow", "mlops"),
                &ChartRef::path(fixture_chart("mlflow", "0.17.0")),
                &o,
            )
            .await
            .unwrap_err();
        shown.push(err.to_string());
        shown.push(format!("{err:?}"));
        shown.push(format!("{o:?}"));

        // A successful read that renders the password (base64) into its output.
        let manifest = helm_for(&ctx, tool)
            .template(
                &ReleaseRef::new("mlflow", "mlops"),
                &ChartRef::path(fixture_chart("mlflow", "0.17.0")),
                &TemplateOptions {
                    set: vec![SetValue::new("db.password", PASSWORD)],
                    ..TemplateOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(manifest.contains("kind: Secret"));
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("db.password=***"),
        "the runs were not logged: {logs}"
    );
    assert!(
        !logs.contains(PASSWORD),
        "a log line holds the password:\n{logs}"
    );
    for text in shown {
        assert!(!text.contains(PASSWORD), "leaked: {text}");
    }
}
