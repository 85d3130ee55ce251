//! `upgrade-bluegreen verify-green`.

use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::VerifyGreenSpec;
use upgrade_flows::flows::verify;

use super::GreenArgs;
use crate::exit::{CliError, Flags};

/// `verify-green`'s flags.
#[derive(Debug, clap::Args)]
pub struct VerifyGreenArgs {
    /// The green cluster.
    #[command(flatten)]
    pub green: GreenArgs,
    /// The probes (upgrade-verify's configuration): a kserve_v1/kserve_v2 probe for each
    /// InferenceService on green, MLflow health and an experiment read, smoke tests.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

impl VerifyGreenArgs {
    pub(crate) fn spec(
        &self,
        blue_kubeconfig: Option<&PathBuf>,
        flags: &Flags,
    ) -> Result<VerifyGreenSpec, CliError> {
        Ok(VerifyGreenSpec {
            green: self.green.cluster(blue_kubeconfig),
            config: verify::read_config(&self.config).map_err(|e| CliError::from_flow(e, flags))?,
        })
    }
}
