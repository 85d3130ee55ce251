//! Shared helpers: start a simulator, run a real tool against it, wait for conditions.

use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::Value;
use upgrade_core::ProcessOutput;
use upgrade_test::TestContext;

/// A simulator with fast controllers and the given nodes.
pub async fn start(nodes: &[&str]) -> SimCluster {
    let sim = SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(ControllerConfig::fast())
        .start()
        .await
        .expect("kube-sim starts");
    for n in nodes {
        sim.add_node(n, "v1.30.4-eks-a737599").expect("add node");
    }
    sim
}

/// Runs `tool` with `--kubeconfig <sim>` and `args`; the output whatever the exit code.
pub async fn run(ctx: &TestContext, sim: &SimCluster, tool: &str, args: &[&str]) -> ProcessOutput {
    ctx.require_tool(tool);
    let mut cmd = ctx.command(tool);
    cmd.arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(args)
        .timeout(Duration::from_secs(120));
    cmd.output_async()
        .await
        .unwrap_or_else(|e| panic!("{tool} {args:?} could not run: {e}"))
}

/// Runs and requires success, showing everything when it fails.
pub async fn ok(ctx: &TestContext, sim: &SimCluster, tool: &str, args: &[&str]) -> String {
    let out = run(ctx, sim, tool, args).await;
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        out.stdout_lossy(),
        out.stderr_lossy()
    );
    out.stdout_lossy()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The Deployment, once its rollout is complete the way `kubectl rollout status` decides:
/// the status describes the current generation and reports `replicas` updated, available
/// and in total (so no old pod is left).
pub async fn deployment_available(sim: &SimCluster, ns: &str, name: &str, replicas: i64) -> Value {
    wait_for(
        &format!("deployment {ns}/{name} available"),
        Duration::from_secs(20),
        || {
            let d = sim.get("apps/v1", "Deployment", Some(ns), name).ok()?;
            let s = &d["status"];
            (s["observedGeneration"] == d["metadata"]["generation"]
                && s["availableReplicas"].as_i64() == Some(replicas)
                && s["updatedReplicas"].as_i64() == Some(replicas)
                && s["replicas"].as_i64() == Some(replicas))
            .then_some(d)
        },
    )
    .await
}
