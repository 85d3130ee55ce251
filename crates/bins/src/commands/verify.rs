//! `upgrade-verify`: post-upgrade verification (probes, and metrics against a baseline).
//! Read only; needs no cluster.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::verify;

use crate::cli::{OutputArgs, OutputFormat, print};
use crate::exit::{CliError, Flags};

/// `upgrade-verify`: is the upgraded platform still serving as well as before?
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-verify",
    version,
    about = "Capture a metrics baseline before an upgrade; after it, run the probes and compare",
    after_help = "Exit codes: 0 passed, 3 warnings, 4 failures, 2 bad input."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The two phases.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Before the upgrade: record the configured Prometheus metrics.
    Baseline {
        /// The verification config (probes, prometheus).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where to write the baseline.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// After the upgrade: run the probes and compare the metrics with the baseline.
    Check {
        /// The verification config (probes, prometheus).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The baseline captured before the upgrade.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
    },
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let flow_err = |e| CliError::from_flow(e, &flags);
        match &self.action {
            Action::Baseline { config, out: path } => {
                let config = verify::read_config(config).map_err(flow_err)?;
                verify::baseline(&config, path).await.map_err(flow_err)?;
                print(out, &format!("baseline written to {}\n", path.display()))?;
                Ok(0)
            }
            Action::Check { config, baseline } => {
                let config = verify::read_config(config).map_err(flow_err)?;
                let report = verify::check(&config, baseline.as_deref())
                    .await
                    .map_err(flow_err)?;
                let rendered = match self.output.output {
                    OutputFormat::Json => report.json(),
                    _ => report.text(),
                };
                print(out, &rendered)?;
                Ok(report.exit_code())
            }
        }
    }
}
