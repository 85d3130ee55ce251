//! The test world: kube-sim at 1.30 with Karpenter 1.5.0 installed by the real helm 4, and
//! flow contexts on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::process::StopSignal;
use upgrade_flows::context::FlowContext;
use upgrade_flows::events::CollectEvents;
use upgrade_flows::flows::helm_component::ComponentUpgradeSpec;
use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions, WaitMode};
use upgrade_kube::connect::ConnectOptions;
use upgrade_test::TestContext;

pub(crate) struct World {
    pub(crate) ctx: TestContext,
    pub(crate) sim: SimCluster,
    pub(crate) values: PathBuf,
}

pub(crate) fn chart(version: &str) -> PathBuf {
    TestContext::fixtures_dir()
        .join("charts/karpenter")
        .join(version)
}

impl World {
    /// kube-sim at 1.30 with Karpenter 1.5.0 installed by the real helm 4.
    pub(crate) async fn new() -> World {
        let ctx = TestContext::new();
        let sim = SimCluster::builder()
            .server_version("v1.30.4-eks-a737599")
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
            .start()
            .await
            .expect("kube-sim starts");
        sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
        let values = ctx.work().join("karpenter-values.yaml");
        std::fs::copy(
            TestContext::fixtures_dir().join("helm-values/karpenter-values.yaml"),
            &values,
        )
        .unwrap();
        let world = World { ctx, sim, values };
        world
            .helm()
            .upgrade(
                &ReleaseRef::new("karpenter", "karpenter"),
                &ChartRef::path(chart("1.5.0")).with_version("1.5.0"),
                &UpgradeOptions {
                    create_namespace: true,
                    values_files: vec![world.values.clone()],
                    wait: WaitMode::Ready,
                    timeout: Duration::from_secs(60),
                    ..UpgradeOptions::default()
                },
            )
            .await
            .expect("karpenter 1.5.0 installs");
        world
    }

    pub(crate) fn helm(&self) -> Helm {
        self.helm_watching(StopSignal::global())
    }

    /// The real helm 4 on the cluster, its commands stopped by `stop`.
    pub(crate) fn helm_watching(&self, stop: &StopSignal) -> Helm {
        let home = self.ctx.home();
        Helm::builder()
            .stop_signal(stop.clone())
            .program(self.ctx.require_tool("helm4"))
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .kubeconfig(self.sim.kubeconfig_path())
            .context(kube_sim::CONTEXT_NAME)
            .build()
            .unwrap()
    }

    /// A context on the cluster (the interlock names it when `expect`), state in `work/state`.
    pub(crate) async fn flows(&self, expect: bool, events: Arc<CollectEvents>) -> FlowContext {
        FlowContext::connect(ConnectOptions {
            kubeconfig: Some(self.sim.kubeconfig_path().to_path_buf()),
            context: Some(kube_sim::CONTEXT_NAME.into()),
            expect_cluster: expect.then(|| self.sim.url().to_string()),
        })
        .await
        .unwrap()
        .state_dir(self.ctx.work().join("state"))
        .helm(Arc::new(self.helm()))
        .events(events)
        .build()
    }

    /// A context (interlock set, state in `work/state`) whose runs watch `stop` (Helm,
    /// waits, the lock keeper), with an upgrade lease of `ttl`.
    pub(crate) async fn flows_watching(&self, stop: &StopSignal, ttl: Duration) -> FlowContext {
        FlowContext::connect(ConnectOptions {
            kubeconfig: Some(self.sim.kubeconfig_path().to_path_buf()),
            context: Some(kube_sim::CONTEXT_NAME.into()),
            expect_cluster: Some(self.sim.url().to_string()),
        })
        .await
        .unwrap()
        .state_dir(self.ctx.work().join("state"))
        .helm(Arc::new(self.helm_watching(stop)))
        .stop_signal(stop.clone())
        .lock_ttl(ttl)
        .build()
    }

    pub(crate) fn spec(&self) -> ComponentUpgradeSpec {
        ComponentUpgradeSpec {
            chart: chart("1.6.0").display().to_string(),
            values: self.values.clone(),
            image_tag: Some("1.6.0".into()),
            timeout: Duration::from_secs(60),
            ..ComponentUpgradeSpec::karpenter("v1.6.0")
        }
    }

    pub(crate) async fn chart_version(&self) -> String {
        self.helm()
            .metadata(&ReleaseRef::new("karpenter", "karpenter"), None)
            .await
            .unwrap()
            .version
    }
}
