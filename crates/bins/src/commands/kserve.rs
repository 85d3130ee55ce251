//! `upgrade-kserve`: seed 000's KServe upgrade (`upgrade`: InferenceService and
//! ServingRuntime backup, the snapshotted `helm upgrade`, every InferenceService verified;
//! a rollback restores the release and re-applies the backup), and seed 002's canary
//! rollout of a new model (`canary`: canaryTrafficPercent in steps, each compared with the
//! stable revision in Prometheus, promoted or sent back to the stable model by itself).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use upgrade_core::executor::Step;
use upgrade_verify::canary::{self, CanaryPlan, PrometheusAnalysis, inference_service_resource};
use upgrade_verify::metrics::default_vars;
use upgrade_verify::{MetricSpec, Prometheus, Tolerance};

use crate::cli::{CommonArgs, parse_duration};
use crate::commands::helm_component::{
    HelmArgs, KSERVE, component_steps, print_blocked, run_upgrade,
};
use crate::exit::CliError;
use crate::session::{Plan, Session};

/// `upgrade-kserve`: KServe's chart upgrade.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-kserve",
    about = "Upgrade KServe's Helm release, or roll a new model out to an InferenceService as a canary",
    after_help = "Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing \
                  changed), 4 blocked by a check (nothing changed)."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Flags every command shares (listed after each action's own).
    #[command(flatten, next_display_order = 1000)]
    pub common: CommonArgs,
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
    /// The rollout plan (validated: steps increasing within 1-100, a storageUri).
    pub fn plan(&self) -> Result<CanaryPlan, CliError> {
        let plan = CanaryPlan {
            steps: self.steps.clone(),
            ready_timeout: self.ready_timeout,
            // Poll often enough that a short timeout still sees a few polls.
            poll_interval: (self.ready_timeout / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
            settle: self.step_wait,
            ..CanaryPlan::new(&self.namespace, &self.isvc, &self.storage_uri)
        };
        plan.validate().map_err(|e| {
            CliError::usage(anyhow!(
                "{}",
                e.to_string().trim_start_matches("configuration: ")
            ))
        })?;
        Ok(plan)
    }

    /// The canary-vs-stable comparison: the KServe default metrics with these tolerances.
    pub fn analysis(&self) -> Result<PrometheusAnalysis, CliError> {
        if !(self.prometheus.starts_with("http://") || self.prometheus.starts_with("https://")) {
            return Err(CliError::usage(anyhow!(
                "--prometheus {}: expected an http(s) URL such as http://prometheus.monitoring:9090",
                self.prometheus
            )));
        }
        for (flag, value) in [
            ("--error-rate-tolerance", self.error_rate_tolerance),
            ("--max-error-rate", self.max_error_rate),
            ("--p95-tolerance-ms", self.p95_tolerance_ms),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(CliError::usage(anyhow!(
                    "{flag} {value}: a tolerance is a number of at least 0"
                )));
            }
        }
        let absolute = |a: f64| Tolerance {
            absolute: Some(a),
            relative: None,
        };
        let mut metrics = MetricSpec::kserve_defaults();
        for spec in &mut metrics {
            let fail = if spec.name.contains("error-rate") {
                spec.limit = Some(self.max_error_rate);
                self.error_rate_tolerance
            } else {
                self.p95_tolerance_ms
            };
            spec.fail = absolute(fail);
            spec.warn = absolute(fail / 2.0);
        }
        let mut vars = default_vars();
        vars.insert("namespace".into(), self.namespace.clone());
        vars.insert("service".into(), self.isvc.clone());
        vars.insert("window".into(), self.window.clone());
        let prom = Prometheus::new(&self.prometheus, Duration::from_secs(10))
            .map_err(|e| CliError::usage(anyhow!("--prometheus {}: {e}", self.prometheus)))?;
        Ok(PrometheusAnalysis::new(prom, metrics, vars))
    }

    fn steps(&self, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
        canary::executor_steps(
            session.cluster.client().clone(),
            Arc::new(self.plan()?),
            Arc::new(self.analysis()?),
        )
        .map_err(CliError::usage)
    }
}

