//! The storage decoder on release records written by the real Helm: Helm 4's
//! `install --dry-run=client -o json` prints the full release record (chart included) without a
//! cluster; we store it the way Helm's Secret driver does and decode it back.

use upgrade_helm::storage::{decode_release, encode_release, object_name};
use upgrade_helm::{HistoryEntry, ReleaseStatus};
use upgrade_test::TestContext;

#[test]
fn decodes_a_release_record_produced_by_helm4() {
    let ctx = TestContext::new();
    let chart = TestContext::fixtures_dir().join("charts/mlflow/0.17.0");
    let mut install = ctx.command("helm4");
    install
        .args(["install", "mlflow"])
        .arg(&chart)
        .args([
            "--namespace",
            "mlops",
            "--dry-run=client",
            "--output",
            "json",
        ])
        .args([
            "--set",
            "preUpgradeHook.enabled=true",
            "--set",
            "settings.clusterName=dev",
        ]);
    let record = install.exec().unwrap().stdout;

    let payload = encode_release(&record);
    let object = format!("mlops/{}", object_name("mlflow", 1));
    let release = decode_release(&object, payload.as_bytes()).unwrap();
    assert_eq!(release.name, "mlflow");
    assert_eq!(release.namespace, "mlops");
    assert_eq!(release.version, 1);
    assert_eq!(release.status(), ReleaseStatus::PendingInstall);
    assert_eq!(release.chart_label(), "mlflow-0.17.0");
    assert_eq!(release.app_version(), "2.22.0");
    assert_eq!(release.apply_method.as_deref(), Some("ssa"));
    assert_eq!(release.config["settings"]["clusterName"], "dev");
    assert!(release.manifest.contains("kind: Deployment"));
    assert_eq!(release.hooks.len(), 1);
    assert_eq!(release.hooks[0].kind, "Job");
    assert_eq!(release.hooks[0].events, ["pre-upgrade"]);
    let entry = HistoryEntry::from(&release);
    assert_eq!(entry.description, "Dry run complete");
    assert!(entry.updated.is_some());
}
