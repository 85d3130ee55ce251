//! The node rollout of the real-chart platform (issue 16 item 10), with printed figures
//! (nothing asserts a time).
//!
//! `cargo bench -p upgrade-tests --bench rollout` builds the platform of
//! `tests/it/real_platform.rs` twice (the upstream charts on three Karpenter nodes of
//! kube-sim, one minor behind the control plane) and replaces its three nodes
//! - with the node-rollout flow (`upgrade-nodes`' library call, seed 004's drain flags,
//!   one node at a time, 1 s pauses), and
//! - with seed 004's script per node: `kubectl cordon`, `kubectl drain --ignore-daemonsets
//!   --delete-emptydir-data --force --grace-period=300 --timeout=5m`, then the replacement
//!   (`kubectl delete node`, after which the Karpenter-like provisioner launches a node when
//!   pods wait for one), then waiting until the pods are back.
//!
//! Per node it prints the time from the cordon to every workload ready again with no pod
//! left on the node, for both, the ratio, and seed 004's target (under 2 minutes per node).
//! It needs `../shared/upstream` (see the upstream suite). Without `--bench` (as under
//! `cargo test --all-targets`) it only says how to run it.

#[path = "../it/real_platform.rs"]
mod real_platform;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use real_platform::RealPlatform;
use upgrade_flows::context::FlowContext;
use upgrade_flows::flows::nodes::{self, DrainSpec, NodeSelection, NodesSpec, RolloutSpec};
use upgrade_kube::connect::ConnectOptions;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
/// From a pod's binding to Ready: an image pull and a readiness probe.
const POD_START: Duration = Duration::from_secs(3);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "rollout benchmark: `cargo bench -p upgrade-tests --bench rollout` runs it (needs ../shared/upstream)"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let ours = measure(rollout_flow).await;
        let script = measure(seed_script).await;
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "node rollout of the real-chart platform, 3 Karpenter nodes, seed 004's drain flags, pods Ready {}s after binding:",
            POD_START.as_secs()
        );
        for node in NODES {
            println!(
                "  {node}: from its drain to every evicted pod ready elsewhere: upgrade-nodes {:.1}s, \
                 seed 004 script {:.1}s (ratio {:.2}); from its cordon: {:.1}s vs {:.1}s; \
                 seed 004 target < 120s: {}",
                secs(ours.from_drain[node]),
                secs(script.from_drain[node]),
                secs(ours.from_drain[node]) / secs(script.from_drain[node]),
                secs(ours.from_cordon[node]),
                secs(script.from_cordon[node]),
                if ours.from_cordon[node] < Duration::from_secs(120) { "met" } else { "missed" }
            );
        }
        let mean = |m: &BTreeMap<&str, Duration>| {
            m.values().map(|d| d.as_secs_f64()).sum::<f64>() / m.len() as f64
        };
        println!(
            "  mean per node from its drain: {:.1}s vs {:.1}s (ratio {:.2}); whole rollout {:.1}s vs {:.1}s",
            mean(&ours.from_drain),
            mean(&script.from_drain),
            mean(&ours.from_drain) / mean(&script.from_drain),
            secs(ours.total),
            secs(script.total)
        );
        println!(
            "  evictions per pod of the old nodes: upgrade-nodes {:.2}, seed 004 script {:.2} (the \
             script's evicted pods can land on nodes it drains next; the rollout cordons every old \
             node first)",
            ours.evictions_per_pod, script.evictions_per_pod
        );
    });
}

/// What the observer saw of one method.
struct Seen {
    /// Per node: from its cordon to every workload ready again without it.
    from_cordon: BTreeMap<&'static str, Duration>,
    /// Per node: from its first pod leaving to every workload ready again without it.
    from_drain: BTreeMap<&'static str, Duration>,
    /// Workload pods deleted (evicted) during the rollout, per workload pod at the start.
    evictions_per_pod: f64,
    /// The whole rollout.
    total: Duration,
}

/// The workload (not DaemonSet, not Job) pods: uid → (node, Ready).
fn workload_pods(platform: &RealPlatform) -> BTreeMap<String, (String, bool)> {
    platform
        .sim
        .list("v1", "Pod", None)
        .iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|owners| {
                    owners
                        .iter()
                        .all(|o| o["kind"] != "DaemonSet" && o["kind"] != "Job")
                })
        })
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }) && p["metadata"]["deletionTimestamp"].is_null();
            (
                p["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    ready,
                ),
            )
        })
        .collect()
}

