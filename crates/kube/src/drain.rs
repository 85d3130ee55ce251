//! Drain with kubectl's semantics, evicting in parallel as far as the budgets allow, and
//! naming every pod and budget that blocks it.
//!
//! Like `kubectl drain`: the node is cordoned first; pods go through the Eviction API (so
//! PodDisruptionBudgets hold); DaemonSet pods stay (they would come right back); mirror
//! (static) pods are skipped; pods with emptyDir data are evicted only when allowed; pods
//! without a controller only with `force`; each pod gets its grace period; the whole drain
//! has a timeout. Unlike it: evictions run in parallel (the API server refuses, with 429,
//! any that would break a budget, and those are retried with backoff), pods annotated
//! `karpenter.sh/do-not-disrupt` are respected unless forced, and a drain that cannot
//! finish fails naming every pod left, why, and the budget involved, before or after
//! touching anything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams};
use upgrade_core::process::StopSignal;

use crate::connect::Cluster;
use crate::error::{Error, Result, api_code};
use crate::retry::{list_pages, until_deadline};
use crate::selector;

/// The annotation Karpenter uses to keep a pod from being disrupted.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
const MIRROR_POD: &str = "kubernetes.io/config.mirror";

/// How to drain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DrainOptions {
    /// Leave DaemonSet pods (kubectl's `--ignore-daemonsets`); otherwise they block.
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes, losing that data (`--delete-emptydir-data`).
    pub delete_emptydir_data: bool,
    /// Evict pods without a controller (they will not come back) and those annotated
    /// `karpenter.sh/do-not-disrupt` (`--force`).
    pub force: bool,
    /// Grace period given to each pod (`--grace-period`); `None` uses the pod's own.
    pub grace_period: Option<Duration>,
    /// The whole drain's limit (`--timeout`); seed 004 uses 5 minutes.
    pub timeout: Duration,
    /// Count a pod as gone once its deletion was asked this long ago (what kubectl's
    /// `--skip-wait-for-delete-timeout` is for, except that 0 here means at once, not never):
    /// on a node whose kubelet is not answering, an evicted pod stays Terminating until the
    /// node is gone (its controller has already started the replacement elsewhere). `None`
    /// waits for every pod to be gone.
    #[serde(default)]
    pub terminating_counts_as_gone_after: Option<Duration>,
    /// Delete pods that are not Ready instead of evicting them: for a node whose kubelet is
    /// not answering, whose pods serve nothing and count toward no budget. (A budget that is
    /// not met refuses to evict even those, so they would block the drain until the node
    /// lifecycle controller's own taint eviction deletes them the same way.)
    #[serde(default)]
    pub delete_unready_pods: bool,
    /// First retry delay after a refused eviction; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between retries of one eviction.
    pub max_backoff: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            ignore_daemonsets: true,
            delete_emptydir_data: false,
            force: false,
            grace_period: None,
            timeout: Duration::from_secs(300),
            terminating_counts_as_gone_after: None,
            delete_unready_pods: false,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why a pod did not leave the node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum BlockReason {
    /// Evicting it would break a PodDisruptionBudget (the API server answered 429).
    DisruptionBudget {
        /// The API server's message.
        message: String,
    },
    /// It has no controller, so it would not come back (use force to delete it anyway).
    NoController,
    /// It has emptyDir data that eviction would lose (allow with delete-emptydir-data).
    LocalStorage,
    /// It is annotated `karpenter.sh/do-not-disrupt=true` (use force to evict it anyway).
    DoNotDisrupt,
    /// It belongs to a DaemonSet and DaemonSet pods were not to be ignored.
    DaemonSet,
    /// The eviction failed for another reason.
    EvictionFailed {
        /// The error.
        message: String,
    },
    /// It was evicted but has not terminated yet.
    StillTerminating,
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockReason::DisruptionBudget { message } => write!(f, "disruption budget: {message}"),
            BlockReason::NoController => {
                f.write_str("no controller: it would not be recreated (force deletes it)")
            }
            BlockReason::LocalStorage => {
                f.write_str("emptyDir data would be lost (allow with delete-emptydir-data)")
            }
            BlockReason::DoNotDisrupt => write!(
                f,
                "annotated {DO_NOT_DISRUPT}=true (force evicts it anyway)"
            ),
            BlockReason::DaemonSet => f.write_str("DaemonSet pod (ignore-daemonsets leaves it)"),
            BlockReason::EvictionFailed { message } => write!(f, "eviction failed: {message}"),
            BlockReason::StillTerminating => f.write_str("evicted but still terminating"),
        }
    }
}

