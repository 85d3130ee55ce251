//! Simulated controllers: Deployment → ReplicaSet → Pods, StatefulSets, DaemonSets, Jobs,
//! a scheduler, a kubelet and the disruption (PDB) controller. Each can be switched off.
//!
//! They run as one loop that wakes on every store change (and on kubelet timers), reads the
//! store directly and writes through the same [`Store`] rules as HTTP clients, so watchers
//! see their changes as events. Every controller is level-triggered and idempotent: a pass
//! that finds nothing to do writes nothing, so the loop settles.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::runtime::{ContainerStart, RESTART_BACKOFF, Run, Runs, Runtime};
use crate::selectors::LabelSelector;
use crate::store::{
    Propagation, Store, Target, WriteOptions, allocate_pod_ip, is_terminating, now_rfc3339,
};

/// The version string `/version` reports, shared by the server and the controllers.
pub(crate) type SharedVersion = Arc<std::sync::RwLock<String>>;

/// Which controllers run, and how fast the simulated kubelet is.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Deployments create and scale ReplicaSets and report rollout status.
    pub deployments: bool,
    /// ReplicaSets create and delete pods.
    pub replicasets: bool,
    /// StatefulSets create ordinal pods and roll them.
    pub statefulsets: bool,
    /// DaemonSets place one pod per eligible node.
    pub daemonsets: bool,
    /// Jobs run pods to completion.
    pub jobs: bool,
    /// The scheduler binds pending pods to nodes that fit them.
    pub scheduler: bool,
    /// The kubelet starts bound pods (Running and Ready) and finishes job pods; pod GC
    /// deletes pods bound to a node that no longer exists. (A pod deleted on a NotReady
    /// node stays Terminating until then, or until deleted with a zero grace period.)
    pub kubelet: bool,
    /// PodDisruptionBudget status (currentHealthy, desiredHealthy, disruptionsAllowed).
    pub disruption_budgets: bool,
    /// The cloud side: PersistentVolumeClaims get a PersistentVolume and are Bound;
    /// LoadBalancer Services and Ingresses get an (ELB-like) hostname. `helm --wait` waits
    /// for both.
    pub cloud: bool,
    /// A Karpenter-like provisioner (off by default): when pods cannot be scheduled for lack
    /// of capacity, a Ready node joins at the API server's current version (labelled
    /// `karpenter.sh/nodepool: default`), with its NodeClaim when Karpenter's NodeClaim CRD
    /// is loaded; a deleted NodeClaim's node is terminated (its Node deleted).
    pub karpenter: bool,
    /// A cert-manager-like issuer (off by default): a `cert-manager.io/v1` Certificate whose
    /// secret is missing gets a new `kubernetes.io/tls` secret (placeholder PEM naming the
    /// issue) and a Ready status valid for 90 days, as cert-manager reissues a deleted one.
    pub cert_manager: bool,
    /// Time from binding to Running and Ready.
    pub pod_start_delay: Duration,
    /// Time a pod with `restartPolicy` Never or OnFailure runs before it succeeds.
    pub job_run_time: Duration,
    /// Upper bound between two passes when nothing changes.
    pub resync: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            deployments: true,
            replicasets: true,
            statefulsets: true,
            daemonsets: true,
            jobs: true,
            scheduler: true,
            kubelet: true,
            disruption_budgets: true,
            cloud: true,
            karpenter: false,
            cert_manager: false,
            pod_start_delay: Duration::from_millis(200),
            job_run_time: Duration::from_millis(200),
            resync: Duration::from_secs(5),
        }
    }
}

impl ControllerConfig {
    /// Every controller off: the server only stores what clients write.
    pub fn none() -> Self {
        ControllerConfig {
            deployments: false,
            replicasets: false,
            statefulsets: false,
            daemonsets: false,
            jobs: false,
            scheduler: false,
            kubelet: false,
            disruption_budgets: false,
            cloud: false,
            karpenter: false,
            ..Default::default()
        }
    }

    /// Fast settings for tests: pods start after 50 ms, jobs run 50 ms.
    pub fn fast() -> Self {
        ControllerConfig {
            pod_start_delay: Duration::from_millis(50),
            job_run_time: Duration::from_millis(50),
            ..Default::default()
        }
    }
}

/// Annotation on a pod (template) that keeps it Running but never Ready.
pub const NEVER_READY_ANNOTATION: &str = "kube-sim.dev/never-ready";
/// Annotation on a pod (template) that makes its containers crash-loop (never Ready,
/// `CrashLoopBackOff`, restarts counted).
pub const CRASH_LOOP_ANNOTATION: &str = "kube-sim.dev/crash-loop";
/// Annotation on a pod (template) with the exit code its containers finish with (job pods).
pub const EXIT_CODE_ANNOTATION: &str = "kube-sim.dev/exit-code";

const APPS: &str = "apps";

struct Types {
    pods: Arc<ResourceType>,
    nodes: Arc<ResourceType>,
    deployments: Arc<ResourceType>,
    replicasets: Arc<ResourceType>,
    statefulsets: Arc<ResourceType>,
    daemonsets: Arc<ResourceType>,
    jobs: Arc<ResourceType>,
    pdbs: Arc<ResourceType>,
    pvcs: Arc<ResourceType>,
    pvs: Arc<ResourceType>,
    services: Arc<ResourceType>,
    ingresses: Arc<ResourceType>,
}

impl Types {
    fn new(store: &Store) -> Types {
        let r = store.registry();
        let get = |g: &str, v: &str, p: &str| r.lookup(g, v, p).expect("built-in kind");
        Types {
            pods: get("", "v1", "pods"),
            nodes: get("", "v1", "nodes"),
            deployments: get(APPS, "v1", "deployments"),
            replicasets: get(APPS, "v1", "replicasets"),
            statefulsets: get(APPS, "v1", "statefulsets"),
            daemonsets: get(APPS, "v1", "daemonsets"),
            jobs: get("batch", "v1", "jobs"),
            pdbs: get("policy", "v1", "poddisruptionbudgets"),
            pvcs: get("", "v1", "persistentvolumeclaims"),
            pvs: get("", "v1", "persistentvolumes"),
            services: get("", "v1", "services"),
            ingresses: get("networking.k8s.io", "v1", "ingresses"),
        }
    }
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}
fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}
fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}

/// The uid of the controlling owner.
fn controller_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .and_then(|r| r["uid"].as_str())
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

