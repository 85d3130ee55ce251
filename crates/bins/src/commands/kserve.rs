//! `upgrade-kserve`: seed 000's KServe upgrade (`upgrade`: InferenceService and
//! ServingRuntime backup, the snapshotted `helm upgrade`, every InferenceService verified;
//! a rollback restores the release and re-applies the backup), and seed 002's canary
//! rollout of a new model (`canary`: canaryTrafficPercent in steps, each compared with the
//! stable revision in Prometheus, promoted or sent back to the stable model by itself).

use std::io::Write;
use std::time::Duration;

use upgrade_flows::flows::canary::{self, CanarySpec};
use upgrade_flows::flows::helm_component::ComponentUpgradeSpec;

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, TimeoutArgs, context, execute, parse_duration};
use crate::commands::helm_args::{HelmArgs, run_upgrade};
use crate::exit::{CliError, Flags};

/// `upgrade-kserve`: KServe's chart upgrade, or a model canary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-kserve",
    version,
    about = "Upgrade KServe's Helm release, or roll a new model out to an InferenceService as a canary",
    after_help = "Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing \
                  changed), 4 blocked by a check (nothing changed), 5 failed with a recorded way \
                  back, 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Which cluster (listed after each action's own flags).
    #[command(flatten, next_display_order = 1000)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The operations.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Upgrade the KServe chart (InferenceServices backed up, verified, restored on failure).
    ///
    /// Backs up InferenceServices and ServingRuntimes, runs the snapshotted helm upgrade and
    /// verifies the controller and every InferenceService; on failure rolls the release back
    /// and re-applies the backup.
    Upgrade(UpgradeArgs),
    /// Roll a new model out to an InferenceService as a canary (promoted or rolled back by
    /// itself).
    ///
    /// Points the predictor at --storage-uri with canaryTrafficPercent at the first of
    /// --steps, waits for Ready, lets traffic flow for --step-wait, compares the canary's
    /// error rate and p95 latency with the stable revision's in Prometheus, and moves to the
    /// next step; after the last it promotes the canary. A failed step sends all traffic
    /// back to the stable revision and gives the predictor its old storageUri back.
    Canary(CanaryArgs),
}

/// `upgrade-kserve upgrade`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("chart", |a| a.default_value("kserve/kserve")),
    mut_arg("values", |a| a.default_value("infrastructure/helm/aws/kserve-values.yaml")),
    mut_arg("release", |a| a.default_value("kserve")),
    mut_arg("namespace", |a| a.default_value("kserve")),
    after_help = "Without --apply it only shows current -> target."
)]
pub struct UpgradeArgs {
    /// The chart, version and values.
    #[command(flatten)]
    pub helm: HelmArgs,
    /// The limit of each wait.
    #[command(flatten)]
    pub timeout: TimeoutArgs,
}

/// `upgrade-kserve canary`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Without --apply it only shows the rollout. Exit codes: 0 promoted (or planned), \
                  1 a step failed and the InferenceService went back to its stable model, \
                  2 bad input (nothing changed), 4 blocked: a canary already in progress or \
                  Prometheus unreachable (nothing changed)."
)]
pub struct CanaryArgs {
    /// The InferenceService.
    #[arg(long, value_name = "NAME")]
    pub isvc: String,
    /// Its namespace.
    #[arg(long, value_name = "NS", default_value = "mlops")]
    pub namespace: String,
    /// The new model's storageUri, e.g. s3://models/iris/v2.
    #[arg(long, value_name = "URI")]
    pub storage_uri: String,
    /// Canary traffic percentages, increasing, each 1-100.
    #[arg(
        long,
        value_name = "P,P,...",
        value_delimiter = ',',
        default_value = "10,50,100"
    )]
    pub steps: Vec<u8>,
    /// Prometheus' base URL (the revisions' queue-proxy metrics are compared there).
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// How far the canary's error rate may exceed the stable revision's (a ratio: 0.02 is
    /// two percentage points).
    #[arg(long, value_name = "RATIO", default_value_t = 0.02)]
    pub error_rate_tolerance: f64,
    /// The canary's error-rate ceiling, whatever the stable revision does.
    #[arg(long, value_name = "RATIO", default_value_t = 0.05)]
    pub max_error_rate: f64,
    /// How far the canary's p95 latency may exceed the stable revision's, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 25.0)]
    pub p95_tolerance_ms: f64,
    /// How long traffic flows at each step before the comparison.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub step_wait: Duration,
    /// The PromQL rate window of the comparison (keep it within --step-wait).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub window: String,
    /// How long each step may take to become Ready.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub ready_timeout: Duration,
}

impl CanaryArgs {
    fn spec(&self) -> CanarySpec {
        CanarySpec {
            isvc: self.isvc.clone(),
            namespace: self.namespace.clone(),
            storage_uri: self.storage_uri.clone(),
            steps: self.steps.clone(),
            prometheus: self.prometheus.clone(),
            error_rate_tolerance: self.error_rate_tolerance,
            max_error_rate: self.max_error_rate,
            p95_tolerance_ms: self.p95_tolerance_ms,
            step_wait: self.step_wait,
            window: self.window.clone(),
            ready_timeout: self.ready_timeout,
        }
    }
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        match &self.action {
            Action::Upgrade(upgrade) => {
                if let Some(version) = upgrade.helm.version_request("upgrade-kserve") {
                    crate::cli::print(out, &format!("{}\n", version?))?;
                    return Ok(0);
                }
                let spec = upgrade.helm.spec(
                    ComponentUpgradeSpec::kserve(upgrade.helm.chart_version()),
                    upgrade.timeout.timeout,
                );
                run_upgrade(spec, &self.cluster, &self.run, &self.output, out).await
            }
            Action::Canary(args) => {
                let flags = Flags::default();
                let spec = args.spec();
                canary::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
                let ctx = context("upgrade-kserve", &self.cluster, Some(&self.run)).await?;
                let planned = canary::plan(&ctx, &spec)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?;
                execute(&ctx, planned, &self.run, &self.output, &flags, out).await
            }
        }
    }
}