/// A pod that keeps a drain from finishing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockedPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Why.
    pub reason: BlockReason,
    /// The PodDisruptionBudgets that select it (`namespace/name`).
    pub budgets: Vec<String>,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    /// The node.
    pub node: String,
    /// Pods evicted (`namespace/name`), in the order they were accepted.
    pub evicted: Vec<String>,
    /// DaemonSet and mirror pods left in place.
    pub skipped: Vec<String>,
    /// Evictions the API server refused (429) before they went through.
    pub refused_evictions: u32,
    /// How long it took.
    #[serde(with = "duration_ms")]
    pub elapsed: Duration,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// How a pod on the node is to be treated, decided before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPlan {
    /// Evict it.
    Evict,
    /// Leave it (DaemonSet with ignore-daemonsets, or a mirror pod).
    Skip,
    /// It blocks the drain.
    Block(BlockReason),
}

/// Decides, for one pod, what a drain with `options` will do (pure; used for prediction too).
pub fn plan_pod(pod: &Pod, options: &DrainOptions) -> PodPlan {
    let meta = &pod.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD))
    {
        return PodPlan::Skip;
    }
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if controller.is_some_and(|o| o.kind == "DaemonSet") {
        return if options.ignore_daemonsets {
            PodPlan::Skip
        } else {
            PodPlan::Block(BlockReason::DaemonSet)
        };
    }
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if finished {
        // Nothing runs; evicting it loses nothing (kubectl deletes these too).
        return PodPlan::Evict;
    }
    if controller.is_none() && !options.force {
        return PodPlan::Block(BlockReason::NoController);
    }
    let has_empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.empty_dir.is_some()));
    if has_empty_dir && !options.delete_emptydir_data {
        return PodPlan::Block(BlockReason::LocalStorage);
    }
    let do_not_disrupt = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DO_NOT_DISRUPT))
        .is_some_and(|v| v == "true");
    if do_not_disrupt && !options.force {
        return PodPlan::Block(BlockReason::DoNotDisrupt);
    }
    PodPlan::Evict
}

/// The budgets (`namespace/name`) that select `pod`.
pub fn budgets_for(pod: &Pod, pdbs: &[PodDisruptionBudget]) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    pdbs.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| selector::matches(p.spec.as_ref().and_then(|s| s.selector.as_ref()), labels))
        .map(|p| format!("{ns}/{}", p.metadata.name.as_deref().unwrap_or_default()))
        .collect()
}