/// Whether a pod counts as Ready.
pub fn pod_is_ready(pod: &Value) -> bool {
    !is_terminating(pod)
        && pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn pod_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Drops nulls and empty maps/lists, which clients add or omit at will (`resources: {}`,
/// `creationTimestamp: null`), so equal templates hash equally, as upstream's semantic
/// comparison treats them.
fn pruned(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let out: serde_json::Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| pruned(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => (!a.is_empty())
            .then(|| Value::Array(a.iter().map(|i| pruned(i).unwrap_or(Value::Null)).collect())),
        other => Some(other.clone()),
    }
}

/// A short stable hash of a pod template, as `pod-template-hash` and revision labels.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(
        pruned(template)
            .unwrap_or(Value::Null)
            .to_string()
            .as_bytes(),
    );
    digest
        .iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => {
                let scaled = total * p;
                if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                }
            }
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// `maxSurge` (rounded up) and `maxUnavailable` (rounded down) of a RollingUpdate strategy,
/// defaults 25% each; both zero means one unavailable, as upstream.
fn rolling_limits(strategy: &Value, desired: i64) -> (i64, i64) {
    let rolling = &strategy["rollingUpdate"];
    let or_default = |v: &Value| if v.is_null() { json!("25%") } else { v.clone() };
    let surge = int_or_percent(&or_default(&rolling["maxSurge"]), desired, true);
    let unavailable = int_or_percent(&or_default(&rolling["maxUnavailable"]), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change. Returns
/// the new list.
fn set_condition(
    conditions: &Value,
    ty: &str,
    status: bool,
    reason: &str,
    message: &str,
    with_update_time: bool,
) -> Value {
    let mut list = conditions.as_array().cloned().unwrap_or_default();
    let status_str = if status { "True" } else { "False" };
    let now = now_rfc3339();
    let pos = list.iter().position(|c| c["type"] == ty);
    let transition = match pos {
        Some(p) if list[p]["status"] == status_str => list[p]["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let unchanged = pos.is_some_and(|p| {
        list[p]["status"] == status_str
            && list[p]["reason"] == reason
            && list[p]["message"] == message
    });
    let mut cond = json!({"type": ty, "status": status_str, "reason": reason, "message": message, "lastTransitionTime": transition});
    if with_update_time {
        cond["lastUpdateTime"] = match pos {
            Some(p) if unchanged => list[p]["lastUpdateTime"].clone(),
            _ => json!(now),
        };
    }
    match pos {
        Some(p) => list[p] = cond,
        None => list.push(cond),
    }
    Value::Array(list)
}

/// Everything one pass needs, read once.
struct Snapshot {
    by_owner: HashMap<String, Vec<Arc<Value>>>,
}

impl Snapshot {
    fn take(store: &Store, t: &Types) -> Snapshot {
        let (pods, _) = store.list(&t.pods, None);
        let mut by_owner: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
        for p in &pods {
            if let Some(owner) = controller_uid(p) {
                by_owner
                    .entry(owner.to_string())
                    .or_default()
                    .push(p.clone());
            }
        }
        Snapshot { by_owner }
    }
    fn owned(&self, owner: &Value) -> Vec<Arc<Value>> {
        self.by_owner.get(uid(owner)).cloned().unwrap_or_default()
    }
}

pub(crate) struct Controllers {
    store: Arc<Store>,
    /// The version `/version` reports: new Karpenter nodes join at it.
    server_version: SharedVersion,
    /// Nodes the Karpenter-like provisioner launched so far (names them).
    launched: usize,
    config: ControllerConfig,
    types: Types,
    /// When the kubelet first saw a bound pod (by uid), and when a pod started running.
    bound_at: HashMap<String, Instant>,
    running_at: HashMap<String, Instant>,
    /// Runs the containers of the images it claims, when a test gave one.
    runtime: Option<Runtime>,
    runs: Runs,
}

/// How often the kubelet looks at a container running on the runtime's thread.
const RUN_POLL: Duration = Duration::from_millis(50);

fn ignore_conflicts(r: Result<Arc<Value>, ApiError>) {
    if let Err(e) = r {
        // A conflict or a vanished object is normal between passes; the next pass retries.
        tracing::debug!(error = %e, "kube-sim controller write skipped");
    }
}

impl Controllers {
    pub(crate) fn new(
        store: Arc<Store>,
        config: ControllerConfig,
        server_version: SharedVersion,
        runtime: Option<Runtime>,
    ) -> Controllers {
        let types = Types::new(&store);
        Controllers {
            store,
            server_version,
            launched: 0,
            config,
            types,
            bound_at: HashMap::new(),
            running_at: HashMap::new(),
            runtime,
            runs: Runs::default(),
        }
    }

    /// Runs until `shutdown` changes.
    pub(crate) async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let changed = self.store.changed();
        loop {
            let started = Instant::now();
            let next = self.reconcile();
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "kube-sim controller pass"
            );
            let wait = next.map_or(self.config.resync, |n| n.min(self.config.resync));
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            // Let a burst of writes land before the next pass.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One pass of every enabled controller; returns the time until a kubelet timer fires.
    pub(crate) fn reconcile(&mut self) -> Option<Duration> {
        /// Runs one controller, logging its time at trace level (`RUST_LOG=kube_sim=trace`).
        macro_rules! timed {
            ($name:literal, $call:expr) => {{
                let started = Instant::now();
                let out = $call;
                tracing::trace!(
                    controller = $name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kube-sim controller"
                );
                out
            }};
        }
        let c = self.config.clone();
        if c.deployments {
            timed!("deployments", self.deployments());
        }
        if c.replicasets || c.statefulsets || c.daemonsets || c.jobs {
            // One read of the pods serves the pod-owning controllers: they own disjoint
            // pods, and what one creates in this pass the next pass sees.
            let snap = timed!("snapshot", Snapshot::take(&self.store, &self.types));
            if c.replicasets {
                timed!("replicasets", self.replicasets(&snap));
            }
            if c.statefulsets {
                timed!("statefulsets", self.statefulsets(&snap));
            }
            if c.daemonsets {
                timed!("daemonsets", self.daemonsets(&snap));
            }
            if c.jobs {
                timed!("jobs", self.jobs(&snap));
            }
        }
        if c.scheduler {
            timed!("scheduler", self.schedule());
        }
        let next = if c.kubelet {
            timed!("kubelet", self.kubelet())
        } else {
            None
        };
        if c.disruption_budgets {
            timed!("disruption_budgets", self.disruption_budgets());
        }
        if c.cloud {
            timed!("cloud", self.cloud());
        }
        if c.kubelet || c.karpenter {
            timed!("pod_gc", self.pod_gc());
        }
        if c.karpenter {
            timed!("karpenter", self.karpenter());
        }
        if c.cert_manager {
            timed!("cert_manager", self.cert_manager());
        }
        next
    }

    fn write_status(&self, ty: &ResourceType, obj: &Value, status: Value) {
        if obj["status"] == status {
            return;
        }
        ignore_conflicts(self.store.mutate(
            ty,
            Some(namespace(obj)).filter(|n| !n.is_empty()),
            name(obj),
            Target::Status,
            &WriteOptions::default(),
            |o| {
                o["status"] = status;
                Ok(())
            },
        ));
    }

    /// Read-modify-write of `obj` as stored now; a conflict or a vanished object is left to
    /// the next pass.
    fn edit(&self, ty: &ResourceType, obj: &Value, target: Target, f: impl FnOnce(&mut Value)) {
        let ns = Some(namespace(obj)).filter(|n| !n.is_empty());
        ignore_conflicts(self.store.mutate(
            ty,
            ns,
            name(obj),
            target,
            &WriteOptions::default(),
            |o| {
                f(o);
                Ok(())
            },
        ));
    }

    /// Records a core/v1 Event about `obj`, as the named component would.
    fn event(&self, obj: &Value, warning: bool, reason: &str, component: &str, message: String) {
        let Some(events) = self.store.registry().lookup("", "v1", "events") else {
            return;
        };
        let ns = match namespace(obj) {
            "" => "default",
            ns => ns,
        };
        let now = now_rfc3339();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{}", name(obj), self.store.random_suffix(16)), "namespace": ns},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name(obj), "namespace": obj["metadata"]["namespace"],
                               "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]},
            "reason": reason, "message": message, "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let _ = self
            .store
            .create(&events, Some(ns), event, &WriteOptions::default());
    }

    fn create_pod(
        &self,
        template: &Value,
        owner: &Value,
        pod_name: &str,
        extra_labels: &[(&str, String)],
        node: Option<&str>,
    ) {
        let mut labels = template["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        for (k, v) in extra_labels {
            labels[*k] = json!(v);
        }
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace(owner), "labels": labels, "ownerReferences": [owner_ref(owner)]},
            "spec": template["spec"].clone(),
        });
        if let Some(a) = template["metadata"]["annotations"].as_object() {
            pod["metadata"]["annotations"] = json!(a);
        }
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        match self.store.create(
            &self.types.pods,
            Some(namespace(owner)),
            pod,
            &WriteOptions::default(),
        ) {
            Ok(_) => {
                let component = format!(
                    "{}-controller",
                    owner["kind"].as_str().unwrap_or_default().to_lowercase()
                );
                self.event(
                    owner,
                    false,
                    "SuccessfulCreate",
                    &component,
                    format!("Created pod: {pod_name}"),
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, pod = pod_name, "kube-sim could not create a pod")
            }
        }
    }

    fn delete_pod(&self, pod: &Value) {
        let _ = self.store.delete(
            &self.types.pods,
            Some(namespace(pod)),
            name(pod),
            Propagation::Background,
            &WriteOptions::default(),
        );
    }

    fn deployments(&mut self) {
        let t = &self.types;
        let (deployments, _) = self.store.list(&t.deployments, None);
        let (all_rs, _) = self.store.list(&t.replicasets, None);
        // Indexed once per pass: a scan per Deployment is quadratic at 1,000 Deployments.
        let mut rs_by_owner: HashMap<&str, Vec<&Arc<Value>>> = HashMap::new();
        for rs in &all_rs {
            if let Some(owner) = controller_uid(rs) {
                rs_by_owner.entry(owner).or_default().push(rs);
            }
        }
        for d in deployments.iter().filter(|d| !is_terminating(d)) {
            let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let template = &d["spec"]["template"];
            let hash = template_hash(template);
            let owned: Vec<&Arc<Value>> = rs_by_owner.get(uid(d)).cloned().unwrap_or_default();
            let revision = |rs: &Value| -> i64 {
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0)
            };
            let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
            let new_rs = owned.iter().find(|rs| {
                rs["metadata"]["labels"]["pod-template-hash"].as_str() == Some(hash.as_str())
            });
            let strategy = &d["spec"]["strategy"];
            let recreate = strategy["type"] == "Recreate";
            let (max_surge, max_unavailable) = rolling_limits(strategy, desired);
            let old_spec_total: i64 = owned
                .iter()
                .filter(|rs| {
                    rs["metadata"]["labels"]["pod-template-hash"].as_str() != Some(hash.as_str())
                })
                .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
                .sum();
            let initial = if recreate {
                if old_spec_total == 0 { desired } else { 0 }
            } else {
                (desired + max_surge - old_spec_total).clamp(0, desired)
            };
            let new_rs: Arc<Value> = match new_rs {
                Some(rs) => {
                    let rs = (*rs).clone();
                    if revision(&rs) < max_revision {
                        // Rolling back to an old template makes its ReplicaSet the newest.
                        let rev = max_revision + 1;
                        match self.store.mutate(
                            &t.replicasets,
                            Some(namespace(&rs)),
                            name(&rs),
                            Target::Main,
                            &WriteOptions::default(),
                            |o| {
                                o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                                    json!(rev.to_string());
                                Ok(())
                            },
                        ) {
                            Ok(updated) => updated,
                            Err(_) => continue,
                        }
                    } else {
                        rs
                    }
                }
                None => {
                    let mut rs_template = template.clone();
                    rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut selector = d["spec"]["selector"].clone();
                    selector["matchLabels"]["pod-template-hash"] = json!(hash);
                    let rs = json!({
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {
                            "name": format!("{}-{hash}", name(d)), "namespace": namespace(d),
                            "labels": rs_template["metadata"]["labels"].clone(),
                            "annotations": {"deployment.kubernetes.io/revision": (max_revision + 1).to_string(),
                                            "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                            "ownerReferences": [owner_ref(d)],
                        },
                        "spec": {"replicas": initial, "selector": selector, "template": rs_template,
                                 "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0)},
                    });
                    match self.store.create(
                        &t.replicasets,
                        Some(namespace(d)),
                        rs,
                        &WriteOptions::default(),
                    ) {
                        Ok(rs) => {
                            self.event(
                                d,
                                false,
                                "ScalingReplicaSet",
                                "deployment-controller",
                                format!("Scaled up replica set {} from 0 to {initial}", name(&rs)),
                            );
                            rs
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "kube-sim could not create a ReplicaSet");
                            continue;
                        }
                    }
                }
            };
            let olds: Vec<&Arc<Value>> = owned
                .iter()
                .copied()
                .filter(|rs| uid(rs) != uid(&new_rs))
                .collect();
            self.scale_rollout(
                d,
                &new_rs,
                &olds,
                desired,
                recreate,
                max_surge,
                max_unavailable,
            );
            let limit = d["spec"]["revisionHistoryLimit"]
                .as_i64()
                .unwrap_or(10)
                .max(0) as usize;
            let mut idle: Vec<&&Arc<Value>> = olds
                .iter()
                .filter(|rs| {
                    rs["status"]["replicas"].as_i64().unwrap_or(0) == 0
                        && rs["spec"]["replicas"].as_i64() == Some(0)
                })
                .collect();
            idle.sort_by_key(|rs| revision(rs));
            if idle.len() > limit {
                for rs in &idle[..idle.len() - limit] {
                    let _ = self.store.delete(
                        &t.replicasets,
                        Some(namespace(rs)),
                        name(rs),
                        Propagation::Background,
                        &WriteOptions::default(),
                    );
                }
            }
            let sum = |field: &str| -> i64 {
                owned
                    .iter()
                    .map(|rs| rs["status"][field].as_i64().unwrap_or(0))
                    .sum::<i64>()
            };
            let (replicas, ready, available) = (
                sum("replicas"),
                sum("readyReplicas"),
                sum("availableReplicas"),
            );
            let updated = new_rs["status"]["replicas"].as_i64().unwrap_or(0);
            let max_unavailable = int_or_percent(
                &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
                desired,
                false,
            );
            let available_ok = available >= desired - max_unavailable;
            let complete = updated == desired
                && replicas == desired
                && available == desired
                && new_rs["status"]["observedGeneration"] == new_rs["metadata"]["generation"];
            let mut conditions = set_condition(
                &d["status"]["conditions"],
                "Available",
                available_ok,
                if available_ok {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
                if available_ok {
                    "Deployment has minimum availability."
                } else {
                    "Deployment does not have minimum availability."
                },
                true,
            );
            conditions = set_condition(
                &conditions,
                "Progressing",
                true,
                if complete {
                    "NewReplicaSetAvailable"
                } else {
                    "ReplicaSetUpdated"
                },
                &if complete {
                    format!(
                        "ReplicaSet \"{}\" has successfully progressed.",
                        name(&new_rs)
                    )
                } else {
                    format!("ReplicaSet \"{}\" is progressing.", name(&new_rs))
                },
                true,
            );
            let mut status = json!({
                "observedGeneration": d["metadata"]["generation"],
                "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
                "availableReplicas": available, "conditions": conditions,
            });
            if desired - available > 0 {
                status["unavailableReplicas"] = json!(desired - available);
            }
            let rev =
                new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
            if d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] != rev {
                self.edit(&t.deployments, d, Target::Main, |o| {
                    o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = rev;
                });
            }
            let current = self.store.get(&t.deployments, Some(namespace(d)), name(d));
            if let Ok(current) = current {
                self.write_status(&t.deployments, &current, status);
            }
        }
    }

    fn scale_rs(&self, d: &Value, rs: &Value, to: i64) {
        let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
        if from == to {
            return;
        }
        self.edit(&self.types.replicasets, rs, Target::Main, |o| {
            o["spec"]["replicas"] = json!(to)
        });
        let verb = if to > from { "up" } else { "down" };
        self.event(
            d,
            false,
            "ScalingReplicaSet",
            "deployment-controller",
            format!("Scaled {verb} replica set {} from {from} to {to}", name(rs)),
        );
    }

    /// One step of a rollout. RollingUpdate: the new ReplicaSet grows while the total stays
    /// within `desired + maxSurge`, old ones shrink while availability stays at least
    /// `desired - maxUnavailable` (their unavailable pods go first). Recreate: old ones go
    /// to zero, then the new one scales up.
    #[allow(clippy::too_many_arguments)]
    fn scale_rollout(
        &self,
        d: &Value,
        new_rs: &Value,
        olds: &[&Arc<Value>],
        desired: i64,
        recreate: bool,
        max_surge: i64,
        max_unavailable: i64,
    ) {
        let spec = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let available = |rs: &Value| rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
        let new_spec = spec(new_rs);
        if recreate {
            for old in olds {
                self.scale_rs(d, old, 0);
            }
            let old_pods: i64 = olds
                .iter()
                .map(|rs| rs["status"]["replicas"].as_i64().unwrap_or(0) + spec(rs))
                .sum();
            self.scale_rs(d, new_rs, if old_pods == 0 { desired } else { 0 });
            return;
        }
        let old_total: i64 = olds.iter().map(|rs| spec(rs)).sum();
        let target = if new_spec >= desired {
            desired
        } else {
            (new_spec + (desired + max_surge - new_spec - old_total).max(0)).min(desired)
        };
        self.scale_rs(d, new_rs, target);
        let available_total: i64 =
            available(new_rs) + olds.iter().map(|rs| available(rs)).sum::<i64>();
        let mut budget = (available_total - (desired - max_unavailable)).max(0);
        let mut olds: Vec<&&Arc<Value>> = olds.iter().collect();
        olds.sort_by_key(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or(0)
        });
        for old in olds {
            let size = spec(old);
            if size == 0 {
                continue;
            }
            let unhealthy = (size - available(old)).max(0);
            let remove = (unhealthy + budget).min(size);
            budget -= (remove - unhealthy).max(0);
            self.scale_rs(d, old, size - remove);
        }
    }

    fn replicasets(&mut self, snap: &Snapshot) {
        let t = &self.types;
        let (all, _) = self.store.list(&t.replicasets, None);
        for rs in all.iter().filter(|rs| !is_terminating(rs)) {
            let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
            let mut pods: Vec<Arc<Value>> = snap
                .owned(rs)
                .into_iter()
                .filter(|p| !is_terminating(p) && !pod_finished(p))
                .collect();
            if pods.len() < desired {
                for _ in pods.len()..desired {
                    let pod_name = format!("{}-{}", name(rs), self.store.random_suffix(5));
                    self.create_pod(&rs["spec"]["template"], rs, &pod_name, &[], None);
                }
            } else if pods.len() > desired {
                // Delete the least useful first: unscheduled, then not ready, then newest.
                pods.sort_by_key(|p| {
                    (
                        p["spec"]["nodeName"].is_string(),
                        pod_is_ready(p),
                        std::cmp::Reverse(
                            p["metadata"]["creationTimestamp"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ),
                    )
                });
                for p in &pods[..pods.len() - desired] {
                    self.delete_pod(p);
                }
                pods.drain(..pods.len() - desired);
            }
            let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
            let status = json!({
                "replicas": pods.len(), "fullyLabeledReplicas": pods.len(), "readyReplicas": ready,
                "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"],
            });
            self.write_status(&t.replicasets, rs, status);
        }
    }

    fn statefulsets(&mut self, snap: &Snapshot) {
        let t = &self.types;
        let (all, _) = self.store.list(&t.statefulsets, None);
        for sts in all.iter().filter(|s| !is_terminating(s)) {
            let desired = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
            let revision = format!("{}-{}", name(sts), template_hash(&sts["spec"]["template"]));
            let pods: Vec<Arc<Value>> = snap
                .owned(sts)
                .into_iter()
                .filter(|p| !is_terminating(p))
                .collect();
            let ordinal = |p: &Value| -> i64 {
                name(p)
                    .rsplit('-')
                    .next()
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(-1)
            };
            for i in 0..desired {
                if !pods.iter().any(|p| ordinal(p) == i) {
                    let pod_name = format!("{}-{i}", name(sts));
                    self.create_pod(
                        &sts["spec"]["template"],
                        sts,
                        &pod_name,
                        &[
                            ("controller-revision-hash", revision.clone()),
                            ("apps.kubernetes.io/pod-index", i.to_string()),
                            ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                        ],
                        None,
                    );
                }
            }
            for p in pods.iter().filter(|p| ordinal(p) >= desired) {
                self.delete_pod(p);
            }
            let live: Vec<&Arc<Value>> = pods.iter().filter(|p| ordinal(p) < desired).collect();
            let all_ready = live.len() as i64 == desired && live.iter().all(|p| pod_is_ready(p));
            if all_ready
                && let Some(stale) = live
                    .iter()
                    .filter(|p| {
                        p["metadata"]["labels"]["controller-revision-hash"].as_str()
                            != Some(revision.as_str())
                    })
                    .max_by_key(|p| ordinal(p))
            {
                // Rolling update: one pod at a time, highest ordinal first.
                self.delete_pod(stale);
            }
            let updated = live
                .iter()
                .filter(|p| {
                    p["metadata"]["labels"]["controller-revision-hash"].as_str()
                        == Some(revision.as_str())
                })
                .count() as i64;
            let ready = live.iter().filter(|p| pod_is_ready(p)).count();
            let current_revision = if updated == desired {
                revision.clone()
            } else {
                sts["status"]["currentRevision"]
                    .as_str()
                    .unwrap_or(&revision)
                    .to_string()
            };
            let status = json!({
                "observedGeneration": sts["metadata"]["generation"], "replicas": live.len(), "readyReplicas": ready,
                "currentReplicas": if updated == desired { updated } else { live.len() as i64 - updated }, "updatedReplicas": updated, "availableReplicas": ready,
                "currentRevision": current_revision, "updateRevision": revision, "collisionCount": 0,
            });
            self.write_status(&t.statefulsets, sts, status);
        }
    }

    fn daemonsets(&mut self, snap: &Snapshot) {
        let t = &self.types;
        let (all, _) = self.store.list(&t.daemonsets, None);
        let (nodes, _) = self.store.list(&t.nodes, None);
        for ds in all.iter().filter(|d| !is_terminating(d)) {
            let template = &ds["spec"]["template"];
            let hash = template_hash(template);
            let eligible: Vec<&Arc<Value>> = nodes
                .iter()
                .filter(|n| {
                    node_ready(n)
                        && tolerates_taints(&template["spec"], n, true)
                        && node_selector_matches(&template["spec"], n)
                })
                .collect();
            let pods: Vec<Arc<Value>> = snap
                .owned(ds)
                .into_iter()
                .filter(|p| !is_terminating(p))
                .collect();
            for n in &eligible {
                if !pods
                    .iter()
                    .any(|p| p["spec"]["nodeName"].as_str() == Some(name(n)))
                {
                    let pod_name = format!("{}-{}", name(ds), self.store.random_suffix(5));
                    self.create_pod(
                        template,
                        ds,
                        &pod_name,
                        &[
                            ("controller-revision-hash", hash.clone()),
                            (
                                "pod-template-generation",
                                ds["metadata"]["generation"].to_string(),
                            ),
                        ],
                        Some(name(n)),
                    );
                }
            }
            let eligible_names: HashSet<&str> = eligible.iter().map(|n| name(n)).collect();
            for p in &pods {
                if !eligible_names.contains(p["spec"]["nodeName"].as_str().unwrap_or_default()) {
                    self.delete_pod(p);
                }
            }
            let on_nodes: Vec<&Arc<Value>> = pods
                .iter()
                .filter(|p| {
                    eligible_names.contains(p["spec"]["nodeName"].as_str().unwrap_or_default())
                })
                .collect();
            let all_ready = on_nodes.iter().all(|p| pod_is_ready(p));
            if all_ready
                && let Some(stale) = on_nodes.iter().find(|p| {
                    p["metadata"]["labels"]["controller-revision-hash"].as_str()
                        != Some(hash.as_str())
                })
            {
                self.delete_pod(stale);
            }
            let ready = on_nodes.iter().filter(|p| pod_is_ready(p)).count();
            let updated = on_nodes
                .iter()
                .filter(|p| {
                    p["metadata"]["labels"]["controller-revision-hash"].as_str()
                        == Some(hash.as_str())
                })
                .count();
            let status = json!({
                "observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": eligible.len(),
                "currentNumberScheduled": on_nodes.len(), "numberMisscheduled": 0, "numberReady": ready,
                "numberAvailable": ready, "updatedNumberScheduled": updated,
            });
            self.write_status(&t.daemonsets, ds, status);
        }
    }

    fn jobs(&mut self, snap: &Snapshot) {
        let t = &self.types;
        let (all, _) = self.store.list(&t.jobs, None);
        for job in all.iter().filter(|j| !is_terminating(j)) {
            let finished = job["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                })
            });
            if finished {
                continue;
            }
            let pods = snap.owned(job);
            if job["spec"]["suspend"].as_bool() == Some(true) {
                // As upstream: a suspended Job's running pods are deleted, and it says so.
                for pod in pods
                    .iter()
                    .filter(|p| !pod_finished(p) && !is_terminating(p))
                {
                    self.delete_pod(pod);
                }
                let conditions = set_condition(
                    &job["status"]["conditions"],
                    "Suspended",
                    true,
                    "JobSuspended",
                    "Job suspended",
                    false,
                );
                if job["status"]["active"] != 0 || conditions != job["status"]["conditions"] {
                    let mut status = job["status"].clone();
                    status["active"] = json!(0);
                    status["conditions"] = conditions;
                    self.write_status(&t.jobs, job, status);
                }
                continue;
            }
            let succeeded = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Succeeded")
                .count() as i64;
            let failed = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Failed")
                .count() as i64;
            let active: Vec<&Arc<Value>> = pods
                .iter()
                .filter(|p| !pod_finished(p) && !is_terminating(p))
                .collect();
            let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
            let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1);
            let backoff = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
            let now = now_rfc3339();
            let start = job["status"]["startTime"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| now.clone());
            let mut status = json!({"startTime": start, "active": active.len(), "succeeded": succeeded, "failed": failed,
                                    "ready": active.iter().filter(|p| pod_is_ready(p)).count(), "terminating": 0});
            if succeeded >= completions {
                let mut c = set_condition(
                    &job["status"]["conditions"],
                    "SuccessCriteriaMet",
                    true,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    false,
                );
                c = set_condition(
                    &c,
                    "Complete",
                    true,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    false,
                );
                status["conditions"] = c;
                status["completionTime"] = json!(now);
                status["active"] = json!(0);
                if let Some(m) = status.as_object_mut() {
                    m.remove("ready");
                }
            } else if failed > backoff {
                let mut c = set_condition(
                    &job["status"]["conditions"],
                    "FailureTarget",
                    true,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    false,
                );
                c = set_condition(
                    &c,
                    "Failed",
                    true,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    false,
                );
                status["conditions"] = c;
            } else {
                let want = (completions - succeeded).min(parallelism) - active.len() as i64;
                for _ in 0..want.max(0) {
                    let pod_name = format!("{}-{}", name(job), self.store.random_suffix(5));
                    self.create_pod(&job["spec"]["template"], job, &pod_name, &[], None);
                }
                if !job["status"]["conditions"].is_null() {
                    status["conditions"] = job["status"]["conditions"].clone();
                }
            }
            // startTime must not flap between passes.
            if job["status"]["startTime"].is_null() || job["status"] != status {
                self.write_status(&t.jobs, job, status);
            }
        }
    }

    fn schedule(&mut self) {
        let t = &self.types;
        let (pods, _) = self.store.list(&t.pods, None);
        let pending: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| {
                !p["spec"]["nodeName"].is_string() && !is_terminating(p) && !pod_finished(p)
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let (nodes, _) = self.store.list(&t.nodes, None);
        // Requested cpu (millicores), memory (bytes) and pod count per node.
        let mut used: HashMap<String, (f64, f64, i64)> = HashMap::new();
        for p in pods.iter().filter(|p| !pod_finished(p)) {
            if let Some(n) = p["spec"]["nodeName"].as_str() {
                let (cpu, mem) = pod_requests(p);
                let e = used.entry(n.to_string()).or_default();
                e.0 += cpu;
                e.1 += mem;
                e.2 += 1;
            }
        }
        for pod in pending {
            let mut reasons: HashMap<&'static str, usize> = HashMap::new();
            let (cpu, mem) = pod_requests(pod);
            let mut best: Option<(f64, &Arc<Value>)> = None;
            for n in &nodes {
                let reason = if !node_ready(n) {
                    Some("node(s) were not ready")
                } else if n["spec"]["unschedulable"].as_bool() == Some(true) {
                    Some("node(s) were unschedulable")
                } else if !tolerates_taints(&pod["spec"], n, false) {
                    Some("node(s) had untolerated taint(s)")
                } else if !node_selector_matches(&pod["spec"], n) {
                    Some("node(s) didn't match Pod's node affinity/selector")
                } else {
                    let alloc = &n["status"]["allocatable"];
                    let (ucpu, umem, upods) = used.get(name(n)).copied().unwrap_or_default();
                    let acpu = parse_quantity(alloc["cpu"].as_str().unwrap_or("0")) * 1000.0;
                    let amem = parse_quantity(alloc["memory"].as_str().unwrap_or("0"));
                    let apods = parse_quantity(alloc["pods"].as_str().unwrap_or("110")) as i64;
                    if ucpu + cpu > acpu {
                        Some("Insufficient cpu")
                    } else if umem + mem > amem {
                        Some("Insufficient memory")
                    } else if upods + 1 > apods {
                        Some("Too many pods")
                    } else {
                        let score = if acpu > 0.0 { (ucpu + cpu) / acpu } else { 1.0 }
                            + upods as f64 * 1e-6;
                        if best.is_none_or(|(s, _)| score < s) {
                            best = Some((score, n));
                        }
                        None
                    }
                };
                if let Some(r) = reason {
                    *reasons.entry(r).or_default() += 1;
                }
            }
            match best {
                Some((_, node)) => {
                    let node_name = name(node).to_string();
                    let e = used.entry(node_name.clone()).or_default();
                    e.0 += cpu;
                    e.1 += mem;
                    e.2 += 1;
                    self.edit(&t.pods, pod, Target::Main, |o| {
                        o["spec"]["nodeName"] = json!(node_name);
                    });
                    self.event(
                        pod,
                        false,
                        "Scheduled",
                        "default-scheduler",
                        format!(
                            "Successfully assigned {}/{} to {node_name}",
                            namespace(pod),
                            name(pod)
                        ),
                    );
                    self.edit(&t.pods, pod, Target::Status, |o| {
                        o["status"]["conditions"] = set_condition(
                            &o["status"]["conditions"],
                            "PodScheduled",
                            true,
                            "",
                            "",
                            false,
                        );
                    });
                }
                None => {
                    let mut parts: Vec<String> =
                        reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                    parts.sort();
                    let message = format!(
                        "0/{} nodes are available: {}.",
                        nodes.len(),
                        parts.join(", ")
                    );
                    let conditions = set_condition(
                        &pod["status"]["conditions"],
                        "PodScheduled",
                        false,
                        "Unschedulable",
                        &message,
                        false,
                    );
                    if conditions != pod["status"]["conditions"] {
                        self.edit(&t.pods, pod, Target::Status, |o| {
                            o["status"]["conditions"] = conditions;
                        });
                        self.event(pod, true, "FailedScheduling", "default-scheduler", message);
                    }
                }
            }
        }
    }

    fn kubelet(&mut self) -> Option<Duration> {
        let pods_ty = Arc::clone(&self.types.pods);
        let (pods, _) = self.store.list(&pods_ty, None);
        let (nodes, _) = self.store.list(&self.types.nodes, None);
        let node_ready_by_name: HashMap<&str, bool> =
            nodes.iter().map(|n| (name(n), node_ready(n))).collect();
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        let mut seen = HashSet::new();
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        for pod in &pods {
            let Some(node) = pod["spec"]["nodeName"].as_str() else {
                continue;
            };
            let Some(&node_is_ready) = node_ready_by_name.get(node) else {
                continue;
            };
            if is_terminating(pod) {
                continue;
            }
            let id = uid(pod).to_string();
            seen.insert(id.clone());
            match pod["status"]["phase"].as_str() {
                Some("Pending") | None => {
                    let bound = *self.bound_at.entry(id.clone()).or_insert(now);
                    let due = bound + self.config.pod_start_delay;
                    if now >= due {
                        let claimed = self.runtime.as_ref().and_then(|runtime| {
                            ContainerStart::of(pod, &self.store)
                                .filter(|c| runtime.0.runs(&c.image))
                                .map(|c| (runtime.clone(), c))
                        });
                        let never_ready =
                            pod["metadata"]["annotations"][NEVER_READY_ANNOTATION] == "true";
                        let ip = allocate_pod_ip(&self.store);
                        let host_ip = nodes
                            .iter()
                            .find(|n| name(n) == node)
                            .and_then(|n| n["status"]["addresses"][0]["address"].as_str())
                            .unwrap_or("10.0.0.1")
                            .to_string();
                        if let Some((runtime, container)) = claimed {
                            // Started, not Ready: the runtime's run decides what comes next.
                            let status = running_status(pod, &ip, &host_ip, false);
                            self.edit(&pods_ty, pod, Target::Status, |o| {
                                o["status"] = status;
                            });
                            self.event(
                                pod,
                                false,
                                "Started",
                                "kubelet",
                                "Started container".into(),
                            );
                            self.runs.start(&runtime, &self.store, &id, container);
                            self.running_at.insert(id.clone(), now);
                            soonest(RUN_POLL);
                            continue;
                        }
                        let crash = pod["metadata"]["annotations"][CRASH_LOOP_ANNOTATION] == "true";
                        let mut status = running_status(pod, &ip, &host_ip, !never_ready && !crash);
                        if crash {
                            crash_loop(&mut status);
                            self.event(
                                pod,
                                true,
                                "BackOff",
                                "kubelet",
                                "Back-off restarting failed container".into(),
                            );
                        } else {
                            self.event(
                                pod,
                                false,
                                "Started",
                                "kubelet",
                                "Started container".into(),
                            );
                        }
                        self.edit(&pods_ty, pod, Target::Status, |o| {
                            o["status"] = status;
                        });
                        self.running_at.insert(id.clone(), now);
                        if pod["spec"]["restartPolicy"] != "Always" {
                            soonest(self.config.job_run_time);
                        }
                    } else {
                        soonest(due - now);
                    }
                }
                Some("Running") if self.runs.by_pod.contains_key(&id) => {
                    if let Some(wait) = self.runtime_pass(pod, &id, node_is_ready, now) {
                        soonest(wait);
                    }
                }
                Some("Running") if pod["spec"]["restartPolicy"] == "Always" => {
                    // The node lifecycle controller marks pods of a NotReady node not Ready;
                    // they come back when the node does.
                    let healthy = pod["metadata"]["annotations"][NEVER_READY_ANNOTATION] != "true"
                        && pod["metadata"]["annotations"][CRASH_LOOP_ANNOTATION] != "true";
                    let want = node_is_ready && healthy;
                    if pod_is_ready(pod) != want {
                        self.edit(&pods_ty, pod, Target::Status, |o| {
                            let reason = if want { "" } else { "NodeNotReady" };
                            let mut c = set_condition(
                                &o["status"]["conditions"],
                                "Ready",
                                want,
                                reason,
                                "",
                                false,
                            );
                            c = set_condition(&c, "ContainersReady", want, reason, "", false);
                            o["status"]["conditions"] = c;
                            if let Some(list) = o["status"]["containerStatuses"].as_array_mut() {
                                for cs in list {
                                    cs["ready"] = json!(want);
                                }
                            }
                        });
                    }
                }
                Some("Running") if pod["spec"]["restartPolicy"] != "Always" => {
                    let started = *self.running_at.entry(id.clone()).or_insert(now);
                    let due = started + self.config.job_run_time;
                    if now >= due {
                        let code: i64 = pod["metadata"]["annotations"][EXIT_CODE_ANNOTATION]
                            .as_str()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let status = finished_status(pod, code);
                        self.edit(&pods_ty, pod, Target::Status, |o| {
                            o["status"] = status;
                        });
                    } else {
                        soonest(due - now);
                    }
                }
                _ => {}
            }
        }
        self.bound_at.retain(|k, _| seen.contains(k));
        self.running_at.retain(|k, _| seen.contains(k));
        self.runs.by_pod.retain(|k, _| seen.contains(k));
        self.runs.restarts.retain(|k, _| seen.contains(k));
        next
    }

    /// One kubelet look at a pod whose container the runtime runs; returns when to look again.
    fn runtime_pass(
        &mut self,
        pod: &Value,
        id: &str,
        node_is_ready: bool,
        now: Instant,
    ) -> Option<Duration> {
        let pods = Arc::clone(&self.types.pods);
        if let Some(code) = self.runs.finished(id) {
            if pod["spec"]["restartPolicy"] != "Always" {
                let status = finished_status(pod, i64::from(code));
                self.edit(&pods, pod, Target::Status, |o| o["status"] = status);
                return None;
            }
            if code == 0 {
                self.runs.by_pod.insert(id.to_string(), Run::Serving);
                self.edit(&pods, pod, Target::Status, |o| {
                    set_pod_ready(o, node_is_ready);
                    for cs in o["status"]["containerStatuses"]
                        .as_array_mut()
                        .into_iter()
                        .flatten()
                    {
                        cs["started"] = json!(true);
                        cs["state"] = json!({"running": {"startedAt": now_rfc3339()}});
                    }
                });
                return None;
            }
            let restarts = self.runs.restarts.entry(id.to_string()).or_insert(0);
            *restarts += 1;
            let restarts = *restarts;
            self.edit(&pods, pod, Target::Status, |o| {
                set_pod_ready(o, false);
                let now = now_rfc3339();
                for cs in o["status"]["containerStatuses"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    cs["started"] = json!(false);
                    cs["restartCount"] = json!(restarts);
                    cs["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}});
                    cs["lastState"] = json!({"terminated": {"exitCode": code, "reason": "Error", "startedAt": now, "finishedAt": now}});
                }
            });
            self.event(
                pod,
                true,
                "BackOff",
                "kubelet",
                "Back-off restarting failed container".into(),
            );
            self.runs.by_pod.insert(
                id.to_string(),
                Run::Crashed {
                    again_at: now + RESTART_BACKOFF,
                },
            );
            return Some(RESTART_BACKOFF);
        }
        match self.runs.by_pod.get(id) {
            Some(Run::Running(_)) => Some(RUN_POLL),
            Some(Run::Serving) => {
                if pod_is_ready(pod) != node_is_ready {
                    self.edit(&pods, pod, Target::Status, |o| {
                        set_pod_ready(o, node_is_ready)
                    });
                }
                None
            }
            Some(Run::Crashed { again_at }) if now < *again_at => Some(*again_at - now),
            Some(Run::Crashed { .. }) => {
                let runtime = self.runtime.clone()?;
                let container = ContainerStart::of(pod, &self.store)?;
                self.runs.start(&runtime, &self.store, id, container);
                Some(RUN_POLL)
            }
            None => None,
        }
    }

    fn cloud(&mut self) {
        let t = &self.types;
        let (claims, _) = self.store.list(&t.pvcs, None);
        for pvc in claims
            .iter()
            .filter(|c| c["status"]["phase"] != "Bound" && !is_terminating(c))
        {
            let volume = format!("pvc-{}", uid(pvc));
            let storage = pvc["spec"]["resources"]["requests"]["storage"].clone();
            let pv = json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume, "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
                "spec": {"capacity": {"storage": storage}, "accessModes": pvc["spec"]["accessModes"], "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": pvc["spec"]["storageClassName"],
                         "claimRef": {"kind": "PersistentVolumeClaim", "namespace": namespace(pvc), "name": name(pvc), "uid": uid(pvc)}},
                "status": {"phase": "Bound"},
            });
            let _ = self
                .store
                .create(&t.pvs, None, pv, &WriteOptions::default());
            self.edit(&t.pvcs, pvc, Target::Main, |o| {
                o["spec"]["volumeName"] = json!(volume)
            });
            self.edit(&t.pvcs, pvc, Target::Status, |o| {
                o["status"] = json!({"phase": "Bound", "accessModes": o["spec"]["accessModes"].clone(), "capacity": {"storage": storage}});
            });
        }
        let hostname = |obj: &Value| {
            format!(
                "{}-{}.elb.us-east-1.amazonaws.com",
                name(obj),
                &template_hash(&json!(uid(obj)))[..8]
            )
        };
        let (services, _) = self.store.list(&t.services, None);
        for svc in services.iter().filter(|s| {
            s["spec"]["type"] == "LoadBalancer" && s["status"]["loadBalancer"]["ingress"].is_null()
        }) {
            let host = hostname(svc);
            self.edit(&t.services, svc, Target::Status, |o| {
                o["status"]["loadBalancer"] = json!({"ingress": [{"hostname": host}]})
            });
        }
        let (ingresses, _) = self.store.list(&t.ingresses, None);
        for ing in ingresses
            .iter()
            .filter(|i| i["status"]["loadBalancer"]["ingress"].is_null())
        {
            let host = hostname(ing);
            self.edit(&t.ingresses, ing, Target::Status, |o| {
                o["status"]["loadBalancer"] = json!({"ingress": [{"hostname": host}]})
            });
        }
    }

    /// Karpenter's side of a node rollout: capacity for pods the scheduler could not place,
    /// and the pods of deleted nodes removed.
    fn cert_manager(&mut self) {
        let registry = self.store.registry();
        let (Some(certificates), Some(secrets)) = (
            registry.lookup_kind("cert-manager.io/v1", "Certificate"),
            registry.lookup_kind("v1", "Secret"),
        ) else {
            return;
        };
        let (list, _) = self.store.list(&certificates, None);
        for certificate in list.iter() {
            let ns = namespace(certificate);
            let Some(secret_name) = certificate["spec"]["secretName"].as_str() else {
                continue;
            };
            if self.store.get(&secrets, Some(ns), secret_name).is_ok() {
                continue;
            }
            let revision = certificate["status"]["revision"].as_i64().unwrap_or(0) + 1;
            let now = jiff::Timestamp::now();
            let pem = |what: &str| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "-----BEGIN {what}-----\nkube-sim issue {revision} of {ns}/{} at {now}\n-----END {what}-----\n",
                    name(certificate)
                ))
            };
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": secret_name, "namespace": ns,
                    "annotations": {"cert-manager.io/certificate-name": name(certificate)}},
                "data": {"tls.crt": pem("CERTIFICATE"), "tls.key": pem("PRIVATE KEY")},
            });
            if self
                .store
                .create(&secrets, Some(ns), secret, &WriteOptions::default())
                .is_err()
            {
                continue;
            }
            let not_after = now + jiff::SignedDuration::from_hours(24 * 90);
            self.write_status(
                &certificates,
                certificate,
                json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                    "message": "Certificate is up to date and has not expired"}],
                    "notAfter": not_after.to_string(), "revision": revision}),
            );
        }
    }

    /// Pod GC (kube-controller-manager's): pods bound to a node that no longer exists are
    /// deleted, Terminating ones included.
    fn pod_gc(&mut self) {
        let t = &self.types;
        let (nodes, _) = self.store.list(&t.nodes, None);
        let (pods, _) = self.store.list(&t.pods, None);
        let node_names: HashSet<&str> = nodes.iter().map(|n| name(n)).collect();
        for orphan in pods.iter().filter(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !node_names.contains(n))
        }) {
            self.delete_pod(orphan);
        }
    }

    /// Karpenter's termination of a deleted NodeClaim (when the NodeClaim kind is served):
    /// its Node is deleted (the instance terminated), then the finalizer goes.
    fn karpenter_terminate_claims(&mut self) {
        let Some(claims) = self
            .store
            .registry()
            .lookup_kind(NODE_CLAIM_API_VERSION, "NodeClaim")
        else {
            return;
        };
        let (list, _) = self.store.list(&claims, None);
        for claim in list.iter().filter(|c| is_terminating(c)) {
            if let Some(node) = claim["status"]["nodeName"].as_str() {
                let _ = self.store.delete(
                    &self.types.nodes,
                    None,
                    node,
                    Propagation::Background,
                    &WriteOptions::default(),
                );
                self.event(
                    claim,
                    false,
                    "Terminated",
                    "karpenter",
                    format!("terminated the instance of node {node}"),
                );
            }
            self.edit(&claims, claim, Target::Main, |o| {
                o["metadata"]["finalizers"] = json!([]);
            });
        }
    }

    fn karpenter(&mut self) {
        self.karpenter_terminate_claims();
        let t = &self.types;
        let (nodes, _) = self.store.list(&t.nodes, None);
        let (pods, _) = self.store.list(&t.pods, None);
        let unschedulable = pods.iter().any(|p| {
            !p["spec"]["nodeName"].is_string()
                && !is_terminating(p)
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        });
        if !unschedulable {
            return;
        }
        // A new node nothing has landed on yet means the capacity is there and the scheduler
        // has not used it: another node would not help (the pod does not fit any node).
        let fresh_node_waiting = nodes.iter().any(|n| {
            n["metadata"]["labels"]["karpenter.sh/nodepool"].is_string()
                && node_ready(n)
                && n["spec"]["unschedulable"].as_bool() != Some(true)
                && !pods
                    .iter()
                    .any(|p| p["spec"]["nodeName"].as_str() == Some(name(n)))
        });
        if fresh_node_waiting {
            return;
        }
        let version = self
            .server_version
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let index = nodes.len();
        self.launched += 1;
        let node_name = format!("karpenter-{:05}", self.launched);
        let mut node = crate::node_object(&node_name, &version, index);
        crate::karpenter_labels(&mut node, "default");
        match self
            .store
            .create(&t.nodes, None, node, &WriteOptions::default())
        {
            Ok(created) => {
                if let Err(e) = claim_node(&self.store, &created) {
                    tracing::debug!(error = %e, "kube-sim karpenter could not add a NodeClaim");
                }
                self.event(
                    &created,
                    false,
                    "Launched",
                    "karpenter",
                    format!("launched node {node_name} ({version}) for unschedulable pods"),
                )
            }
            Err(e) => tracing::debug!(error = %e, "kube-sim karpenter could not add a node"),
        }
    }

    fn disruption_budgets(&mut self) {
        let t = &self.types;
        let (pdbs, _) = self.store.list(&t.pdbs, None);
        if pdbs.is_empty() {
            return;
        }
        let (pods, _) = self.store.list(&t.pods, None);
        let scales = Scales::read(&self.store);
        // Budgets only see pods of their own namespace; grouping keeps this linear.
        let mut by_namespace: HashMap<&str, Vec<Arc<Value>>> = HashMap::new();
        for p in &pods {
            by_namespace
                .entry(namespace(p))
                .or_default()
                .push(p.clone());
        }
        for pdb in &pdbs {
            let pods = by_namespace
                .get(namespace(pdb))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let status = pdb_status(pdb, pods, &scales);
            self.write_status(&t.pdbs, pdb, status);
        }
    }
}

