//! Node rollouts (seed 004's node procedure): cordon, drain with PodDisruptionBudgets
//! honoured, and replace the nodes below a Kubernetes minor; a canary node first, then
//! batches, each validated twice. The EKS hop uses the same rollout for its nodes.
//!
//! Each node is replaced the way its provisioner needs (`upgrade_kube::replace`):
//! Karpenter's nodes by Karpenter; self-managed nodes, and managed node groups' nodes unless
//! their own update replaces them, by your surge/retire commands. A plan that selects nodes
//! nothing replaces is blocked: draining and deleting them would bring nothing back, or, for
//! a managed node group, a node at the old version.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_core::version::KubeMinor;
use upgrade_kube::drain::DrainOptions;
use upgrade_kube::facts::{GatherOptions, gather};
use upgrade_kube::provisioner::Provisioner;
use upgrade_kube::replace::{
    CommandReplacer, ManagedNodeGroups, NODE_PLACEHOLDER, NodeCommand, Replacement, ReplacerSpec,
};
use upgrade_kube::rollout::{RolloutOptions, ValidationOptions};
use upgrade_kube::step::{NodeRolloutSpec, NodeRolloutStep};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "node-rollout";

/// The label EKS managed node groups put on their nodes.
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

/// How nodes are rolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// For the nodes no autoscaler replaces: run before a node is drained to add capacity,
    /// `{node}` is the node (split like a shell would, run without one). Optional.
    #[serde(default)]
    pub surge_command: Option<String>,
    /// For the nodes no autoscaler replaces: run after a node is drained to remove it, e.g.
    /// `aws ec2 terminate-instances --instance-ids {node}`. Without it such nodes are not
    /// replaced (Karpenter's nodes need none).
    #[serde(default)]
    pub retire_command: Option<String>,
    /// What replaces managed node groups' nodes: your commands, or the node group's own
    /// version update (then the rollout leaves them alone).
    #[serde(default)]
    pub managed_node_groups: ManagedNodeGroups,
    /// Nodes per batch after the canary.
    pub batch_size: usize,
    /// Pause between batches.
    pub pause: Duration,
    /// Time between the two validations after each batch.
    pub validation_interval: Duration,
    /// What each drain may evict (kubectl drain's flags); the plan's drain prediction and
    /// the run use the same.
    #[serde(default)]
    pub drain: DrainSpec,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            surge_command: None,
            retire_command: None,
            managed_node_groups: ManagedNodeGroups::Commands,
            batch_size: 1,
            pause: Duration::from_secs(30),
            validation_interval: Duration::from_secs(10),
            drain: DrainSpec::default(),
        }
    }
}

/// What a drain may evict, with the meaning of kubectl drain's flags of the same names
/// (seed 004 runs `--ignore-daemonsets --delete-emptydir-data --force --grace-period=300`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrainSpec {
    /// Leave DaemonSet pods on the node (`--ignore-daemonsets`); when false they block the
    /// drain, as in kubectl. On by default: every EKS node runs DaemonSets (aws-node,
    /// kube-proxy) that would otherwise block every drain.
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes, whose data is lost (`--delete-emptydir-data`): for
    /// scratch space such as the Argo Workflows server's or Argo CD's.
    pub delete_emptydir_data: bool,
    /// Evict pods no controller recreates, and pods annotated `karpenter.sh/do-not-disrupt`
    /// (`--force`); they do not come back.
    pub force: bool,
    /// Seconds each evicted pod gets to stop (`--grace-period`); `None`: the pod's own
    /// `terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<u64>,
}

impl Default for DrainSpec {
    fn default() -> Self {
        let library = DrainOptions::default();
        DrainSpec {
            ignore_daemonsets: library.ignore_daemonsets,
            delete_emptydir_data: library.delete_emptydir_data,
            force: library.force,
            grace_period_seconds: None,
        }
    }
}

impl DrainSpec {
    /// The drain options, each drain limited to `timeout`.
    pub fn options(&self, timeout: Duration) -> DrainOptions {
        DrainOptions {
            ignore_daemonsets: self.ignore_daemonsets,
            delete_emptydir_data: self.delete_emptydir_data,
            force: self.force,
            grace_period: self.grace_period_seconds.map(Duration::from_secs),
            timeout,
            ..DrainOptions::default()
        }
    }
}

/// The replacer's commands, split and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacerCommands {
    /// The surge command, when one was given.
    pub surge: Option<NodeCommand>,
    /// The retire command.
    pub retire: NodeCommand,
}