/// Cordons `node` and evicts its pods. Fails with [`Error::DrainBlocked`] naming every pod
/// that could not leave; pods that can never be evicted (no controller, emptyDir,
/// do-not-disrupt) fail the drain before any eviction.
pub async fn drain(cluster: &Cluster, node: &str, options: &DrainOptions) -> Result<DrainReport> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    // A burst of API errors longer than one write's retries is waited out, as for the lists.
    until_deadline(deadline, || crate::cordon::cordon(cluster, node)).await?;
    let client = cluster.client().clone();
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node_params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let on_node_action = format!("list pods on node {node}");
    let on_node = until_deadline(deadline, || {
        list_pages(pods.clone(), &on_node_params, 500, &on_node_action, Some)
    })
    .await?;
    let all = ListParams::default();
    let pdbs: Vec<PodDisruptionBudget> = until_deadline(deadline, || {
        list_pages(
            Api::<PodDisruptionBudget>::all(client.clone()),
            &all,
            500,
            "list PodDisruptionBudgets",
            Some,
        )
    })
    .await?;

    let mut report = DrainReport {
        node: node.to_string(),
        ..DrainReport::default()
    };
    let mut to_evict = Vec::new();
    let mut blocked = Vec::new();
    for pod in on_node {
        let key = pod_key(&pod);
        match plan_pod(&pod, options) {
            PodPlan::Skip => report.skipped.push(key),
            PodPlan::Evict => to_evict.push(pod),
            PodPlan::Block(reason) => blocked.push(BlockedPod {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                budgets: budgets_for(&pod, &pdbs),
                reason,
            }),
        }
    }
    if !blocked.is_empty() {
        return Err(Error::DrainBlocked {
            node: node.to_string(),
            blocked,
        });
    }

    let mut tasks = tokio::task::JoinSet::new();
    for pod in to_evict {
        let budgets = budgets_for(&pod, &pdbs);
        let client = client.clone();
        let options = options.clone();
        let stop = cluster.stop_signal().clone();
        tasks.spawn(async move {
            evict_until_gone(client, pod, budgets, options, deadline, stop).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("eviction tasks do not panic");
        report.refused_evictions += outcome.refused;
        match outcome.result {
            Ok(key) => report.evicted.push(key),
            Err(pod) => blocked.push(pod),
        }
    }
    report.elapsed = started.elapsed();
    if cluster.stop_signal().is_stopped() && !blocked.is_empty() {
        return Err(Error::Stopped);
    }
    if blocked.is_empty() {
        tracing::info!(node, evicted = report.evicted.len(), elapsed = ?report.elapsed, "drained");
        Ok(report)
    } else {
        blocked.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Err(Error::DrainBlocked {
            node: node.to_string(),
            blocked,
        })
    }
}

struct EvictionOutcome {
    result: std::result::Result<String, BlockedPod>,
    refused: u32,
}

async fn evict_until_gone(
    client: kube::Client,
    pod: Pod,
    budgets: Vec<String>,
    options: DrainOptions,
    deadline: Instant,
    stop: StopSignal,
) -> EvictionOutcome {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone();
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            grace_period_seconds: options.grace_period.map(|g| g.as_secs() as u32),
            ..DeleteParams::default()
        }),
        ..EvictParams::default()
    };
    let blocked = |reason| BlockedPod {
        namespace: namespace.clone(),
        name: name.clone(),
        reason,
        budgets: budgets.clone(),
    };
    let mut backoff = options.initial_backoff;
    let mut refused = 0;
    let mut last_reason;
    // A budget refusal is the real blocker; a transient error after it must not hide it.
    let mut budget_refusal: Option<BlockReason> = None;
    let delete_instead = options.delete_unready_pods && !crate::health::pod_ready(&pod);
    // Evict, retrying what the API server refuses for now (429 budget, 5xx, dropped connections).
    loop {
        let sent = if delete_instead {
            let delete = params.delete_options.clone().unwrap_or_default();
            api.delete(&name, &delete).await.map(drop)
        } else {
            api.evict(&name, &params).await.map(drop)
        };
        match sent {
            Ok(_) => break,
            Err(e) if api_code(&e) == Some(404) => {
                return EvictionOutcome {
                    result: Ok(format!("{namespace}/{name}")),
                    refused,
                };
            }
            Err(e) => {
                last_reason = match &e {
                    kube::Error::Api(status) if is_budget_refusal(status) => {
                        refused += 1;
                        let reason = BlockReason::DisruptionBudget {
                            message: budget_message(status),
                        };
                        budget_refusal = Some(reason.clone());
                        reason
                    }
                    other => BlockReason::EvictionFailed {
                        message: other.to_string(),
                    },
                };
                tracing::debug!(pod = %format!("{namespace}/{name}"), reason = %last_reason, "eviction refused; retrying");
            }
        }
        let now = Instant::now();
        if now + backoff > deadline || stop.pause(backoff).await.is_err() {
            return EvictionOutcome {
                result: Err(blocked(budget_refusal.unwrap_or(last_reason))),
                refused,
            };
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
    // Accepted: wait for it to be gone (or replaced by a new pod of the same name, or
    // Terminating for longer than the skip-wait limit).
    loop {
        match api.get_opt(&name).await {
            Ok(None) => break,
            Ok(Some(current)) if current.metadata.uid != uid => break,
            Ok(Some(current))
                if deletion_asked_before(&current, options.terminating_counts_as_gone_after) =>
            {
                tracing::info!(pod = %format!("{namespace}/{name}"), "still Terminating on an unresponsive node; counted as gone");
                break;
            }
            Ok(Some(_)) | Err(_) => {}
        }
        if Instant::now() >= deadline || stop.pause(Duration::from_millis(100)).await.is_err() {
            return EvictionOutcome {
                result: Err(blocked(BlockReason::StillTerminating)),
                refused,
            };
        }
    }
    EvictionOutcome {
        result: Ok(format!("{namespace}/{name}")),
        refused,
    }
}

/// Whether `pod`'s deletion was asked at least `limit` ago (never, without one). The API
/// server sets `deletionTimestamp` to the time the grace period ends, so the request was
/// `deletionGracePeriodSeconds` before it.
fn deletion_asked_before(pod: &Pod, limit: Option<Duration>) -> bool {
    let (Some(limit), Some(deadline)) = (limit, pod.metadata.deletion_timestamp.as_ref()) else {
        return false;
    };
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
    let asked = deadline.0.as_second() - grace;
    jiff::Timestamp::now().as_second() - asked >= limit.as_secs() as i64
}

/// Whether a refused eviction is a PodDisruptionBudget's doing (429 with the
/// `DisruptionBudget` cause or message), not API priority-and-fairness throttling (429
/// with Retry-After) or a server error; those are retried too, but name no budget.
fn is_budget_refusal(status: &kube::core::Status) -> bool {
    status.code == 429
        && (status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "DisruptionBudget"))
            || status.message.contains("disruption budget"))
}