fn container_statuses(pod: &Value, state: Value, ready: bool) -> Value {
    let list: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:{}", c["image"].as_str().unwrap_or_default(), "0".repeat(64)),
                "containerID": format!("containerd://{}", template_hash(&json!([pod["metadata"]["uid"], c["name"]]))),
                "ready": ready, "started": state.get("running").is_some(), "restartCount": 0, "state": state.clone(),
            })
        })
        .collect();
    Value::Array(list)
}

/// Sets a pod's Ready and ContainersReady conditions and its containers' `ready`.
fn set_pod_ready(pod: &mut Value, ready: bool) {
    let reason = if ready { "" } else { "ContainersNotReady" };
    let mut c = set_condition(
        &pod["status"]["conditions"],
        "Ready",
        ready,
        reason,
        "",
        false,
    );
    c = set_condition(&c, "ContainersReady", ready, reason, "", false);
    pod["status"]["conditions"] = c;
    for cs in pod["status"]["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        cs["ready"] = json!(ready);
    }
}

fn running_status(pod: &Value, ip: &str, host_ip: &str, ready: bool) -> Value {
    let now = now_rfc3339();
    let mut conditions = Value::Array(Vec::new());
    for (ty, status) in [
        ("PodReadyToStartContainers", true),
        ("Initialized", true),
        ("Ready", ready),
        ("ContainersReady", ready),
        ("PodScheduled", true),
    ] {
        conditions = set_condition(&conditions, ty, status, "", "", false);
    }
    json!({
        "phase": "Running", "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now, "qosClass": "BestEffort",
        "containerStatuses": container_statuses(pod, json!({"running": {"startedAt": now}}), ready),
    })
}