impl RolloutSpec {
    /// Checks the fields fit together; splits the commands, when given, and finds their
    /// programs.
    pub fn validate(&self) -> Result<Option<ReplacerCommands>> {
        if self.batch_size == 0 {
            return Err(FlowError::invalid(
                "batch_size",
                "0: a batch needs at least one node",
                format!("set {} to 1 or more", field("batch_size")),
            ));
        }
        let Some(retire) = self.retire_command.as_deref() else {
            if self.surge_command.is_some() {
                return Err(FlowError::invalid(
                    "surge_command",
                    format!("needs {}", field("retire_command")),
                    "give it as \"... {node} ...\" (how a drained node is removed)",
                ));
            }
            return Ok(None);
        };
        let retire = split_command("retire_command", retire)?;
        let surge = self
            .surge_command
            .as_deref()
            .map(|s| split_command("surge_command", s))
            .transpose()?;
        Ok(Some(ReplacerCommands { surge, retire }))
    }

    /// Rollout options: canary first, the batch size, drains within `timeout`.
    pub fn options(
        &self,
        from: String,
        to: String,
        run_id: &str,
        timeout: Duration,
    ) -> RolloutOptions {
        RolloutOptions {
            batch_size: self.batch_size,
            canary: true,
            canary_soak: Duration::ZERO,
            pause: self.pause,
            drain: self.drain.options(timeout),
            validation: ValidationOptions {
                passes: 2,
                interval: self.validation_interval,
                timeout,
            },
            from_version: from,
            to_version: to,
            run_id: run_id.to_string(),
        }
    }
}

/// Splits a `{node}` command (surge/retire), checks its secrets and resolves its program.
pub(crate) fn split_command(flag: &'static str, text: &str) -> Result<NodeCommand> {
    let shown = upgrade_core::redact::scrub_credentials(text);
    let words = super::split_words(flag, text)?;
    super::check_secrets(flag, &words)?;
    if !words.iter().any(|w| w.contains(NODE_PLACEHOLDER)) {
        return Err(FlowError::invalid(
            flag,
            format!("{shown:?} never names the node"),
            format!("put {NODE_PLACEHOLDER} where the node's name goes"),
        ));
    }
    let mut command = NodeCommand::from_words(words)
        .ok_or_else(|| FlowError::invalid(flag, "is empty", "give a command"))?;
    // Resolved now, so a missing program is bad input before anything changes, and the
    // record names the program that ran.
    command.program = which::which(&command.program).map_err(|_| {
        FlowError::invalid(
            flag,
            format!(
                "`{}` is not an executable on PATH",
                command.program.display()
            ),
            "install it or give its full path",
        )
    })?;
    Ok(command)
}

/// The rollout step for the nodes below `target` matching `selector` (every node when empty):
/// Karpenter's by Karpenter, the others by `commands` (or their node group's own update);
/// drains and validation within `timeout`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rollout_step(
    ctx: &FlowContext,
    id: String,
    component: &str,
    rollout: &RolloutSpec,
    target: KubeMinor,
    selector: Vec<(String, String)>,
    commands: Option<ReplacerCommands>,
    run_id: &str,
    timeout: Duration,
) -> Result<NodeRolloutStep> {
    let from = target.prev().map(|m| m.to_string()).unwrap_or_default();
    let mut step = NodeRolloutStep {
        spec: NodeRolloutSpec {
            id,
            component: component.into(),
            target,
            selector,
            planned_nodes: Vec::new(),
            replacer: ReplacerSpec {
                commands: commands.map(|ReplacerCommands { surge, retire }| CommandReplacer {
                    surge,
                    retire,
                    timeout,
                }),
                managed_node_groups: rollout.managed_node_groups,
            },
            options: rollout.options(from, target.to_string(), run_id, timeout),
        },
        cluster: ctx.cluster().clone(),
    };
    // The record names the nodes the plan showed.
    step.spec.planned_nodes = step
        .nodes()
        .await
        .map_err(|e| FlowError::failed("list the nodes to replace", e))?;
    Ok(step)
}