/// The API server's message, with the budget's own numbers when it gave them.
fn budget_message(status: &kube::core::Status) -> String {
    let cause = status
        .details
        .as_ref()
        .and_then(|d| d.causes.iter().find(|c| c.reason == "DisruptionBudget"))
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty());
    match cause {
        Some(cause) => format!("{} ({cause})", status.message),
        None => status.message.clone(),
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The message of [`Error::DrainBlocked`]: every pod, its reason and its budgets.
pub fn render_blocked(node: &str, blocked: &[BlockedPod]) -> String {
    let mut out = format!(
        "cannot drain node {node}: {} pod{} did not leave",
        blocked.len(),
        if blocked.len() == 1 { "" } else { "s" }
    );
    for pod in blocked {
        out.push_str(&format!(
            "\n  - {}/{}: {}",
            pod.namespace, pod.name, pod.reason
        ));
        if !pod.budgets.is_empty() {
            out.push_str(&format!(" [budget: {}]", pod.budgets.join(", ")));
        }
    }
    let budgets: BTreeMap<&str, ()> = blocked
        .iter()
        .flat_map(|p| p.budgets.iter().map(|b| (b.as_str(), ())))
        .collect();
    if !budgets.is_empty() {
        out.push_str(&format!(
            "\nhint: check the budgets with `kubectl get pdb -A`; scale the workload up or relax {} (minAvailable/maxUnavailable), then drain again",
            budgets.keys().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, PodStatus, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("mlops".into()),
                owner_references: owner.map(|kind| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: "o".into(),
                        uid: "u".into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn plan_follows_kubectl_and_respects_do_not_disrupt() {
        let o = DrainOptions::default();
        assert_eq!(plan_pod(&pod(Some("ReplicaSet")), &o), PodPlan::Evict);
        assert_eq!(plan_pod(&pod(Some("DaemonSet")), &o), PodPlan::Skip);
        assert_eq!(
            plan_pod(
                &pod(Some("DaemonSet")),
                &DrainOptions {
                    ignore_daemonsets: false,
                    ..o.clone()
                }
            ),
            PodPlan::Block(BlockReason::DaemonSet)
        );
        assert_eq!(
            plan_pod(&pod(None), &o),
            PodPlan::Block(BlockReason::NoController)
        );
        assert_eq!(
            plan_pod(
                &pod(None),
                &DrainOptions {
                    force: true,
                    ..o.clone()
                }
            ),
            PodPlan::Evict
        );

        let mut mirror = pod(None);
        mirror.metadata.annotations = Some([(MIRROR_POD.to_string(), "x".to_string())].into());
        assert_eq!(plan_pod(&mirror, &o), PodPlan::Skip);

        let mut local = pod(Some("ReplicaSet"));
        local.spec.as_mut().unwrap().volumes = Some(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]);
        assert_eq!(
            plan_pod(&local, &o),
            PodPlan::Block(BlockReason::LocalStorage)
        );
        assert_eq!(
            plan_pod(
                &local,
                &DrainOptions {
                    delete_emptydir_data: true,
                    ..o.clone()
                }
            ),
            PodPlan::Evict
        );

        let mut pinned = pod(Some("ReplicaSet"));
        pinned.metadata.annotations =
            Some([(DO_NOT_DISRUPT.to_string(), "true".to_string())].into());
        assert_eq!(
            plan_pod(&pinned, &o),
            PodPlan::Block(BlockReason::DoNotDisrupt)
        );

        let mut done = pod(None);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(plan_pod(&done, &o), PodPlan::Evict);
    }

    #[test]
    fn blocked_message_names_pods_and_budgets() {
        let text = render_blocked(
            "ip-10-0-1-5",
            &[
                BlockedPod {
                    namespace: "mlops".into(),
                    name: "sklearn-iris-predictor-7d9f".into(),
                    reason: BlockReason::DisruptionBudget {
                        message:
                            "Cannot evict pod as it would violate the pod's disruption budget."
                                .into(),
                    },
                    budgets: vec!["mlops/sklearn-iris-pdb".into()],
                },
                BlockedPod {
                    namespace: "argo".into(),
                    name: "train-step-1".into(),
                    reason: BlockReason::NoController,
                    budgets: vec![],
                },
            ],
        );
        insta::assert_snapshot!(text, @r"
        cannot drain node ip-10-0-1-5: 2 pods did not leave
          - mlops/sklearn-iris-predictor-7d9f: disruption budget: Cannot evict pod as it would violate the pod's disruption budget. [budget: mlops/sklearn-iris-pdb]
          - argo/train-step-1: no controller: it would not be recreated (force deletes it)
        hint: check the budgets with `kubectl get pdb -A`; scale the workload up or relax mlops/sklearn-iris-pdb (minAvailable/maxUnavailable), then drain again
        ");
    }
}