/// Turns a running status into a crash loop: containers waiting in CrashLoopBackOff after
/// five restarts, the last one exiting 1.
fn crash_loop(status: &mut Value) {
    let now = now_rfc3339();
    for cs in status["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        cs["ready"] = json!(false);
        cs["started"] = json!(false);
        cs["restartCount"] = json!(5);
        cs["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}});
        cs["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}});
    }
}

fn finished_status(pod: &Value, exit_code: i64) -> Value {
    let now = now_rfc3339();
    let mut status = pod["status"].clone();
    let ok = exit_code == 0;
    status["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
    let reason = if ok { "PodCompleted" } else { "PodFailed" };
    let mut conditions = status["conditions"].clone();
    conditions = set_condition(&conditions, "Ready", false, reason, "", false);
    conditions = set_condition(&conditions, "ContainersReady", false, reason, "", false);
    status["conditions"] = conditions;
    let started = status["startTime"].clone();
    status["containerStatuses"] = container_statuses(
        pod,
        json!({"terminated": {"exitCode": exit_code, "reason": if ok { "Completed" } else { "Error" }, "startedAt": started, "finishedAt": now}}),
        false,
    );
    status
}

/// Whether a node reports Ready.
pub fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether a pod spec tolerates the node's NoSchedule/NoExecute taints. DaemonSet pods also
/// tolerate the unschedulable taint, as upstream.
fn tolerates_taints(spec: &Value, node: &Value, daemon: bool) -> bool {
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|taint| {
            let effect = taint["effect"].as_str().unwrap_or_default();
            if effect == "PreferNoSchedule" {
                return true;
            }
            if daemon && taint["key"] == "node.kubernetes.io/unschedulable" {
                return true;
            }
            tolerations.iter().any(|t| {
                let key_ok =
                    t["key"].is_null() && t["operator"] == "Exists" || t["key"] == taint["key"];
                let value_ok = t["operator"] == "Exists"
                    || t["value"].as_str().unwrap_or_default()
                        == taint["value"].as_str().unwrap_or_default();
                let effect_ok = t["effect"].is_null()
                    || t["effect"].as_str() == Some("")
                    || t["effect"] == taint["effect"];
                key_ok && value_ok && effect_ok
            })
        })
}

/// `nodeSelector` plus required node affinity terms (matchExpressions on labels).
fn node_selector_matches(spec: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    if let Some(sel) = spec["nodeSelector"].as_object()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array();
    match terms {
        Some(terms) if !terms.is_empty() => terms.iter().any(|term| {
            LabelSelector::from_object(&json!({"matchExpressions": term["matchExpressions"].as_array().cloned().unwrap_or_default()
                .into_iter().filter(|e| matches!(e["operator"].as_str(), Some("In" | "NotIn" | "Exists" | "DoesNotExist"))).collect::<Vec<_>>()}))
            .matches_labels(labels)
        }),
        _ => true,
    }
}

/// Parses a Kubernetes quantity (`500m`, `2`, `128Mi`, `1G`) into base units.
pub fn parse_quantity(q: &str) -> f64 {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0_f64.powi(2)),
        ("Gi", 1024.0_f64.powi(3)),
        ("Ti", 1024.0_f64.powi(4)),
        ("Pi", 1024.0_f64.powi(5)),
        ("Ei", 1024.0_f64.powi(6)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, mult) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().map(|n| n * mult).unwrap_or(0.0);
        }
    }
    q.parse().unwrap_or(0.0)
}

