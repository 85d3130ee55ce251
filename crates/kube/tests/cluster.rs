//! upgrade-kube against the simulated API server (kube-sim) with its controllers running.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube_sim::{ControllerConfig, SimCluster};
use upgrade_kube::Error;
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::cordon::{Cordoned, Uncordoned, cordon, uncordon};
use upgrade_kube::drain::{BlockReason, DrainOptions, drain};

async fn sim() -> SimCluster {
    SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .start()
        .await
        .expect("kube-sim starts")
}

async fn connect(sim: &SimCluster, expect: Option<&str>) -> Cluster {
    Cluster::connect(&ConnectOptions {
        kubeconfig: Some(sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: expect.map(str::to_string),
    })
    .await
    .expect("connects")
}

/// Waits until `check` holds, polling.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn pods_on(client: &kube::Client, node: &str) -> Vec<Pod> {
    Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .unwrap()
        .items
}

const IRIS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sklearn-iris-predictor, namespace: mlops}
spec:
  replicas: 2
  selector: {matchLabels: {app: sklearn-iris}}
  template:
    metadata: {labels: {app: sklearn-iris}}
    spec:
      containers:
      - name: kserve-container
        image: kserve/sklearnserver:v0.14.0
        resources: {requests: {cpu: 100m, memory: 128Mi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: sklearn-iris-pdb, namespace: mlops}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: sklearn-iris}}
"#;

#[tokio::test]
async fn drain_blocked_by_a_budget_names_pod_and_budget_then_succeeds_once_relaxed() {
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(IRIS).unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let client = cluster.client().clone();
    // Pending pods may be evicted whatever the budget (as upstream), so wait for Ready.
    eventually("both replicas ready on node-a", || async {
        let pods = pods_on(&client, "node-a").await;
        pods.len() == 2 && pods.iter().all(is_ready)
    })
    .await;
    sim.add_node("node-b", "v1.30.4-eks-a737599").unwrap();
    sim.add_node("node-c", "v1.30.4-eks-a737599").unwrap();

    let options = DrainOptions {
        timeout: Duration::from_secs(3),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..DrainOptions::default()
    };
    let err = drain(&cluster, "node-a", &options).await.unwrap_err();
    let Error::DrainBlocked { node, blocked } = &err else {
        panic!("expected DrainBlocked, got {err}");
    };
    assert_eq!(node, "node-a");
    assert_eq!(blocked.len(), 2, "{err}");
    for pod in blocked {
        assert!(
            pod.name.starts_with("sklearn-iris-predictor-"),
            "{}",
            pod.name
        );
        assert!(
            matches!(pod.reason, BlockReason::DisruptionBudget { .. }),
            "{:?}",
            pod.reason
        );
        assert_eq!(pod.budgets, ["mlops/sklearn-iris-pdb"]);
    }
    let text = err.to_string();
    assert!(text.contains("[budget: mlops/sklearn-iris-pdb]"), "{text}");
    assert_eq!(
        pods_on(&client, "node-a").await.len(),
        2,
        "nothing was evicted"
    );

    // Relax the budget; the same drain now completes and the pods run elsewhere.
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), "mlops");
    pdbs.patch(
        "sklearn-iris-pdb",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"minAvailable": 1}})),
    )
    .await
    .unwrap();
    let options = DrainOptions {
        timeout: Duration::from_secs(20),
        ..options
    };
    let report = drain(&cluster, "node-a", &options).await.unwrap();
    assert_eq!(report.evicted.len(), 2);
    assert!(pods_on(&client, "node-a").await.is_empty());
    eventually("two replicas running on other nodes", || async {
        let b = pods_on(&client, "node-b").await.len();
        let c = pods_on(&client, "node-c").await.len();
        b + c == 2
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_interlock_refuses_changes_to_an_unnamed_or_other_cluster() {
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();

    let err = Cluster::connect(&ConnectOptions {
        kubeconfig: Some(sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some("mlops-platform-prod".into()),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::WrongCluster { .. }), "{err}");
    assert!(
        err.to_string().contains("expected `mlops-platform-prod`"),
        "{err}"
    );

    let read_only = connect(&sim, None).await;
    let err = cordon(&read_only, "node-a").await.unwrap_err();
    assert!(matches!(err, Error::NoExpectedCluster { .. }), "{err}");
    let node = Api::<Node>::all(read_only.client().clone())
        .get("node-a")
        .await
        .unwrap();
    assert_ne!(
        node.spec.unwrap().unschedulable,
        Some(true),
        "nothing changed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn uncordon_never_lifts_an_admins_cordon() {
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.add_node("node-b", "v1.30.4-eks-a737599").unwrap();
    sim.set_unschedulable("node-b", true).unwrap(); // the admin's
    let cluster = connect(&sim, Some(sim.url())).await;
    assert_eq!(cordon(&cluster, "node-a").await.unwrap(), Cordoned::Now);
    assert_eq!(
        cordon(&cluster, "node-a").await.unwrap(),
        Cordoned::AlreadyByUs
    );
    assert_eq!(
        cordon(&cluster, "node-b").await.unwrap(),
        Cordoned::AlreadyByAdmin
    );
    assert_eq!(
        uncordon(&cluster, "node-a").await.unwrap(),
        Uncordoned::Lifted
    );
    assert_eq!(
        uncordon(&cluster, "node-b").await.unwrap(),
        Uncordoned::LeftForAdmin
    );
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    assert_ne!(
        nodes
            .get("node-a")
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true)
    );
    assert_eq!(
        nodes
            .get("node-b")
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn two_lock_holders_cannot_both_proceed() {
    use upgrade_kube::lock::{LockOptions, UpgradeLock};
    let sim = sim().await;
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n")
        .ok();
    let cluster = connect(&sim, Some(sim.url())).await;
    let ttl = Duration::from_secs(2);
    let mut first = UpgradeLock::acquire(
        &cluster,
        LockOptions {
            ttl,
            ..LockOptions::new("runner-1/run-a")
        },
        "preflight",
    )
    .await
    .unwrap();
    first.renew(Some("drain node-a")).await.unwrap();

    let err = UpgradeLock::acquire(
        &cluster,
        LockOptions {
            ttl,
            ..LockOptions::new("runner-2/run-b")
        },
        "preflight",
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LockHeld { .. }), "{text}");
    assert!(
        text.contains("held by `runner-1/run-a` (step: drain node-a)"),
        "{text}"
    );

    // The first holder dies (stops renewing); after the TTL the second may take over, and
    // the first learns it lost the lock instead of carrying on.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let second = UpgradeLock::acquire(
        &cluster,
        LockOptions {
            ttl,
            ..LockOptions::new("runner-2/run-b")
        },
        "preflight",
    )
    .await
    .unwrap();
    let err = first.renew(None).await.unwrap_err();
    assert!(
        matches!(err, Error::LockLost { ref holder, .. } if holder == "runner-2/run-b"),
        "{err}"
    );
    second.release().await.unwrap();
    let third = UpgradeLock::acquire(&cluster, LockOptions::new("runner-3"), "x").await;
    assert!(third.is_ok(), "released locks are free at once");
    sim.shutdown().await;
}

const ISVC_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: inferenceservices.serving.kserve.io}
spec:
  group: serving.kserve.io
  scope: Namespaced
  names: {kind: InferenceService, plural: inferenceservices, singular: inferenceservice, shortNames: [isvc]}
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
"#;

const ISVCS: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: sklearn-iris, namespace: mlops, labels: {team: ml}}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: xgb-churn, namespace: mlops}
spec: {predictor: {canaryTrafficPercent: 10, model: {modelFormat: {name: xgboost}, storageUri: "s3://models/churn/v3"}}}
"#;

