//! The real-chart platform on kube-sim: three Karpenter nodes at 1.30 under a 1.31 control
//! plane (and two system nodes at 1.31 for Karpenter's controller), with the older upstream charts of `../shared/upstream/charts` installed by the real
//! helm (Karpenter and its CRD chart, KServe and its CRD chart on cert-manager's CRDs, Argo
//! Workflows, Argo CD, MLflow). Shared by the upstream suite and the rollout benchmark
//! (`tests/benches/rollout.rs`, which includes this file).

#![allow(dead_code)] // The suite and the benchmark each use a part.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions, WaitMode};
use upgrade_test::TestContext;

/// The nodes' kubelet version.
pub const NODES_AT: &str = "v1.30.4-eks-a737599";
/// The control plane's version (the nodes are one minor behind).
pub const CONTROL_PLANE_AT: &str = "v1.31.2-eks-a737599";

/// `../shared/upstream/charts` (or `UPGRADE_UPSTREAM_DIR`/charts), which must exist.
pub fn charts_dir() -> PathBuf {
    TestContext::upstream_charts_dir()
}

/// (release, namespace, chart folder/version/chart, values) in install order.
const RELEASES: &[(&str, &str, &str, &str)] = &[
    (
        "karpenter-crd",
        "karpenter",
        "karpenter/1.5.0/karpenter-crd",
        "",
    ),
    (
        "karpenter",
        "karpenter",
        "karpenter/1.5.0/karpenter",
        "settings:\n  clusterName: upstream\ncontroller:\n  image:\n    digest: \"\"\n",
    ),
    ("kserve-crd", "kserve", "kserve/v0.14.1/kserve-crd", ""),
    ("kserve", "kserve", "kserve/v0.14.1/kserve-resources", ""),
    (
        "argo-workflows",
        "argo",
        "argo-workflows/0.45.28/argo-workflows",
        "",
    ),
    ("argocd", "argocd", "argo-cd/7.7.23/argo-cd", ""),
    (
        "mlflow",
        "mlflow",
        "mlflow/0.15.0/mlflow",
        "replicaCount: 2\n",
    ),
];

/// A running real-chart platform.
pub struct RealPlatform {
    /// The test context (tools, temp folders).
    pub ctx: TestContext,
    /// The cluster.
    pub sim: SimCluster,
}

impl RealPlatform {
    /// Starts kube-sim with three Karpenter nodes and installs every release with `helm_tool`.
    pub async fn start(helm_tool: &str) -> RealPlatform {
        Self::start_with(helm_tool, ControllerConfig::fast().pod_start_delay).await
    }

    /// As [`start`](Self::start), each pod taking `pod_start_delay` from its binding to Ready
    /// (an image pull and a readiness probe, for the benchmark).
    pub async fn start_with(helm_tool: &str, pod_start_delay: Duration) -> RealPlatform {
        let charts = charts_dir();
        let ctx = TestContext::new();
        let sim = SimCluster::builder()
            .server_version(CONTROL_PLANE_AT)
            .controllers(ControllerConfig {
                karpenter: true,
                pod_start_delay,
                ..ControllerConfig::fast()
            })
            .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
            .start()
            .await
            .expect("kube-sim starts");
        // Karpenter's controller keeps off the nodes it manages: it runs on a managed node
        // group already at the control plane's version (two nodes for its two replicas).
        for i in 1..=2 {
            let name = format!("system-{i}");
            sim.add_node(&name, CONTROL_PLANE_AT).unwrap();
            // Only critical add-ons (Karpenter tolerates the taint) run there.
            let mut taint = ctx.command("kubectl");
            taint
                .arg("--kubeconfig")
                .arg(sim.kubeconfig_path())
                .args(["--context", kube_sim::CONTEXT_NAME])
                .args([
                    "taint",
                    "nodes",
                    &name,
                    "CriticalAddonsOnly=true:NoSchedule",
                ]);
            let out = taint.exec().expect("kubectl taint runs");
            assert!(out.status.success(), "{}", out.stderr_lossy());
        }
        for i in 1..=3 {
            let name = format!("node-{i}");
            sim.add_node(&name, NODES_AT).unwrap();
            sim.make_karpenter_node(&name, "default").unwrap();
        }
        sim.load_yaml(
            &std::fs::read_to_string(
                TestContext::fixtures_dir().join("upstream/cert-manager-crds.yaml"),
            )
            .unwrap(),
        )
        .unwrap();
        let home = ctx.home();
        let helm = Helm::builder()
            .program(ctx.require_tool(helm_tool))
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .kubeconfig(sim.kubeconfig_path())
            .context(kube_sim::CONTEXT_NAME)
            .build()
            .unwrap();
        for (release, namespace, chart, values) in RELEASES {
            let values_file = ctx.work().join(format!("{release}-values.yaml"));
            std::fs::write(&values_file, values).unwrap();
            helm.upgrade(
                &ReleaseRef::new(*release, *namespace),
                &ChartRef::path(charts.join(chart)),
                &UpgradeOptions {
                    install: true,
                    create_namespace: true,
                    values_files: vec![values_file],
                    wait: WaitMode::ReadyLegacy,
                    timeout: Duration::from_secs(120),
                    ..UpgradeOptions::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{release} installs: {e}"));
        }
        // The budget a team puts on its tracking server (the charts bring Karpenter's own).
        sim.load_yaml(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: mlflow, namespace: mlflow}\n\
             spec:\n  minAvailable: 1\n  selector: {matchLabels: {app.kubernetes.io/name: mlflow}}\n",
        )
        .unwrap();
        let platform = RealPlatform { ctx, sim };
        platform.wait_ready(Duration::from_secs(60)).await;
        platform
    }

    /// The workloads not fully ready: `Kind namespace/name ready/wanted`.
    pub fn not_ready(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, ready_field) in [
            ("Deployment", "availableReplicas"),
            ("StatefulSet", "readyReplicas"),
        ] {
            for object in self.sim.list("apps/v1", kind, None) {
                let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let ready = object["status"][ready_field].as_i64().unwrap_or(0);
                if ready < wanted {
                    out.push(format!(
                        "{kind} {}/{} {ready}/{wanted}",
                        object["metadata"]["namespace"].as_str().unwrap_or_default(),
                        object["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    /// Waits until every workload is ready.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.not_ready();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "never ready: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The budgets below their minimum now: `namespace/name healthy < desired`.
    pub fn budgets_below_minimum(&self) -> Vec<String> {
        self.sim
            .list("policy/v1", "PodDisruptionBudget", None)
            .iter()
            .filter_map(|pdb| {
                let status = &pdb["status"];
                let (healthy, desired) = (
                    status["currentHealthy"].as_i64()?,
                    status["desiredHealthy"].as_i64()?,
                );
                (healthy < desired).then(|| {
                    format!(
                        "{}/{} {healthy} < {desired}",
                        pdb["metadata"]["namespace"].as_str().unwrap_or_default(),
                        pdb["metadata"]["name"].as_str().unwrap_or_default()
                    )
                })
            })
            .collect()
    }

    /// The nodes and their kubelet versions.
    pub fn nodes(&self) -> Vec<(String, String)> {
        self.sim
            .list("v1", "Node", None)
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    n["status"]["nodeInfo"]["kubeletVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// The pods (not DaemonSet pods) bound to `node`.
    pub fn pods_on(&self, node: &str) -> usize {
        self.sim
            .list("v1", "Pod", None)
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|owners| owners.iter().all(|o| o["kind"] != "DaemonSet"))
            })
            .count()
    }
}
