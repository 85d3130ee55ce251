//! `upgrade-nodes` end to end: the real binary on an in-process kube-sim whose control plane
//! runs 1.31 while its nodes run 1.30, with the Karpenter-like provisioner replacing them.

use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const V130: &str = "v1.30.4-eks-a737599";
const V131: &str = "v1.31.2-eks-a737599";

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27", resources: {requests: {cpu: "1"}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#;

async fn cluster(nodes: usize) -> SimCluster {
    let sim = SimCluster::builder()
        .server_version(V131)
        .controllers(ControllerConfig {
            karpenter: true,
            ..ControllerConfig::fast()
        })
        .start()
        .await
        .unwrap();
    for i in 1..=nodes {
        sim.add_node(&format!("node-{i}"), V130).unwrap();
    }
    sim.load_yaml(WEB).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while available(&sim) < 2 {
        assert!(std::time::Instant::now() < deadline, "web never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim
}

fn available(sim: &SimCluster) -> i64 {
    sim.get("apps/v1", "Deployment", Some("default"), "web")
        .map(|d| d["status"]["availableReplicas"].as_i64().unwrap_or(0))
        .unwrap_or(0)
}

fn nodes(sim: &SimCluster) -> Vec<(String, String, bool)> {
    let mut nodes: Vec<(String, String, bool)> = sim
        .list("v1", "Node", None)
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                n["spec"]["unschedulable"].as_bool() == Some(true),
            )
        })
        .collect();
    nodes.sort();
    nodes
}

fn untouched(n: usize) -> Vec<(String, String, bool)> {
    (1..=n)
        .map(|i| (format!("node-{i}"), V130.to_string(), false))
        .collect()
}

async fn upgrade_nodes(
    ctx: &TestContext,
    sim: &SimCluster,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-nodes"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["--kube-context", kube_sim::CONTEXT_NAME])
        .arg("--snapshot-dir")
        .arg(ctx.work().join(".upgrade"))
        .args(["--pause", "0s", "--validation-interval", "100ms"])
        .args(args)
        .timeout(Duration::from_secs(180));
    upgrade_test::CommandOutput::run_async(&cmd).await.parts()
}

fn settings(ctx: &TestContext, sim: &SimCluster) -> insta::Settings {
    let mut settings = ctx.insta_settings();
    settings.add_filter(r"nodes-\d{8}T\d{6}Z", "nodes-[RUN]");
    settings.add_filter(&sim.url().replace('.', r"\."), "[SIM]");
    settings.add_filter(r"web-[a-z0-9]+-[a-z0-9]+", "web-[POD]");
    settings
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-nodes"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--help");
    insta::assert_snapshot!(cmd.exec().unwrap().stdout_lossy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_then_rolls_a_node_group_keeping_the_pdb() {
    let ctx = TestContext::new();
    let sim = cluster(2).await;
    let url = sim.url().to_string();
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &["--node-group", "default", "--expect-cluster", &url],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(nodes(&sim), untouched(2), "a dry run changes nothing");
    assert!(
        stdout.contains("replace 2 node(s) below 1.31: node-1, node-2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("drain node-1: 1 pod(s) evicted"),
        "{stdout}"
    );
    settings(&ctx, &sim).bind(|| insta::assert_snapshot!("plan", stdout));

    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--node-group",
            "default",
            "--expect-cluster",
            &url,
            "--apply",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    let after = nodes(&sim);
    assert!(
        after
            .iter()
            .all(|(name, v, _)| name.starts_with("karpenter-") && v == V131),
        "Karpenter's nodes join at the control plane's version: {after:?}"
    );
    assert_eq!(available(&sim), 2);
    settings(&ctx, &sim).bind(|| insta::assert_snapshot!("applied", stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_retire_rolls_back_the_cordons() {
    let ctx = TestContext::new();
    let sim = cluster(2).await;
    let url = sim.url().to_string();
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--selector",
            "eks.amazonaws.com/nodegroup=default",
            "--replacer",
            "command",
            "--retire-command",
            "false {node}",
            "--expect-cluster",
            &url,
            "--apply",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("[rolled-back] nodes/roll-default"),
        "{stdout}"
    );
    assert_eq!(nodes(&sim), untouched(2), "no node left cordoned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_changes_nothing() {
    let ctx = TestContext::new();
    let sim = cluster(1).await;
    let url = sim.url().to_string();
    let apply = ["--expect-cluster", url.as_str(), "--apply", "--yes"];
    for (args, hint) in [
        (vec![], "--node-group NAME or --selector key=value"),
        (vec!["--selector", "nodegroup"], "is not key=value"),
        (
            vec!["--node-group", "default", "--target", "one"],
            "give a Kubernetes minor",
        ),
        (
            vec!["--node-group", "default", "--replacer", "command"],
            "needs --retire-command",
        ),
        (
            vec![
                "--node-group",
                "default",
                "--replacer",
                "command",
                "--retire-command",
                "no-such-tool {node}",
            ],
            "not an executable on PATH",
        ),
    ] {
        let mut all = args.clone();
        all.extend(apply);
        let (code, stdout, stderr) = upgrade_nodes(&ctx, &sim, &all).await;
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(hint),
            "{args:?} names the fix ({hint}): {stderr}"
        );
        assert_eq!(nodes(&sim), untouched(1));
    }
    let (code, _, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--node-group",
            "default",
            "--expect-cluster",
            "prod",
            "--apply",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(nodes(&sim), untouched(1));
}
