//! Benchmarks for upgrade-kube against kube-sim, with printed figures (nothing asserts a time).
//!
//! `cargo bench -p upgrade-kube --bench kube` runs:
//! - **drain**: draining a node with 100 pods (10 Deployments of 10, each with a budget of
//!   `minAvailable` of half the replicas;
//!   an absolute number, because kube-sim computes a percentage or maxUnavailable budget from
//!   the pods that exist rather than the controller's scale, which lets simultaneous
//!   evictions through) with [`upgrade_kube::drain::drain`], against the real
//!   `kubectl drain` draining an identical node of the same simulated cluster; prints both
//!   times and the ratio (goal: at most 1/3 of kubectl's time);
//! - **facts**: gathering preflight facts at 2,000 nodes / 60,000 pods; prints the time and
//!   the peak memory the gathering added (VmHWM, reset through `/proc/self/clear_refs`
//!   first, minus the VmRSS before; the simulator shares the process).
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs once at a small size as a
//! smoke test, so the benchmark cannot rot.

use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, ScaleSpec, SimCluster};
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::drain::{DrainOptions, drain};
use upgrade_kube::facts::{GatherOptions, gather};

struct Sizes {
    deployments: usize,
    replicas: usize,
    nodes: usize,
    pods: usize,
}

const FULL: Sizes = Sizes {
    deployments: 10,
    replicas: 10,
    nodes: 2_000,
    pods: 60_000,
};
const SMOKE: Sizes = Sizes {
    deployments: 2,
    replicas: 4,
    nodes: 40,
    pods: 400,
};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { &FULL } else { &SMOKE };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        drain_vs_kubectl(sizes).await;
        gather_at_scale(sizes).await;
    });
}

async fn connect(sim: &SimCluster) -> Cluster {
    Cluster::connect(&ConnectOptions {
        kubeconfig: Some(sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(sim.url().to_string()),
    })
    .await
    .expect("connects to kube-sim")
}

fn workloads(set: &str, sizes: &Sizes) -> String {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {set}}}\n");
    for d in 0..sizes.deployments {
        yaml.push_str(&format!(
            r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app{d}, namespace: {set}}}
spec:
  replicas: {replicas}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 1, maxSurge: 1}}}}
  selector: {{matchLabels: {{app: app{d}}}}}
  template:
    metadata: {{labels: {{app: app{d}}}}}
    spec:
      containers: [{{name: c, image: "registry.k8s.io/pause:3.10", resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: app{d}, namespace: {set}}}
spec:
  minAvailable: {half}
  selector: {{matchLabels: {{app: app{d}}}}}
"#,
            replicas = sizes.replicas,
            half = sizes.replicas / 2,
        ));
    }
    yaml
}

fn ready_on(sim: &SimCluster, node: &str) -> usize {
    sim.list("v1", "Pod", None)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

async fn wait_ready_on(sim: &SimCluster, node: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready_on(sim, node) < count {
        assert!(
            Instant::now() < deadline,
            "pods never became ready on {node}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two identical nodes of `deployments × replicas` pods (set `a` on node-a, set `b` on
/// node-b), spare nodes to take them, then one drained by us and one by kubectl.
async fn drain_vs_kubectl(sizes: &Sizes) {
    let pods = sizes.deployments * sizes.replicas;
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(&workloads("a", sizes)).unwrap();
    wait_ready_on(&sim, "node-a", pods).await;
    sim.set_unschedulable("node-a", true).unwrap();
    sim.add_node("node-b", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(&workloads("b", sizes)).unwrap();
    wait_ready_on(&sim, "node-b", pods).await;
    sim.set_unschedulable("node-a", false).unwrap();
    for i in 0..3 {
        sim.add_node(&format!("spare-{i}"), "v1.31.2-eks-1")
            .unwrap();
    }
    // Let the budgets' status settle on the full set before either drain starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let cluster = connect(&sim).await;
    let ours = drain(
        &cluster,
        "node-a",
        &DrainOptions {
            timeout: Duration::from_secs(300),
            ..DrainOptions::default()
        },
    )
    .await
    .expect("our drain finishes");
    assert_eq!(ours.evicted.len(), pods);

    let kubectl = kubectl_drain(&sim, "node-b");
    assert_eq!(ready_on(&sim, "node-b"), 0, "kubectl drained node-b");
    let ratio = ours.elapsed.as_secs_f64() / kubectl.as_secs_f64();
    println!(
        "drain {pods} pods (budgets minAvailable half): upgrade-kube {:.2}s ({} refusals retried), kubectl drain {:.2}s, ratio {ratio:.2} (goal <= 0.33)",
        ours.elapsed.as_secs_f64(),
        ours.refused_evictions,
        kubectl.as_secs_f64(),
    );
    sim.shutdown().await;
}

fn kubectl_drain(sim: &SimCluster, node: &str) -> Duration {
    let ctx = upgrade_test::TestContext::new();
    let kubectl = ctx.require_tool("kubectl");
    let mut cmd = upgrade_core::process::ProcessBuilder::new(kubectl);
    ctx.apply_env(&mut cmd);
    cmd.args([
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=300s",
        "--kubeconfig",
    ])
    .arg(sim.kubeconfig_path())
    .args(["--context", kube_sim::CONTEXT_NAME])
    .timeout(Duration::from_secs(330));
    let started = Instant::now();
    let out = cmd.exec().expect("kubectl drain finishes");
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("{}\n{}", out.stdout_lossy(), out.stderr_lossy());
    }
    started.elapsed()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn gather_at_scale(sizes: &Sizes) {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("kube-sim starts");
    sim.generate(&ScaleSpec {
        nodes: sizes.nodes,
        pods: sizes.pods,
        pods_per_deployment: 20,
        pdbs: sizes.pods / 100,
        helm_releases: 50,
        revisions_per_release: 3,
        namespaces: 20,
        kubelet_version: "v1.30.4-eks-a737599".into(),
    })
    .unwrap();
    let cluster = connect(&sim).await;
    // Reset the peak to now, so VmHWM afterwards is the peak during gathering.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let gathered = gather(&cluster, &GatherOptions::default())
        .await
        .expect("facts gathered");
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM:");
    assert_eq!(gathered.facts.nodes.len(), sizes.nodes);
    assert_eq!(gathered.facts.pods.len(), sizes.pods);
    println!(
        "gather facts at {} nodes / {} pods: {:.2}s, peak memory +{} MiB over {} MiB before ({}; server and client share the process), {} drain predictions",
        sizes.nodes,
        sizes.pods,
        elapsed.as_secs_f64(),
        peak.saturating_sub(before) / 1024,
        before / 1024,
        if reset {
            "VmHWM reset first"
        } else {
            "VmHWM could not be reset: includes setup"
        },
        gathered.drains.len(),
    );
    sim.shutdown().await;
}
