//! `upgrade-bluegreen transfer`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::TransferSpec;

use super::GreenArgs;
use upgrade_kube::transfer::{SEED_KINDS, SHARED_FILE_SYSTEM_DRIVERS};

/// `transfer`'s flags.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The green cluster.
    #[command(flatten)]
    pub green: GreenArgs,
    /// A user namespace to move. Repeatable.
    #[arg(long = "namespace", value_name = "NS", required = true)]
    pub namespaces: Vec<String>,
    /// A kind to move, as Velero's --include-resources names it (singular, plural or
    /// plural.group). Repeatable; default: seed 001's list.
    #[arg(long = "kind", value_name = "KIND", default_values = SEED_KINDS)]
    pub kinds: Vec<String>,
    /// Move only namespaces and the claims' volumes of the cluster-scoped kinds, not every
    /// profile (Velero's --include-cluster-resources=false).
    #[arg(long)]
    pub no_cluster_resources: bool,
    /// Copy claims whose volume's data cannot move (not on a shared file system) unbound:
    /// green gives them new, empty volumes. Without it such a claim blocks.
    #[arg(long)]
    pub allow_fresh_volumes: bool,
    /// A CSI driver of a shared file system, whose volumes are re-bound by handle.
    /// Repeatable.
    #[arg(long = "shared-driver", value_name = "DRIVER", default_values = SHARED_FILE_SYSTEM_DRIVERS)]
    pub shared_drivers: Vec<String>,
}

impl TransferArgs {
    pub(crate) fn spec(&self, blue_kubeconfig: Option<&PathBuf>) -> TransferSpec {
        TransferSpec {
            green: self.green.cluster(blue_kubeconfig),
            namespaces: self.namespaces.clone(),
            kinds: self.kinds.clone(),
            include_cluster_resources: !self.no_cluster_resources,
            allow_fresh_volumes: self.allow_fresh_volumes,
            shared_drivers: self.shared_drivers.clone(),
        }
    }
}
