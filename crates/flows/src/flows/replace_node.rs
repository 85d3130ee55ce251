//! Seed 002's "replace a NotReady node": cordon it, drain it (a pod the kubelet never
//! confirms stopping counts as gone once it is Terminating: its controller has started the
//! replacement elsewhere), then retire it the way its provisioner needs, and wait until it
//! is gone, its replacement (when one is due) is Ready and the workloads it ran are
//! available again. A planned, journaled run like every other.
//!
//! How a node is retired:
//! - Karpenter's: its NodeClaim is deleted (Karpenter terminates the instance and removes the
//!   Node); with no NodeClaim kind served (Karpenter before 0.32), its Node is deleted and
//!   Karpenter's finalizer does the same.
//! - A managed node group's or a self-managed group's: its instance (from `spec.providerID`)
//!   is terminated in its Auto Scaling group with the desired capacity kept, so the group
//!   launches another; the Node object is then deleted, as the cloud controller would.
//! - Or your command (`{node}` is the node), for anything else.
//!
//! There is no way back once the instance is terminated (nor need for one: a replacement
//! takes its place); `upgrade-rollback` before then lifts the cordon this run set.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};
use upgrade_core::executor::{NotApplied, Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_kube::connect::Cluster;
use upgrade_kube::drain::DrainOptions;
use upgrade_kube::provisioner::Provisioner;
use upgrade_kube::replace::{self, NodeClaimRef, NodeCommand};

use super::bluegreen::{AwsSettings, aws_unavailable};
use super::nodes::DrainSpec;
use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The node to replace, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceNodeSpec {
    /// The Node's name.
    pub node: String,
    /// Retire it with this command instead (`{node}` is the node; split like a shell would,
    /// run without one), e.g. for nodes in no Auto Scaling group.
    #[serde(default)]
    pub retire_command: Option<String>,
    /// How to reach AWS (Auto Scaling), for nodes of a managed node group or a self-managed
    /// group.
    #[serde(default)]
    pub aws: AwsSettings,
    /// What the drain may evict (kubectl drain's flags).
    #[serde(default)]
    pub drain: DrainSpec,
    /// The limit of the drain, and of the wait for the replacement and the workloads
    /// (seconds, each).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}

/// How the node is retired once drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Retirement {
    /// Delete Karpenter's NodeClaim.
    NodeClaim {
        /// The NodeClaim.
        claim: NodeClaimRef,
    },
    /// Delete the Node (Karpenter's finalizer terminates the instance).
    KarpenterNode,
    /// Terminate the instance in its Auto Scaling group, keeping the desired capacity.
    AutoScaling {
        /// The instance.
        instance_id: String,
        /// Its group.
        group: String,
        /// How to reach AWS.
        aws: AwsSettings,
    },
    /// Your command.
    Command {
        /// The command.
        command: NodeCommand,
    },
}

impl Retirement {
    fn describe(&self, node: &str) -> String {
        match self {
            Retirement::NodeClaim { claim } => format!(
                "delete NodeClaim {} ({}): Karpenter terminates the instance and launches capacity for the pods that need it",
                claim.name, claim.api_version
            ),
            Retirement::KarpenterNode => format!(
                "delete Node {node} (no NodeClaim kind is served): Karpenter's finalizer terminates the instance"
            ),
            Retirement::AutoScaling {
                instance_id, group, ..
            } => format!(
                "terminate instance {instance_id} in Auto Scaling group {group} with the desired capacity kept (the group launches a replacement), then delete Node {node}"
            ),
            Retirement::Command { command } => format!(
                "run `{}` then delete Node {node}",
                command.for_node(node, Duration::ZERO)
            ),
        }
    }

    /// Whether a new node is due (the group keeps its size); Karpenter launches one only
    /// when pods need it.
    fn replacement_due(&self) -> bool {
        matches!(self, Retirement::AutoScaling { .. })
    }
}

/// A workload that ran pods on the node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workload {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What [`ReplaceNodeStep`] does, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceNodeStepSpec {
    /// Step id.
    pub id: String,
    /// The node.
    pub node: String,
    /// How it is retired.
    pub retirement: Retirement,
    /// The drain.
    pub drain: DrainOptions,
    /// The workloads that ran pods on it when planned (awaited available at the end).
    pub workloads: Vec<Workload>,
    /// The nodes there when planned (a replacement is a Ready node not among them).
    pub nodes_before: Vec<String>,
    /// The labels a replacement carries (its node group's).
    pub replacement_labels: Vec<(String, String)>,
    /// The limit of each wait.
    pub timeout: Duration,
}

