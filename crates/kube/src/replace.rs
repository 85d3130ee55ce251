//! Ready-made [`NodeReplacer`]s: how new nodes come and drained nodes go.
//!
//! - [`Replacer::Karpenter`]: Karpenter provisions the new capacity. Before the first batch
//!   every node being replaced is cordoned, so the pods a drain evicts cannot land on another
//!   old node: they wait, unschedulable, and Karpenter launches nodes at the control plane's
//!   version for them. A drained node is retired by deleting its Node object (Karpenter's
//!   termination finalizer then terminates the instance).
//! - [`Replacer::Command`]: managed or self-managed node groups driven by your own commands,
//!   e.g. `aws autoscaling set-desired-capacity ...` to surge and
//!   `aws ec2 terminate-instances ...` to retire. `{node}` in an argument is replaced by the
//!   node's name; commands run through the toolkit's runner, never a shell.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::DeleteParams;
use upgrade_core::ProcessBuilder;
use upgrade_core::process::StopSignal;

use crate::connect::Cluster;
use crate::cordon::cordon;
use crate::retry::retrying;
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

/// A [`Replacer`] as data (the cluster handle left out), for run records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReplacerSpec {
    /// Karpenter provisions; retire deletes the Node object.
    Karpenter {
        /// Every node the rollout replaces.
        replacing: Vec<String>,
    },
    /// Your commands surge and retire.
    Command {
        /// Run once per node of a batch before it is drained; optional.
        surge: Option<NodeCommand>,
        /// Run once per drained node.
        retire: NodeCommand,
        /// The time limit of each command.
        timeout: Duration,
    },
}

impl ReplacerSpec {
    /// The replacer on `cluster`.
    pub fn bind(&self, cluster: &Cluster) -> Replacer {
        match self {
            ReplacerSpec::Karpenter { replacing } => Replacer::Karpenter {
                cluster: cluster.clone(),
                replacing: replacing.clone(),
            },
            ReplacerSpec::Command {
                surge,
                retire,
                timeout,
            } => Replacer::Command {
                surge: surge.clone(),
                retire: retire.clone(),
                timeout: *timeout,
                stop: cluster.stop_signal().clone(),
            },
        }
    }
}

/// Where new nodes come from and how drained ones go.
#[derive(Debug, Clone)]
pub enum Replacer {
    /// Karpenter provisions for the evicted pods; retire deletes the Node object.
    Karpenter {
        /// The cluster.
        cluster: Cluster,
        /// Every node the rollout replaces (cordoned before the first batch).
        replacing: Vec<String>,
    },
    /// Your commands surge and retire.
    Command {
        /// Run once per node of a batch before it is drained (adds capacity); optional.
        surge: Option<NodeCommand>,
        /// Run once per drained node (removes it).
        retire: NodeCommand,
        /// The time limit of each command.
        timeout: Duration,
        /// The stop signal the commands watch (the cluster's).
        stop: StopSignal,
    },
}

impl NodeReplacer for Replacer {
    async fn surge(&self, batch: &[String]) -> Result<Vec<String>, ReplacerError> {
        match self {
            Replacer::Karpenter { cluster, replacing } => {
                // Idempotent: nodes already cordoned (by us or an admin) stay as they are,
                // and nodes already retired by an earlier batch are gone.
                for node in replacing {
                    match cordon(cluster, node).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Vec::new())
            }
            Replacer::Command {
                surge,
                timeout,
                stop,
                ..
            } => {
                if let Some(surge) = surge {
                    for node in batch {
                        surge
                            .for_node(node, *timeout)
                            .stop_signal(stop.clone())
                            .exec_async()
                            .await?;
                    }
                }
                Ok(Vec::new())
            }
        }
    }

    async fn retire(&self, node: &str) -> Result<(), ReplacerError> {
        match self {
            Replacer::Karpenter { cluster, .. } => {
                cluster.guard()?;
                let nodes: Api<Node> = Api::all(cluster.client().clone());
                let params = DeleteParams::default();
                match retrying(&format!("delete node {node}"), || {
                    nodes.delete(node, &params)
                })
                .await
                {
                    Ok(_) => Ok(()),
                    Err(crate::Error::Api { source, .. }) if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 404) => {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Replacer::Command {
                retire,
                timeout,
                stop,
                ..
            } => {
                retire
                    .for_node(node, *timeout)
                    .stop_signal(stop.clone())
                    .exec_async()
                    .await?;
                Ok(())
            }
        }
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
