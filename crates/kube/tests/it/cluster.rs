//! upgrade-kube against the simulated API server (kube-sim) with its controllers running.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube_sim::{ControllerConfig, FaultConfig, FaultKind, SimCluster};
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

pub(crate) async fn connect(sim: &SimCluster, expect: Option<&str>) -> Cluster {
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

/// The pods bound to `node`, read from the simulator's store (never faulted).
fn pods_on(sim: &SimCluster, node: &str) -> Vec<Pod> {
    sim.list("v1", "Pod", None)
        .into_iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .map(|p| serde_json::from_value(p).expect("a pod"))
        .collect()
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
    blocked_then_relaxed(sim().await).await;
}

/// Transient failures on the verbs a drain and a rollout use: evictions, pod and budget lists,
/// node reads and patches, status ConfigMap reads and writes answer 429 (throttling, not a
/// budget), 500 or 503 now and then.
fn flaky(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        ..FaultConfig::default()
    }
    .rule(
        Some("create"),
        Some("pods/eviction"),
        0.15,
        FaultKind::ServiceUnavailable,
    )
    .rule(
        Some("create"),
        Some("pods/eviction"),
        0.1,
        FaultKind::TooManyRequests,
    )
    .rule(Some("list"), Some("pods"), 0.2, FaultKind::InternalError)
    .rule(
        Some("list"),
        Some("poddisruptionbudgets"),
        0.2,
        FaultKind::ServiceUnavailable,
    )
    .rule(Some("get"), Some("nodes"), 0.2, FaultKind::TooManyRequests)
    .rule(Some("patch"), Some("nodes"), 0.3, FaultKind::InternalError)
    .rule(
        Some("patch"),
        Some("configmaps"),
        0.2,
        FaultKind::ServiceUnavailable,
    )
    .rule(
        Some("get"),
        Some("configmaps"),
        0.2,
        FaultKind::InternalError,
    )
}

#[tokio::test]
async fn drain_blocked_then_relaxed_with_faults_on() {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .faults(flaky(7))
        .start()
        .await
        .expect("kube-sim starts");
    blocked_then_relaxed(sim).await;
}