impl StepSpec for ReplaceNodeStepSpec {
    const KIND: &'static str = "emergency-replace-node";
}

/// Cordon, drain, retire, then wait (see the module docs).
pub struct ReplaceNodeStep {
    /// What it does.
    pub spec: ReplaceNodeStepSpec,
    /// The cluster.
    pub cluster: Cluster,
}

type StepResult<T> = std::result::Result<T, upgrade_core::executor::StepError>;

impl ReplaceNodeStep {
    async fn node(&self) -> StepResult<Option<Node>> {
        let nodes: Api<Node> = Api::all(self.cluster.client().clone());
        Ok(nodes
            .get_opt(&self.spec.node)
            .await
            .map_err(|e| format!("read node {}: {e}", self.spec.node))?)
    }

    async fn retire(&self) -> StepResult<()> {
        let node = &self.spec.node;
        match &self.spec.retirement {
            Retirement::NodeClaim { claim } => {
                replace::delete_node_claim(&self.cluster, claim).await?;
            }
            Retirement::KarpenterNode => replace::delete_node(&self.cluster, node).await?,
            Retirement::AutoScaling {
                instance_id, aws, ..
            } => {
                let asg = aws
                    .builder()
                    .stop_signal(self.cluster.stop_signal().clone())
                    .build_autoscaling()?;
                // A resumed run whose termination went through finds the instance gone.
                let current = asg.instance(instance_id).await?;
                if current.is_some_and(|i| !i.lifecycle_state.starts_with("Terminating")) {
                    asg.replace_instance(instance_id).await?;
                }
                replace::delete_node(&self.cluster, node).await?;
            }
            Retirement::Command { command } => {
                let mut cmd = command.for_node(node, self.spec.timeout);
                cmd.stop_signal(self.cluster.stop_signal().clone())
                    .resolve_env_refs()?;
                cmd.exec_async().await?;
                replace::delete_node(&self.cluster, node).await?;
            }
        }
        Ok(())
    }

    /// Whether the node and its instance are still there after a failed retirement (so
    /// nothing beyond the cordon changed); unknown counts as no.
    async fn still_serving(&self) -> bool {
        if !matches!(self.node().await, Ok(Some(_))) {
            return false;
        }
        match &self.spec.retirement {
            Retirement::AutoScaling {
                instance_id, aws, ..
            } => match aws.builder().build_autoscaling() {
                Ok(asg) => matches!(
                    asg.instance(instance_id).await,
                    Ok(Some(i)) if i.lifecycle_state == "InService"
                ),
                Err(_) => false,
            },
            Retirement::NodeClaim { claim } => {
                matches!(replace::node_claim_of(&self.cluster, &self.spec.node).await, Ok(Some(c)) if c == *claim)
            }
            // The Node is there; a command that failed is taken not to have removed it.
            Retirement::KarpenterNode | Retirement::Command { .. } => true,
        }
    }

