//! `upgrade-nodes` end to end: the real binary on an in-process kube-sim whose control plane
//! runs 1.31 while its nodes run 1.30: Karpenter's nodes replaced by the Karpenter-like
//! provisioner, a managed node group's refused without commands, self-managed nodes
//! replaced by the site's commands (scripts driving the real kubectl, standing in for the
//! site's cloud CLI).

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

/// Who provisioned the nodes of [`cluster`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Karpenter,
    Managed,
    SelfManaged,
}

async fn cluster(nodes: usize) -> SimCluster {
    cluster_of(nodes, Kind::Managed).await
}

async fn cluster_of(nodes: usize, kind: Kind) -> SimCluster {
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
        let name = format!("node-{i}");
        sim.add_node(&name, V130).unwrap();
        match kind {
            Kind::Managed => {}
            Kind::Karpenter => sim.make_karpenter_node(&name, "default").unwrap(),
            Kind::SelfManaged => sim.make_self_managed_node(&name).unwrap(),
        }
    }
    sim.load_yaml(WEB).unwrap();
    assert_eq!(eventually_available(&sim).await, 2, "web never came up");
    sim
}

/// The web Deployment's available replicas once they reach 2, or what they were after 20s.
/// A drain (or a rollback's drain) returns once the pods are evicted; their replacements
/// come up afterwards, as on a real cluster.
async fn eventually_available(sim: &SimCluster) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = available(sim);
        if now >= 2 || std::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