/// Summed container requests of a pod: (millicores, bytes).
fn pod_requests(pod: &Value) -> (f64, f64) {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .fold((0.0, 0.0), |(cpu, mem), c| {
            let r = &c["resources"]["requests"];
            (
                cpu + parse_quantity(r["cpu"].as_str().unwrap_or("0")) * 1000.0,
                mem + parse_quantity(r["memory"].as_str().unwrap_or("0")),
            )
        })
}

/// The desired replicas of the workload controllers, by uid: what the disruption
/// controller scales a percentage or a `maxUnavailable` budget by ("expected scale"), rather
/// than the pods that happen to exist (fewer while an evicted pod's replacement is not
/// created yet, which would let a second eviction through).
#[derive(Debug, Default, Clone)]
pub struct Scales {
    /// ReplicaSet uid: its replicas and its controlling Deployment's uid.
    replicasets: HashMap<String, (i64, Option<String>)>,
    /// Deployment, StatefulSet and ReplicationController uid: replicas.
    scaled: HashMap<String, i64>,
}

impl Scales {
    /// The scales of every Deployment, ReplicaSet, StatefulSet and ReplicationController.
    pub fn read(store: &Store) -> Scales {
        let registry = store.registry();
        let mut scales = Scales::default();
        let replicas = |o: &Value| o["spec"]["replicas"].as_i64().unwrap_or(1);
        for (group, plural) in [
            (APPS, "deployments"),
            (APPS, "statefulsets"),
            ("", "replicationcontrollers"),
        ] {
            if let Some(ty) = registry.lookup(group, "v1", plural) {
                for o in store.list(&ty, None).0 {
                    scales.scaled.insert(uid(&o).to_string(), replicas(&o));
                }
            }
        }
        if let Some(ty) = registry.lookup(APPS, "v1", "replicasets") {
            for rs in store.list(&ty, None).0 {
                scales.replicasets.insert(
                    uid(&rs).to_string(),
                    (replicas(&rs), controller_uid(&rs).map(str::to_string)),
                );
            }
        }
        scales
    }