    /// What is still missing: the node not gone, no replacement, workloads unavailable.
    async fn missing(&self, replacement_due: bool) -> StepResult<Vec<String>> {
        let mut missing = Vec::new();
        if self.node().await?.is_some() {
            missing.push(format!("node {} still exists", self.spec.node));
        }
        if replacement_due {
            let nodes: Api<Node> = Api::all(self.cluster.client().clone());
            let labels: Vec<String> = self
                .spec
                .replacement_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let new_ready = nodes
                .list(&ListParams::default().labels(&labels.join(",")))
                .await
                .map_err(|e| format!("list nodes: {e}"))?
                .items
                .into_iter()
                .any(|n| {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    !self.spec.nodes_before.contains(&name) && upgrade_kube::health::node_ready(&n)
                });
            if !new_ready {
                missing.push(format!(
                    "no new Ready node{} has joined",
                    if labels.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", labels.join(","))
                    }
                ));
            }
        }
        for workload in &self.spec.workloads {
            if let Some(why) = unavailable(&self.cluster, workload).await? {
                missing.push(format!("{workload}: {why}"));
            }
        }
        Ok(missing)
    }

    async fn wait(&self, replacement_due: bool) -> StepResult<()> {
        let deadline = Instant::now() + self.spec.timeout;
        loop {
            let missing = self.missing(replacement_due).await?;
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {} was retired, but within {} s: {}",
                    self.spec.node,
                    self.spec.timeout.as_secs(),
                    missing.join("; ")
                )
                .into());
            }
            self.cluster.pause(Duration::from_millis(500)).await?;
        }
    }
}

/// Why `workload` is not available now (`None`: it is, or it is gone).
async fn unavailable(cluster: &Cluster, workload: &Workload) -> StepResult<Option<String>> {
    let client = cluster.client().clone();
    let read = |e: kube::Error| format!("read {workload}: {e}");
    Ok(match workload.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client, &workload.namespace)
            .get_opt(&workload.name)
            .await
            .map_err(read)?
            .and_then(|d| upgrade_kube::health::deployment_available(&d).err()),
        _ => Api::<StatefulSet>::namespaced(client, &workload.namespace)
            .get_opt(&workload.name)
            .await
            .map_err(read)?
            .and_then(|s| upgrade_kube::health::statefulset_ready(&s).err()),
    })
}

impl Step for ReplaceNodeStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "emergency"
    }

    fn irreversible(&self) -> Option<String> {
        Some(format!(
            "node {} is retired (its instance terminated); its replacement takes its place",
            self.spec.node
        ))
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: format!("Node {} (replace)", self.spec.node),
            from: None,
            to: None,
        }
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "cordon and drain node {}, then {}; wait until it is gone{} and its workloads are available",
            self.spec.node,
            self.spec.retirement.describe(&self.spec.node),
            if self.spec.retirement.replacement_due() {
                ", a replacement is Ready"
            } else {
                ""
            }
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        // The cordon's owner is recorded on the node itself (upgrade_kube::cordon).
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if self.node().await?.is_some() {
                // Until the node is retired nothing is beyond the rollback's reach (it lifts
                // the cordon), so a failure up to then says so.
                let retired = async {
                    upgrade_kube::cordon::cordon(&self.cluster, &self.spec.node).await?;
                    let report = upgrade_kube::drain::drain(
                        &self.cluster,
                        &self.spec.node,
                        &self.spec.drain,
                    )
                    .await?;
                    tracing::info!(node = %self.spec.node, evicted = report.evicted.len(), "drained");
                    self.retire().await
                }
                .await;
                if let Err(e) = retired {
                    // A retire command stopped midway may have terminated the instance.
                    let ambiguous = e
                        .downcast_ref::<upgrade_core::process::ProcessError>()
                        .is_some_and(|p| {
                            matches!(
                                p,
                                upgrade_core::process::ProcessError::TimedOut { .. }
                                    | upgrade_core::process::ProcessError::Stopped { .. }
                            )
                        });
                    return Err(if !ambiguous && self.still_serving().await {
                        Box::new(NotApplied(format!(
                            "{e} (node {} is not retired)",
                            self.spec.node
                        )))
                    } else {
                        e
                    });
                }
            }
            self.wait(self.spec.retirement.replacement_due()).await
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let missing = self.missing(false).await?;
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join("; ").into())
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            if self.node().await?.is_some() {
                // Retired or not, a node still there gets back the scheduling this run took.
                upgrade_kube::cordon::uncordon(&self.cluster, &self.spec.node).await?;
            } else {
                tracing::info!(node = %self.spec.node, "the node is gone (replaced): nothing to put back");
            }
            Ok(())
        })
    }
}

