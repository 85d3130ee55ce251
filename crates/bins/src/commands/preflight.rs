//! `upgrade-preflight`: every check for a target version, as a report and an exit code.
//! Read only.

use std::io::Write;
use std::path::PathBuf;

use upgrade_checks::report;
use upgrade_flows::flows::preflight::{self, PreflightSpec};
use upgrade_flows::flows::scan::{self, ScanSpec};

use crate::cli::{ClusterArgs, OutputArgs, OutputFormat, context, print};
use crate::exit::{CliError, Flags};

/// `upgrade-preflight`: the seeds' pre-upgrade checklist and daily health check, as one report.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-preflight",
    version,
    about = "Check a cluster for an upgrade to a target Kubernetes minor, one hop at a time",
    after_help = "Exit codes: 0 no blockers or warnings, 3 warnings, 4 blockers, 2 bad input.\n\
                  With --manifests: 4 an API removed by --target, 3 a deprecated one or a file that could not be scanned, 0 none.\n\
                  Check reference: docs/checks.md"
)]
pub struct Args {
    /// The Kubernetes minor to check the path to, e.g. 1.31 (each minor on the way is checked).
    #[arg(long, value_name = "MINOR", required_unless_present = "show_data")]
    pub target: Option<String>,
    /// Read the cluster's facts from a YAML or JSON dump instead of the live cluster named by
    /// --kubeconfig/--kube-context (read only: nothing is changed).
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// Scan files and folders instead of a cluster (CI, before the upgrade): YAML and JSON
    /// manifests, `kind: List`, last-applied annotations, and chart folders (rendered with
    /// the installed helm for --target); reports removed and deprecated APIs with file and line.
    #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "facts")]
    pub manifests: Vec<PathBuf>,
    /// Check configuration: thresholds, severities, ignores.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder with newer version data (removed_apis.yaml, eks.yaml, compatibility.yaml, in
    /// the embedded files' format); the files it lacks stay embedded.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print each version data file (embedded or from --data): its rows, the newest day a
    /// row was checked, and its sources; then exit.
    #[arg(long)]
    pub show_data: bool,
    /// Which cluster (without --facts).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        if self.show_data {
            let data = preflight::load_data(self.data.as_deref())
                .map_err(|e| CliError::from_flow(e, &flags))?;
            let rendered = match self.output.output {
                OutputFormat::Json => report::data_files_json(&data),
                _ => report::data_files_text(&data),
            };
            print(out, &rendered)?;
            return Ok(0);
        }
        if !self.manifests.is_empty() {
            return self.scan(out, &flags).await;
        }
        let spec = PreflightSpec {
            target: self.target.clone().unwrap_or_default(),
            facts: self.facts.clone(),
            config: self.config.clone(),
            data: self.data.clone(),
        };
        let inputs = preflight::validate(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
        let facts = match &inputs.facts {
            Some(facts) => facts.clone(),
            None => {
                let ctx = context("upgrade-preflight", &self.cluster, None).await?;
                preflight::live_facts(&ctx)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?
            }
        };
        let checked =
            preflight::check(&facts, &inputs).map_err(|e| CliError::from_flow(e, &flags))?;
        let rendered = match self.output.output {
            OutputFormat::Text => report::text(&checked),
            OutputFormat::Json => report::json(&checked),
            OutputFormat::Markdown => report::playbook(&checked, &facts),
            OutputFormat::Junit => report::junit(&checked),
        };
        print(out, &rendered)?;
        Ok(checked.exit_code())
    }
}

impl Args {
    /// `--manifests`: the static scan.
    async fn scan(&self, out: &mut dyn Write, flags: &Flags) -> Result<u8, CliError> {
        let flags = flags.clone().rename("paths", "--manifests");
        let spec = ScanSpec {
            target: self.target.clone().unwrap_or_default(),
            paths: self.manifests.clone(),
            data: self.data.clone(),
            helm: None,
        };
        let report = scan::scan(&spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        let rendered = match self.output.output {
            OutputFormat::Text => report.text(),
            OutputFormat::Json => report.json(),
            OutputFormat::Markdown => report.markdown(),
            OutputFormat::Junit => report.junit(),
        };
        print(out, &rendered)?;
        Ok(report.exit_code())
    }
}
