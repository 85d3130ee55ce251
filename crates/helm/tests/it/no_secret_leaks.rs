//! A `--set` password reaches no log line (every level, every thread), no error and no report.
//! One test per binary: it installs the process-wide log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::{HELMS, closed_kubeconfig, fixture_chart, helm_builder, helm_for};
use upgrade_helm::{
    ChartRef, PendingPolicy, ReleaseRef, ReleaseSnapshot, RollbackOptions, SetValue,
    TemplateOptions, UpgradeOptions,
};
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

    // On a cluster: install with the password, upgrade with a snapshot, restore it.
    let sim = kube_sim::SimCluster::builder()
        .controllers(kube_sim::ControllerConfig::fast())
        .start()
        .await
        .unwrap();
    sim.add_node("node-a", &sim.server_version()).unwrap();
    for tool in HELMS {
        let helm = helm_builder(&ctx, tool)
            .kubeconfig(sim.kubeconfig_path())
            .build()
            .unwrap();
        let release = ReleaseRef::new("mlflow", format!("mlops-{tool}"));
        let o = UpgradeOptions {
            set: vec![SetValue::new("db.password", PASSWORD)],
            create_namespace: true,
            timeout: std::time::Duration::from_secs(60),
            ..UpgradeOptions::default()
        };
        let installed = helm
            .upgrade(
                &release,
                &ChartRef::path(fixture_chart("mlflow", "0.16.0")),
                &o,
            )
            .await
            .unwrap();
        assert_eq!(installed.config["db"]["password"], PASSWORD);
        shown.push(format!("{installed:?}"));
        let snapshots = ctx.work().join(format!("snapshots-{tool}"));
        let outcome = helm
            .safe_upgrade(
                &release,
                &ChartRef::path(fixture_chart("mlflow", "0.17.0")),
                &o,
                &snapshots,
            )
            .await
            .unwrap();
        outcome.result.unwrap();
        let path = outcome.snapshot.unwrap();
        let snapshot = ReleaseSnapshot::read(&path).unwrap();
        // The snapshot file is the way back, so it holds the values: 0600 and never printed.
        assert_eq!(snapshot.user_values["db"]["password"], PASSWORD);
        shown.push(snapshot.summary());
        shown.push(format!("{snapshot:?}"));
        let (plan, restored) = helm
            .restore(
                &snapshot,
                None,
                PendingPolicy::Refuse,
                &RollbackOptions {
                    timeout: std::time::Duration::from_secs(60),
                    ..RollbackOptions::default()
                },
            )
            .await
            .unwrap();
        shown.push(format!("{plan:?}"));
        assert_eq!(restored.config["db"]["password"], PASSWORD);
        shown.push(format!("{restored:?}"));
    }
    sim.shutdown().await;

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