async fn plans_then_rolls_karpenters_nodes_keeping_the_pdb() {
    let ctx = TestContext::new();
    let sim = cluster_of(2, Kind::Karpenter).await;
    let url = sim.url().to_string();
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--selector",
            "karpenter.sh/nodepool=default",
            "--expect-cluster",
            &url,
        ],
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
            "--selector",
            "karpenter.sh/nodepool=default",
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
    assert_eq!(eventually_available(&sim).await, 2);
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
            vec!["--node-group", "default", "--surge-command", "true {node}"],
            "--surge-command: needs --retire-command",
        ),
        (
            vec![
                "--node-group",
                "default",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_node_group_is_not_retired_when_nothing_replaces_its_nodes() {
    let ctx = TestContext::new();
    let sim = cluster(2).await;
    let url = sim.url().to_string();
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
    assert_eq!(code, 4, "{stdout}{stderr}");
    for node in ["node-1", "node-2"] {
        assert!(
            stdout.contains(&format!(
                "BLOCKER: {node} (managed node group default) is below 1.31 and nothing replaces it"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("update the node group's version"),
        "{stdout}"
    );
    assert_eq!(nodes(&sim), untouched(2), "nothing drained or deleted");
    assert!(!ctx.work().join(".upgrade/journal.jsonl").exists());
}

/// The site's commands, standing in for its cloud CLI: the surge launches a Ready node
/// `surge-for-<node>` at 1.31 (created, then its status posted, as a joining kubelet does);
/// the retire deletes a surge node, and refuses the others (an instance that cannot be
/// terminated).
fn site_commands(ctx: &TestContext, sim: &SimCluster) -> (String, String) {
    let kubectl = ctx.require_tool("kubectl");
    let kubeconfig = sim.kubeconfig_path();
    let k = format!(
        "'{}' --kubeconfig '{}'",
        kubectl.display(),
        kubeconfig.display()
    );
    let surge = ctx.work().join("surge.sh");
    std::fs::write(
        &surge,
        format!(
            r#"#!/bin/sh
set -eu
node="surge-for-$1"
echo '{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"'"$node"'","labels":{{"kubernetes.io/hostname":"'"$node"'"}}}}}}' | {k} create -f -
{k} patch node "$node" --subresource=status --type=merge -p '{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady"}}],"capacity":{{"cpu":"8","memory":"32Gi","pods":"110"}},"allocatable":{{"cpu":"8","memory":"32Gi","pods":"110"}},"nodeInfo":{{"kubeletVersion":"{V131}"}}}}}}'
"#
        ),
    )
    .unwrap();
    let retire = ctx.work().join("retire.sh");
    std::fs::write(
        &retire,
        format!(
            r#"#!/bin/sh
set -eu
case "$1" in
  surge-for-*) {k} delete node "$1" ;;
  *) echo "cannot terminate the instance of $1" >&2; exit 1 ;;
esac
"#
        ),
    )
    .unwrap();
    for script in [&surge, &retire] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (
        format!("{} {{node}}", surge.display()),
        format!("{} {{node}}", retire.display()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_retires_its_surge_and_leaves_an_admins_cordon() {
    let ctx = TestContext::new();
    let sim = cluster_of(2, Kind::SelfManaged).await;
    // An admin had cordoned the canary before the run: that cordon is theirs.
    sim.set_unschedulable("node-1", true).unwrap();
    let before = nodes(&sim);
    let url = sim.url().to_string();
    let (surge, retire) = site_commands(&ctx, &sim);
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--selector",
            "kubernetes.io/os=linux",
            "--surge-command",
            &surge,
            "--retire-command",
            &retire,
            "--timeout",
            "30s",
            "--expect-cluster",
            &url,
            "--apply",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("cannot terminate the instance of node-1"),
        "{stdout}"
    );
    assert_eq!(
        nodes(&sim),
        before,
        "the surge node is retired, node-1 keeps the admin's cordon, node-2 is untouched"
    );
    assert_eq!(eventually_available(&sim).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_drain_names_the_pods_and_budgets() {
    let ctx = TestContext::new();
    let sim = cluster_of(2, Kind::SelfManaged).await;
    // Every web pod must stay: no eviction is allowed.
    sim.load_yaml(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web-all, namespace: default}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}\n",
    )
    .unwrap();
    let url = sim.url().to_string();
    let (surge, retire) = site_commands(&ctx, &sim);
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &[
            "--selector",
            "kubernetes.io/os=linux",
            "--surge-command",
            &surge,
            "--retire-command",
            &retire,
            "--timeout",
            "3s",
            "--expect-cluster",
            &url,
            "--apply",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("cannot drain node") && stdout.contains("default/web-"),
        "the blocking pod is named: {stdout}"
    );
    assert!(
        stdout.contains("default/web-all"),
        "and its budget: {stdout}"
    );
    assert_eq!(nodes(&sim), untouched(2), "cordons lifted, surge retired");
}

/// Scratch data in emptyDir (the Argo Workflows server, Argo CD) blocks a drain as in
/// kubectl, the plan says so, and `--delete-emptydir-data` lets the same rollout through:
/// predicted, run and recorded with the same drain flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptydir_pods_block_the_drain_until_delete_emptydir_data_is_given() {
    let ctx = TestContext::new();
    let sim = cluster_of(2, Kind::Karpenter).await;
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: argo-server, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: argo-server}}
  template:
    metadata: {labels: {app: argo-server}}
    spec:
      containers:
      - {name: argo-server, image: "quay.io/argoproj/argocli:v3.7.4", volumeMounts: [{name: tmp, mountPath: /tmp}]}
      volumes: [{name: tmp, emptyDir: {}}]
"#,
    )
    .unwrap();
    let server_available = || {
        sim.get("apps/v1", "Deployment", Some("default"), "argo-server")
            .map(|d| d["status"]["availableReplicas"].as_i64().unwrap_or(0))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server_available() < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server_available(), 1, "argo-server never came up");
    let url = sim.url().to_string();
    let base = [
        "--selector",
        "karpenter.sh/nodepool=default",
        "--timeout",
        "5s",
        "--expect-cluster",
        &url,
    ];
    let with = |extra: &[&'static str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args
    };

    let (code, stdout, stderr) = upgrade_nodes(&ctx, &sim, &with(&[])).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("blocked now: default/argo-server-")
            && stdout.contains("emptyDir data would be lost"),
        "the plan predicts the blocked drain: {stdout}"
    );
    let (code, stdout, stderr) = upgrade_nodes(&ctx, &sim, &with(&["--apply", "--yes"])).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("default/argo-server-") && stdout.contains("emptyDir"),
        "the run names the pod and why: {stdout}"
    );
    assert_eq!(nodes(&sim), untouched(2), "rolled back: {stdout}");

    let (code, stdout, stderr) =
        upgrade_nodes(&ctx, &sim, &with(&["--delete-emptydir-data"])).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("blocked now"), "{stdout}");
    let (code, stdout, stderr) = upgrade_nodes(
        &ctx,
        &sim,
        &with(&[
            "--delete-emptydir-data",
            "--grace-period",
            "30",
            "--apply",
            "--yes",
        ]),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert!(
        nodes(&sim).iter().all(|(_, v, _)| v == V131),
        "every node replaced: {:?}",
        nodes(&sim)
    );
    assert_eq!(eventually_available(&sim).await, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server_available() < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server_available(), 1, "argo-server runs again");
    // The run record keeps the drain it ran with (what a resume or a rollback reads).
    let recorded = walk(&ctx.work().join(".upgrade"))
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .any(|text| {
            text.contains("\"delete_emptydir_data\": true")
                || text.contains("\"delete_emptydir_data\":true")
        });
    assert!(recorded, "no run record holds the drain flags");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
