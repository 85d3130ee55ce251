//! Cluster facts for upgrade-core's checks, gathered paginated and concurrently, and the
//! per-node drain prediction, before anything is touched.
//!
//! [`gather`] fills [`upgrade_checks::facts::Facts`] from a live cluster: every list runs at
//! the same time (`tokio::try_join!`), 500 objects a page, each page converted and dropped
//! at once, and transient API errors (429, 5xx, dropped connections) are retried. The same
//! pass predicts, for every node, which pods a drain would not evict and why
//! ([`NodeDrainPrediction`]), with [`drain::plan_pod`](crate::drain::plan_pod) deciding
//! exactly as the drain itself will. Helm releases come from Helm's own release Secrets,
//! so removed APIs are found in the real rendered manifest, not a last-applied annotation.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolumeClaim, Pod, PodTemplateSpec, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;
use upgrade_checks::data::IsoDate;
use upgrade_checks::facts::{
    CertificateFacts, ClusterFacts, ContainerFacts, EventFacts, Facts, IntOrPercent,
    KubeProxyFacts, LabelRequirement, LabelSelector, NodeFacts, NodeProvisioner, OwnerFacts,
    PdbFacts, PodFacts, PvcFacts, ServiceFacts, WorkloadFacts, WorkloadKind,
};
use upgrade_core::version::KubeVersion;

use crate::connect::Cluster;
use crate::drain::{BlockReason, BlockedPod, DO_NOT_DISRUPT, DrainOptions, PodPlan, plan_pod};
use crate::error::{Error, Result};
use crate::retry::{list_all, list_if_served, list_pages, read};

/// Annotations kept on [`PodFacts`]: the ones checks and drains act on. (Keeping all of them
/// would multiply the memory of 60,000 pods for nothing.)
pub const KEPT_POD_ANNOTATIONS: &[&str] = &[
    DO_NOT_DISRUPT,
    "karpenter.sh/do-not-evict",
    "kubernetes.io/config.mirror",
];

/// How to gather.
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// The cluster name for the report (default: the EKS name from the kubeconfig, else the
    /// kubeconfig's cluster entry).
    pub cluster_name: Option<String>,
    /// The AWS region, when known.
    pub region: Option<String>,
    /// Objects per list request (`limit`); 500 as kubectl.
    pub page_size: u32,
    /// Warning events older than this are left out.
    pub warning_events_since: Duration,
    /// The drain the prediction is made for (kubectl's flags).
    pub drain: DrainOptions,
    /// Read Helm releases from their storage Secrets.
    pub helm_releases: bool,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            cluster_name: None,
            region: None,
            page_size: 500,
            warning_events_since: Duration::from_secs(3600),
            drain: DrainOptions::default(),
            helm_releases: true,
        }
    }
}

/// What a drain of one node would do, predicted from the current state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeDrainPrediction {
    /// The node.
    pub node: String,
    /// Pods that would be evicted.
    pub evictable: usize,
    /// DaemonSet and mirror pods that would stay.
    pub skipped: usize,
    /// Pods that would not leave, why, and the budgets that select them.
    pub blocked: Vec<BlockedPod>,
}

impl NodeDrainPrediction {
    /// Whether a drain would finish.
    pub fn drains(&self) -> bool {
        self.blocked.is_empty()
    }
}

/// The result of [`gather`].
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The facts for the checks.
    pub facts: Facts,
    /// One prediction per node, in node-name order.
    pub drains: Vec<NodeDrainPrediction>,
    /// What could not be read and was left out (an undecodable Helm release, a kind not
    /// served), so a report can say what it did not see.
    pub notes: Vec<String>,
}

/// A pod as the prediction needs it: decided once, while its page is in memory.
struct PlannedPod {
    node: String,
    namespace: String,
    name: String,
    plan: PodPlan,
}