async fn blocked_then_relaxed(sim: SimCluster) {
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(IRIS).unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let client = cluster.client().clone();
    // Pending pods may be evicted whatever the budget (as upstream), so wait for Ready.
    eventually("both replicas ready on node-a", || async {
        let pods = pods_on(&sim, "node-a");
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
    assert_eq!(pods_on(&sim, "node-a").len(), 2, "nothing was evicted");

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
    assert!(pods_on(&sim, "node-a").is_empty());
    eventually("two replicas running on other nodes", || async {
        let b = pods_on(&sim, "node-b").len();
        let c = pods_on(&sim, "node-c").len();
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

// ---------------------------------------------------------------------------------------
// Concurrent drains against random clusters: no budget ever goes below its minimum.

/// One budget's rule, to check the live pods against.
struct Budget {
    namespace: String,
    app: String,
    /// Ready pods the budget requires at all times.
    min_ready: usize,
    /// The budget's rule, for the failure message.
    rule: String,
}

/// Ready, not-terminating pods of `app` right now (from the simulator's store).
fn ready_pods(sim: &SimCluster, namespace: &str, app: &str) -> usize {
    sim.list("v1", "Pod", Some(namespace))
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

/// Samples every budget until `done` and 20 times after, returning the violations seen
/// (budget, ready, min) and how many samples were taken while the drains ran.
async fn watch_budgets(
    sim: &SimCluster,
    budgets: &[Budget],
    done: &std::sync::atomic::AtomicBool,
) -> (Vec<String>, u32) {
    let mut violations = Vec::new();
    let mut samples = 0;
    // While the drains run, and for 20 samples after: an eviction the budget should have
    // refused shows as too few ready pods until the replacement is ready, which can be after
    // a fast drain has returned.
    let mut after = 0;
    while after < 20 {
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            after += 1;
        }
        for b in budgets {
            let ready = ready_pods(sim, &b.namespace, &b.app);
            if ready < b.min_ready {
                violations.push(format!(
                    "{}/{} ({}): {ready} ready < {}",
                    b.namespace, b.app, b.rule, b.min_ready
                ));
            }
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (violations, samples - after)
}

/// A random budget for `replicas` pods that allows at least one disruption, in one of the
/// four forms the disruption controller knows, with the ready pods it guarantees.
fn random_budget(rng: &mut impl rand::Rng, replicas: usize) -> (String, usize) {
    let ceil_percent = |p: usize| (replicas * p).div_ceil(100);
    loop {
        let (rule, min_ready) = match rng.random_range(0..4) {
            0 => {
                let m = rng.random_range(1..replicas);
                (format!("minAvailable: {m}"), m)
            }
            1 => {
                let p = rng.random_range(10..=90);
                (format!("minAvailable: \"{p}%\""), ceil_percent(p))
            }
            2 => {
                let u = rng.random_range(1..replicas);
                (format!("maxUnavailable: {u}"), replicas - u)
            }
            _ => {
                let p = rng.random_range(10..=90);
                (
                    format!("maxUnavailable: \"{p}%\""),
                    replicas.saturating_sub(ceil_percent(p)),
                )
            }
        };
        if min_ready < replicas {
            return (rule, min_ready);
        }
    }
}

/// A random cluster: 3-5 Deployments of 2-5 replicas, each with a random budget that allows
/// at least one disruption.
fn random_cluster(rng: &mut impl rand::Rng) -> (String, Vec<Budget>) {
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: prop}\n");
    let mut budgets = Vec::new();
    for d in 0..rng.random_range(3..=5) {
        let replicas: usize = rng.random_range(2..=5);
        let app = format!("app{d}");
        let (rule, min_ready) = random_budget(rng, replicas);
        yaml.push_str(&deployment_with_budget_rule(
            "prop", &app, replicas, &rule, 0,
        ));
        budgets.push(Budget {
            namespace: "prop".into(),
            app,
            min_ready,
            rule,
        });
    }
    (yaml, budgets)
}

/// Drains 2 or 3 of the 4 nodes of one random cluster at once (with API faults) while a
/// watcher samples every budget: (samples taken, violations seen).
async fn drain_one_random_cluster(seed: u64) -> (u32, Vec<String>) {
    use rand::{Rng, SeedableRng, seq::SliceRandom};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .faults(flaky(seed))
        .start()
        .await
        .expect("kube-sim starts");
    let mut nodes: Vec<String> = (0..4).map(|i| format!("node-{i}")).collect();
    for n in &nodes {
        sim.add_node(n, "v1.30.4-eks-a737599").unwrap();
    }
    let (yaml, budgets) = random_cluster(&mut rng);
    sim.load_yaml(&yaml).unwrap();
    let expected: usize = sim
        .list("apps/v1", "Deployment", Some("prop"))
        .iter()
        .map(|d| d["spec"]["replicas"].as_u64().unwrap() as usize)
        .sum();
    eventually("every replica ready", || async {
        budgets
            .iter()
            .map(|b| ready_pods(&sim, &b.namespace, &b.app))
            .sum::<usize>()
            == expected
    })
    .await;
    // Room for the evicted pods, then drain 2 or 3 of the original nodes at once.
    for i in 0..2 {
        sim.add_node(&format!("spare-{i}"), "v1.31.2-eks-1")
            .unwrap();
    }
    nodes.shuffle(&mut rng);
    let draining = &nodes[..rng.random_range(2..=3)];
    let cluster = connect(&sim, Some(sim.url())).await;
    let options = DrainOptions {
        timeout: Duration::from_secs(40),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..DrainOptions::default()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let drains = async {
        let results =
            futures::future::join_all(draining.iter().map(|n| drain(&cluster, n, &options))).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        results
    };
    let (results, (violations, samples)) =
        tokio::join!(drains, watch_budgets(&sim, &budgets, &done));
    for (node, result) in draining.iter().zip(&results) {
        let report = result
            .as_ref()
            .unwrap_or_else(|e| panic!("seed {seed}: drain {node}: {e}"));
        assert_eq!(report.node, *node);
    }
    for node in draining {
        assert!(
            pods_on(&sim, node).is_empty(),
            "seed {seed}: {node} still has pods"
        );
    }
    // Seed 504 drained in under four 5 ms samples; the samples after the drains cover it.
    assert!(
        samples >= 1,
        "seed {seed}: the watcher never sampled while the drains ran"
    );
    sim.shutdown().await;
    (
        samples,
        violations
            .into_iter()
            .map(|v| format!("seed {seed}: {v}"))
            .collect(),
    )
}

/// How many random clusters the drain property covers: `UPGRADE_DRAIN_CLUSTERS`, default
/// 100 (`./dev soak` runs 1,000).
fn drain_clusters() -> u64 {
    match std::env::var("UPGRADE_DRAIN_CLUSTERS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("UPGRADE_DRAIN_CLUSTERS={n:?} is not a count")),
        Err(_) => 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_drains_never_take_a_budget_below_its_minimum() {
    use futures::StreamExt;
    let clusters = drain_clusters();
    // Four clusters at a time: each spends most of its time waiting on pods and backoffs.
    let results: Vec<(u32, Vec<String>)> = futures::stream::iter(0..clusters)
        .map(drain_one_random_cluster)
        .buffer_unordered(4)
        .collect()
        .await;
    let samples: u32 = results.iter().map(|(s, _)| s).sum();
    let violations: Vec<&String> = results.iter().flat_map(|(_, v)| v).collect();
    eprintln!(
        "random clusters drained: {clusters}, budget samples: {samples}, violations: {}",
        violations.len()
    );
    assert_eq!(results.len() as u64, clusters);
    assert_eq!(violations, Vec::<&String>::new(), "budget violations");
}

// ---------------------------------------------------------------------------------------
// Node rollout: 6 nodes from 1.30 to 1.31, every Deployment available throughout.

/// Node "upgrades" in kube-sim: surge adds a node at the target version per node of the
/// batch; retire deletes the drained node and what the node lifecycle would take with it.
struct SimReplacer<'a> {
    sim: &'a SimCluster,
    version: &'static str,
}

impl upgrade_kube::rollout::NodeReplacer for SimReplacer<'_> {
    async fn surge(
        &self,
        batch: &[String],
    ) -> Result<Vec<String>, upgrade_kube::rollout::ReplacerError> {
        let mut added = Vec::new();
        for old in batch {
            let name = format!("{old}-v131");
            self.sim.add_node(&name, self.version)?;
            added.push(name);
        }
        Ok(added)
    }

    async fn retire(&self, node: &str) -> Result<(), upgrade_kube::rollout::ReplacerError> {
        let client = self.sim.client()?;
        Api::<Node>::all(client.clone())
            .delete(node, &DeleteParams::default())
            .await?;
        // DaemonSet pods of a deleted node go with it (the node lifecycle controller's job).
        for pod in pods_on(self.sim, node) {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    &DeleteParams::default(),
                )
                .await;
        }
        Ok(())
    }
}

const ROLLOUT_WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: kube-proxy}}
  template:
    metadata: {labels: {k8s-app: kube-proxy}}
    spec:
      containers: [{name: kube-proxy, image: "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.30.7-minimal-eksbuild.2"}]
"#;

/// A Deployment of `replicas` pods (rolling with at most `max_unavailable` down) and a
/// budget of `minAvailable: min_available`. Budgets are absolute numbers: kube-sim computes
/// percentages and maxUnavailable from the pods that exist instead of the controller's
/// scale, so it would itself let simultaneous evictions through such budgets (upstream
/// does not).
fn deployment_with_budget(
    namespace: &str,
    app: &str,
    replicas: usize,
    min_available: usize,
    max_unavailable: usize,
) -> String {
    deployment_with_budget_rule(
        namespace,
        app,
        replicas,
        &format!("minAvailable: {min_available}"),
        max_unavailable,
    )
}

/// A Deployment and its budget, whose rule is `rule` (`minAvailable: 2`,
/// `maxUnavailable: "50%"`, ...).
fn deployment_with_budget_rule(
    namespace: &str,
    app: &str,
    replicas: usize,
    rule: &str,
    max_unavailable: usize,
) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: {max_unavailable}, maxSurge: 1}}}}
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      containers: [{{name: server, image: "kserve/sklearnserver:v0.14.0", resources: {{requests: {{cpu: 100m}}}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: {app}, namespace: {namespace}}}
spec:
  {rule}
  selector: {{matchLabels: {{app: {app}}}}}
"#
    )
}

