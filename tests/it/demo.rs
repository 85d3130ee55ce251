//! The demo's full platform deploys with the real helm on kube-sim: every chart, both
//! InferenceServices, the Argo templates and the disruption budgets the node drain must respect.

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_bins::sample::FULL_COMPONENTS;
use upgrade_test::TestContext;

use crate::platform_run::sample;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_platform_deploys() {
    let ctx = TestContext::new();
    let platform = sample(ctx.root().join("platform"));
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(platform.kubeconfig())
        .start()
        .await
        .unwrap();
    for node in ["ip-10-0-1-10", "ip-10-0-2-20", "ip-10-0-3-30"] {
        sim.add_node(node, "v1.30.4-eks-a737599").unwrap();
    }
    platform.build_full(&sim).await.unwrap();

    let helm = platform.helm().unwrap();
    for (name, namespace, version, _) in FULL_COMPONENTS {
        let meta = helm
            .metadata(&upgrade_helm::ReleaseRef::new(name, namespace), None)
            .await
            .unwrap();
        assert_eq!(meta.version, version, "{name}");
    }
    let count = |api: &str, kind: &str, ns: &str| sim.list(api, kind, Some(ns)).len();
    assert_eq!(
        count("serving.kserve.io/v1beta1", "InferenceService", "mlops"),
        2
    );
    assert_eq!(count("argoproj.io/v1alpha1", "WorkflowTemplate", "argo"), 2);
    assert_eq!(count("policy/v1", "PodDisruptionBudget", "mlops"), 2);
    // The values files are the platform's own copies, not the repository's fixtures.
    assert!(
        platform
            .values_dir()
            .join("karpenter-values.yaml")
            .is_file()
    );
    sim.shutdown().await;
}