/// What the plan says about the nodes below the target: (blockers, findings). A node
/// nothing replaces blocks (the rollout must not drain it, and it cannot do what was asked);
/// a Fargate node is a finding (its pods get the new version when recreated); a managed
/// node group left to its own update is a finding.
pub(crate) async fn replacement_notes(
    step: &NodeRolloutStep,
) -> Result<(Vec<String>, Vec<String>)> {
    let classified = step
        .classify()
        .await
        .map_err(|e| FlowError::failed("read the nodes to replace", e))?;
    let (mut blockers, mut findings) = (Vec::new(), Vec::new());
    let mut own_update: Vec<String> = Vec::new();
    for (node, provisioner) in &classified {
        let replacer = &step.spec.replacer;
        match replacer.replacement(provisioner) {
            Replacement::Karpenter | Replacement::Commands => {}
            Replacement::OwnUpdate => own_update.push(format!("{node} ({provisioner})")),
            Replacement::Nothing if *provisioner == Provisioner::Fargate => findings.push(format!(
                "{node} is below {} and stays: {}",
                step.spec.target,
                replacer.why_nothing(provisioner)
            )),
            Replacement::Nothing => blockers.push(format!(
                "{node} ({provisioner}) is below {} and nothing replaces it: {}",
                step.spec.target,
                replacer.why_nothing(provisioner)
            )),
        }
    }
    if !own_update.is_empty() {
        findings.push(format!(
            "left to their managed node group's own version update: {}",
            own_update.join(", ")
        ));
    }
    Ok((blockers, findings))
}

/// Which nodes to roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeSelection {
    /// The nodes of an EKS managed node group (label `eks.amazonaws.com/nodegroup`).
    NodeGroup(String),
    /// The nodes with these labels.
    Selector(Vec<(String, String)>),
}

