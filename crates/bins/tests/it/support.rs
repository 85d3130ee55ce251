//! Set-up shared by the commands' end-to-end tests: a kube-sim cluster, the real helm bound
//! to it, fixture charts installed the way the platform installs them, and `--help` output.

// Each test module uses a different part.

use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions, WaitMode};
use upgrade_test::TestContext;

/// The kubelet and API server version every test cluster starts at.
pub const V130: &str = "v1.30.4-eks-a737599";

/// A path under `fixtures/`, as a string for argv.
pub fn fixture(rel: &str) -> String {
    TestContext::fixtures_dir()
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// kube-sim at `server_version` with fast controllers, its kubeconfig in the test's root, and
/// one node at the same version.
pub async fn sim(ctx: &TestContext, server_version: &str) -> SimCluster {
    start(ctx, server_version, ControllerConfig::fast()).await
}

/// kube-sim at its default version with `controllers`, its kubeconfig in the test's root,
/// and one node, `node-a`.
pub async fn sim_with(ctx: &TestContext, controllers: ControllerConfig) -> SimCluster {
    start(ctx, kube_sim::DEFAULT_SERVER_VERSION, controllers).await
}

async fn start(
    ctx: &TestContext,
    server_version: &str,
    controllers: ControllerConfig,
) -> SimCluster {
    let sim = SimCluster::builder()
        .server_version(server_version)
        .controllers(controllers)
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", server_version).unwrap();
    sim
}

/// The real helm (4) on `sim`, with HOME and the XDG folders pinned to the test.
pub fn helm(ctx: &TestContext, sim: &SimCluster) -> Helm {
    let home = ctx.home();
    Helm::builder()
        .program(ctx.require_tool("helm"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .kubeconfig(sim.kubeconfig_path())
        .context(kube_sim::CONTEXT_NAME)
        .build()
        .unwrap()
}

/// Installs `fixtures/charts/<chart>/<version>` as `release` with `values` (a path), waiting
/// until it is ready.
pub async fn install(helm: &Helm, release: &ReleaseRef, chart: &str, version: &str, values: &str) {
    helm.upgrade(
        release,
        &ChartRef::path(fixture(&format!("charts/{chart}/{version}"))).with_version(version),
        &UpgradeOptions {
            create_namespace: true,
            values_files: vec![PathBuf::from(values)],
            wait: WaitMode::Ready,
            timeout: Duration::from_secs(60),
            ..UpgradeOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{chart} {version} installs: {e}"));
}

/// `exe args.. --help`, which must succeed.
pub fn help(exe: &str, args: &[&str]) -> String {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(exe);
    ctx.apply_env(&mut cmd);
    let out = cmd.args(args).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_lossy());
    out.stdout_lossy()
}

/// Runs the command `exe args..` as a person would on `sim`: its kubeconfig and context,
/// `--expect-cluster` its URL, the run state in `state`, `env` added (AWS on moto, ...).
/// Returns the exit code, stdout and stderr.
pub fn run_on(
    ctx: &TestContext,
    sim: &SimCluster,
    state: &std::path::Path,
    env: &[(&'static str, String)],
    exe: &str,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(exe);
    ctx.apply_env(&mut cmd);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args([
            "--kube-context",
            kube_sim::CONTEXT_NAME,
            "--expect-cluster",
            sim.url(),
        ])
        .arg("--snapshot-dir")
        .arg(state)
        .args(args)
        .timeout(Duration::from_secs(240));
    upgrade_test::CommandOutput::run(&cmd).parts()
}
