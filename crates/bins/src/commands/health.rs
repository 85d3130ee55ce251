//! `upgrade-health`: the runbook's daily health check (seed 002) and the pre-upgrade
//! baseline (seed 004). Read only.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::health::{self, HealthSpec};
use upgrade_flows::flows::logs::{self, LogSource};
use upgrade_flows::report::Format;

use crate::cli::{ClusterArgs, OutputArgs, context, print};
use crate::exit::{CliError, Flags};

/// `upgrade-health`: what is unhealthy now, and what changed since a baseline.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-health",
    version,
    about = "Check the platform's health: nodes, pods (crash loops included), claims, \
             deployments, certificates (not Ready or expiring), InferenceServices, failed Argo \
             Workflows, Argo CD applications; headroom and PodDisruptionBudgets; save a \
             baseline before an upgrade and compare with it after",
    after_help = "Read only. Exit codes: 0 healthy, 3 warnings (an expiring certificate, a failed \
                  workflow, a claim waiting, something already unhealthy in the baseline), 4 \
                  something down, 2 bad input."
)]
pub struct Args {
    /// Report certificates expiring within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub certificate_expiry_days: u32,
    /// Save what is seen now as the pre-upgrade baseline (JSON).
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
    /// Compare with a baseline saved before the upgrade: what was unhealthy then is reported
    /// as known, what is new keeps its severity.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Read and scan the logs the seeds read (Karpenter, the KServe and Argo Workflows
    /// controllers, MLflow, Argo CD, cert-manager, by their charts' default namespaces and
    /// labels) for panics, error lines and repeated reconcile errors.
    #[arg(long)]
    pub logs: bool,
    /// A log source instead of the defaults: NAME=NAMESPACE/SELECTOR[:TAIL]. Repeat.
    #[arg(long, value_name = "NAME=NS/SELECTOR[:TAIL]", value_parser = LogSource::parse)]
    pub log_source: Vec<LogSource>,
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
        let spec = HealthSpec {
            certificate_expiry_days: self.certificate_expiry_days,
            baseline: self.baseline.clone(),
            save_baseline: self.save_baseline.clone(),
            logs: match (self.log_source.is_empty(), self.logs) {
                (false, _) => self.log_source.clone(),
                (true, true) => logs::seed_sources(),
                (true, false) => Vec::new(),
            },
        };
        let ctx = context("upgrade-health", &self.cluster, None).await?;
        let outcome = health::health(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        print(out, &outcome.render(Format::from(self.output.output)))?;
        Ok(outcome.exit_code())
    }
}
