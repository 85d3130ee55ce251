//! `upgrade-bluegreen ack`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::AckSpec;

use super::GreenArgs;

/// `ack`'s flags.
#[derive(Debug, clap::Args)]
pub struct AckArgs {
    /// The green cluster.
    #[command(flatten)]
    pub green: GreenArgs,
    /// The ACK runtime version of blue's SageMaker controller (above 0.22.1 the
    /// deletion-policy annotation is used, else the finalizer is removed).
    #[arg(long, value_name = "VERSION")]
    pub ack_runtime: String,
}

impl AckArgs {
    pub(crate) fn spec(&self, blue_kubeconfig: Option<&PathBuf>) -> AckSpec {
        AckSpec {
            green: self.green.cluster(blue_kubeconfig),
            ack_runtime: self.ack_runtime.clone(),
        }
    }
}