/// Reads everything the checks need, concurrently and paginated, and predicts every drain.
pub async fn gather(cluster: &Cluster, options: &GatherOptions) -> Result<Gathered> {
    let client = cluster.client().clone();
    let now = jiff::Timestamp::now();
    let page = options.page_size.max(1);

    let version = read("read the API server version", client.apiserver_version());
    let nodes = list_all::<Node, _>(&client, page, "list nodes", |n| Some(node_facts(&n)));
    let deployments = list_all::<Deployment, _>(&client, page, "list Deployments", |d| {
        Some(deployment_facts(&d))
    });
    let statefulsets = list_all::<StatefulSet, _>(&client, page, "list StatefulSets", |s| {
        Some(statefulset_facts(&s))
    });
    let daemonsets = list_all::<DaemonSet, _>(&client, page, "list DaemonSets", |d| {
        Some(daemonset_facts(&d))
    });
    let replicasets = list_all::<ReplicaSet, _>(&client, page, "list ReplicaSets", |r| {
        orphan_replicaset_facts(&r)
    });
    let pdbs =
        list_all::<PodDisruptionBudget, _>(&client, page, "list PodDisruptionBudgets", |p| {
            Some(pdb_facts(&p))
        });
    let drain_options = options.drain.clone();
    let pods = list_all::<Pod, _>(&client, page, "list pods", move |p| {
        Some(pod_facts_and_plan(&p, now, &drain_options))
    });
    let pvcs =
        list_all::<PersistentVolumeClaim, _>(&client, page, "list PersistentVolumeClaims", |c| {
            let facts = pvc_facts(&c);
            (facts.phase != "Bound").then_some(facts)
        });
    let since =
        now - jiff::SignedDuration::try_from(options.warning_events_since).unwrap_or_default();
    let warnings_only = ListParams::default().fields("type=Warning");
    let events = async {
        let listed = list_pages(
            Api::<Event>::all(client.clone()),
            &warnings_only,
            page,
            "list Warning events",
            move |e| recent_warning(&e, since),
        )
        .await;
        forbidden_is_a_note(listed, "Warning events")
    };
    let kube_proxy = kube_proxy_facts(&client);
    let services = list_all::<Service, _>(&client, page, "list Services", |s| {
        let external_ips = s
            .spec
            .and_then(|spec| spec.external_ips)
            .unwrap_or_default();
        (!external_ips.is_empty()).then(|| ServiceFacts {
            namespace: s.metadata.namespace.unwrap_or_default(),
            name: s.metadata.name.unwrap_or_default(),
            external_ips,
        })
    });
    let certificates = certificates(&client, page);
    let helm = async {
        if !options.helm_releases {
            return Ok(((Vec::new(), Vec::new()), None));
        }
        forbidden_is_a_note(
            crate::helm_storage::releases(&client, page).await,
            "Helm releases (Secrets)",
        )
    };

    let (
        version,
        nodes,
        deployments,
        statefulsets,
        daemonsets,
        replicasets,
        pdbs,
        pods,
        pvcs,
        events,
        kube_proxy,
        services,
        certificates,
        helm,
    ) = tokio::try_join!(
        version,
        nodes,
        deployments,
        statefulsets,
        daemonsets,
        replicasets,
        pdbs,
        pods,
        pvcs,
        events,
        kube_proxy,
        services,
        certificates,
        helm
    )?;

    let mut notes = Vec::new();
    let server_version: KubeVersion =
        version
            .git_version
            .parse()
            .map_err(|e: upgrade_core::version::VersionError| Error::Facts {
                object: "the API server's /version".into(),
                problem: e.to_string(),
            })?;
    let mut node_facts = Vec::with_capacity(nodes.len());
    for node in nodes {
        match node {
            Ok(n) => node_facts.push(n),
            Err(note) => notes.push(note),
        }
    }
    node_facts.sort_by(|a, b| a.name.cmp(&b.name));
    let (pod_facts, planned): (Vec<PodFacts>, Vec<Option<PlannedPod>>) = pods.into_iter().unzip();
    let drains = predict(&node_facts, &pod_facts, planned, &pdbs);
    let ((helm_releases, helm_notes), helm_forbidden) = helm;
    notes.extend(helm_notes);
    notes.extend(helm_forbidden);
    let (events, events_forbidden) = events;
    notes.extend(events_forbidden);
    let (certificates, cert_note) = certificates;
    notes.extend(cert_note);

    let mut workloads = deployments;
    workloads.extend(statefulsets);
    workloads.extend(replicasets);
    workloads.extend(daemonsets);

    let identity = cluster.identity();
    let facts = Facts {
        cluster: ClusterFacts {
            name: options
                .cluster_name
                .clone()
                .or_else(|| identity.eks_cluster_name.clone())
                .unwrap_or_else(|| identity.kubeconfig_cluster.clone()),
            region: options.region.clone(),
            server_version,
            kubectl_version: None,
            observed_on: IsoDate::parse(&now.strftime("%Y-%m-%d").to_string()),
            terraform_dir: None,
        },
        nodes: node_facts,
        kube_proxy,
        workloads,
        pdbs,
        pods: pod_facts,
        pvcs,
        services,
        certificates,
        warning_events: aggregate_events(events),
        helm_releases,
        ..Facts::default()
    };
    Ok(Gathered {
        facts,
        drains,
        notes,
    })
}

