//! The `kube-sim serve` binary, driven by the real kubectl.

use std::time::{Duration, Instant};

use upgrade_core::{ProcessBuilder, ProcessError};
use upgrade_test::TestContext;

#[test]
fn serve_prints_the_kubeconfig_and_serves_kubectl_until_interrupted() {
    let ctx = TestContext::new();
    ctx.require_tool("kubectl");
    let kubeconfig = ctx.work().join("sim.kubeconfig");
    let fixtures = ctx.work().join("cluster");
    std::fs::create_dir_all(&fixtures).expect("fixtures dir");
    let nodes: Vec<String> = ["node-0", "node-1"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_norway::to_string(&kube_sim::node_object(n, "v1.30.4-eks-a737599", i))
                .expect("yaml")
        })
        .collect();
    std::fs::write(fixtures.join("nodes.yaml"), nodes.join("---\n")).expect("write nodes");
    std::fs::write(
        fixtures.join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: team-a}\ndata: {mode: fast}\n",
    )
    .expect("write configmap");
    let path = kubeconfig.clone();
    let server = std::thread::spawn(move || {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_kube-sim"));
        cmd.args([
            "serve",
            "--server-version",
            "v1.31.2-eks-7f9249a",
            "--fixtures",
        ])
        .arg(&fixtures)
        .arg("--kubeconfig")
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
    kubectl.arg("--kubeconfig").arg(&kubeconfig).args([
        "get",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.data.mode}",
    ]);
    assert_eq!(
        kubectl
            .exec()
            .expect("kubectl get configmap")
            .stdout_lossy(),
        "fast"
    );
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

#[test]
fn help_and_version_work_without_the_tools() {
    let ctx = TestContext::new();
    for (args, wanted) in [
        (&["--help"][..], "Usage: kube-sim"),
        (&["serve", "--help"][..], "Usage: kube-sim serve"),
        (
            &["--version"][..],
            concat!("kube-sim ", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_kube-sim"));
        ctx.apply_env_without_tools(&mut cmd);
        cmd.args(args);
        let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains(wanted), "{args:?}: {stdout}");
    }
}

#[test]
fn serve_injects_the_faults_it_is_given_and_refuses_a_bad_spec() {
    let ctx = TestContext::new();
    ctx.require_tool("kubectl");
    // A bad specification: exit 2, naming the item and how to write one.
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_kube-sim"));
    ctx.apply_env(&mut cmd);
    cmd.args(["serve", "--faults", "seed=7,*:*:418=5%"]);
    let (code, stdout, stderr) = upgrade_test::CommandOutput::run(&cmd).parts();
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("fault spec item `*:*:418=5%`: `418` is not a fault kind"),
        "{stderr}"
    );

    // Every namespace read fails with 503; node reads are untouched.
    let kubeconfig = ctx.work().join("faulty.kubeconfig");
    let path = kubeconfig.clone();
    let server = std::thread::spawn(move || {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_kube-sim"));
        cmd.args(["serve", "--nodes", "1", "--faults"])
            .arg("seed=3,get:namespaces:503=100%")
            .arg("--kubeconfig")
            .arg(&path)
            .timeout(Duration::from_secs(5))
            .grace_period(Duration::from_secs(3));
        cmd.output()
    });
    let deadline = Instant::now() + Duration::from_secs(4);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "kube-sim serve wrote no kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kubectl = |args: &[&str]| {
        let mut cmd = ctx.command("kubectl");
        cmd.arg("--kubeconfig").arg(&kubeconfig).args(args);
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    let (code, stdout, _) = kubectl(&["get", "nodes", "-o", "name"]);
    assert_eq!((code, stdout.as_str()), (0, "node/node-0\n"));
    let (code, _, stderr) = kubectl(&["get", "namespace", "default", "--request-timeout=2s"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("unable to handle the request") || stderr.contains("503"),
        "{stderr}"
    );
    let _ = server.join();
}