/// Deployments whose Available condition is not True right now.
fn unavailable_deployments(sim: &SimCluster) -> Vec<String> {
    sim.list("apps/v1", "Deployment", None)
        .into_iter()
        .filter(|d| {
            !d["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True")
            })
        })
        .map(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn rolling_six_nodes_to_1_31_keeps_every_deployment_available() {
    use upgrade_kube::rollout::{RolloutOptions, ValidationOptions, nodes_below, rollout};
    use upgrade_kube::status::{PartState, UpgradeStatus};
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .faults(flaky(5))
        .start()
        .await
        .expect("kube-sim starts");
    for i in 0..6 {
        sim.add_node(&format!("node-{i}"), "v1.30.4-eks-a737599")
            .unwrap();
    }
    let mut yaml = ROLLOUT_WORKLOADS.to_string();
    for (name, replicas) in [("iris", 4), ("churn", 3), ("mlflow", 2)] {
        // One disruption at a time, and the rollout of the Deployment itself likewise.
        yaml.push_str(&deployment_with_budget(
            "mlops",
            name,
            replicas,
            replicas - 1,
            1,
        ));
    }
    sim.load_yaml(&yaml).unwrap();
    eventually("every Deployment available", || async {
        unavailable_deployments(&sim).is_empty()
            && ready_pods(&sim, "mlops", "iris") == 4
            && ready_pods(&sim, "mlops", "churn") == 3
            && ready_pods(&sim, "mlops", "mlflow") == 2
    })
    .await;
    let cluster = connect(&sim, Some(sim.url())).await;
    let nodes = nodes_below(&cluster, "1.31".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(nodes.len(), 6);

    let options = RolloutOptions {
        batch_size: 2,
        canary: true,
        pause: Duration::from_millis(100),
        drain: DrainOptions {
            timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
            ..DrainOptions::default()
        },
        validation: ValidationOptions {
            passes: 2,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
        },
        from_version: "1.30".into(),
        to_version: "1.31".into(),
        run_id: "roll-1".into(),
        ..RolloutOptions::default()
    };
    let replacer = SimReplacer {
        sim: &sim,
        version: "v1.31.2-eks-1",
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let roll = async {
        let report = rollout(&cluster, &replacer, &nodes, &options, None).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        report
    };
    let sample = async {
        let (mut samples, mut gaps) = (0, Vec::new());
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let down = unavailable_deployments(&sim);
            if !down.is_empty() {
                gaps.push(down);
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (samples, gaps)
    };
    let (report, (samples, gaps)) = tokio::join!(roll, sample);
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert!(samples > 10, "availability sampled {samples} times");
    assert_eq!(
        gaps,
        Vec::<Vec<String>>::new(),
        "Deployments unavailable while rolling"
    );
    assert_eq!(report.stopped, None);
    assert!(
        report.nodes.iter().all(|n| n.state == PartState::Complete),
        "{report:?}"
    );
    assert!(report.nodes[0].canary && !report.nodes[1].canary);
    assert_eq!(report.added.len(), 6);
    // Four batches (canary, 2, 2, 1), each validated twice after surge and twice after.
    assert!(report.validations >= 16, "{}", report.validations);

    let left = nodes_below(&cluster, "1.31".parse().unwrap())
        .await
        .unwrap();
    assert!(left.is_empty(), "still on 1.30: {left:?}");
    let status = UpgradeStatus::read(&cluster).await.unwrap().unwrap();
    assert_eq!(status.parts.len(), 6);
    assert!(status.parts.iter().all(|p| p.state == PartState::Complete));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rollout_stops_at_a_blocked_drain_and_records_why() {
    use upgrade_kube::rollout::{RolloutOptions, ValidationOptions, rollout};
    use upgrade_kube::status::{PartState, UpgradeStatus};
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(IRIS).unwrap(); // 2 replicas, minAvailable 2: never evictable
    eventually("both replicas ready", || async {
        ready_pods(&sim, "mlops", "sklearn-iris") == 2
    })
    .await;
    sim.add_node("node-b", "v1.30.4-eks-a737599").unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let options = RolloutOptions {
        pause: Duration::ZERO,
        drain: DrainOptions {
            timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(100),
            ..DrainOptions::default()
        },
        validation: ValidationOptions {
            passes: 1,
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
        },
        from_version: "1.30".into(),
        to_version: "1.31".into(),
        run_id: "roll-2".into(),
        ..RolloutOptions::default()
    };
    let replacer = SimReplacer {
        sim: &sim,
        version: "v1.31.2-eks-1",
    };
    let nodes = vec!["node-a".to_string(), "node-b".to_string()];
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n")
        .ok();
    let mut lock = upgrade_kube::lock::UpgradeLock::acquire(
        &cluster,
        upgrade_kube::lock::LockOptions::new("runner-1/roll-2"),
        "rollout",
    )
    .await
    .unwrap();
    let err = rollout(&cluster, &replacer, &nodes, &options, Some(&mut lock))
        .await
        .unwrap_err();
    assert_eq!(
        lock.step(),
        "drain node-a",
        "the lock names the step that stopped"
    );
    let held = upgrade_kube::lock::UpgradeLock::acquire(
        &cluster,
        upgrade_kube::lock::LockOptions::new("runner-2"),
        "rollout",
    )
    .await
    .unwrap_err();
    assert!(held.to_string().contains("(step: drain node-a)"), "{held}");
    let Error::RolloutStopped(report) = &err else {
        panic!("expected RolloutStopped, got {err}");
    };
    let stop = report.stopped.as_ref().unwrap();
    assert_eq!(stop.batch, ["node-a"], "the canary");
    assert_eq!(stop.step, upgrade_kube::rollout::Step::Drain);
    assert!(
        stop.reason.contains("[budget: mlops/sklearn-iris-pdb]"),
        "{}",
        stop.reason
    );
    assert!(
        stop.left.contains("node-a cordoned by this run"),
        "{}",
        stop.left
    );
    assert_eq!(
        report.nodes[1].state,
        PartState::Pending,
        "node-b untouched"
    );
    let text = err.to_string();
    assert!(text.contains("stopped at drain of node-a"), "{text}");

    let status = UpgradeStatus::read(&cluster).await.unwrap().unwrap();
    let part = |name: &str| status.parts.iter().find(|p| p.name == name).unwrap().state;
    assert_eq!(part("Node node-a"), PartState::Failed);
    assert_eq!(part("Node node-b"), PartState::Pending);
    assert!(
        status
            .timeline
            .iter()
            .any(|(_, e)| e.contains("rollout stopped at drain of node-a")),
        "{:?}",
        status.timeline
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Facts and health.

#[tokio::test]
async fn facts_are_gathered_paginated_and_feed_the_checks() {
    use upgrade_checks::facts::NodeProvisioner;
    use upgrade_kube::facts::{GatherOptions, gather};
    let sim = SimCluster::builder()
        // No simulated cloud: the test's PersistentVolumeClaim must stay Pending, as one with
        // no provisioner does.
        .controllers(ControllerConfig {
            cloud: false,
            ..ControllerConfig::fast()
        })
        .faults(
            FaultConfig {
                seed: 9,
                ..FaultConfig::default()
            }
            .rule(Some("list"), None, 0.15, FaultKind::ServiceUnavailable)
            .rule(Some("list"), None, 0.1, FaultKind::TooManyRequests),
        )
        .start()
        .await
        .expect("kube-sim starts");
    sim.generate(&kube_sim::ScaleSpec {
        nodes: 12,
        pods: 60,
        pods_per_deployment: 5,
        pdbs: 3,
        helm_releases: 4,
        revisions_per_release: 3,
        namespaces: 3,
        kubelet_version: "v1.30.4-eks-a737599".into(),
    })
    .unwrap();
    sim.add_node("node-a", "v1.29.9-eks-1").unwrap();
    sim.load_yaml(IRIS).unwrap();
    sim.load_yaml(&helm_release_secret()).unwrap();
    sim.load_yaml(&helm_release_configmap()).unwrap();
    sim.load_yaml(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: mlops}\nspec: {accessModes: [ReadWriteOnce], storageClassName: gp3, resources: {requests: {storage: 1Gi}}}\n",
    )
    .unwrap();
    // What the 1.36 checks need: a gitRepo volume and a Service with externalIPs.
    sim.load_yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: docs, namespace: mlops}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: docs}}\n  template:\n    metadata: {labels: {app: docs}}\n    spec:\n      containers: [{name: c, image: nginx}]\n      volumes: [{name: site, gitRepo: {repository: 'https://example.com/site.git'}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: legacy, namespace: mlops}\nspec: {ports: [{port: 80}], externalIPs: [203.0.113.7]}\n",
    )
    .unwrap();
    eventually("iris ready", || async {
        ready_pods(&sim, "mlops", "sklearn-iris") == 2 && ready_pods(&sim, "mlops", "docs") == 1
    })
    .await;
    let cluster = connect(&sim, None).await; // reading needs no expected cluster
    let gathered = gather(
        &cluster,
        &GatherOptions {
            page_size: 7, // many pages, to exercise limit + continue under faults
            ..GatherOptions::default()
        },
    )
    .await
    .unwrap();
    let facts = &gathered.facts;
    assert_eq!(facts.nodes.len(), 13);
    assert_eq!(
        facts.cluster.server_version.to_string(),
        "1.30.4-eks-a737599"
    );
    assert!(
        facts
            .nodes
            .iter()
            .all(|n| n.provisioner == NodeProvisioner::ManagedNodeGroup)
    );
    assert_eq!(facts.pods.len(), sim.list("v1", "Pod", None).len());
    assert_eq!(
        facts.workloads.len(),
        sim.list("apps/v1", "Deployment", None).len()
            + sim.list("apps/v1", "StatefulSet", None).len()
            + sim.list("apps/v1", "DaemonSet", None).len()
    );
    assert_eq!(
        facts.pdbs.len(),
        sim.list("policy/v1", "PodDisruptionBudget", None).len()
    );
    assert_eq!(
        facts.helm_releases.len(),
        6,
        "latest revision of each release, from Secrets and ConfigMaps"
    );
    let generated: Vec<_> = facts
        .helm_releases
        .iter()
        .filter(|r| r.chart == "generated")
        .map(|r| (r.chart_version.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        generated,
        [("1.3.0", "deployed"); 4],
        "the latest revision of each"
    );
    let feast = facts
        .helm_releases
        .iter()
        .find(|r| r.name == "feast")
        .unwrap();
    assert!(
        feast.manifest.contains("policy/v1beta1"),
        "{}",
        feast.manifest
    );
    assert_eq!(facts.pvcs.len(), 1, "only claims not Bound");
    let docs = facts
        .pods
        .iter()
        .find(|p| p.name.starts_with("docs-"))
        .unwrap();
    assert_eq!(docs.git_repo_volumes, ["site"]);
    assert_eq!(facts.services.len(), 1, "only Services with externalIPs");
    assert_eq!(facts.services[0].external_ips, ["203.0.113.7"]);
    assert!(
        gathered
            .notes
            .iter()
            .any(|n| n.contains("Certificates are not served")),
        "{:?}",
        gathered.notes
    );

    // The iris budget allows no disruption: every node with an iris pod is predicted to
    // stop its drain on that pod, naming the budget; no other node is.
    let mut iris_nodes: Vec<String> = sim
        .list("v1", "Pod", Some("mlops"))
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "sklearn-iris")
        .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    iris_nodes.sort();
    iris_nodes.dedup();
    let blocked_nodes: Vec<&str> = gathered
        .drains
        .iter()
        .filter(|d| !d.drains())
        .map(|d| d.node.as_str())
        .collect();
    assert_eq!(blocked_nodes, iris_nodes);
    for d in gathered.drains.iter().filter(|d| !d.drains()) {
        assert!(
            d.blocked
                .iter()
                .all(|b| b.budgets == ["mlops/sklearn-iris-pdb"]),
            "{d:?}"
        );
    }
    let report = upgrade_checks::checks::run(
        facts,
        "1.31".parse().unwrap(),
        &upgrade_checks::config::Config::default(),
        upgrade_checks::data::Data::embedded(),
    )
    .unwrap();
    let drain001: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.code == "DRAIN001")
        .map(|f| f.subject.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(drain001, iris_nodes, "the checks agree with the prediction");
    assert!(report.findings.iter().any(|f| f.code == "PDB001"));
    assert!(report.findings.iter().any(|f| f.code == "PVC001"));
    // The removed API is found in the manifest Helm really applied.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == "API001"
                && f.subject.as_ref().is_some_and(|s| s.name.contains("feast"))),
        "{:?}",
        report
            .findings
            .iter()
            .filter(|f| f.code.starts_with("API"))
            .collect::<Vec<_>>()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn health_reports_every_runbook_finding_in_one_call() {
    use upgrade_kube::health::{HealthCheck, check};
    // No simulated cloud: the claim must stay Pending to be reported.
    let sim = SimCluster::builder()
        .controllers(ControllerConfig {
            cloud: false,
            ..ControllerConfig::fast()
        })
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(&format!(
        "{IRIS}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: broken, namespace: mlops}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: broken}}}}\n  template:\n    metadata: {{labels: {{app: broken}}, annotations: {{kube-sim.dev/never-ready: \"true\"}}}}\n    spec: {{containers: [{{name: c, image: x}}]}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data, namespace: mlops}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: stray, namespace: mlops}}\nspec: {{nodeSelector: {{no: where}}, containers: [{{name: c, image: x}}]}}\n"
    ))
    .unwrap();
    sim.load_yaml(ISVC_CRD).unwrap();
    let cluster = connect(&sim, None).await;
    eventually("iris ready", || async {
        ready_pods(&sim, "mlops", "sklearn-iris") == 2
    })
    .await;
    let mut report = check(&cluster).await.unwrap();
    for _ in 0..100 {
        if report.of(HealthCheck::DeploymentUnavailable).count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        report = check(&cluster).await.unwrap();
    }
    let subjects = |c| report.of(c).map(|f| f.subject.clone()).collect::<Vec<_>>();
    assert_eq!(
        subjects(HealthCheck::DeploymentUnavailable),
        ["Deployment mlops/broken"],
        "{}",
        report.render()
    );
    assert_eq!(
        subjects(HealthCheck::PvcNotBound),
        ["PersistentVolumeClaim mlops/data"]
    );
    assert_eq!(
        subjects(HealthCheck::PodNotRunning),
        ["Pod mlops/stray"],
        "{}",
        report.render()
    );
    assert!(subjects(HealthCheck::NodeNotReady).is_empty());
    assert!(
        report.not_checked.iter().any(|n| n.contains("Argo CD")),
        "{:?}",
        report.not_checked
    );
    assert!(
        !report
            .not_checked
            .iter()
            .any(|n| n.contains("InferenceServices")),
        "the KServe CRD is served here: {:?}",
        report.not_checked
    );
    assert!(!report.healthy());
    sim.shutdown().await;
}

/// A Helm release Secret as Helm 3/4 writes it: the release JSON, gzipped, base64-encoded,
/// in the Secret's data (base64 again), with Helm's labels.
fn helm_release_secret() -> String {
    use base64::Engine;
    let release = serde_json::json!({
        "name": "feast", "namespace": "mlops", "version": 2,
        "info": {"status": "deployed", "first_deployed": "", "last_deployed": "", "deleted": "", "description": ""},
        "chart": {"metadata": {"apiVersion": "v2", "name": "feast", "version": "0.40.0", "appVersion": "0.40.0"}},
        "manifest": "---\n# Source: feast/templates/pdb.yaml\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: feast-online\nspec:\n  minAvailable: 1\n",
    });
    let helm_text = upgrade_helm_storage::codec::encode_release(release.to_string().as_bytes());
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: sh.helm.release.v1.feast.v2, namespace: mlops, labels: {{owner: helm, name: feast, status: deployed, version: '2'}}}}\ntype: helm.sh/release.v1\ndata: {{release: {}}}\n",
        base64::engine::general_purpose::STANDARD.encode(helm_text)
    )
}