/// A read-only role often may not list Secrets or Events: that part is left out with a
/// note (the report then says what it did not see) instead of failing the whole gathering.
fn forbidden_is_a_note<T: Default>(listed: Result<T>, what: &str) -> Result<(T, Option<String>)> {
    match listed {
        Ok(items) => Ok((items, None)),
        Err(Error::Api { source, .. }) if crate::error::api_code(&source) == Some(403) => Ok((
            T::default(),
            Some(format!(
                "{what} not read: forbidden for this identity ({source})"
            )),
        )),
        Err(e) => Err(e),
    }
}

fn predict(
    nodes: &[NodeFacts],
    pods: &[PodFacts],
    planned: Vec<Option<PlannedPod>>,
    pdbs: &[PdbFacts],
) -> Vec<NodeDrainPrediction> {
    let mut by_node: BTreeMap<&str, NodeDrainPrediction> = nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                NodeDrainPrediction {
                    node: n.name.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for (facts, planned) in pods.iter().zip(planned) {
        let Some(planned) = planned else { continue };
        let Some(prediction) = by_node.get_mut(planned.node.as_str()) else {
            continue;
        };
        let selecting: Vec<&PdbFacts> = pdbs
            .iter()
            .filter(|b| b.namespace == facts.namespace && b.selector.matches(&facts.labels))
            .collect();
        let budgets = selecting
            .iter()
            .map(|b| format!("{}/{}", b.namespace, b.name))
            .collect();
        let reason = match planned.plan {
            PodPlan::Skip => {
                prediction.skipped += 1;
                continue;
            }
            PodPlan::Block(reason) => reason,
            PodPlan::Evict => match selecting.iter().find(|b| b.disruptions_allowed <= 0) {
                // Only a pod that counts as healthy is protected; the others evict anyway.
                Some(b) if facts.phase == "Running" => BlockReason::DisruptionBudget {
                    message: format!("{}/{} allows 0 disruptions right now", b.namespace, b.name),
                },
                _ => {
                    prediction.evictable += 1;
                    continue;
                }
            },
        };
        prediction.blocked.push(BlockedPod {
            namespace: planned.namespace,
            name: planned.name,
            reason,
            budgets,
        });
    }
    by_node.into_values().collect()
}

/// A node's facts; `Err` names a node whose kubelet version cannot be read.
pub fn node_facts(node: &Node) -> std::result::Result<NodeFacts, String> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let kubelet = info.map(|i| i.kubelet_version.as_str()).unwrap_or_default();
    let kubelet_version = kubelet.parse().map_err(|e| {
        format!("node {name}: kubelet version `{kubelet}` not understood ({e}); left out")
    })?;
    let kube_proxy_version = info
        .map(|i| i.kube_proxy_version.as_str())
        .and_then(|v| v.parse().ok());
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let (provisioner, group) = provisioner(&labels);
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let ready = crate::health::node_ready(node);
    let pressure = conditions
        .iter()
        .filter(|c| c.type_.ends_with("Pressure") && c.status == "True")
        .map(|c| c.type_.clone())
        .collect();
    Ok(NodeFacts {
        name,
        kubelet_version,
        kube_proxy_version,
        os_image: info.map(|i| i.os_image.clone()).filter(|s| !s.is_empty()),
        container_runtime: info
            .map(|i| i.container_runtime_version.clone())
            .filter(|s| !s.is_empty()),
        provisioner,
        group,
        ready,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        pressure,
        taints: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| upgrade_checks::facts::TaintFacts {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            })
            .collect(),
    })
}