    /// The pod's controller (by uid) and its desired replicas, as the disruption
    /// controller's finders resolve them; an error for a pod no such controller owns.
    fn controller_of(&self, pod: &Value) -> Result<(String, i64), String> {
        let no_controller = || format!("found no controllers for pod {:?}", name(pod));
        let owner = controller_uid(pod).ok_or_else(no_controller)?;
        if let Some((replicas, deployment)) = self.replicasets.get(owner) {
            if let Some(deployment) = deployment
                && let Some(scale) = self.scaled.get(deployment)
            {
                return Ok((deployment.clone(), *scale));
            }
            return Ok((owner.to_string(), *replicas));
        }
        self.scaled
            .get(owner)
            .map(|scale| (owner.to_string(), *scale))
            .ok_or_else(no_controller)
    }

    /// The summed scale of the controllers of `pods` (each controller once).
    fn expected(&self, pods: &[&Arc<Value>]) -> Result<i64, String> {
        let mut controllers: HashMap<String, i64> = HashMap::new();
        for pod in pods {
            let (controller, scale) = self.controller_of(pod)?;
            controllers.insert(controller, scale);
        }
        Ok(controllers.values().sum())
    }
}

/// The status a PodDisruptionBudget should have for these pods, computed as the disruption
/// controller does: an integer `minAvailable` counts the pods; a percentage or a
/// `maxUnavailable` scales by the controllers' desired replicas ([`Scales`]), and a pod no
/// workload controller owns makes the budget fail to sync, allowing no disruption.
pub fn pdb_status(pdb: &Value, pods: &[Arc<Value>], scales: &Scales) -> Value {
    let ns = namespace(pdb);
    let selector = LabelSelector::from_object(&pdb["spec"]["selector"]);
    let matching: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| {
            namespace(p) == ns && !is_terminating(p) && !pod_finished(p) && selector.matches(p)
        })
        .collect();
    let healthy = matching.iter().filter(|p| pod_is_ready(p)).count() as i64;
    let min_available = &pdb["spec"]["minAvailable"];
    let max_unavailable = &pdb["spec"]["maxUnavailable"];
    let counted = (matching.len() as i64, Ok(()));
    let (expected, desired, synced) = if min_available.is_i64() {
        (counted.0, min_available.as_i64().unwrap_or(0), counted.1)
    } else if !min_available.is_null() {
        match scales.expected(&matching) {
            Ok(expected) => (
                expected,
                int_or_percent(min_available, expected, true),
                Ok(()),
            ),
            Err(e) => (counted.0, 0, Err(e)),
        }
    } else if !max_unavailable.is_null() {
        match scales.expected(&matching) {
            Ok(expected) => (
                expected,
                (expected - int_or_percent(max_unavailable, expected, true)).max(0),
                Ok(()),
            ),
            Err(e) => (counted.0, 0, Err(e)),
        }
    } else {
        (counted.0, counted.0, Ok(()))
    };
    let allowed = if synced.is_ok() {
        (healthy - desired).max(0)
    } else {
        0
    };
    let (reason, message) = match &synced {
        Err(why) => ("SyncFailed", why.as_str()),
        Ok(()) if allowed > 0 => ("SufficientPods", ""),
        Ok(()) => ("InsufficientPods", ""),
    };
    let conditions = set_condition(
        &pdb["status"]["conditions"],
        "DisruptionAllowed",
        allowed > 0,
        reason,
        message,
        false,
    );
    let mut status = json!({
        "observedGeneration": pdb["metadata"]["generation"], "disruptionsAllowed": allowed, "currentHealthy": healthy,
        "desiredHealthy": desired, "expectedPods": expected, "conditions": conditions,
    });
    if let Some(c) = status["conditions"][0].as_object_mut() {
        c.insert(
            "observedGeneration".into(),
            pdb["metadata"]["generation"].clone(),
        );
    }
    status
}