#[tokio::test]
async fn backup_delete_restore_gives_back_equal_specs() {
    use upgrade_kube::backup::{Backup, backup, platform_kinds, restore};
    let sim = sim().await;
    sim.load_yaml(ISVC_CRD).unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    // The CRD must be served before its objects can be created through the API.
    let kinds = platform_kinds("kserve");
    eventually("the InferenceService kind is served", || async {
        backup(&cluster, &kinds[..1], None)
            .await
            .map(|b| b.not_served.is_empty())
            .unwrap_or(false)
    })
    .await;
    sim.load_yaml(ISVCS).unwrap();

    let before = backup(&cluster, &kinds, None).await.unwrap();
    assert_eq!(before.objects.len(), 2);
    assert_eq!(
        before.not_served,
        ["servingruntimes.serving.kserve.io/v1alpha1"]
    );
    let yaml = before.to_yaml();
    assert!(
        !yaml.contains("resourceVersion") && !yaml.contains("uid:"),
        "{yaml}"
    );

    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    );
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(cluster.client().clone(), "mlops", &ar);
    for name in ["sklearn-iris", "xgb-churn"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("the InferenceServices are gone", || async {
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;

    let restored = restore(&cluster, &Backup::from_yaml(&yaml).unwrap(), &kinds)
        .await
        .unwrap();
    assert_eq!(restored, 2);
    let after = backup(&cluster, &kinds, None).await.unwrap();
    let specs = |b: &Backup| -> Vec<(String, serde_json::Value, serde_json::Value)> {
        b.objects
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["spec"].clone(),
                    o["metadata"]["labels"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(specs(&after), specs(&before));
    sim.shutdown().await;
}

#[tokio::test]
async fn upgrade_status_is_published_and_read_back() {
    use upgrade_kube::status::{PartState, UpgradeStatus};
    let sim = sim().await;
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n")
        .ok();
    let cluster = connect(&sim, Some(sim.url())).await;
    let mut status = UpgradeStatus {
        run_id: "run-1".into(),
        rollback_available: true,
        ..Default::default()
    };
    status.set("Control Plane", "1.30", "1.31", PartState::InProgress);
    status.publish(&cluster).await.unwrap();
    status.set("Control Plane", "1.30", "1.31", PartState::Complete);
    status.publish(&cluster).await.unwrap();
    let back = UpgradeStatus::read(&cluster).await.unwrap().unwrap();
    assert_eq!(back, status);
    assert_eq!(back.parts[0].state, PartState::Complete);
    sim.shutdown().await;
}
