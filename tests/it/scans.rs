//! `upgrade-preflight --manifests`: the static scan of manifest files and chart folders, run
//! as CI runs it (no cluster), with the real helm 3 and helm 4 rendering the charts.

use std::path::Path;

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

use crate::demo::bin_dir;

/// Runs `upgrade-preflight --target TARGET --manifests PATHS... --output json` with `helm`;
/// its exit code and JSON report.
pub fn scan(helm: &str, target: &str, paths: &[&Path]) -> (i32, serde_json::Value) {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(bin_dir().join("upgrade-preflight"));
    ctx.apply_env(&mut cmd);
    cmd.env("HELM_BIN", upgrade_test::require_tool(helm))
        .args(["--target", target, "--output", "json", "--manifests"])
        .args(paths.iter().map(|p| p.as_os_str()));
    let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{stdout}\n{stderr}"));
    (code, report)
}

/// `(file, line, apiVersion, kind, name, severity)` of each finding.
pub fn findings(
    report: &serde_json::Value,
) -> Vec<(String, Option<u64>, String, String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (
                text("file"),
                f["line"].as_u64(),
                text("api_version"),
                text("kind"),
                text("name"),
                text("severity"),
            )
        })
        .collect()
}

/// Templates guarded by `.Capabilities` (the kube version and the served APIs) render the
/// current APIs for a current target and are not reported; the unguarded removed one is,
/// named by its template; manifest files are reported with their line, List items included.
#[test]
fn a_scan_reports_removed_apis_with_file_and_line_and_trusts_capability_guards() {
    let fixtures = TestContext::workspace_root().join("fixtures/scan");
    for helm in ["helm3", "helm4"] {
        let (code, report) = scan(helm, "1.38", &[&fixtures]);
        let found = findings(&report);
        let chart = fixtures.join("guarded").display().to_string();
        let manifests = fixtures
            .join("manifests/platform.yaml")
            .display()
            .to_string();
        assert_eq!(
            found,
            [
                (
                    format!("{chart} (templates/flowschema.yaml)"),
                    None,
                    "flowcontrol.apiserver.k8s.io/v1beta3".into(),
                    "FlowSchema".into(),
                    "release-name-batch".into(),
                    "blocker".into()
                ),
                (
                    manifests.clone(),
                    Some(7),
                    "resource.k8s.io/v1beta1".into(),
                    "ResourceClaimTemplate".into(),
                    "one-gpu".into(),
                    "blocker".into()
                ),
                (
                    manifests,
                    Some(27),
                    "storage.k8s.io/v1beta1".into(),
                    "VolumeAttributesClass".into(),
                    "fast".into(),
                    "warning".into()
                ),
            ],
            "{helm}: {report:#}"
        );
        assert_eq!(code, 4, "{helm}: a removed API blocks");
        // Before the DRA beta removal, the same files only warn.
        let (code, report) = scan(helm, "1.36", &[&fixtures.join("manifests")]);
        assert_eq!(code, 3, "{report:#}");
        // For a target before any of it, nothing.
        let (code, report) = scan(helm, "1.28", &[&fixtures]);
        assert_eq!(code, 0, "{report:#}");
    }
}
