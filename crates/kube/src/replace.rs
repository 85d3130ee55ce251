//! The ready-made [`NodeReplacer`]: how new nodes come and drained nodes go, chosen per node
//! by its [`Provisioner`].
//!
//! - Karpenter's nodes: Karpenter provisions the new capacity. Before the first batch every
//!   Karpenter node being replaced is cordoned, so the pods a drain evicts cannot land on
//!   another old node: they wait, unschedulable, and Karpenter launches nodes at the control
//!   plane's version for them. A drained node is retired by deleting its Node object
//!   (Karpenter's termination finalizer then terminates the instance).
//! - Self-managed nodes, and managed node groups' nodes unless their own update replaces
//!   them: your commands, e.g. `aws autoscaling set-desired-capacity ...` to surge and
//!   `aws ec2 terminate-instances ...` to retire. `{node}` in an argument is replaced by the
//!   node's name; commands run through the toolkit's runner, never a shell. The nodes that
//!   join while a surge command runs are the surge capacity: a rollback retires them.
//! - Managed node groups whose version follows the cluster (Terraform's
//!   `aws_eks_node_group.version`, or `aws eks update-nodegroup-version`): left alone; their
//!   own update replaces them. Deleting such a node would only bring one back at the old
//!   version.
//! - Nodes nothing replaces (no commands given, or Fargate) are never drained: a plan that
//!   would retire them is refused.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::DeleteParams;
use upgrade_core::ProcessBuilder;

use std::collections::BTreeMap;

use crate::connect::Cluster;
use crate::cordon::cordon;
use crate::provisioner::Provisioner;
use crate::retry::{idempotent_write, list_all, read};
use crate::rollout::{NodeReplacer, ReplacerError};

/// The placeholder in a command's arguments that stands for the node's name.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// A command line, already split into the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeCommand {
    /// The program (a path, or a name looked up on `PATH`).
    pub program: PathBuf,
    /// Its arguments; [`NODE_PLACEHOLDER`] is replaced by the node's name.
    pub args: Vec<String>,
}

impl NodeCommand {
    /// Splits `words` (program first); `None` when there are none.
    pub fn from_words(words: Vec<String>) -> Option<NodeCommand> {
        let mut words = words.into_iter();
        let program = words.next()?;
        Some(NodeCommand {
            program: program.into(),
            args: words.collect(),
        })
    }

    /// The command for `node`, with a time limit.
    pub fn for_node(&self, node: &str, timeout: Duration) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(&self.program);
        cmd.args(self.args.iter().map(|a| a.replace(NODE_PLACEHOLDER, node)))
            .timeout(timeout);
        cmd
    }
}

/// Your surge and retire commands, for the nodes no autoscaler replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandReplacer {
    /// Run once per node of a batch before it is drained (adds capacity); optional.
    pub surge: Option<NodeCommand>,
    /// Run once per drained node (removes it).
    pub retire: NodeCommand,
    /// The time limit of each command.
    pub timeout: Duration,
}

/// What replaces a managed node group's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagedNodeGroups {
    /// Your commands (when given); without them, nothing.
    #[default]
    Commands,
    /// The node group's own version update (it follows the cluster in Terraform, or is
    /// updated with `aws eks update-nodegroup-version`): a rollout leaves its nodes alone.
    OwnUpdate,
}

/// How nodes are replaced, per provisioner, as data (for run records).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplacerSpec {
    /// Your commands, for self-managed nodes and (unless they update themselves) managed
    /// node groups' nodes.
    #[serde(default)]
    pub commands: Option<CommandReplacer>,
    /// What replaces managed node groups' nodes.
    #[serde(default)]
    pub managed_node_groups: ManagedNodeGroups,
}

/// How one node gets replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replacement {
    /// Drained, its Node deleted; Karpenter launches the replacement.
    Karpenter,
    /// Drained, retired by your commands (after your surge).
    Commands,
    /// Its managed node group's own update replaces it; a rollout leaves it alone.
    OwnUpdate,
    /// Nothing: it must not be drained or retired.
    Nothing,
}

impl Replacement {
    /// Whether a rollout drains and retires the node.
    pub fn by_rollout(self) -> bool {
        matches!(self, Replacement::Karpenter | Replacement::Commands)
    }
}

