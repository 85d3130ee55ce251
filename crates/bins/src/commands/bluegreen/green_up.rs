//! `upgrade-bluegreen green-up`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::GreenUpSpec;

use super::GreenArgs;

/// `green-up`'s flags.
#[derive(Debug, clap::Args)]
pub struct GreenUpArgs {
    /// The green environment's Terraform folder (with the bluegreen.auto.tfvars.json that
    /// `inputs` wrote).
    #[arg(long, value_name = "DIR")]
    pub green_terraform_dir: PathBuf,
    /// How to reach green once it is up.
    #[command(flatten)]
    pub green: GreenArgs,
    /// How long green's API server may take to answer after the apply.
    #[arg(long, value_name = "MINUTES", default_value_t = 30)]
    pub wait_minutes: u64,
}

impl GreenUpArgs {
    pub(crate) fn spec(&self, blue_kubeconfig: Option<&PathBuf>) -> GreenUpSpec {
        GreenUpSpec {
            green_terraform_dir: self.green_terraform_dir.clone(),
            green: self.green.cluster(blue_kubeconfig),
            wait_minutes: self.wait_minutes,
        }
    }
}