#[tokio::test]
async fn a_rollout_stops_when_the_cluster_does_not_validate_and_drains_nothing() {
    use upgrade_kube::rollout::{RolloutOptions, Step, ValidationOptions, rollout};
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    // A Deployment whose pod runs but never becomes Ready: the cluster never validates.
    sim.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: feast, namespace: mlops}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: feast}}\n  template:\n    metadata: {labels: {app: feast}, annotations: {kube-sim.dev/never-ready: \"true\"}}\n    spec: {containers: [{name: c, image: feast:0.40}]}\n",
    )
    .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let options = RolloutOptions {
        pause: Duration::ZERO,
        validation: ValidationOptions {
            passes: 2,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(800),
        },
        run_id: "roll-3".into(),
        ..RolloutOptions::default()
    };
    let replacer = SimReplacer {
        sim: &sim,
        version: "v1.31.2-eks-1",
    };
    let err = rollout(&cluster, &replacer, &["node-a".to_string()], &options, None)
        .await
        .unwrap_err();
    let Error::RolloutStopped(report) = &err else {
        panic!("expected RolloutStopped, got {err}");
    };
    let stop = report.stopped.as_ref().unwrap();
    assert_eq!(stop.step, Step::Validate);
    assert!(
        stop.reason
            .contains("Deployment mlops/feast: 0/1 replicas available"),
        "{}",
        stop.reason
    );
    assert!(report.validations >= 2, "validated until the timeout");
    assert_eq!(report.nodes[0].drain, None, "nothing was drained");
    let node: Node = Api::<Node>::all(cluster.client().clone())
        .get("node-a")
        .await
        .unwrap();
    assert_ne!(
        node.spec.unwrap().unschedulable,
        Some(true),
        "not even cordoned"
    );
    sim.shutdown().await;
}