impl ReplacerSpec {
    /// How a node of `provisioner` is replaced.
    pub fn replacement(&self, provisioner: &Provisioner) -> Replacement {
        let commands = if self.commands.is_some() {
            Replacement::Commands
        } else {
            Replacement::Nothing
        };
        match provisioner {
            Provisioner::Karpenter { .. } => Replacement::Karpenter,
            Provisioner::ManagedNodeGroup { .. } => match self.managed_node_groups {
                ManagedNodeGroups::OwnUpdate => Replacement::OwnUpdate,
                ManagedNodeGroups::Commands => commands,
            },
            Provisioner::SelfManaged => commands,
            Provisioner::Fargate => Replacement::Nothing,
        }
    }

    /// Why nothing replaces a node of `provisioner`, and what would.
    pub fn why_nothing(&self, provisioner: &Provisioner) -> String {
        match provisioner {
            Provisioner::Fargate => {
                "a Fargate node gets the new version when its pod is recreated (restart the workload)".into()
            }
            Provisioner::ManagedNodeGroup { name } => format!(
                "deleting a node of managed node group {name} only brings one back at the old version: update the node group's version (its own update replaces its nodes), or give surge and retire commands"
            ),
            _ => "no surge/retire commands were given for self-managed nodes".into(),
        }
    }

    /// The replacer for the rollout of `nodes` (each with its provisioner) on `cluster`;
    /// nodes nothing replaces are left out.
    pub fn bind(&self, cluster: &Cluster, nodes: &[(String, Provisioner)]) -> Replacer {
        Replacer {
            cluster: cluster.clone(),
            commands: self.commands.clone(),
            by_node: nodes
                .iter()
                .map(|(node, provisioner)| (node.clone(), self.replacement(provisioner)))
                .filter(|(_, how)| how.by_rollout())
                .collect(),
        }
    }
}

/// Replaces each node the way its provisioner needs (see the module docs).
#[derive(Debug, Clone)]
pub struct Replacer {
    cluster: Cluster,
    commands: Option<CommandReplacer>,
    by_node: BTreeMap<String, Replacement>,
}

impl Replacer {
    fn how(&self, node: &str) -> Replacement {
        self.by_node
            .get(node)
            .copied()
            .unwrap_or(Replacement::Nothing)
    }

    /// The command for `node`, with its `${env:NAME}` secrets resolved.
    fn command(
        &self,
        node: &str,
        which: &NodeCommand,
        timeout: Duration,
    ) -> Result<ProcessBuilder, ReplacerError> {
        let mut cmd = which.for_node(node, timeout);
        cmd.stop_signal(self.cluster.stop_signal().clone())
            .resolve_env_refs()?;
        Ok(cmd)
    }

    async fn node_names(&self) -> Result<Vec<String>, ReplacerError> {
        Ok(
            list_all::<Node, _>(self.cluster.client(), 500, "list nodes", |n| {
                n.metadata.name.clone()
            })
            .await?,
        )
    }

    /// Retires `node`, which a surge added and which is drained (a rollback's cleanup).
    pub async fn retire_surged(&self, node: &str) -> Result<(), ReplacerError> {
        let Some(commands) = &self.commands else {
            return Err(
                format!("{node} was added by a surge, but no retire command is known").into(),
            );
        };
        self.command(node, &commands.retire, commands.timeout)?
            .exec_async()
            .await?;
        Ok(())
    }
}