/// The API version of Karpenter's NodeClaims (Karpenter 1.x).
pub const NODE_CLAIM_API_VERSION: &str = "karpenter.sh/v1";

/// Records the NodeClaim Karpenter keeps for a node it launched, `node` (a Karpenter node:
/// label `karpenter.sh/nodepool`), when the NodeClaim kind is served (its CRD installed):
/// named after the node, with Karpenter's termination finalizer and `status.nodeName`.
/// Nothing when the kind is not served.
pub(crate) fn claim_node(store: &Store, node: &Value) -> Result<(), ApiError> {
    let Some(claims) = store
        .registry()
        .lookup_kind(NODE_CLAIM_API_VERSION, "NodeClaim")
    else {
        return Ok(());
    };
    let pool = node["metadata"]["labels"]["karpenter.sh/nodepool"]
        .as_str()
        .unwrap_or("default");
    let claim_name = format!("{pool}-{}", store.random_suffix(5));
    store.create(
        &claims,
        None,
        json!({
            "apiVersion": NODE_CLAIM_API_VERSION, "kind": "NodeClaim",
            "metadata": {"name": claim_name, "labels": {"karpenter.sh/nodepool": pool},
                "finalizers": ["karpenter.sh/termination"]},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": [pool]}],
            },
        }),
        &WriteOptions::default(),
    )?;
    store.mutate(
        &claims,
        None,
        &claim_name,
        Target::Status,
        &WriteOptions::default(),
        |o| {
            o["status"] = json!({"nodeName": name(node), "providerID": node["spec"]["providerID"],
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                    "lastTransitionTime": now_rfc3339()}]});
            Ok(())
        },
    )?;
    Ok(())
}

