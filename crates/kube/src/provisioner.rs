//! Who provisioned a node, read from its labels: it decides what can replace the node.
//!
//! A Karpenter node is replaced by Karpenter (drain it, delete it; Karpenter launches the
//! replacement at the cluster's version). A managed node group's node is replaced by the
//! node group's own version update: deleting it only makes its Auto Scaling group launch
//! another at the old version. A self-managed node is replaced by whatever the site runs.
//! A Fargate "node" is a pod's own micro-VM: it gets the new version when the pod is
//! recreated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label Karpenter (v1) puts on its nodes.
pub const KARPENTER_NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
/// The label Karpenter before v1 (v1alpha5 Provisioners) put on its nodes.
pub const KARPENTER_PROVISIONER_LABEL: &str = "karpenter.sh/provisioner-name";
/// The label EKS managed node groups put on their nodes.
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";
/// The label EKS puts on Fargate nodes (`fargate`).
pub const COMPUTE_TYPE_LABEL: &str = "eks.amazonaws.com/compute-type";

/// Who provisioned a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Provisioner {
    /// Karpenter, from this NodePool (or pre-v1 Provisioner).
    Karpenter {
        /// The NodePool.
        nodepool: String,
    },
    /// An EKS managed node group.
    ManagedNodeGroup {
        /// The node group.
        name: String,
    },
    /// EKS Fargate.
    Fargate,
    /// Anything else: a self-managed Auto Scaling group, or a machine the site runs.
    SelfManaged,
}

impl Provisioner {
    /// The provisioner a node's labels name.
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Provisioner {
        if let Some(pool) = labels
            .get(KARPENTER_NODEPOOL_LABEL)
            .or_else(|| labels.get(KARPENTER_PROVISIONER_LABEL))
        {
            Provisioner::Karpenter {
                nodepool: pool.clone(),
            }
        } else if labels.get(COMPUTE_TYPE_LABEL).map(String::as_str) == Some("fargate") {
            Provisioner::Fargate
        } else if let Some(group) = labels.get(NODEGROUP_LABEL) {
            Provisioner::ManagedNodeGroup {
                name: group.clone(),
            }
        } else {
            Provisioner::SelfManaged
        }
    }

    /// The provisioner of `node`.
    pub fn of(node: &k8s_openapi::api::core::v1::Node) -> Provisioner {
        Provisioner::of_labels(node.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
    }
}

impl std::fmt::Display for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provisioner::Karpenter { nodepool } => write!(f, "Karpenter NodePool {nodepool}"),
            Provisioner::ManagedNodeGroup { name } => write!(f, "managed node group {name}"),
            Provisioner::Fargate => f.write_str("Fargate"),
            Provisioner::SelfManaged => f.write_str("self-managed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_name_the_provisioner() {
        assert_eq!(
            Provisioner::of_labels(&labels(&[(KARPENTER_NODEPOOL_LABEL, "gpu")])),
            Provisioner::Karpenter {
                nodepool: "gpu".into()
            }
        );
        assert_eq!(
            Provisioner::of_labels(&labels(&[(KARPENTER_PROVISIONER_LABEL, "default")])),
            Provisioner::Karpenter {
                nodepool: "default".into()
            }
        );
        assert_eq!(
            Provisioner::of_labels(&labels(&[(NODEGROUP_LABEL, "system")])),
            Provisioner::ManagedNodeGroup {
                name: "system".into()
            }
        );
        assert_eq!(
            Provisioner::of_labels(&labels(&[(COMPUTE_TYPE_LABEL, "fargate")])),
            Provisioner::Fargate
        );
        assert_eq!(
            Provisioner::of_labels(&labels(&[("kubernetes.io/os", "linux")])),
            Provisioner::SelfManaged
        );
    }
}
