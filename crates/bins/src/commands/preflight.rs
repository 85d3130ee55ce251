//! `upgrade-preflight`: every check for a target version, as a report and an exit code.

use std::path::PathBuf;

use anyhow::Context;
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::Facts;
use upgrade_checks::report;
use upgrade_core::version::KubeMinor;

use upgrade_kube::facts::{GatherOptions, gather};

use crate::cli::{CommonArgs, OutputFormat};
use crate::exit::CliError;
use crate::session::Session;

/// `upgrade-preflight`: the seeds' pre-upgrade checklist and daily health check, as one report.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-preflight",
    version,
    about = "Check a cluster for an upgrade to a target Kubernetes minor, one hop at a time",
    after_help = "Exit codes: 0 no blockers or warnings, 3 warnings, 4 blockers, 2 bad input.\nCheck reference: docs/checks.md"
)]
pub struct Args {
    /// The Kubernetes minor to check the path to, e.g. 1.31 (each minor on the way is checked).
    #[arg(long, value_name = "MINOR")]
    pub target: String,
    /// Read the cluster's facts from a YAML or JSON dump instead of the live cluster named by
    /// --kubeconfig/--kube-context (read only: nothing is changed).
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Check configuration: thresholds, severities, ignores.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the checks and prints the report; returns 0, 3 (warnings) or 4 (blockers).
pub async fn run(args: &Args, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let target: KubeMinor = args
        .target
        .parse()
        .map_err(|e| CliError::usage(anyhow::anyhow!("--target {}: {e}", args.target)))?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the check configuration {}", path.display()))
                .map_err(CliError::usage)?;
            Config::from_yaml(&text)
                .with_context(|| format!("check configuration {}", path.display()))
                .map_err(CliError::usage)?
        }
        None => Config::default(),
    };
    let facts = match &args.facts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the facts file {}", path.display()))
                .map_err(CliError::usage)?;
            Facts::from_yaml(&text)
                .with_context(|| format!("facts file {}", path.display()))
                .map_err(CliError::usage)?
        }
        None => live_facts(&args.common).await?,
    };
    let report = upgrade_checks::checks::run(&facts, target, &config, Data::embedded())
        .map_err(|e| CliError::usage(anyhow::anyhow!("--target {}: {e}", args.target)))?;
    let rendered = match args.common.output {
        OutputFormat::Text => report::text(&report),
        OutputFormat::Json => report::json(&report),
        OutputFormat::Markdown => report::playbook(&report, &facts),
        OutputFormat::Junit => report::junit(&report),
    };
    out.write_all(rendered.as_bytes())
        .context("write the report")
        .map_err(CliError::failed)?;
    Ok(report.exit_code())
}

/// Reads the facts from the live cluster: connected through the same interlock as every
/// command (a wrong `--expect-cluster` is bad input), read only.
async fn live_facts(common: &CommonArgs) -> Result<Facts, CliError> {
    let session = Session::open(common).await?;
    let options = GatherOptions {
        cluster_name: common.expect_cluster.clone(),
        ..GatherOptions::default()
    };
    let gathered = gather(&session.cluster, &options)
        .await
        .context("gather the cluster's facts")
        .map_err(CliError::failed)?;
    for note in &gathered.notes {
        tracing::warn!("{note}");
    }
    Ok(gathered.facts)
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
