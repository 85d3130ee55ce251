//! `upgrade-bluegreen retire`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::RetireSpec;

/// `retire`'s flags.
#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// Blue's Terraform folder.
    #[arg(long, value_name = "DIR")]
    pub blue_terraform_dir: PathBuf,
    /// Blue's cluster name (EKS name, kubeconfig cluster or API server URL), typed to
    /// confirm that it is the one to delete.
    #[arg(long, value_name = "NAME")]
    pub confirm_cluster: String,
    /// How long green must have served since the latest switch.
    #[arg(long, value_name = "MINUTES", default_value_t = 24 * 60)]
    pub soak_minutes: u64,
    /// A resource type or address to keep besides the defaults (backup vault, VPC and
    /// network, security groups, databases, buckets, file systems, secrets, Cognito,
    /// certificates, DNS). Repeatable.
    #[arg(long = "keep", value_name = "TYPE|ADDRESS")]
    pub keep: Vec<String>,
}

impl RetireArgs {
    pub(crate) fn spec(&self) -> RetireSpec {
        RetireSpec {
            blue_terraform_dir: self.blue_terraform_dir.clone(),
            confirm_cluster: self.confirm_cluster.clone(),
            soak_minutes: self.soak_minutes,
            keep: self.keep.clone(),
        }
    }
}