/// Builds the platform, starts the observer (every 20 ms), runs `method`, and returns what
/// the observer saw.
async fn measure<F, Fut>(method: F) -> Seen
where
    F: FnOnce(Arc<RealPlatform>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let platform = Arc::new(RealPlatform::start_with("helm4", POD_START).await);
    let running = Arc::new(AtomicBool::new(true));
    let observer = {
        let (platform, running) = (platform.clone(), running.clone());
        tokio::spawn(async move {
            let all = workload_pods(&platform);
            let ready_at_start = all.values().filter(|(_, ready)| *ready).count();
            // The pods the rollout must move: those on the nodes it replaces.
            let start: BTreeMap<String, (String, bool)> = all
                .into_iter()
                .filter(|(_, (node, _))| NODES.contains(&node.as_str()))
                .collect();
            let mut gone = std::collections::BTreeSet::new();
            let mut known = start.clone();
            let mut cordoned: BTreeMap<&str, Instant> = BTreeMap::new();
            let mut draining: BTreeMap<&str, Instant> = BTreeMap::new();
            let mut from_cordon: BTreeMap<&str, Duration> = BTreeMap::new();
            let mut from_drain: BTreeMap<&str, Duration> = BTreeMap::new();
            while running.load(Ordering::Relaxed) || from_cordon.len() < NODES.len() {
                let nodes = platform.sim.list("v1", "Node", None);
                let pods = workload_pods(&platform);
                for (uid, (node, _)) in &known {
                    if !pods.contains_key(uid)
                        && gone.insert(uid.clone())
                        && let Some(node) = NODES.iter().find(|n| **n == node.as_str())
                    {
                        draining.entry(node).or_insert_with(Instant::now);
                    }
                }
                known.extend(pods.clone());
                // Every evicted pod ready elsewhere: as many Ready workload pods as before.
                let ready = pods.values().filter(|(_, ready)| *ready).count() >= ready_at_start;
                for node in NODES {
                    let object = nodes.iter().find(|n| n["metadata"]["name"] == node);
                    if object.is_none_or(|n| n["spec"]["unschedulable"].as_bool() == Some(true)) {
                        cordoned.entry(node).or_insert_with(Instant::now);
                    }
                    let empty = !pods.values().any(|(n, _)| n == node);
                    if let Some(since) = cordoned.get(node)
                        && !from_cordon.contains_key(node)
                        && ready
                        && empty
                    {
                        from_cordon.insert(node, since.elapsed());
                        let drained = draining.get(node).copied().unwrap_or(*since);
                        from_drain.insert(node, drained.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (
                from_cordon,
                from_drain,
                gone.len() as f64 / start.len() as f64,
            )
        })
    };
    let started = Instant::now();
    method(platform.clone()).await;
    let total = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let (from_cordon, from_drain, evictions_per_pod) =
        tokio::time::timeout(Duration::from_secs(300), observer)
            .await
            .expect("every node is measured")
            .unwrap();
    drop(platform);
    Seen {
        from_cordon,
        from_drain,
        evictions_per_pod,
        total,
    }
}

/// The node-rollout flow, as `upgrade-nodes --selector karpenter.sh/nodepool=default
/// --target 1.31 --delete-emptydir-data --force-drain --grace-period 300` runs it.
async fn rollout_flow(platform: Arc<RealPlatform>) {
    let ctx = FlowContext::connect(ConnectOptions {
        kubeconfig: Some(platform.sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(platform.sim.url().to_string()),
    })
    .await
    .unwrap()
    .state_dir(platform.ctx.work().join("state"))
    .build();
    let spec = NodesSpec {
        selection: NodeSelection::Selector(vec![(
            "karpenter.sh/nodepool".into(),
            "default".into(),
        )]),
        target: Some("1.31".into()),
        rollout: RolloutSpec {
            pause: Duration::from_secs(1),
            validation_interval: Duration::from_secs(1),
            drain: DrainSpec {
                ignore_daemonsets: true,
                delete_emptydir_data: true,
                force: true,
                grace_period_seconds: Some(300),
            },
            ..RolloutSpec::default()
        },
        timeout: Duration::from_secs(300),
    };
    let report = nodes::plan(&ctx, &spec)
        .await
        .unwrap()
        .apply(&ctx)
        .await
        .unwrap();
    assert!(
        report.outcome.starts_with("completed"),
        "{}",
        report.outcome
    );
}

/// Seed 004's node procedure, node after node, with the real kubectl.
async fn seed_script(platform: Arc<RealPlatform>) {
    let kubectl = |args: &[&str]| {
        let mut cmd = platform.ctx.command("kubectl");
        cmd.arg("--kubeconfig")
            .arg(platform.sim.kubeconfig_path())
            .args(["--context", kube_sim::CONTEXT_NAME])
            .args(args)
            .timeout(Duration::from_secs(330));
        let out = cmd.exec().expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            out.stderr_lossy()
        );
    };
    for node in NODES {
        kubectl(&["cordon", node]);
        kubectl(&[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--grace-period=300",
            "--timeout=5m",
        ]);
        // Step 4, the replacement: Karpenter launches a node at the control plane's version
        // when pods wait for one.
        kubectl(&["delete", "node", node]);
        // Step 7: watch the pods come back before the next node.
        platform.wait_ready(Duration::from_secs(300)).await;
    }
}