/// Plans, checks and (with `--apply`) runs the canary rollout.
async fn run_canary(
    args: &CanaryArgs,
    common: &CommonArgs,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    args.plan()?;
    args.analysis()?;
    let session = Session::open(common).await?;
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        session.cluster.client().clone(),
        &args.namespace,
        &inference_service_resource(),
    );
    let isvc = api
        .get_opt(&args.isvc)
        .await
        .map_err(|e| {
            CliError::failed(anyhow!(
                "read InferenceService {}/{}: {e}",
                args.namespace,
                args.isvc
            ))
        })?
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "InferenceService {}/{} does not exist; check --isvc and --namespace",
                args.namespace,
                args.isvc
            ))
        })?;
    let predictor = &isvc.data["spec"]["predictor"];
    let current = predictor
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .find_map(|v| v["storageUri"].as_str())
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "InferenceService {}/{} names no storageUri under spec.predictor; the canary changes the storageUri, so it needs one",
                args.namespace,
                args.isvc
            ))
        })?
        .to_string();
    if current == args.storage_uri {
        return Err(CliError::usage(anyhow!(
            "InferenceService {}/{} already serves {current}; pass the new model's --storage-uri",
            args.namespace,
            args.isvc
        )));
    }
    let mut blockers = Vec::new();
    if let Some(percent) = predictor["canaryTrafficPercent"].as_u64()
        && percent > 0
    {
        blockers.push(format!(
            "a canary is already in progress on {}/{} (canaryTrafficPercent {percent}); finish it or set it to 0 first",
            args.namespace, args.isvc
        ));
    }
    let prom = Prometheus::new(&args.prometheus, Duration::from_secs(5))
        .map_err(|e| CliError::usage(anyhow!("--prometheus {}: {e}", args.prometheus)))?;
    if let Err(problem) = prom.query("vector(1)").await {
        blockers.push(format!(
            "Prometheus at {} does not answer ({problem}); without it the canary cannot be compared with stable",
            args.prometheus
        ));
    }
    let steps_text: Vec<String> = args.steps.iter().map(|p| format!("{p}%")).collect();
    let plan = Plan {
        command: "upgrade-kserve".into(),
        run_id: Session::new_run_id("kserve-canary"),
        changes: vec![format!(
            "{}/{}: storageUri {current} -> {} as a canary at {}, then promoted",
            args.namespace,
            args.isvc,
            args.storage_uri,
            steps_text.join(" -> ")
        )],
        findings: vec![format!(
            "each step fails if the canary's error rate exceeds stable's by more than {} (or {} at all) or its p95 latency stable's by more than {} ms, measured over {} after {}",
            args.error_rate_tolerance,
            args.max_error_rate,
            args.p95_tolerance_ms,
            args.window,
            upgrade_verify::duration::render(args.step_wait)
        )],
    };
    let steps = args.steps(&session)?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    if !blockers.is_empty() {
        return print_blocked(&session, plan, &refs, &blockers, out);
    }
    session.execute(&plan, &refs, out).await
}

/// `upgrade-kserve upgrade`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("chart", |a| a.default_value(KSERVE.chart)),
    mut_arg("values", |a| a.default_value("infrastructure/helm/aws/kserve-values.yaml")),
    mut_arg("release", |a| a.default_value(KSERVE.release)),
    mut_arg("namespace", |a| a.default_value(KSERVE.namespace)),
    after_help = "Without --apply it only shows current -> target. Exit codes: 0 done (or planned), \
                  1 failed and rolled back, 2 bad input (nothing changed), 4 blocked by a \
                  compatibility check (nothing changed)."
)]
pub struct UpgradeArgs {
    /// The chart, version and values.
    #[command(flatten)]
    pub helm: HelmArgs,
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    match &args.action {
        Action::Upgrade(upgrade) => run_upgrade(&KSERVE, &upgrade.helm, &args.common, out).await,
        Action::Canary(canary) => run_canary(canary, &args.common, out).await,
    }
}

/// The run's steps, from the arguments only (also how `upgrade-rollback` rebuilds them).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    match &args.action {
        Action::Upgrade(upgrade) => component_steps(&KSERVE, &upgrade.helm, session),
        Action::Canary(canary) => canary.steps(session),
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