impl NodeReplacer for Replacer {
    async fn surge(&self, batch: &[String]) -> Result<Vec<String>, ReplacerError> {
        // Idempotent: nodes already cordoned (by us or an admin) stay as they are, and nodes
        // already retired by an earlier batch are gone.
        for (node, _) in self
            .by_node
            .iter()
            .filter(|(_, how)| **how == Replacement::Karpenter)
        {
            match cordon(&self.cluster, node).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let surge = self
            .commands
            .as_ref()
            .and_then(|c| c.surge.as_ref().map(|surge| (surge, c.timeout)));
        let Some((surge, timeout)) = surge else {
            return Ok(Vec::new());
        };
        let by_commands: Vec<&String> = batch
            .iter()
            .filter(|n| self.how(n) == Replacement::Commands)
            .collect();
        if by_commands.is_empty() {
            return Ok(Vec::new());
        }
        // The nodes that join while the surge runs are its capacity.
        let before = self.node_names().await?;
        for node in by_commands {
            self.command(node, surge, timeout)?.exec_async().await?;
        }
        let added = self
            .node_names()
            .await?
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        Ok(added)
    }

    async fn retire(&self, node: &str) -> Result<(), ReplacerError> {
        match self.how(node) {
            Replacement::Karpenter => Ok(delete_node(&self.cluster, node).await?),
            Replacement::Commands => {
                let commands = self
                    .commands
                    .as_ref()
                    .expect("a node is retired by commands only when they were given");
                self.command(node, &commands.retire, commands.timeout)?
                    .exec_async()
                    .await?;
                Ok(())
            }
            Replacement::OwnUpdate | Replacement::Nothing => Err(format!(
                "nothing in this rollout replaces {node}; it was not to be drained"
            )
            .into()),
        }
    }
}

/// Deletes the Node object `node` (gone already is fine). For a Karpenter node, Karpenter's
/// termination finalizer then terminates its instance; for a node whose instance is gone, it
/// is what the cloud controller does, and pod GC then removes the pods bound to it.
pub async fn delete_node(cluster: &Cluster, node: &str) -> crate::Result<()> {
    cluster.guard()?;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let params = DeleteParams::default();
    match idempotent_write(&format!("delete node {node}"), || {
        nodes.delete(node, &params)
    })
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The EC2 instance of a node, from its `spec.providerID` (`aws:///us-east-1a/i-0abc…`);
/// `None` for a node that is no EC2 instance (Fargate's, or not on AWS).
pub fn instance_id(node: &Node) -> Option<String> {
    let provider = node.spec.as_ref()?.provider_id.as_deref()?;
    let id = provider.strip_prefix("aws://")?.rsplit('/').next()?;
    id.starts_with("i-").then(|| id.to_string())
}

/// Karpenter's NodeClaim of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeClaimRef {
    /// `karpenter.sh/v1` (Karpenter 1.x) or `karpenter.sh/v1beta1` (0.32 to 0.37).
    pub api_version: String,
    /// The NodeClaim's name.
    pub name: String,
}

impl NodeClaimRef {
    fn resource(api_version: &str) -> kube::api::ApiResource {
        let version = api_version.rsplit('/').next().unwrap_or("v1");
        kube::api::ApiResource {
            group: "karpenter.sh".into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: "NodeClaim".into(),
            plural: "nodeclaims".into(),
        }
    }
}

/// The NodeClaim whose `status.nodeName` is `node`, from the NodeClaim versions the cluster
/// serves (`None` when it serves none, as with Karpenter before 0.32, or none names it).
pub async fn node_claim_of(cluster: &Cluster, node: &str) -> crate::Result<Option<NodeClaimRef>> {
    for api_version in ["karpenter.sh/v1", "karpenter.sh/v1beta1"] {
        let api: Api<kube::api::DynamicObject> = Api::all_with(
            cluster.client().clone(),
            &NodeClaimRef::resource(api_version),
        );
        let claims = match read(
            "list NodeClaims",
            api.list(&kube::api::ListParams::default()),
        )
        .await
        {
            Ok(list) => list.items,
            // This version is not served.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        if let Some(claim) = claims
            .into_iter()
            .find(|c| c.data["status"]["nodeName"].as_str() == Some(node))
        {
            return Ok(Some(NodeClaimRef {
                api_version: api_version.into(),
                name: claim.metadata.name.unwrap_or_default(),
            }));
        }
    }
    Ok(None)
}

/// Deletes a NodeClaim (gone already is fine): Karpenter drains what is left on its node,
/// terminates the instance and removes the Node.
pub async fn delete_node_claim(cluster: &Cluster, claim: &NodeClaimRef) -> crate::Result<()> {
    cluster.guard()?;
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        cluster.client().clone(),
        &NodeClaimRef::resource(&claim.api_version),
    );
    let params = DeleteParams::default();
    match idempotent_write(&format!("delete NodeClaim {}", claim.name), || {
        api.delete(&claim.name, &params)
    })
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_not_found(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Api { source, .. }
        if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 404))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_placeholder_is_replaced_in_every_argument() {
        let words = [
            "aws",
            "ec2",
            "terminate-instances",
            "--tag",
            "node={node}",
            "{node}",
        ];
        let command =
            NodeCommand::from_words(words.iter().map(|w| w.to_string()).collect()).unwrap();
        assert_eq!(command.program, PathBuf::from("aws"));
        let built = command.for_node("ip-10-0-1-5", Duration::from_secs(5));
        assert_eq!(
            built.to_string(),
            "aws ec2 terminate-instances --tag node=ip-10-0-1-5 ip-10-0-1-5"
        );
        assert!(NodeCommand::from_words(Vec::new()).is_none());
    }
}
