//! `upgrade-preflight` end to end: the real binary, its exit codes, help and reports.

use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

fn preflight(ctx: &TestContext, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-preflight"));
    ctx.apply_env(&mut cmd);
    cmd.cwd(TestContext::workspace_root()).args(args);
    upgrade_test::CommandOutput::run(&cmd).parts()
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let (code, stdout, _) = preflight(&ctx, &["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
}

#[test]
fn exit_code_follows_the_worst_finding() {
    let ctx = TestContext::new();
    let (code, stdout, _) = preflight(
        &ctx,
        &[
            "--target",
            "1.31",
            "--facts",
            "fixtures/facts/unhealthy.yaml",
        ],
    );
    assert_eq!(code, 4, "blockers: {stdout}");
    assert!(stdout.contains("BLOCKER  PDB001"), "{stdout}");
    let (code, stdout, _) = preflight(
        &ctx,
        &[
            "--target",
            "1.33",
            "--facts",
            "fixtures/facts/healthy.yaml",
            "--output",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["schema"], "upgrade-report/v1");
    assert!(code == 0 || code == 3, "healthy: {code}");
}

#[test]
fn bad_input_is_one_line_naming_the_fix_and_exits_2() {
    let ctx = TestContext::new();
    for (args, expected) in [
        (
            vec!["--target", "1.3x", "--facts", "fixtures/facts/healthy.yaml"],
            "is not a Kubernetes version",
        ),
        (
            vec!["--target", "1.34", "--facts", "no/such/facts.yaml"],
            "--facts: cannot read no/such/facts.yaml",
        ),
        // Without --facts it reads the live cluster: no kubeconfig is bad input.
        (
            vec!["--target", "1.34"],
            "pass --kubeconfig and --kube-context",
        ),
        (
            vec![
                "--target",
                "1.34",
                "--facts",
                "fixtures/facts/healthy.yaml",
                "--config",
                "Cargo.toml",
            ],
            "check configuration Cargo.toml",
        ),
    ] {
        let (code, stdout, stderr) = preflight(&ctx, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stdout.is_empty(),
            "{args:?}: no report on bad input: {stdout}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs the real binary against a live kube-sim (no --facts).
async fn live(
    ctx: &TestContext,
    sim: &kube_sim::SimCluster,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-preflight"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["--kube-context", kube_sim::CONTEXT_NAME])
        .args(args);
    upgrade_test::CommandOutput::run_async(&cmd).await.parts()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_facts_it_reads_the_live_cluster() {
    let ctx = TestContext::new();
    let sim = kube_sim::SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(kube_sim::ControllerConfig::fast())
        .start()
        .await
        .unwrap();
    for node in ["node-1", "node-2"] {
        sim.add_node(node, "v1.30.4-eks-a737599").unwrap();
    }
    // A budget that allows no disruption blocks every drain: a blocker for the node rollout.
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: db, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: db}}
"#,
    )
    .unwrap();
    pdb_allows(&sim, 0).await;
    let (code, stdout, stderr) = live(&ctx, &sim, &["--target", "1.31"]).await;
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("PDB001"), "the live PDB is seen: {stdout}");
    assert!(
        stdout.contains("1.30"),
        "the live version is seen: {stdout}"
    );

    // Without the budget no blocker is left.
    let budgets = sim
        .store()
        .registry()
        .lookup("policy", "v1", "poddisruptionbudgets")
        .unwrap();
    sim.store()
        .delete(
            &budgets,
            Some("default"),
            "db",
            kube_sim::store::Propagation::Background,
            &Default::default(),
        )
        .unwrap();
    let (code, stdout, stderr) = live(&ctx, &sim, &["--target", "1.31"]).await;
    assert!(
        code == 0 || code == 3,
        "no blockers: {code} {stdout}{stderr}"
    );
    assert!(!stdout.contains("PDB001"), "{stdout}");

    // The interlock applies: a wrong --expect-cluster is bad input.
    let (code, _, stderr) = live(
        &ctx,
        &sim,
        &["--target", "1.31", "--expect-cluster", "prod"],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--expect-cluster"), "{stderr}");
}

/// Waits until the `db` budget's status allows `disruptions`.
async fn pdb_allows(sim: &kube_sim::SimCluster, disruptions: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim
        .get("policy/v1", "PodDisruptionBudget", Some("default"), "db")
        .map(|p| {
            p["status"]["currentHealthy"] != 1 || p["status"]["disruptionsAllowed"] != disruptions
        })
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never allowed {disruptions}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
