//! `upgrade-releases`: every Helm release in the cluster against a chart source. Read only.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::releases::{self, ReleaseReportSpec};

use crate::cli::{ClusterArgs, OutputArgs, OutputFormat, context, print};
use crate::exit::{CliError, Flags};

/// `upgrade-releases`: what each release runs, what the source offers, and whether the
/// charts allow the next Kubernetes minors.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-releases",
    version,
    about = "Report every Helm release: chart and app version, the newest version in a chart \
             source, and whether its kubeVersion allows the next Kubernetes minors",
    after_help = "Read only. Exit codes: 0 every chart allows the next minors, 3 one refuses \
                  one, 2 bad input."
)]
pub struct Args {
    /// A folder of charts (each Chart.yaml at most four levels down).
    #[arg(long, value_name = "DIR", required_unless_present = "index")]
    pub charts: Option<PathBuf>,
    /// A chart repository's index.yaml.
    #[arg(long, value_name = "FILE")]
    pub index: Option<PathBuf>,
    /// How many minors after the cluster's to check each chart's kubeVersion against.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub next_minors: u32,
    /// Which cluster.
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
        let spec = ReleaseReportSpec {
            charts: self.charts.clone(),
            index: self.index.clone(),
            next_minors: self.next_minors,
        };
        let ctx = context("upgrade-releases", &self.cluster, None).await?;
        let report = releases::report(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        let rendered = match self.output.output {
            OutputFormat::Json => {
                serde_json::to_string_pretty(&report).expect("the report serialises") + "\n"
            }
            _ => report.render_text(),
        };
        print(out, &rendered)?;
        Ok(report.exit_code())
    }
}
