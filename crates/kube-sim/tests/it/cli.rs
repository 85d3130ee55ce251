//! The `kube-sim serve` binary, driven by the real kubectl.

use std::time::{Duration, Instant};

use upgrade_core::{ProcessBuilder, ProcessError};
use upgrade_test::TestContext;

#[test]
fn serve_prints_the_kubeconfig_and_serves_kubectl_until_interrupted() {
    let ctx = TestContext::new();
    ctx.require_tool("kubectl");
    let kubeconfig = ctx.work().join("sim.kubeconfig");
    let path = kubeconfig.clone();
    let server = std::thread::spawn(move || {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_kube-sim"));
        cmd.args([
            "serve",
            "--nodes",
            "2",
            "--server-version",
            "v1.31.2-eks-7f9249a",
            "--kubeconfig",
        ])
        .arg(&path)
        // The timeout interrupts it (SIGINT), like Ctrl-C.
        .timeout(Duration::from_secs(6))
        .grace_period(Duration::from_secs(3));
        cmd.output()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "kube-sim serve wrote no kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut kubectl = ctx.command("kubectl");
    kubectl
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "nodes", "-o", "name"]);
    let out = kubectl.exec().expect("kubectl get nodes");
    assert_eq!(out.stdout_lossy(), "node/node-0\nnode/node-1\n");
    let mut kubectl = ctx.command("kubectl");
    kubectl
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["version", "-o", "json"]);
    assert!(
        kubectl
            .exec()
            .expect("kubectl version")
            .stdout_lossy()
            .contains("v1.31.2-eks-7f9249a")
    );
    match server.join().expect("server thread") {
        Err(ProcessError::TimedOut { stdout, how, .. }) => {
            assert_eq!(
                stdout.trim(),
                kubeconfig.display().to_string(),
                "stdout is the kubeconfig path"
            );
            assert!(
                matches!(how, upgrade_core::process::StopMethod::Interrupt),
                "it stops cleanly on SIGINT"
            );
        }
        other => panic!("kube-sim serve should run until interrupted, got {other:?}"),
    }
}