/// The `pods/eviction` subresource: deletes the pod unless a PodDisruptionBudget forbids it,
/// in which case the answer is 429 with a Status naming the budget, as upstream.
/// `grace_period_seconds` is the eviction's `deleteOptions.gracePeriodSeconds`.
pub fn evict(
    store: &Store,
    ns: &str,
    pod_name: &str,
    grace_period_seconds: Option<i64>,
) -> Result<Value, ApiError> {
    let _serial = store.evictions.lock().unwrap_or_else(|e| e.into_inner());
    let registry = store.registry();
    let pods_ty = registry.lookup("", "v1", "pods").expect("built-in");
    let pdb_ty = registry
        .lookup("policy", "v1", "poddisruptionbudgets")
        .expect("built-in");
    let pod = store.get(&pods_ty, Some(ns), pod_name)?;
    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    if is_terminating(&pod) {
        return Ok(success);
    }
    let (pdbs, _) = store.list(&pdb_ty, Some(ns));
    let covering: Vec<&Arc<Value>> = pdbs
        .iter()
        .filter(|b| LabelSelector::from_object(&b["spec"]["selector"]).matches(&pod))
        .collect();
    if covering.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if let Some(pdb) = covering.first().filter(|_| phase == "Running") {
        let (pods, _) = store.list(&pods_ty, Some(ns));
        let status = pdb_status(pdb, &pods, &Scales::read(store));
        let (healthy, desired, allowed) = (
            status["currentHealthy"].as_i64().unwrap_or(0),
            status["desiredHealthy"].as_i64().unwrap_or(0),
            status["disruptionsAllowed"].as_i64().unwrap_or(0),
        );
        // An unhealthy pod may go while the budget is met without it (IfHealthyBudget).
        let unhealthy_ok = !pod_is_ready(&pod) && healthy >= desired;
        if allowed <= 0 && !unhealthy_ok {
            let mut err = ApiError::new(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            err.details = Some(
                json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {} needs {desired} healthy pods and has {healthy} currently", name(pdb))}]}),
            );
            return Err(err);
        }
        let mut new_status = status.clone();
        if pod_is_ready(&pod) {
            new_status["disruptionsAllowed"] = json!(allowed - 1);
        }
        new_status["disruptedPods"] = json!({ pod_name: now_rfc3339() });
        let _ = store.mutate(
            &pdb_ty,
            Some(ns),
            name(pdb),
            Target::Status,
            &WriteOptions::default(),
            |o| {
                o["status"] = new_status;
                Ok(())
            },
        );
    }
    store.delete(
        &pods_ty,
        Some(ns),
        pod_name,
        Propagation::Background,
        &WriteOptions {
            grace_period_seconds,
            ..WriteOptions::default()
        },
    )?;
    Ok(success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_ignores_empty_fields() {
        let a = json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"metadata": {"labels": {"app": "w"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}});
        assert_eq!(template_hash(&a), template_hash(&b));
        let c = json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_ne!(template_hash(&a), template_hash(&c));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), 0.5);
        assert_eq!(parse_quantity("2"), 2.0);
        assert_eq!(parse_quantity("1Gi"), 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse_quantity("1G"), 1e9);
    }

    #[test]
    fn pdb_math() {
        // Pods of ReplicaSet `rs`, which Deployment `dep` (3 replicas) controls.
        let pod = |n: &str, ready: bool| {
            Arc::new(
                json!({"metadata": {"name": n, "namespace": "d", "labels": {"app": "w"},
                "ownerReferences": [{"kind": "ReplicaSet", "uid": "rs", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
            )
        };
        let mut scales = Scales::default();
        scales
            .replicasets
            .insert("rs".into(), (3, Some("dep".into())));
        scales.scaled.insert("dep".into(), 3);
        let triple = |s: &Value| {
            (
                s["currentHealthy"].as_i64(),
                s["desiredHealthy"].as_i64(),
                s["disruptionsAllowed"].as_i64(),
            )
        };
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let pdb = |spec: Value| {
            let mut pdb = json!({"metadata": {"name": "p", "namespace": "d", "generation": 1}, "spec": {"selector": {"matchLabels": {"app": "w"}}}});
            for (k, v) in spec.as_object().unwrap() {
                pdb["spec"][k] = v.clone();
            }
            pdb
        };
        // An integer minAvailable counts pods.
        let s = pdb_status(&pdb(json!({"minAvailable": 2})), &pods, &scales);
        assert_eq!(triple(&s), (Some(2), Some(2), Some(0)));
        let s = pdb_status(&pdb(json!({"maxUnavailable": "50%"})), &pods, &scales);
        assert_eq!(triple(&s), (Some(2), Some(1), Some(1)));

        // One pod just evicted, its replacement not created yet: 2 pods of a 3-replica
        // Deployment. The budget scales by the Deployment, so no second disruption.
        let two = vec![pod("a", true), pod("b", true)];
        let s = pdb_status(&pdb(json!({"maxUnavailable": 1})), &two, &scales);
        assert_eq!(triple(&s), (Some(2), Some(2), Some(0)));
        assert_eq!(s["expectedPods"].as_i64(), Some(3));
        let s = pdb_status(&pdb(json!({"minAvailable": "60%"})), &two, &scales);
        assert_eq!(triple(&s), (Some(2), Some(2), Some(0)));

        // A pod no workload controller owns: the budget cannot be scaled, nothing allowed.
        let bare = vec![Arc::new(
            json!({"metadata": {"name": "x", "namespace": "d", "labels": {"app": "w"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        )];
        let s = pdb_status(&pdb(json!({"maxUnavailable": 1})), &bare, &scales);
        assert_eq!(s["disruptionsAllowed"].as_i64(), Some(0));
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed", "{s}");
        assert!(
            s["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("found no controllers for pod")
        );
    }
}