/// A release stored by `HELM_DRIVER=configmap`: Helm's base64 text as a plain string.
fn helm_release_configmap() -> String {
    let release = serde_json::json!({
        "name": "mlflow", "namespace": "mlops", "version": 1,
        "info": {"status": "deployed", "first_deployed": "", "last_deployed": "", "deleted": "", "description": ""},
        "chart": {"metadata": {"apiVersion": "v2", "name": "mlflow", "version": "1.3.0", "appVersion": "2.17.0"}},
        "manifest": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mlflow\n",
    });
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sh.helm.release.v1.mlflow.v1, namespace: mlops, labels: {{owner: helm, name: mlflow, status: deployed, version: '1'}}}}\ndata: {{release: {}}}\n",
        upgrade_helm_storage::codec::encode_release(release.to_string().as_bytes())
    )
}

#[tokio::test]
async fn deployment_image_step_rolls_out_and_undoes_like_rollout_undo() {
    use upgrade_core::executor::Step;
    use upgrade_core::snapshot::{SnapshotKey, SnapshotStore};
    use upgrade_kube::step::{DeploymentImageSpec, DeploymentImageStep};
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mlflow, namespace: mlops}
spec:
  replicas: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 1}}
  selector: {matchLabels: {app: mlflow}}
  template:
    metadata: {labels: {app: mlflow}}
    spec:
      containers:
      - {name: mlflow, image: "ghcr.io/mlflow/mlflow:v2.9.2"}
      - {name: sidecar, image: "busybox:1.36"}
