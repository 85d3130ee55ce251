//! `upgrade-release`: any Helm release (Argo CD, cert-manager, an ingress controller) upgraded
//! the way the platform's components are: its custom resources backed up, its values-file
//! pins moved together, its CRDs handled, the snapshotted `helm upgrade`, the verification,
//! and the rollback.

use std::io::Write;

use upgrade_flows::flows::helm_component::ComponentUpgradeSpec;

use crate::cli::ChangeFlags;
use crate::commands::helm_args::{HelmArgs, run_upgrade};
use crate::exit::CliError;

/// The command's name.
const NAME: &str = "upgrade-release";

/// `upgrade-release`: upgrade any Helm release.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = NAME,
    version,
    disable_version_flag = true,
    about = "Upgrade any Helm release: plan, check, back up the custom resources of its CRDs, \
             apply its CRDs, upgrade, verify, roll back on failure",
    mut_arg("chart", |a| a.required_unless_present("print_version")),
    mut_arg("values", |a| a.required_unless_present("print_version")),
    mut_arg("release", |a| a.required_unless_present("print_version")),
    mut_arg("namespace", |a| a.required_unless_present("print_version")),
    after_help = "Without --apply it only shows current -> target. The objects of every kind the \
                  release's charts define are backed up first and re-applied by a rollback. \
                  Exit codes: 0 done (or planned), \
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
        let seed = ComponentUpgradeSpec::release(
            self.helm.release.as_deref().unwrap_or_default(),
            self.helm.namespace.as_deref().unwrap_or_default(),
            self.helm.chart.as_deref().unwrap_or_default(),
            self.helm.chart_version(),
        );
        let spec = self.helm.spec(seed, f.timeout.timeout);
        run_upgrade(spec, &f.cluster, &f.run, &f.output, out).await
    }
}