/// Plans the replacement: the node must exist and something must be able to retire it.
pub async fn plan_replace_node(ctx: &FlowContext, spec: &ReplaceNodeSpec) -> Result<Planned> {
    let cluster = ctx.cluster();
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let node = nodes
        .get_opt(&spec.node)
        .await
        .map_err(|e| FlowError::failed(format!("read node {}", spec.node), e))?
        .ok_or_else(|| {
            FlowError::invalid(
                "node",
                format!("there is no node {}", spec.node),
                "name one of kubectl get nodes",
            )
        })?;
    let ready = upgrade_kube::health::node_ready(&node);
    let provisioner = Provisioner::of(&node);
    let (retirement, replacement_labels) = match (&spec.retire_command, &provisioner) {
        (Some(text), _) => {
            let command = super::nodes::split_command("retire_command", text)?;
            (Retirement::Command { command }, Vec::new())
        }
        (None, Provisioner::Karpenter { .. }) => {
            let claim = replace::node_claim_of(cluster, &spec.node)
                .await
                .map_err(|e| FlowError::failed("read Karpenter's NodeClaims", e))?;
            let retirement = match claim {
                Some(claim) => Retirement::NodeClaim { claim },
                None => Retirement::KarpenterNode,
            };
            (retirement, Vec::new())
        }
        (None, Provisioner::Fargate) => {
            return Err(FlowError::invalid(
                "node",
                format!("{} is a Fargate node", spec.node),
                "restart its pod's workload instead (upgrade-emergency restart): Fargate gives the new pod a new node",
            ));
        }
        (None, Provisioner::ManagedNodeGroup { .. } | Provisioner::SelfManaged) => {
            let instance_id = replace::instance_id(&node).ok_or_else(|| {
                FlowError::invalid(
                    "node",
                    format!(
                        "{} names no EC2 instance (spec.providerID is not aws:///ZONE/i-...)",
                        spec.node
                    ),
                    "give --retire-command for how such a node is removed",
                )
            })?;
            let asg = spec
                .aws
                .builder()
                .stop_signal(cluster.stop_signal().clone())
                .build_autoscaling()
                .map_err(|e| aws_unavailable(e.to_string()))?;
            let found = asg
                .instance(&instance_id)
                .await
                .map_err(|e| FlowError::failed("read the instance's Auto Scaling group", e))?
                .ok_or_else(|| {
                    FlowError::invalid(
                        "node",
                        format!(
                            "instance {instance_id} of {} is in no Auto Scaling group",
                            spec.node
                        ),
                        "give --retire-command for how this node is removed (and its capacity replaced)",
                    )
                })?;
            let group_label: Vec<(String, String)> = match &provisioner {
                Provisioner::ManagedNodeGroup { name } => {
                    vec![(super::nodes::NODEGROUP_LABEL.to_string(), name.clone())]
                }
                _ => Vec::new(),
            };
            (
                Retirement::AutoScaling {
                    instance_id,
                    group: found.auto_scaling_group_name,
                    aws: spec.aws.clone(),
                },
                group_label,
            )
        }
    };

    // What runs there, so the end of the run waits for it to be available again.
    let pods: Api<Pod> = Api::all(cluster.client().clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", spec.node)))
        .await
        .map_err(|e| FlowError::failed(format!("list the pods on {}", spec.node), e))?
        .items;
    let mut workloads = Vec::new();
    for pod in &on_node {
        if let Some(workload) = owner_workload(cluster, pod).await? {
            workloads.push(workload);
        }
    }
    workloads.sort();
    workloads.dedup();
    let nodes_before: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| FlowError::failed("list nodes", e))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();

    let timeout = Duration::from_secs(spec.timeout_secs);
    let mut drain = spec.drain.options(timeout);
    if !ready {
        // Its kubelet will never confirm a pod stopped, and its pods serve nothing.
        drain.terminating_counts_as_gone_after = Some(Duration::ZERO);
        drain.delete_unready_pods = true;
    }
    let step = ReplaceNodeStep {
        spec: ReplaceNodeStepSpec {
            id: format!("emergency/replace-node/{}", spec.node),
            node: spec.node.clone(),
            retirement,
            drain,
            workloads,
            nodes_before,
            replacement_labels,
            timeout,
        },
        cluster: cluster.clone(),
    };
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-emergency",
        ctx.cluster_name(),
        ctx.new_run_id("emergency")?,
        &refs,
    );
    plan.changes = vec![format!(
        "node {} ({}, {provisioner}): cordon, drain, {}",
        spec.node,
        if ready { "Ready" } else { "NotReady" },
        step.spec.retirement.describe(&spec.node)
    )];
    let (prediction, blocked) = drain_prediction(&spec.node, &on_node, &step.spec.drain);
    plan.changes.push(prediction);
    plan.blockers = blocked
        .into_iter()
        .map(|pod| format!("the drain of {} would stop at {pod}", spec.node))
        .collect();
    if !ready {
        plan.changes.push(
            "its kubelet does not answer: its pods that are not Ready are deleted rather than evicted (they serve nothing and count toward no budget, as the node lifecycle controller's taint eviction would), and a pod counts as gone once it is Terminating (its controller starts the replacement elsewhere; pod GC removes it with the Node)".into(),
        );
    }
    if !step.spec.workloads.is_empty() {
        plan.changes.push(format!(
            "then wait until {} available",
            step.spec
                .workloads
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    plan.findings.push(
        "no way back once the node is retired (its instance is terminated; the replacement takes its place); upgrade-rollback before then lifts the cordon".into(),
    );
    Ok(Planned::new(
        super::emergency::EMERGENCY_FLOW,
        spec,
        plan,
        vec![Box::new(step)],
    ))
}

/// What the drain will do with the pods on `node` now, and the pods it would stop at
/// whatever the budgets (each a drain flag's business).
fn drain_prediction(node: &str, pods: &[Pod], drain: &DrainOptions) -> (String, Vec<String>) {
    use upgrade_kube::drain::{PodPlan, plan_pod};
    use upgrade_kube::health::pod_ready;
    let (mut evicted, mut deleted, mut stay, mut blocked) = (0, 0, 0, Vec::new());
    for pod in pods {
        match plan_pod(pod, drain) {
            PodPlan::Skip => stay += 1,
            PodPlan::Evict if drain.delete_unready_pods && !pod_ready(pod) => deleted += 1,
            PodPlan::Evict => evicted += 1,
            PodPlan::Block(reason) => blocked.push(format!(
                "{}/{} ({reason})",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            )),
        }
    }
    let line = format!(
        "drain {node}: {evicted} pod(s) evicted (budgets honoured), {deleted} deleted (not Ready), {stay} stay (DaemonSet/mirror)"
    );
    (line, blocked)
}

/// The Deployment (through its ReplicaSet) or StatefulSet that owns `pod`.
async fn owner_workload(cluster: &Cluster, pod: &Pod) -> Result<Option<Workload>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return Ok(None);
    };
    let workload = |kind: &str, name: &str| Workload {
        kind: kind.into(),
        namespace: namespace.clone(),
        name: name.into(),
    };
    Ok(match owner.kind.as_str() {
        "StatefulSet" => Some(workload("StatefulSet", &owner.name)),
        "ReplicaSet" => {
            let sets: Api<ReplicaSet> = Api::namespaced(cluster.client().clone(), &namespace);
            sets.get_opt(&owner.name)
                .await
                .map_err(|e| FlowError::failed(format!("read ReplicaSet {}", owner.name), e))?
                .and_then(|rs| {
                    rs.metadata
                        .owner_references
                        .into_iter()
                        .flatten()
                        .find(|o| o.kind == "Deployment" && o.controller == Some(true))
                })
                .map(|d| workload("Deployment", &d.name))
        }
        _ => None,
    })
}