"#,
    )
    .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let step = DeploymentImageStep {
        spec: DeploymentImageSpec {
            id: "mlflow/image".into(),
            component: "mlflow".into(),
            namespace: "mlops".into(),
            deployment: "mlflow".into(),
            container: "mlflow".into(),
            image: "ghcr.io/mlflow/mlflow:v2.10.0".into(),
            timeout: Duration::from_secs(20),
        },
        cluster: cluster.clone(),
    };
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client().clone(), "mlops");
    let images = || async {
        let d = deployments.get("mlflow").await.unwrap();
        d.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .map(|c| c.image.unwrap())
            .collect::<Vec<_>>()
    };
    let root = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(root.path()).unwrap();
    let key = SnapshotKey {
        run_id: "r".into(),
        seq: 1,
        component: "mlflow".into(),
        step: "image".into(),
    };
    let mut writer = store.begin(key.clone()).unwrap();
    step.capture(&mut writer).await.unwrap();
    let snapshot = writer.commit().unwrap();
    step.apply().await.unwrap();
    step.verify().await.unwrap();
    assert_eq!(
        images().await,
        ["ghcr.io/mlflow/mlflow:v2.10.0", "busybox:1.36"]
    );
    step.apply().await.unwrap(); // idempotent
    step.rollback(&snapshot).await.unwrap();
    assert_eq!(
        images().await,
        ["ghcr.io/mlflow/mlflow:v2.9.2", "busybox:1.36"]
    );
    assert!(
        step.verify().await.is_err(),
        "after the undo the new image is gone"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn workloads_ready_step_names_what_is_not_ready_and_passes_once_it_is() {
    use upgrade_core::executor::Step;
    use upgrade_kube::backup::platform_kinds;
    use upgrade_kube::step::{WorkloadsReadySpec, WorkloadsReadyStep};
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/charts/kserve/0.15.0/crds/serving.kserve.io_inferenceservices.yaml");
    sim.load_yaml(&std::fs::read_to_string(crd).unwrap())
        .unwrap();
    sim.load_yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: kserve}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kserve, namespace: kserve}
