//! The simulated cloud: the admin API that moves the control-plane version (what the
//! simulated AWS provider calls) and the Karpenter-like provisioner.

use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::Value;
use upgrade_test::TestContext;

use crate::support::{ok, run, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_moves_the_control_plane_version() {
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(ControllerConfig::none())
        .start()
        .await
        .unwrap();
    let body = ctx.work().join("version.json");
    std::fs::write(&body, r#"{"version": "1.31"}"#).unwrap();
    let body = body.to_str().unwrap();
    ok(
        &ctx,
        &sim,
        "kubectl",
        &["replace", "--raw", kube_sim::ADMIN_VERSION_PATH, "-f", body],
    )
    .await;
    assert_eq!(sim.server_version(), "v1.31.0-eks-a737599");
    let reported: Value =
        serde_json::from_str(&ok(&ctx, &sim, "kubectl", &["version", "-o", "json"]).await).unwrap();
    assert_eq!(
        reported["serverVersion"]["minor"], "31+",
        "EKS reports minors with a +"
    );
    assert_eq!(
        reported["serverVersion"]["gitVersion"],
        "v1.31.0-eks-a737599"
    );

    // Anything but a minor or a full gitVersion is refused and changes nothing.
    std::fs::write(ctx.work().join("bad.json"), r#"{"version": "latest"}"#).unwrap();
    let bad = ctx.work().join("bad.json");
    let out = run(
        &ctx,
        &sim,
        "kubectl",
        &[
            "replace",
            "--raw",
            kube_sim::ADMIN_VERSION_PATH,
            "-f",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.status.success(), "a bad version is refused");
    assert_eq!(sim.server_version(), "v1.31.0-eks-a737599");

    // A managed node group's version update replaces its nodes at the new minor.
    sim.add_node("old", "v1.30.4-eks-a737599").unwrap();
    let path = format!(
        "{}/nodegroups/default",
        kube_sim::ADMIN_VERSION_PATH.trim_end_matches("/version")
    );
    ok(
        &ctx,
        &sim,
        "kubectl",
        &["replace", "--raw", &path, "-f", body],
    )
    .await;
    let nodes: Vec<(String, String)> = sim
        .list("v1", "Node", None)
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![(
            "default-1-31-1".to_string(),
            "v1.31.0-eks-a737599".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn karpenter_launches_nodes_at_the_control_plane_version_for_pending_pods() {
    let sim = SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(ControllerConfig {
            karpenter: true,
            ..ControllerConfig::fast()
        })
        .start()
        .await
        .unwrap();
    sim.add_node("old", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx, resources: {requests: {cpu: "3"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: default}
spec:
  nodeName: old
  containers: [{name: c, image: busybox}]
"#,
    )
    .unwrap();
    let on_node = |node: &str| {
        sim.list("v1", "Pod", Some("default"))
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == node && p["status"]["phase"] == "Running")
            .count()
    };
    wait_for("web on old", Duration::from_secs(10), || {
        (on_node("old") == 3).then_some(())
    })
    .await;
    assert_eq!(
        sim.list("v1", "Node", None).len(),
        1,
        "nothing pending, no new node"
    );

    // The control plane moves on; the old node is cordoned and its web pods evicted.
    sim.set_server_version("v1.31.0-eks-a737599");
    sim.set_unschedulable("old", true).unwrap();
    for pod in sim.list("v1", "Pod", Some("default")) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        if name.starts_with("web-") {
            kube_sim::controllers::evict(sim.store(), "default", name, None).unwrap();
        }
    }
    let new_nodes = wait_for(
        "a Karpenter node running both web pods",
        Duration::from_secs(10),
        || {
            let nodes: Vec<Value> = sim
                .list("v1", "Node", None)
                .into_iter()
                .filter(|n| n["metadata"]["labels"]["karpenter.sh/nodepool"] == "default")
                .collect();
            let running: usize = nodes
                .iter()
                .map(|n| on_node(n["metadata"]["name"].as_str().unwrap()))
                .sum();
            (running == 2).then_some(nodes)
        },
    )
    .await;
    assert_eq!(
        new_nodes.len(),
        1,
        "one node fits both pods: {new_nodes:#?}"
    );
    assert_eq!(
        new_nodes[0]["status"]["nodeInfo"]["kubeletVersion"],
        "v1.31.0-eks-a737599"
    );

    // A deleted node's pods go with it.
    sim.store()
        .delete(
            &sim.store().registry().lookup("", "v1", "nodes").unwrap(),
            None,
            "old",
            kube_sim::store::Propagation::Background,
            &Default::default(),
        )
        .unwrap();
    wait_for("the bare pod removed", Duration::from_secs(10), || {
        sim.get("v1", "Pod", Some("default"), "bare")
            .is_err()
            .then_some(())
    })
    .await;
}