fn provisioner(labels: &BTreeMap<String, String>) -> (NodeProvisioner, Option<String>) {
    let label = |k: &str| labels.get(k).cloned();
    if labels
        .get("eks.amazonaws.com/compute-type")
        .map(String::as_str)
        == Some("fargate")
    {
        (
            NodeProvisioner::Fargate,
            label("eks.amazonaws.com/fargate-profile"),
        )
    } else if let Some(pool) = label("karpenter.sh/nodepool") {
        (NodeProvisioner::Karpenter, Some(pool))
    } else if let Some(group) = label("eks.amazonaws.com/nodegroup") {
        (NodeProvisioner::ManagedNodeGroup, Some(group))
    } else if let Some(group) = label("alpha.eksctl.io/nodegroup-name") {
        (NodeProvisioner::SelfManaged, Some(group))
    } else {
        (NodeProvisioner::Unknown, None)
    }
}

fn template_facts(
    kind: WorkloadKind,
    metadata: &meta::ObjectMeta,
    template: Option<&PodTemplateSpec>,
) -> WorkloadFacts {
    let spec = template.and_then(|t| t.spec.as_ref());
    WorkloadFacts {
        kind,
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
        replicas: None,
        ready_replicas: None,
        min_ready_seconds: None,
        pod_labels: template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        containers: spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| ContainerFacts {
                        name: c.name.clone(),
                        image: c.image.clone(),
                        readiness_probe: c.readiness_probe.is_some(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        pod_anti_affinity: spec
            .and_then(|s| s.affinity.as_ref())
            .is_some_and(|a| a.pod_anti_affinity.is_some()),
        topology_spread: spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|t| !t.is_empty()),
    }
}

/// Replicas desired, replicas ready, `minReadySeconds`.
type Counts = (Option<i32>, Option<i32>, Option<i32>);

fn counted(
    kind: WorkloadKind,
    metadata: &meta::ObjectMeta,
    template: Option<&PodTemplateSpec>,
    (replicas, ready_replicas, min_ready_seconds): Counts,
) -> WorkloadFacts {
    WorkloadFacts {
        replicas,
        ready_replicas,
        min_ready_seconds,
        ..template_facts(kind, metadata, template)
    }
}

fn deployment_facts(d: &Deployment) -> WorkloadFacts {
    let spec = d.spec.as_ref();
    counted(
        WorkloadKind::Deployment,
        &d.metadata,
        spec.map(|s| &s.template),
        (
            Some(spec.and_then(|s| s.replicas).unwrap_or(1)),
            Some(
                d.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            ),
            spec.and_then(|s| s.min_ready_seconds),
        ),
    )
}

fn statefulset_facts(s: &StatefulSet) -> WorkloadFacts {
    let spec = s.spec.as_ref();
    counted(
        WorkloadKind::StatefulSet,
        &s.metadata,
        spec.map(|s| &s.template),
        (
            Some(spec.and_then(|s| s.replicas).unwrap_or(1)),
            Some(
                s.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            ),
            spec.and_then(|s| s.min_ready_seconds),
        ),
    )
}

fn daemonset_facts(d: &DaemonSet) -> WorkloadFacts {
    let spec = d.spec.as_ref();
    counted(
        WorkloadKind::DaemonSet,
        &d.metadata,
        spec.map(|s| &s.template),
        (
            None,
            d.status.as_ref().map(|s| s.number_ready),
            spec.and_then(|s| s.min_ready_seconds),
        ),
    )
}

/// ReplicaSets a Deployment owns are covered by the Deployment; only the others count.
fn orphan_replicaset_facts(r: &ReplicaSet) -> Option<WorkloadFacts> {
    if controller_of(&r.metadata).is_some() {
        return None;
    }
    let spec = r.spec.as_ref();
    Some(counted(
        WorkloadKind::ReplicaSet,
        &r.metadata,
        spec.and_then(|s| s.template.as_ref()),
        (
            Some(spec.and_then(|s| s.replicas).unwrap_or(1)),
            Some(
                r.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            ),
            spec.and_then(|s| s.min_ready_seconds),
        ),
    ))
}

fn controller_of(metadata: &meta::ObjectMeta) -> Option<OwnerFacts> {
    metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| OwnerFacts {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

fn int_or_percent(value: &IntOrString) -> IntOrPercent {
    match value {
        IntOrString::Int(n) => IntOrPercent::Int(*n),
        IntOrString::String(s) => IntOrPercent::String(s.clone()),
    }
}

fn label_selector(selector: Option<&meta::LabelSelector>) -> LabelSelector {
    let Some(selector) = selector else {
        // A PDB without a selector selects nothing; an impossible requirement says so.
        return LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelRequirement {
                key: "upgrade.mlops.dev/no-selector".into(),
                operator: "Exists".into(),
                values: vec![],
            }],
        };
    };
    LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions: selector
            .match_expressions
            .iter()
            .flatten()
            .map(|r| LabelRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// A PodDisruptionBudget's facts.
pub fn pdb_facts(p: &PodDisruptionBudget) -> PdbFacts {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    PdbFacts {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        selector: label_selector(spec.and_then(|s| s.selector.as_ref())),
        min_available: spec
            .and_then(|s| s.min_available.as_ref())
            .map(int_or_percent),
        max_unavailable: spec
            .and_then(|s| s.max_unavailable.as_ref())
            .map(int_or_percent),
        disruptions_allowed: status.map(|s| s.disruptions_allowed).unwrap_or(0),
        current_healthy: status.map(|s| s.current_healthy),
        expected_pods: status.map(|s| s.expected_pods),
    }
}

/// A pod's facts.
pub fn pod_facts(p: &Pod, now: jiff::Timestamp) -> PodFacts {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let running_seconds = status
        .and_then(|s| s.start_time.as_ref())
        .filter(|_| phase == "Running")
        .map(|t| (now.as_second() - t.0.as_second()).max(0) as u64);
    PodFacts {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        phase,
        controller: controller_of(&p.metadata),
        annotations: p
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| KEPT_POD_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        local_storage: spec
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| vs.iter().any(|v| v.empty_dir.is_some())),
        running_seconds,
        termination_grace_period_seconds: spec.and_then(|s| s.termination_grace_period_seconds),
        git_repo_volumes: spec
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter(|v| v.git_repo.is_some())
            .map(|v| v.name.clone())
            .collect(),
    }
}

fn pod_facts_and_plan(
    p: &Pod,
    now: jiff::Timestamp,
    options: &DrainOptions,
) -> (PodFacts, Option<PlannedPod>) {
    let facts = pod_facts(p, now);
    let planned = facts.node.clone().map(|node| PlannedPod {
        node,
        namespace: facts.namespace.clone(),
        name: facts.name.clone(),
        plan: plan_pod(p, options),
    });
    (facts, planned)
}

/// A PersistentVolumeClaim's facts.
pub fn pvc_facts(c: &PersistentVolumeClaim) -> PvcFacts {
    PvcFacts {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name: c.metadata.name.clone().unwrap_or_default(),
        phase: c
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into()),
        storage_class: c.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
    }
}

fn recent_warning(e: &Event, since: jiff::Timestamp) -> Option<EventFacts> {
    if e.type_.as_deref() != Some("Warning") {
        return None;
    }
    let last = e
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if last.is_some_and(|t| t < since) {
        return None;
    }
    let object = &e.involved_object;
    Some(EventFacts {
        namespace: e.metadata.namespace.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            object.kind.as_deref().unwrap_or("Object"),
            object.name.as_deref().unwrap_or_default()
        ),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        count: e
            .count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1)
            .max(1),
    })
}

