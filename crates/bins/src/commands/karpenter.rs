//! `upgrade-karpenter`: seed 000's Karpenter upgrade (NodePool and EC2NodeClass backup, the
//! snapshotted `helm upgrade`, the controller verified), planned first and rolled back by
//! itself on failure.

use std::io::Write;

use upgrade_flows::flows::helm_component::ComponentUpgradeSpec;

use crate::cli::ChangeFlags;
use crate::commands::helm_args::{HelmArgs, run_upgrade};
use crate::exit::CliError;

/// The command's name.
const NAME: &str = "upgrade-karpenter";

/// `upgrade-karpenter`: upgrade the Karpenter chart.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = NAME,
    version,
    disable_version_flag = true,
    about = "Upgrade Karpenter's Helm release: plan, check, back up NodePools, upgrade, verify, roll back on failure",
    mut_arg("chart", |a| a.default_value("oci://public.ecr.aws/karpenter/karpenter")),
    mut_arg("values", |a| a.default_value("infrastructure/helm/aws/karpenter-values.yaml")),
    mut_arg("release", |a| a.default_value("karpenter")),
    mut_arg("namespace", |a| a.default_value("karpenter")),
    after_help = "Without --apply it only shows current -> target. Exit codes: 0 done (or planned), \
                  1 failed and rolled back, 2 bad input (nothing changed), 4 blocked by a \
                  compatibility check (nothing changed), 5 failed with a recorded way back, \
                  130 stopped by Ctrl-C. `--version` prints the command's version."
)]
pub struct Args {
    /// The chart, version and values.
    #[command(flatten)]
    pub helm: HelmArgs,
    /// Cluster, run, timeout and output flags.
    #[command(flatten)]
    pub flags: ChangeFlags,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &crate::cli::OutputArgs {
        &self.flags.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        if let Some(version) = self.helm.version_request(NAME) {
            crate::cli::print(out, &format!("{}\n", version?))?;
            return Ok(0);
        }
        let f = &self.flags;
        let spec = self.helm.spec(
            ComponentUpgradeSpec::karpenter(self.helm.chart_version()),
            f.timeout.timeout,
        );
        run_upgrade(spec, &f.cluster, &f.run, &f.output, out).await
    }
}
