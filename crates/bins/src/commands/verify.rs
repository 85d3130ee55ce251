//! `upgrade-verify`: post-upgrade verification (probes, and metrics against a baseline).

use std::path::PathBuf;

use anyhow::Context;
use upgrade_verify::{Baseline, Prometheus, VerifyConfig};

use crate::cli::{CommonArgs, OutputFormat};
use crate::exit::CliError;

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
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
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

fn read_config(path: &PathBuf) -> Result<VerifyConfig, CliError> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the verification config {}", path.display()))
        .map_err(CliError::usage)?;
    let config = VerifyConfig::from_yaml(&text)
        .with_context(|| format!("verification config {}", path.display()))
        .map_err(CliError::usage)?;
    config
        .validate()
        .with_context(|| format!("verification config {}", path.display()))
        .map_err(CliError::usage)?;
    Ok(config)
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    match &args.action {
        Action::Baseline { config, out: path } => {
            let config = read_config(config)?;
            let prom_config = config.prometheus.as_ref().ok_or_else(|| {
                CliError::usage(anyhow::anyhow!(
                    "the verification config has no `prometheus` section; add one (url, metrics) to capture a baseline"
                ))
            })?;
            let prom =
                Prometheus::new(&prom_config.url, prom_config.timeout).map_err(CliError::usage)?;
            let baseline =
                Baseline::capture(&prom, &prom_config.metrics, &prom_config.effective_vars())
                    .await
                    .map_err(CliError::failed)?;
            std::fs::write(path, baseline.to_json())
                .with_context(|| format!("write {}", path.display()))
                .map_err(CliError::failed)?;
            writeln!(out, "baseline written to {}", path.display()).map_err(CliError::failed)?;
            Ok(0)
        }
        Action::Check { config, baseline } => {
            let config = read_config(config)?;
            let baseline = match baseline {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the baseline {}", path.display()))
                        .map_err(CliError::usage)?;
                    Some(Baseline::from_json(&text).map_err(CliError::usage)?)
                }
                None => None,
            };
            let report = upgrade_verify::verify(&config, baseline.as_ref())
                .await
                .map_err(CliError::usage)?;
            let rendered = match args.common.output {
                OutputFormat::Json => report.json(),
                _ => report.text(),
            };
            out.write_all(rendered.as_bytes())
                .map_err(CliError::failed)?;
            Ok(report.exit_code())
        }
    }
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