impl NodeSelection {
    /// Parses `key=value[,key=value...]`.
    pub fn parse_selector(text: &str) -> Result<NodeSelection> {
        text.split(',')
            .map(|pair| {
                pair.split_once('=')
                    .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| {
                        FlowError::invalid(
                            "selector",
                            format!("`{text}` is not key=value[,key=value]"),
                            format!("write it like {NODEGROUP_LABEL}=default"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(NodeSelection::Selector)
    }

    fn labels(&self) -> Vec<(String, String)> {
        match self {
            NodeSelection::NodeGroup(group) => vec![(NODEGROUP_LABEL.to_string(), group.clone())],
            NodeSelection::Selector(labels) => labels.clone(),
        }
    }

    /// A name for the selection in step ids: `nodegroup-default`, or the selector's values.
    fn name(&self) -> String {
        match self {
            NodeSelection::NodeGroup(group) => format!("nodegroup-{group}"),
            NodeSelection::Selector(labels) => labels
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

/// A node rollout: which nodes, up to which minor, how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesSpec {
    /// The nodes to roll.
    pub selection: NodeSelection,
    /// Replace nodes below this minor (default: the control plane's minor).
    #[serde(default)]
    pub target: Option<String>,
    /// How.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// The limit of each drain and validation.
    pub timeout: Duration,
}

/// Checks the spec without a cluster (selection, target, replacer); [`plan`] checks it again.
pub fn check(spec: &NodesSpec) -> Result<()> {
    checked(spec).map(drop)
}

fn checked(spec: &NodesSpec) -> Result<(Option<KubeMinor>, Option<ReplacerCommands>)> {
    if let NodeSelection::NodeGroup(group) = &spec.selection
        && group.is_empty()
    {
        return Err(FlowError::invalid(
            "node_group",
            "is empty",
            format!("name the node group, or give {}", field("selector")),
        ));
    }
    let target = spec
        .target
        .as_deref()
        .map(|t| {
            t.parse::<KubeMinor>().map_err(|e| {
                FlowError::invalid(
                    "target",
                    format!("{t}: {e}"),
                    "give a Kubernetes minor such as 1.31",
                )
            })
        })
        .transpose()?;
    Ok((target, spec.rollout.validate()?))
}

/// Plans a node rollout: the selection and replacer checked, the nodes below the target
/// listed with a drain prediction each.
pub async fn plan(ctx: &FlowContext, spec: &NodesSpec) -> Result<Planned> {
    let (target, commands) = checked(spec)?;
    let target = match target {
        Some(t) => t,
        None => crate::flows::live_version(ctx).await?.minor,
    };
    let run_id = ctx.new_run_id("nodes")?;
    let step = rollout_step(
        ctx,
        format!("nodes/roll-{}", spec.selection.name()),
        "nodes",
        &spec.rollout,
        target,
        spec.selection.labels(),
        commands,
        &run_id,
        spec.timeout,
    )
    .await?;
    let nodes = step.spec.planned_nodes.clone();
    let options = GatherOptions {
        drain: spec.rollout.drain.options(spec.timeout),
        ..GatherOptions::default()
    };
    let gathered = gather(ctx.cluster(), &options)
        .await
        .map_err(|e| FlowError::failed("gather the cluster's facts for the drain prediction", e))?;
    let mut changes = vec![format!(
        "replace {} node(s) below {target}: {}",
        nodes.len(),
        if nodes.is_empty() {
            "none".to_string()
        } else {
            nodes.join(", ")
        }
    )];
    changes.extend(drain_predictions(&gathered, &nodes));
    let (blockers, findings) = replacement_notes(&step).await?;
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new("upgrade-nodes", ctx.cluster_name(), run_id, &refs);
    plan.changes = changes;
    plan.findings = gathered.notes.clone();
    plan.findings.extend(findings);
    plan.blockers = blockers;
    Ok(Planned::new(FLOW, spec, plan, vec![Box::new(step)]))
}

/// One line per node of `nodes`: how many pods its drain evicts and what blocks it now.
pub(crate) fn drain_predictions(
    gathered: &upgrade_kube::facts::Gathered,
    nodes: &[String],
) -> Vec<String> {
    gathered
        .drains
        .iter()
        .filter(|d| nodes.contains(&d.node))
        .map(|prediction| {
            let mut line = format!(
                "drain {}: {} pod(s) evicted, {} stay (DaemonSet/mirror)",
                prediction.node, prediction.evictable, prediction.skipped
            );
            for blocked in &prediction.blocked {
                let budgets = if blocked.budgets.is_empty() {
                    String::new()
                } else {
                    format!(" [budget {}]", blocked.budgets.join(", "))
                };
                line.push_str(&format!(
                    "; blocked now: {}/{} ({}){budgets}",
                    blocked.namespace, blocked.name, blocked.reason
                ));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(rollout: RolloutSpec) -> std::result::Result<Option<ReplacerCommands>, String> {
        let flag = |f: &str| format!("--{}", f.replace('_', "-"));
        rollout.validate().map_err(|e| match e {
            FlowError::Invalid(invalid) => invalid.render(&flag),
            other => other.to_string(),
        })
    }

    fn command(retire: &str) -> RolloutSpec {
        RolloutSpec {
            retire_command: Some(retire.into()),
            ..RolloutSpec::default()
        }
    }

    #[test]
    fn replacer_fields_are_checked_before_anything_runs() {
        assert!(
            validate(RolloutSpec::default()).unwrap().is_none(),
            "karpenter needs no commands"
        );
        let err = validate(RolloutSpec {
            surge_command: Some("true {node}".into()),
            ..RolloutSpec::default()
        })
        .unwrap_err();
        assert!(
            err.contains("--surge-command: needs --retire-command"),
            "{err}"
        );
        let err = validate(command("true")).unwrap_err();
        assert!(err.contains("put {node} where"), "{err}");
        let err = validate(command("true '{node}")).unwrap_err();
        assert!(err.contains("unbalanced quote"), "{err}");
        let err = validate(command("no-such-program-x {node}")).unwrap_err();
        assert!(err.contains("not an executable on PATH"), "{err}");
        let err = validate(RolloutSpec {
            batch_size: 0,
            ..RolloutSpec::default()
        })
        .unwrap_err();
        assert!(err.contains("--batch-size to 1 or more"), "{err}");
        let ok = validate(RolloutSpec {
            surge_command: Some("true {node}".into()),
            ..command("true 'node {node}'")
        })
        .unwrap()
        .unwrap();
        assert!(ok.retire.program.is_absolute(), "resolved on PATH: {ok:?}");
        assert_eq!(ok.retire.args, ["node {node}"]);
        assert!(ok.surge.is_some());
    }

    #[test]
    fn selectors_parse_or_name_the_expected_form() {
        assert_eq!(
            NodeSelection::parse_selector("a=b, c=d").unwrap(),
            NodeSelection::Selector(vec![("a".into(), "b".into()), ("c".into(), "d".into())])
        );
        let err = NodeSelection::parse_selector("a").unwrap_err();
        assert!(err.to_string().contains("is not key=value"), "{err}");
        assert_eq!(
            NodeSelection::NodeGroup("default".into()).name(),
            "nodegroup-default"
        );
    }
}
