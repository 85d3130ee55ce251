//! Seed 002's canary rollout of a new model to an InferenceService: `canaryTrafficPercent`
//! in steps, each compared with the stable revision in Prometheus, then promoted, or sent
//! back to the stable model by itself.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_verify::canary::{self, CanaryPlan, PrometheusAnalysis, inference_service_resource};
use upgrade_verify::metrics::default_vars;
use upgrade_verify::{MetricSpec, Prometheus, Tolerance};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "kserve-canary";

/// A canary rollout of a new model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// The InferenceService.
    pub isvc: String,
    /// Its namespace.
    pub namespace: String,
    /// The new model's storageUri, e.g. `s3://models/iris/v2`.
    pub storage_uri: String,
    /// Canary traffic percentages, increasing, each 1–100.
    pub steps: Vec<u8>,
    /// Prometheus' base URL (the revisions' queue-proxy metrics are compared there).
    pub prometheus: String,
    /// How far the canary's error rate may exceed the stable revision's (a ratio).
    pub error_rate_tolerance: f64,
    /// The canary's error-rate ceiling, whatever the stable revision does.
    pub max_error_rate: f64,
    /// How far the canary's p95 latency may exceed the stable revision's, in milliseconds.
    pub p95_tolerance_ms: f64,
    /// How long traffic flows at each step before the comparison.
    pub step_wait: Duration,
    /// The PromQL rate window of the comparison (keep it within `step_wait`), e.g. `5m`.
    pub window: String,
    /// How long each step may take to become Ready.
    pub ready_timeout: Duration,
}

impl CanarySpec {
    /// The rollout plan (validated: steps increasing within 1-100, a storageUri).
    fn rollout(&self) -> Result<CanaryPlan> {
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
            FlowError::invalid(
                "steps",
                e.to_string()
                    .trim_start_matches("configuration: ")
                    .to_string(),
                "",
            )
        })?;
        Ok(plan)
    }

    /// The canary-vs-stable comparison: the KServe default metrics with these tolerances.
    fn analysis(&self) -> Result<PrometheusAnalysis> {
        if !(self.prometheus.starts_with("http://") || self.prometheus.starts_with("https://")) {
            return Err(FlowError::invalid(
                "prometheus",
                format!("{}: not an http(s) URL", self.prometheus),
                "give Prometheus' base URL, e.g. http://prometheus.monitoring:9090",
            ));
        }
        for (name, value) in [
            ("error_rate_tolerance", self.error_rate_tolerance),
            ("max_error_rate", self.max_error_rate),
            ("p95_tolerance_ms", self.p95_tolerance_ms),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(FlowError::invalid(
                    name,
                    format!("{value}: a tolerance is a number of at least 0"),
                    "",
                ));
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
            .map_err(|e| FlowError::invalid("prometheus", e.to_string(), ""))?;
        Ok(PrometheusAnalysis::new(prom, metrics, vars))
    }
}

/// Checks the spec without a cluster (steps, Prometheus URL, tolerances); [`plan`] checks it
/// again.
pub fn check(spec: &CanarySpec) -> Result<()> {
    spec.rollout()?;
    spec.analysis().map(drop)
}

/// Plans the canary: the spec checked, the InferenceService read (a canary in progress or an
/// unreachable Prometheus blocks), the steps built.
pub async fn plan(ctx: &FlowContext, spec: &CanarySpec) -> Result<Planned> {
    let rollout = spec.rollout()?;
    let analysis = spec.analysis()?;
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        ctx.cluster().client().clone(),
        &spec.namespace,
        &inference_service_resource(),
    );
    let isvc = api
        .get_opt(&spec.isvc)
        .await
        .map_err(|e| {
            FlowError::failed(
                format!("read InferenceService {}/{}", spec.namespace, spec.isvc),
                e,
            )
        })?
        .ok_or_else(|| {
            FlowError::invalid(
                "isvc",
                format!(
                    "InferenceService {}/{} does not exist",
                    spec.namespace, spec.isvc
                ),
                "check the name and namespace",
            )
        })?;
    let predictor = &isvc.data["spec"]["predictor"];
    let current = predictor
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .find_map(|v| v["storageUri"].as_str())
        .ok_or_else(|| {
            FlowError::invalid(
                "isvc",
                format!(
                    "InferenceService {}/{} names no storageUri under spec.predictor",
                    spec.namespace, spec.isvc
                ),
                "the canary changes the storageUri, so it needs one",
            )
        })?
        .to_string();
    if current == spec.storage_uri {
        return Err(FlowError::invalid(
            "storage_uri",
            format!(
                "InferenceService {}/{} already serves {current}",
                spec.namespace, spec.isvc
            ),
            "give the new model's storageUri",
        ));
    }
    let mut blockers = Vec::new();
    if let Some(percent) = predictor["canaryTrafficPercent"].as_u64()
        && percent > 0
    {
        blockers.push(format!(
            "a canary is already in progress on {}/{} (canaryTrafficPercent {percent}); finish it or set it to 0 first",
            spec.namespace, spec.isvc
        ));
    }
    let prom = Prometheus::new(&spec.prometheus, Duration::from_secs(5))
        .map_err(|e| FlowError::invalid("prometheus", e.to_string(), ""))?;
    if let Err(problem) = prom.query("vector(1)").await {
        blockers.push(format!(
            "Prometheus at {} does not answer ({problem}); without it the canary cannot be compared with stable",
            spec.prometheus
        ));
    }
    let steps = canary::executor_steps(
        ctx.cluster().client().clone(),
        Arc::new(rollout),
        Arc::new(analysis),
        ctx.stop_signal(),
    )
    .map_err(|e| FlowError::invalid("steps", e.to_string(), ""))?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let steps_text: Vec<String> = spec.steps.iter().map(|p| format!("{p}%")).collect();
    let mut plan = Plan::new(
        "upgrade-kserve",
        ctx.cluster_name(),
        ctx.new_run_id("kserve-canary")?,
        &refs,
    );
    plan.changes = vec![format!(
        "{}/{}: storageUri {current} -> {} as a canary at {}, then promoted",
        spec.namespace,
        spec.isvc,
        spec.storage_uri,
        steps_text.join(" -> ")
    )];
    plan.findings = vec![format!(
        "each step fails if the canary's error rate exceeds stable's by more than {} (or {} at all) or its p95 latency stable's by more than {} ms, measured over {} after {}",
        spec.error_rate_tolerance,
        spec.max_error_rate,
        spec.p95_tolerance_ms,
        spec.window,
        upgrade_verify::duration::render(spec.step_wait)
    )];
    plan.blockers = blockers;
    Ok(Planned::new(FLOW, spec, plan, steps))
}
