//! `upgrade-lock` end to end: the real binary against the sample platform on kube-sim, with
//! the real helm 4.

use std::path::{Path, PathBuf};

use upgrade_core::ProcessBuilder;
use upgrade_demo::sample::SamplePlatform;
use upgrade_helm::ReleaseRef;
use upgrade_test::TestContext;

use crate::platform_run::{platform, sample};

async fn upgrade_lock(
    ctx: &TestContext,
    platform: &SamplePlatform,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(upgrade_bins_exe("upgrade-lock"));
    ctx.apply_env(&mut cmd);
    cmd.env("HOME", platform.home())
        .env("HELM_BIN", upgrade_test::require_tool("helm4"))
        .args(args)
        .args(["--kubeconfig"])
        .arg(platform.kubeconfig())
        .args(["--kube-context", kube_sim::CONTEXT_NAME, "--lockfile"])
        .arg(platform.lockfile());
    upgrade_test::CommandOutput::run_async(&cmd).await.parts()
}

/// The workspace's binaries are built by the README's test command (`cargo build --workspace
/// --bins`, then the tests) into the same target folder as this test.
fn upgrade_bins_exe(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` (the README's test command builds it)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_diff_shows_no_drift_then_the_upgrade() {
    let ctx = TestContext::new();
    let platform = sample(ctx.root().join("p"));
    let sim = self::platform(&platform).await;

    let (code, _, stderr) = upgrade_lock(
        &ctx,
        &platform,
        &[
            "write",
            "--component",
            "karpenter=karpenter/karpenter=fixtures/charts/karpenter",
            "--component",
            "kserve=kserve/kserve=fixtures/charts/kserve",
            "--cluster-name",
            "mlops-platform-dev",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(platform.lockfile()).unwrap();
    assert!(
        text.contains("[components.kserve]") && text.contains("chart_version = \"0.14.1\""),
        "{text}"
    );
    assert!(text.contains("version = \"1.30\""), "{text}");

    let (code, stdout, stderr) = upgrade_lock(&ctx, &platform, &["diff"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("no drift"), "{stdout}");

    let helm = platform.helm().unwrap();
    helm.upgrade(
        &ReleaseRef::new("karpenter", "karpenter"),
        &platform.chart("karpenter", "1.6.0").unwrap(),
        &platform.upgrade_options("karpenter-values.yaml", &[]),
    )
    .await
    .unwrap();
    let (code, stdout, _) = upgrade_lock(&ctx, &platform, &["diff"]).await;
    assert_eq!(code, 3, "drift is a warning: {stdout}");
    assert!(
        stdout.contains("components.karpenter.chart_version: locked 1.5.0 but live 1.6.0"),
        "{stdout}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_changes_nothing() {
    let ctx = TestContext::new();
    let platform = sample(ctx.root().join("p"));
    std::fs::create_dir_all(&platform.root).unwrap();
    // No cluster is needed: every input is checked before connecting.
    std::fs::write(platform.kubeconfig(), "apiVersion: v1\nkind: Config\n").unwrap();

    let (code, stdout, stderr) = upgrade_lock(&ctx, &platform, &["diff"]).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("there is no lockfile") && stderr.contains("upgrade-lock write"),
        "{stderr}"
    );

    std::fs::write(platform.lockfile(), "schema = 1\n[cluster]\nname = 3\n").unwrap();
    let before = std::fs::read(platform.lockfile()).unwrap();
    let (code, _, stderr) = upgrade_lock(&ctx, &platform, &["diff"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not valid"), "{stderr}");
    assert_eq!(
        std::fs::read(platform.lockfile()).unwrap(),
        before,
        "the lockfile is untouched"
    );

    std::fs::remove_file(platform.lockfile()).unwrap();
    let (code, _, stderr) =
        upgrade_lock(&ctx, &platform, &["write", "--component", "kserve"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is not NAME=NAMESPACE/RELEASE=CHART"),
        "{stderr}"
    );
    assert!(!platform.lockfile().exists(), "nothing was written");
}