/// One entry per (namespace, object, reason), counts summed, the latest message kept.
fn aggregate_events(events: Vec<EventFacts>) -> Vec<EventFacts> {
    let mut by_key: BTreeMap<(String, String, String), EventFacts> = BTreeMap::new();
    for e in events {
        let key = (e.namespace.clone(), e.object.clone(), e.reason.clone());
        match by_key.get_mut(&key) {
            Some(seen) => {
                seen.count += e.count;
                seen.message = e.message;
            }
            None => {
                by_key.insert(key, e);
            }
        }
    }
    by_key.into_values().collect()
}

async fn kube_proxy_facts(client: &kube::Client) -> Result<Option<KubeProxyFacts>> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let Some(ds) = read(
        "read kube-system/kube-proxy",
        daemonsets.get_opt("kube-proxy"),
    )
    .await?
    else {
        return Ok(None);
    };
    let containers = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let Some(image) = containers
        .iter()
        .find(|c| c.name == "kube-proxy")
        .or(containers.first())
        .and_then(|c| c.image.clone())
    else {
        return Ok(None);
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let config = read(
        "read kube-system/kube-proxy-config",
        configmaps.get_opt("kube-proxy-config"),
    )
    .await?;
    Ok(Some(KubeProxyFacts {
        image,
        mode: config.as_ref().and_then(kube_proxy_mode),
    }))
}