spec:
  replicas: 1
  selector: {matchLabels: {app: kserve}}
  template:
    metadata: {labels: {app: kserve}, annotations: {kube-sim.dev/never-ready: "true"}}
    spec:
      containers:
      - {name: manager, image: "kserve/kserve-controller:v0.15.0"}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris, namespace: kserve}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "s3://models/iris/v1"}}}
status:
  conditions:
  - {type: Ready, status: "False", reason: PredictorNotReady}
"#,
    )
    .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let step = WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            id: "kserve/verify".into(),
            component: "kserve".into(),
            namespace: "kserve".into(),
            kinds: platform_kinds("kserve"),
            timeout: Duration::from_millis(600),
            replaced_version: None,
            crds: Vec::new(),
        },
        cluster: cluster.clone(),
    };
    let err = step.verify().await.unwrap_err().to_string();
    assert!(
        err.contains("Deployment kserve/kserve: 0/1 replicas available"),
        "{err}"
    );
    assert!(
        err.contains("InferenceService kserve/iris: Ready is False (PredictorNotReady)"),
        "{err}"
    );
    // Make both ready: pods that become Ready, and an InferenceService reporting Ready.
    let merge = |value: serde_json::Value| kube::api::Patch::Merge(value);
    let params = kube::api::PatchParams::default();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client().clone(), "kserve");
    deployments
        .patch(
            "kserve",
            &params,
            &merge(serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kube-sim.dev/never-ready": null}}}}})),
        )
        .await
        .unwrap();
    let isvc = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    );
    let isvcs: Api<kube::api::DynamicObject> =
        Api::namespaced_with(cluster.client().clone(), "kserve", &isvc);
    isvcs
        .patch_status(
            "iris",
            &params,
            &merge(serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let step = WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            timeout: Duration::from_secs(20),
            ..step.spec
        },
        ..step
    };
    step.verify().await.expect("ready once the pods are");
    assert!(
        step.description()
            .contains("InferenceService, ServingRuntime is Ready"),
        "{}",
        step.description()
    );
}

#[tokio::test]
async fn backing_up_a_version_the_crd_does_not_serve_is_an_error() {
    use upgrade_kube::backup::{backup, platform_kinds};
    let sim = sim().await;
    // InferenceServices exist, but the installed CRD serves v1alpha1 only.
    sim.load_yaml(&ISVC_CRD.replace("name: v1beta1", "name: v1alpha1"))
        .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let kinds = platform_kinds("kserve");
    let err = backup(&cluster, &kinds[..1], None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the cluster serves v1alpha1, not v1beta1")
            && text.contains("would miss every object"),
        "{text}"
    );
    // A kind whose CRD is not installed has nothing to back up: noted, not an error.
    let taken = backup(&cluster, &kinds[1..], None).await.unwrap();
    assert_eq!(
        taken.not_served,
        ["servingruntimes.serving.kserve.io/v1alpha1"]
    );
    assert!(taken.objects.is_empty());
}

#[tokio::test]
async fn objects_whose_controller_never_reported_a_status_are_not_ready() {
    use upgrade_core::executor::Step;
    use upgrade_kube::backup::platform_kinds;
    use upgrade_kube::step::{WorkloadsReadySpec, WorkloadsReadyStep};
    let sim = sim().await;
    sim.load_yaml(ISVC_CRD).unwrap();
    // Argo's Workflow CRD has no status subresource: the controller writes the object.
    sim.load_yaml(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: workflows.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: Workflow, plural: workflows, singular: workflow}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: workflowtemplates.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: WorkflowTemplate, plural: workflowtemplates, singular: workflowtemplate}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
    )
    .unwrap();
    sim.load_yaml(ISVCS).unwrap();
    sim.load_yaml(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: train, namespace: mlops}
spec: {entrypoint: train, templates: [{name: train, container: {image: "python:3.12"}}]}
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: train-model, namespace: mlops}
spec: {entrypoint: train, templates: [{name: train, container: {image: "python:3.12"}}]}
"#,
    )
    .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let mut kinds = platform_kinds("kserve");
    kinds.extend(platform_kinds("argo-workflows"));
    let step = WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            id: "platform/verify".into(),
            component: "platform".into(),
            namespace: "mlops".into(),
            kinds,
            timeout: Duration::from_millis(600),
            replaced_version: None,
            crds: Vec::new(),
        },
        cluster: cluster.clone(),
    };
    // No status at all is not ready, for the kinds whose controller always writes one.
    let err = step.verify().await.unwrap_err().to_string();
    assert!(
        err.contains("InferenceService mlops/sklearn-iris: no Ready condition yet"),
        "{err}"
    );
    assert!(err.contains("Workflow mlops/train: no phase yet"), "{err}");
    assert!(
        !err.contains("WorkflowTemplate") && !err.contains("ServingRuntime"),
        "kinds without a status contract pass: {err}"
    );

    // The controllers report: the InferenceService through its status subresource, the
    // Workflow (a failed one: the workflow's outcome, not the controller's health).
    let params = kube::api::PatchParams::default();
    let isvcs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client().clone(),
        "mlops",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
            "inferenceservices",
        ),
    );
    for name in ["sklearn-iris", "xgb-churn"] {
        isvcs
            .patch_status(
                name,
                &params,
                &kube::api::Patch::Merge(serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
            )
            .await
            .unwrap();
    }
    let workflows: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client().clone(),
        "mlops",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
            "workflows",
        ),
    );
    workflows
        .patch(
            "train",
            &params,
            &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    step.verify()
        .await
        .expect("ready once the controllers have reported");
}