/// `mode` from the KubeProxyConfiguration in the ConfigMap (an empty mode means iptables).
fn kube_proxy_mode(cm: &ConfigMap) -> Option<String> {
    let text = cm.data.as_ref()?.get("config")?;
    let doc: serde_json::Value = serde_norway::from_str(text).ok()?;
    match doc.get("mode")?.as_str()? {
        "" => Some("iptables".into()),
        mode => Some(mode.into()),
    }
}

/// The cert-manager `Certificate` kind.
pub(crate) const CERTIFICATE: (&str, &str, &str, &str) =
    ("cert-manager.io", "v1", "Certificate", "certificates");

/// cert-manager Certificates, when the kind is served; the note says when it is not.
async fn certificates(
    client: &kube::Client,
    page: u32,
) -> Result<(Vec<CertificateFacts>, Option<String>)> {
    Ok(match list_if_served(client, CERTIFICATE, page).await? {
        Some(list) => (list.iter().map(certificate_facts).collect(), None),
        None => (
            Vec::new(),
            Some("cert-manager.io/v1 Certificates are not served; certificates not checked".into()),
        ),
    })
}

pub(crate) fn certificate_facts(c: &DynamicObject) -> CertificateFacts {
    let status = c.data.get("status");
    let ready_condition = status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array())
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let ready = ready_condition.is_some_and(|c| c["status"] == "True");
    let not_after = status
        .and_then(|s| s.get("notAfter"))
        .and_then(|t| t.as_str())
        .and_then(|t| t.get(..10))
        .and_then(IsoDate::parse);
    CertificateFacts {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name: c.metadata.name.clone().unwrap_or_default(),
        ready,
        not_after,
        message: ready_condition
            .filter(|_| !ready)
            .and_then(|c| c["message"].as_str())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_yaml(text: &str) -> Pod {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn pod_facts_keep_what_checks_and_drains_use() {
        let pod = pod_yaml(
            r#"
metadata:
  name: train-7
  namespace: argo
  labels: {workflows.argoproj.io/workflow: train}
  annotations: {karpenter.sh/do-not-disrupt: "true", kubectl.kubernetes.io/last-applied-configuration: "{}"}
  ownerReferences: [{apiVersion: argoproj.io/v1alpha1, kind: Workflow, name: train, uid: u, controller: true}]
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1200
  containers: [{name: main, image: python:3.12}]
  volumes: [{name: scratch, emptyDir: {}}]
status: {phase: Running, startTime: "2026-11-22T00:00:00Z"}
"#,
        );
        let now: jiff::Timestamp = "2026-11-22T01:00:00Z".parse().unwrap();
        let facts = pod_facts(&pod, now);
        assert_eq!(facts.node.as_deref(), Some("node-a"));
        assert_eq!(facts.running_seconds, Some(3600));
        assert_eq!(facts.termination_grace_period_seconds, Some(1200));
        assert!(facts.local_storage);
        assert_eq!(facts.controller.as_ref().unwrap().kind, "Workflow");
        assert_eq!(
            facts.annotations.keys().collect::<Vec<_>>(),
            ["karpenter.sh/do-not-disrupt"],
            "only annotations that matter are kept"
        );
    }

    #[test]
    fn node_facts_read_versions_conditions_and_provisioner() {
        let node: Node = serde_norway::from_str(
            r#"
metadata:
  name: ip-10-0-1-5
  labels: {karpenter.sh/nodepool: gpu}
spec: {unschedulable: true, taints: [{key: nvidia.com/gpu, effect: NoSchedule}]}
status:
  conditions:
  - {type: Ready, status: "False"}
  - {type: DiskPressure, status: "True"}
  nodeInfo: {kubeletVersion: v1.30.4-eks-a737599, kubeProxyVersion: "", osImage: Bottlerocket, containerRuntimeVersion: "containerd://1.7.22", machineID: m, systemUUID: s, bootID: b, kernelVersion: k, operatingSystem: linux, architecture: amd64}
"#,
        )
        .unwrap();
        let facts = node_facts(&node).unwrap();
        assert_eq!(facts.kubelet_version.to_string(), "1.30.4-eks-a737599");
        assert_eq!(facts.kube_proxy_version, None, "empty is not a version");
        assert_eq!(facts.provisioner, NodeProvisioner::Karpenter);
        assert_eq!(facts.group.as_deref(), Some("gpu"));
        assert!(!facts.ready && facts.unschedulable);
        assert_eq!(facts.pressure, ["DiskPressure"]);
        assert_eq!(
            facts.taints,
            [upgrade_checks::facts::TaintFacts {
                key: "nvidia.com/gpu".into(),
                value: None,
                effect: "NoSchedule".into(),
            }]
        );

        let mut broken = node.clone();
        broken
            .status
            .as_mut()
            .unwrap()
            .node_info
            .as_mut()
            .unwrap()
            .kubelet_version = "banana".into();
        let note = node_facts(&broken).unwrap_err();
        assert!(
            note.contains("ip-10-0-1-5") && note.contains("banana"),
            "{note}"
        );
    }

    #[test]
    fn prediction_names_budget_controller_storage_and_do_not_disrupt_blockers() {
        let node = |name: &str| NodeFacts {
            name: name.into(),
            kubelet_version: "v1.30.4".parse().unwrap(),
            kube_proxy_version: None,
            os_image: None,
            container_runtime: None,
            provisioner: NodeProvisioner::Unknown,
            group: None,
            ready: true,
            unschedulable: false,
            pressure: vec![],
            taints: vec![],
        };
        let now = jiff::Timestamp::now();
        let pods: Vec<Pod> = [
            "{metadata: {name: web-1, namespace: shop, labels: {app: web}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: u, controller: true}]}, spec: {nodeName: a, containers: []}, status: {phase: Running}}",
            "{metadata: {name: api-1, namespace: shop, labels: {app: api}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api, uid: u, controller: true}]}, spec: {nodeName: a, containers: []}, status: {phase: Running}}",
            "{metadata: {name: debug, namespace: shop}, spec: {nodeName: a, containers: []}, status: {phase: Running}}",
            "{metadata: {name: proxy-x, namespace: kube-system, ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: p, uid: u, controller: true}]}, spec: {nodeName: a, containers: []}, status: {phase: Running}}",
            "{metadata: {name: api-2, namespace: shop, labels: {app: api}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api, uid: u, controller: true}]}, spec: {nodeName: b, containers: []}, status: {phase: Running}}",
        ]
        .iter()
        .map(|y| pod_yaml(y))
        .collect();
        let (facts, planned): (Vec<_>, Vec<_>) = pods
            .iter()
            .map(|p| pod_facts_and_plan(p, now, &DrainOptions::default()))
            .unzip();
        let pdb: PodDisruptionBudget = serde_norway::from_str(
            "{metadata: {name: web-pdb, namespace: shop}, spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}, status: {disruptionsAllowed: 0, currentHealthy: 1, desiredHealthy: 1, expectedPods: 1}}",
        )
        .unwrap();
        let drains = predict(&[node("a"), node("b")], &facts, planned, &[pdb_facts(&pdb)]);
        assert_eq!(drains.len(), 2);
        let a = &drains[0];
        assert_eq!((a.evictable, a.skipped), (1, 1));
        let blocked: Vec<(&str, String, Vec<String>)> = a
            .blocked
            .iter()
            .map(|b| (b.name.as_str(), b.reason.to_string(), b.budgets.clone()))
            .collect();
        assert_eq!(
            blocked,
            [
                (
                    "web-1",
                    "disruption budget: shop/web-pdb allows 0 disruptions right now".to_string(),
                    vec!["shop/web-pdb".to_string()]
                ),
                ("debug", BlockReason::NoController.to_string(), vec![]),
            ]
        );
        assert!(drains[1].drains());
    }

    #[test]
    fn a_forbidden_list_becomes_a_note_and_other_errors_stay_errors() {
        let api_error = |code| Error::Api {
            action: "list Helm release Secrets".into(),
            source: Box::new(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "secrets is forbidden".into(),
                ..Default::default()
            }))),
        };
        let (items, note) =
            forbidden_is_a_note::<Vec<u8>>(Err(api_error(403)), "Helm releases").unwrap();
        assert!(items.is_empty());
        assert!(
            note.unwrap()
                .starts_with("Helm releases not read: forbidden")
        );
        assert!(forbidden_is_a_note::<Vec<u8>>(Err(api_error(500)), "x").is_err());
        assert_eq!(
            forbidden_is_a_note(Ok(vec![1u8]), "x").unwrap(),
            (vec![1], None)
        );
    }

    #[test]
    fn warning_events_are_aggregated_per_object_and_reason() {
        let e = |reason: &str, count: u32, message: &str| EventFacts {
            namespace: "mlops".into(),
            object: "Pod/mlflow-0".into(),
            reason: reason.into(),
            message: message.into(),
            count,
        };
        let out = aggregate_events(vec![
            e("BackOff", 3, "first"),
            e("FailedMount", 1, "m"),
            e("BackOff", 4, "latest"),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].count, out[0].message.as_str()), (7, "latest"));
    }

    #[test]
    fn kube_proxy_mode_comes_from_its_config() {
        let cm: ConfigMap = serde_norway::from_str(
            "{metadata: {name: kube-proxy-config}, data: {config: \"apiVersion: kubeproxy.config.k8s.io/v1alpha1\\nkind: KubeProxyConfiguration\\nmode: \\\"ipvs\\\"\\n\"}}",
        )
        .unwrap();
        assert_eq!(kube_proxy_mode(&cm).as_deref(), Some("ipvs"));
    }
}