#[tokio::test]
async fn the_lock_backups_and_verification_wait_out_a_flaky_api_server() {
    use upgrade_core::executor::Step;
    use upgrade_kube::backup::{backup, platform_kinds};
    use upgrade_kube::lock::{LockOptions, UpgradeLock};
    use upgrade_kube::step::{WorkloadsReadySpec, WorkloadsReadyStep};
    let sim = sim().await;
    sim.load_yaml(ISVC_CRD).unwrap();
    sim.load_yaml(ISVCS).unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    // Half of these reads and writes fail for now, as while API servers roll.
    sim.set_faults(
        FaultConfig {
            seed: 5,
            ..FaultConfig::default()
        }
        .rule(
            Some("get"),
            Some("leases"),
            0.5,
            FaultKind::ServiceUnavailable,
        )
        .rule(
            Some("create"),
            Some("leases"),
            0.5,
            FaultKind::InternalError,
        )
        .rule(
            Some("list"),
            Some("inferenceservices"),
            0.5,
            FaultKind::ServiceUnavailable,
        )
        .rule(
            Some("list"),
            Some("deployments"),
            0.5,
            FaultKind::TooManyRequests,
        ),
    );
    let lock = UpgradeLock::acquire(
        &cluster,
        LockOptions {
            ttl: Duration::from_secs(20),
            ..LockOptions::new("runner-1/run-a")
        },
        "preflight",
    )
    .await
    .expect("the lock, once the API server answers");
    let taken = backup(&cluster, &platform_kinds("kserve")[..1], None)
        .await
        .expect("the backup, reads tried again");
    assert_eq!(taken.objects.len(), 2);
    let verify = WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            id: "kserve/verify".into(),
            component: "kserve".into(),
            namespace: "mlops".into(),
            kinds: Vec::new(),
            timeout: Duration::from_secs(5),
            replaced_version: None,
            crds: Vec::new(),
        },
        cluster: cluster.clone(),
    };
    verify.verify().await.expect("verified, reads tried again");
    sim.set_faults(FaultConfig::default());
    lock.release().await.unwrap();
}

/// The lock is released even when the API server fails the delete, or when a renewal went
/// through but its answer was lost (so the lease's resourceVersion moved on without us):
/// the next run must not find the lock held by a run that has ended.
#[tokio::test]
async fn the_lock_is_released_through_server_errors_and_lost_answers() {
    use k8s_openapi::api::coordination::v1::Lease;
    use upgrade_kube::lock::{LockOptions, UpgradeLock};
    let sim = sim().await;
    sim.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n")
        .ok();
    let cluster = connect(&sim, Some(sim.url())).await;
    let leases: Api<Lease> = Api::namespaced(cluster.client().clone(), "kube-system");
    let options = || LockOptions {
        ttl: Duration::from_secs(60),
        ..LockOptions::new("runner-1/run-a")
    };

    // Two 503s on the delete.
    let held = UpgradeLock::acquire(&cluster, options(), "preflight")
        .await
        .unwrap();
    sim.set_faults(FaultConfig::default().next(
        Some("delete"),
        Some("leases"),
        2,
        FaultKind::ServiceUnavailable,
    ));
    held.release().await.expect("released after the 503s");
    sim.set_faults(FaultConfig::default());
    let name = options().name;
    assert!(leases.get_opt(&name).await.unwrap().is_none(), "lease left");

    // A renewal carried out whose answer never came back.
    let mut held = UpgradeLock::acquire(&cluster, options(), "preflight")
        .await
        .unwrap();
    sim.set_faults(FaultConfig::default().next(
        Some("update"),
        Some("leases"),
        1,
        FaultKind::DropResponse,
    ));
    held.renew(Some("drain node-a"))
        .await
        .expect_err("the answer was lost");
    sim.set_faults(FaultConfig::default());
    let lease = leases.get(&name).await.unwrap();
    assert_eq!(
        lease
            .metadata
            .annotations
            .unwrap_or_default()
            .values()
            .next()
            .map(String::as_str),
        Some("drain node-a"),
        "the renewal went through"
    );
    held.release()
        .await
        .expect("released with the lease's current version");
    assert!(leases.get_opt(&name).await.unwrap().is_none(), "lease left");
    sim.shutdown().await;
}

/// The verification after a component upgrade fails while any container of the
/// namespace's workloads still runs the version the upgrade replaced (`v0.14.1` or
/// `0.14.1`), naming it; a sidecar with its own version is not the component's.
#[tokio::test]
async fn the_verification_names_containers_left_at_the_replaced_version() {
    use upgrade_kube::step::{WorkloadsReadySpec, WorkloadsReadyStep};
    let sim = sim().await;
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: kserve}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kserve-controller-manager, namespace: kserve}
spec:
  replicas: 1
  selector: {matchLabels: {app: kserve}}
  template:
    metadata: {labels: {app: kserve}}
    spec:
      containers:
      - {name: manager, image: "kserve/kserve-controller:v0.15.2"}
      - {name: kube-rbac-proxy, image: "quay.io/brancz/kube-rbac-proxy:v0.18.0"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kserve}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: "kserve/agent:0.14.1@sha256:0123"}
"#,
    )
    .unwrap();
    let cluster = connect(&sim, Some(sim.url())).await;
    let step = |replaced: Option<&str>| WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            id: "kserve/verify".into(),
            component: "kserve".into(),
            namespace: "kserve".into(),
            kinds: Vec::new(),
            timeout: Duration::from_secs(10),
            replaced_version: replaced.map(str::to_string),
            crds: Vec::new(),
        },
        cluster: cluster.clone(),
    };
    eventually("the controller is available", || async {
        step(None).problems().await.unwrap().is_empty()
    })
    .await;
    let problems = step(Some("v0.14.1")).problems().await.unwrap();
    assert_eq!(
        problems,
        [
            "DaemonSet kserve/agent: container agent still runs kserve/agent:0.14.1@sha256:0123, the version before the upgrade"
        ]
    );
    assert!(step(Some("0.15.1")).problems().await.unwrap().is_empty());
    sim.shutdown().await;
}
