//! The KServe canary rollout: point an InferenceService at a new model, shift traffic to it in
//! steps (10 → 50 → 100 by default), wait for readiness and compare canary with stable at each
//! step, then promote it — or send all traffic back to the stable revision
//! (`canaryTrafficPercent: 0`) as soon as a step fails.
//!
//! Two ways to run it:
//! - [`run`] drives the whole rollout and reports every step to a [`CanaryRecorder`] before
//!   the next one starts;
//! - [`executor_steps`] gives the same rollout as upgrade-core executor [`Step`]s, so the
//!   executor journals each step, resumes an interrupted rollout and rolls a failed one back.
//!
//! The comparison is a [`CanaryAnalysis`]; [`PrometheusAnalysis`] judges each metric's canary
//! value against its stable value with the metric's tolerances.
//!
//! ```no_run
//! use std::time::Duration;
//! use upgrade_verify::canary::{self, CanaryOutcome, CanaryPlan, MemoryRecorder, PrometheusAnalysis};
//! use upgrade_verify::{MetricSpec, Prometheus, metrics::default_vars};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let prom = Prometheus::new("http://prometheus.monitoring.svc:9090", Duration::from_secs(10))?;
//! let analysis = PrometheusAnalysis::new(prom, MetricSpec::kserve_defaults(), default_vars());
//! let plan = CanaryPlan::new("mlops", "sklearn-iris", "s3://models/iris/v2");
//! let mut recorder = MemoryRecorder::default();
//! match canary::run(client, &plan, &analysis, &mut recorder).await? {
//!     CanaryOutcome::Promoted { .. } => println!("promoted"),
//!     CanaryOutcome::RolledBack { reason, .. } => println!("rolled back: {reason}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use upgrade_core::executor::{Step, StepError, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::metrics::{MetricSpec, Prometheus, Vars, judge};
use crate::report::{Finding, Status};
use crate::{Error, Result};

/// The InferenceService API (`serving.kserve.io/v1beta1`).
pub fn inference_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    )
}

/// What to roll out and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryPlan {
    /// The InferenceService's namespace.
    pub namespace: String,
    /// The InferenceService's name.
    pub name: String,
    /// The new model's `storageUri`, e.g. `s3://models/iris/v2`.
    pub storage_uri: String,
    /// Canary traffic percentages, increasing, each 1–100 (default 10, 50, 100).
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    /// How long each step may take to become ready (default 5m).
    #[serde(default = "default_ready_timeout", with = "crate::duration")]
    pub ready_timeout: Duration,
    /// How often readiness is polled (default 2s).
    #[serde(default = "default_poll", with = "crate::duration")]
    pub poll_interval: Duration,
    /// How long traffic flows at a step before it is analysed (default 5m).
    #[serde(default = "default_settle", with = "crate::duration")]
    pub settle: Duration,
}

fn default_steps() -> Vec<u8> {
    vec![10, 50, 100]
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_poll() -> Duration {
    Duration::from_secs(2)
}
fn default_settle() -> Duration {
    Duration::from_secs(300)
}

impl CanaryPlan {
    /// A plan with the default steps and timings.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        storage_uri: impl Into<String>,
    ) -> Self {
        CanaryPlan {
            namespace: namespace.into(),
            name: name.into(),
            storage_uri: storage_uri.into(),
            steps: default_steps(),
            ready_timeout: default_ready_timeout(),
            poll_interval: default_poll(),
            settle: default_settle(),
        }
    }

    /// Refuses steps that are empty, out of 1–100 or not increasing.
    pub fn validate(&self) -> Result<()> {
        let ok = !self.steps.is_empty()
            && self.steps.iter().all(|p| (1..=100).contains(p))
            && self.steps.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(Error::Config(format!(
                "canary steps {:?} must be increasing percentages from 1 to 100, e.g. [10, 50, 100]",
                self.steps
            )));
        }
        if self.storage_uri.trim().is_empty() {
            return Err(Error::Config(
                "the canary needs the new model's storageUri".into(),
            ));
        }
        Ok(())
    }
}

/// One thing the rollout did, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum CanaryEvent {
    /// The rollout began; `from` is the stable model's storageUri (what a person restores).
    Started {
        /// The stable storageUri.
        from: String,
        /// The canary storageUri.
        to: String,
    },
    /// `canaryTrafficPercent` was patched.
    TrafficSet {
        /// The new percentage.
        percent: u8,
    },
    /// The InferenceService observed the change and is Ready.
    Ready {
        /// The step.
        percent: u8,
        /// The revision getting the canary traffic, when the status names it.
        canary_revision: Option<String>,
        /// The revision getting the rest, when the status names it.
        stable_revision: Option<String>,
    },
    /// The step's comparison.
    Analyzed {
        /// The step.
        percent: u8,
        /// Canary-vs-stable findings.
        findings: Vec<Finding>,
    },
    /// The canary was promoted: `canaryTrafficPercent` removed, the new model takes all traffic.
    Promoted,
    /// All traffic went back to the stable revision.
    RolledBack {
        /// The step that failed.
        at_percent: u8,
        /// Why.
        reason: String,
        /// Whether the InferenceService was Ready again after the rollback.
        ready: bool,
    },
}

/// Receives each [`CanaryEvent`] as it happens (a journal, a log, a test).
pub trait CanaryRecorder: Send {
    /// Records one event; an error stops the rollout (an unrecorded step must not go on).
    fn record(
        &mut self,
        event: &CanaryEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Keeps the events in memory.
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    /// The events so far.
    pub events: Vec<CanaryEvent>,
}

impl CanaryRecorder for MemoryRecorder {
    fn record(
        &mut self,
        event: &CanaryEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        tracing::info!(?event, "canary");
        self.events.push(event.clone());
        Ok(())
    }
}

/// What an analysis is told about the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepContext {
    /// The canary traffic percentage.
    pub percent: u8,
    /// The canary revision (from `status.components.predictor.latestCreatedRevision`).
    pub canary_revision: Option<String>,
    /// The stable revision (from `status.components.predictor.latestRolledoutRevision`).
    pub stable_revision: Option<String>,
}

/// A boxed future of findings.
pub type FindingsFuture<'a> = Pin<Box<dyn Future<Output = Vec<Finding>> + Send + 'a>>;

/// Compares canary with stable at a step; any failing finding rolls the canary back.
pub trait CanaryAnalysis: Send + Sync {
    /// The findings for this step.
    fn analyze<'a>(&'a self, step: &'a StepContext) -> FindingsFuture<'a>;

    /// The analysis as data, for run records; `None` when it cannot be written down (a
    /// custom analysis), in which case a step rebuilt from the record can be rolled back but
    /// not analysed again.
    fn spec(&self) -> Option<AnalysisSpec> {
        None
    }
}

/// A canary analysis written down (see [`CanaryAnalysis::spec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AnalysisSpec {
    /// [`PrometheusAnalysis`]: each metric's canary value against the stable revision's.
    Prometheus {
        /// Prometheus' base URL.
        url: String,
        /// The time limit of each query.
        timeout: Duration,
        /// The metrics compared.
        metrics: Vec<MetricSpec>,
        /// The query variables.
        vars: Vars,
    },
}

impl AnalysisSpec {
    /// The analysis this spec describes.
    pub fn build(&self) -> Result<Arc<dyn CanaryAnalysis>> {
        match self {
            AnalysisSpec::Prometheus {
                url,
                timeout,
                metrics,
                vars,
            } => Ok(Arc::new(PrometheusAnalysis::new(
                Prometheus::new(url, *timeout)?,
                metrics.clone(),
                vars.clone(),
            ))),
        }
    }
}

/// Stands in for an analysis that was not recorded: every step it judges fails, saying so.
struct UnrecordedAnalysis;

impl CanaryAnalysis for UnrecordedAnalysis {
    fn analyze<'a>(&'a self, _step: &'a StepContext) -> FindingsFuture<'a> {
        Box::pin(async {
            vec![Finding::new(
                "analysis",
                Status::Fail,
                "",
                "the analysis the run was started with",
                "the run's analysis was not written to its record, so this step can be rolled back but not judged again; start a new canary",
            )]
        })
    }
}

/// Judges each metric's canary value against its stable value: the query is run twice, with
/// the `revision` var set to the canary and to the stable revision. When the stable revision
/// has no data (it gets no traffic at 100%), the value from the last step that had some is
/// used, and the finding says so.
#[derive(Debug)]
pub struct PrometheusAnalysis {
    prom: Prometheus,
    metrics: Vec<MetricSpec>,
    vars: Vars,
    last_stable: Mutex<BTreeMap<String, f64>>,
}

impl PrometheusAnalysis {
    /// An analysis of `metrics` (whose queries should select `revision_name=~"${revision}"`).
    pub fn new(prom: Prometheus, metrics: Vec<MetricSpec>, vars: Vars) -> Self {
        PrometheusAnalysis {
            prom,
            metrics,
            vars,
            last_stable: Mutex::new(BTreeMap::new()),
        }
    }

    async fn analyze_step(&self, step: &StepContext) -> Vec<Finding> {
        let mut findings = Vec::new();
        for spec in &self.metrics {
            let with_revision = |revision: &Option<String>| {
                let mut vars = self.vars.clone();
                if let Some(r) = revision {
                    vars.insert("revision".into(), regex_escape(r));
                }
                spec.render(&vars)
            };
            let (canary_q, stable_q) = match (
                with_revision(&step.canary_revision),
                with_revision(&step.stable_revision),
            ) {
                (Ok(c), Ok(s)) => (c, s),
                (Err(e), _) | (_, Err(e)) => {
                    findings.push(spec.unrenderable(&e));
                    continue;
                }
            };
            if canary_q == stable_q {
                findings.push(Finding::new(
                    &spec.name,
                    Status::Fail,
                    &canary_q,
                    "different queries for the canary and the stable revision",
                    "the query does not use `${revision}` (or the status names no revisions), so canary and stable cannot be told apart",
                ));
                continue;
            }
            let canary = match self.prom.query(&canary_q).await {
                Ok(v) => v,
                Err(problem) => {
                    findings.push(Finding::new(
                        &spec.name,
                        Status::Fail,
                        &canary_q,
                        "a value from Prometheus",
                        problem,
                    ));
                    continue;
                }
            };
            let stable = match self.prom.query(&stable_q).await {
                Ok(v) => v,
                Err(problem) => {
                    findings.push(Finding::new(
                        &spec.name,
                        Status::Fail,
                        &stable_q,
                        "a value from Prometheus",
                        problem,
                    ));
                    continue;
                }
            };
            let mut last = self.last_stable.lock().expect("not poisoned");
            let (reference, stable) = match stable {
                Some(v) => {
                    last.insert(spec.name.clone(), v);
                    ("stable", Some(v))
                }
                None => match last.get(&spec.name) {
                    Some(v) => ("stable (from an earlier step)", Some(*v)),
                    None => ("stable", None),
                },
            };
            findings.push(judge(spec, &canary_q, reference, stable, canary));
        }
        findings
    }
}

impl CanaryAnalysis for PrometheusAnalysis {
    fn analyze<'a>(&'a self, step: &'a StepContext) -> FindingsFuture<'a> {
        Box::pin(self.analyze_step(step))
    }

    fn spec(&self) -> Option<AnalysisSpec> {
        Some(AnalysisSpec::Prometheus {
            url: self.prom.url().to_string(),
            timeout: self.prom.timeout(),
            metrics: self.metrics.clone(),
            vars: self.vars.clone(),
        })
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How the rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryOutcome {
    /// Every step passed; the new model takes all traffic.
    Promoted {
        /// The findings of every step.
        findings: Vec<Finding>,
    },
    /// A step failed; all traffic is back on the stable revision.
    RolledBack {
        /// The step that failed.
        at_percent: u8,
        /// Why.
        reason: String,
        /// The findings of every step analysed.
        findings: Vec<Finding>,
        /// The stable storageUri (the spec still names the canary's; restore this to tidy up).
        stable_storage_uri: String,
    },
}

/// Runs `plan` against the cluster; a stop request (the process-wide [`StopSignal`]) ends
/// its waits.
pub async fn run(
    client: kube::Client,
    plan: &CanaryPlan,
    analysis: &dyn CanaryAnalysis,
    recorder: &mut dyn CanaryRecorder,
) -> Result<CanaryOutcome> {
    plan.validate()?;
    let stop = StopSignal::global();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &plan.namespace, &inference_service_resource());
    let isvc = api
        .get_opt(&plan.name)
        .await
        .map_err(|e| kube_error(plan, "read", e))?;
    let Some(isvc) = isvc else {
        return Err(Error::NotFound(format!(
            "InferenceService {}/{} does not exist; check the namespace and name",
            plan.namespace, plan.name
        )));
    };
    let (field, stable_uri) = storage_uri_of(&isvc.data).ok_or_else(|| {
        Error::NotFound(format!(
            "InferenceService {}/{} has no storageUri under spec.predictor (model or a framework); the canary changes storageUri, so it needs one",
            plan.namespace, plan.name
        ))
    })?;
    let mut record = |event: CanaryEvent| {
        recorder
            .record(&event)
            .map_err(|source| Error::Record { source })
    };
    record(CanaryEvent::Started {
        from: stable_uri.clone(),
        to: plan.storage_uri.clone(),
    })?;
    let mut findings = Vec::new();
    for (i, &percent) in plan.steps.iter().enumerate() {
        let new_model = (i == 0).then_some(field.as_str());
        patch_traffic(&api, plan, Some(percent), new_model).await?;
        record(CanaryEvent::TrafficSet { percent })?;
        let failure = match wait_ready(&api, plan, stop).await? {
            Err(not_ready) => Some(not_ready),
            Ok(ready) => {
                let step = StepContext::from_status(percent, &ready);
                record(CanaryEvent::Ready {
                    percent,
                    canary_revision: step.canary_revision.clone(),
                    stable_revision: step.stable_revision.clone(),
                })?;
                if stop.pause(plan.settle).await.is_err() {
                    return Err(Error::Canary("stopped on request".into()));
                }
                let step_findings = analysis.analyze(&step).await;
                record(CanaryEvent::Analyzed {
                    percent,
                    findings: step_findings.clone(),
                })?;
                let failure = analysis_failure(percent, &step_findings);
                findings.extend(step_findings);
                failure
            }
        };
        if let Some(reason) = failure {
            let ready = roll_back(&api, plan, stop).await?;
            record(CanaryEvent::RolledBack {
                at_percent: percent,
                reason: reason.clone(),
                ready,
            })?;
            return Ok(CanaryOutcome::RolledBack {
                at_percent: percent,
                reason,
                findings,
                stable_storage_uri: stable_uri,
            });
        }
    }
    patch_traffic(&api, plan, None, None).await?;
    if let Err(reason) = wait_ready(&api, plan, stop).await? {
        return Err(Error::Canary(format!(
            "the canary of {}/{} was promoted but the InferenceService did not become ready: {reason}",
            plan.namespace, plan.name
        )));
    }
    record(CanaryEvent::Promoted)?;
    Ok(CanaryOutcome::Promoted { findings })
}

/// The rollout as upgrade-core executor steps, so the executor journals each one, resumes an
/// interrupted rollout and rolls it back: one [`TrafficStep`] per percentage (apply patches
/// the traffic, and the new storageUri at the first; verify waits for readiness and runs the
/// analysis, whose failing findings fail the step; rollback sends all traffic back to stable,
/// and the first step's rollback then puts the predictor back as it was, old storageUri
/// included), then a [`PromoteStep`]. The steps own what they use, so a command can hand
/// them to the executor (and a later rollback can rebuild them) without borrowing. Their
/// waits end early when `stop` is set.
pub fn executor_steps(
    client: kube::Client,
    plan: Arc<CanaryPlan>,
    analysis: Arc<dyn CanaryAnalysis>,
    stop: &StopSignal,
) -> Result<Vec<Box<dyn Step>>> {
    plan.validate()?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &plan.namespace, &inference_service_resource());
    let recorded = analysis.spec();
    let mut steps: Vec<Box<dyn Step>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, &percent)| {
            Box::new(TrafficStep {
                spec: TrafficSpec {
                    id: format!("{}/{}/canary-{percent}", plan.namespace, plan.name),
                    plan: (*plan).clone(),
                    percent,
                    first: i == 0,
                    analysis: recorded.clone(),
                },
                api: api.clone(),
                analysis: Arc::clone(&analysis),
                stop: stop.clone(),
            }) as Box<dyn Step>
        })
        .collect();
    steps.push(Box::new(PromoteStep {
        spec: PromoteSpec {
            id: format!("{}/{}/canary-promote", plan.namespace, plan.name),
            plan: (*plan).clone(),
        },
        api,
        stop: stop.clone(),
    }));
    Ok(steps)
}

/// What [`TrafficStep`] does: one canary percentage of one plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSpec {
    /// Step id, e.g. `mlops/iris/canary-10`.
    pub id: String,
    /// The rollout.
    pub plan: CanaryPlan,
    /// This step's canary traffic percentage.
    pub percent: u8,
    /// Whether this is the first step (it points the predictor at the new model).
    pub first: bool,
    /// How the step is judged (`None`: a custom analysis that was not written down).
    pub analysis: Option<AnalysisSpec>,
}

impl StepSpec for TrafficSpec {
    const KIND: &'static str = "kserve-canary-traffic";
}

/// What [`PromoteStep`] promotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteSpec {
    /// Step id, e.g. `mlops/iris/canary-promote`.
    pub id: String,
    /// The rollout.
    pub plan: CanaryPlan,
}

impl StepSpec for PromoteSpec {
    const KIND: &'static str = "kserve-canary-promote";
}

/// One canary traffic percentage as an executor step (see [`executor_steps`]).
pub struct TrafficStep {
    spec: TrafficSpec,
    api: Api<DynamicObject>,
    analysis: Arc<dyn CanaryAnalysis>,
    stop: StopSignal,
}

impl TrafficStep {
    /// The step of `spec` on the cluster of `client` (a recorded analysis is rebuilt; an
    /// unrecorded one fails every analysis, so the step can only be rolled back).
    pub fn from_spec(spec: TrafficSpec, client: kube::Client) -> Result<TrafficStep> {
        let analysis = match &spec.analysis {
            Some(analysis) => analysis.build()?,
            None => Arc::new(UnrecordedAnalysis),
        };
        let api = Api::namespaced_with(client, &spec.plan.namespace, &inference_service_resource());
        Ok(TrafficStep {
            spec,
            api,
            analysis,
            stop: StopSignal::global().clone(),
        })
    }

    /// (chainable) The stop signal its waits watch (default: the process-wide one).
    pub fn with_stop_signal(mut self, stop: StopSignal) -> TrafficStep {
        self.stop = stop;
        self
    }

    async fn apply_traffic(&self) -> Result<()> {
        let field = if self.spec.first {
            let isvc = self
                .api
                .get(&self.spec.plan.name)
                .await
                .map_err(|e| kube_error(&self.spec.plan, "read", e))?;
            let (field, _) = storage_uri_of(&isvc.data).ok_or_else(|| {
                Error::NotFound(format!(
                    "InferenceService {}/{} has no storageUri under spec.predictor",
                    self.spec.plan.namespace, self.spec.plan.name
                ))
            })?;
            Some(field)
        } else {
            None
        };
        patch_traffic(
            &self.api,
            &self.spec.plan,
            Some(self.spec.percent),
            field.as_deref(),
        )
        .await
    }

    async fn verify_traffic(&self) -> Result<(), StepError> {
        let ready = wait_ready(&self.api, &self.spec.plan, &self.stop)
            .await?
            .map_err(|reason| -> StepError {
                format!("canary at {}%: {reason}", self.spec.percent).into()
            })?;
        let step = StepContext::from_status(self.spec.percent, &ready);
        self.stop
            .pause(self.spec.plan.settle)
            .await
            .map_err(|_| -> StepError { "stopped on request".into() })?;
        let findings = self.analysis.analyze(&step).await;
        match analysis_failure(self.spec.percent, &findings) {
            None => Ok(()),
            Some(reason) => Err(reason.into()),
        }
    }
}

impl Step for TrafficStep {
    fn id(&self) -> &str {
        &self.spec.id
    }
    fn component(&self) -> &str {
        "kserve"
    }
    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }
    fn description(&self) -> String {
        format!(
            "send {}% of InferenceService {}/{}'s traffic to {}, wait for Ready and compare canary with stable",
            self.spec.percent,
            self.spec.plan.namespace,
            self.spec.plan.name,
            self.spec.plan.storage_uri
        )
    }
    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(capture_predictor(&self.api, &self.spec.plan, snapshot))
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move { Ok(self.apply_traffic().await?) })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(self.verify_traffic())
    }
    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        // KServe's rollback: all traffic to the last rolled-out revision. Idempotent, so the
        // executor undoing every traffic step, newest first, repeats it harmlessly.
        Box::pin(async move {
            if !roll_back(&self.api, &self.spec.plan, &self.stop).await? {
                return Err(format!(
                    "InferenceService {}/{} was set to canaryTrafficPercent 0 but did not become Ready within {}",
                    self.spec.plan.namespace,
                    self.spec.plan.name,
                    crate::duration::render(self.spec.plan.ready_timeout)
                )
                .into());
            }
            if self.spec.first {
                // The first step changed the model: put the predictor back as captured, so
                // the spec names the stable model again instead of the rejected canary.
                let before: Value = snapshot.get_json(PREDICTOR_FILE)?;
                restore_predictor(&self.api, &self.spec.plan, before, &self.stop).await?;
            }
            Ok(())
        })
    }
}

/// Promotion as an executor step: removes `canaryTrafficPercent`, so the canary becomes the
/// rolled-out revision. Irreversible as a step: afterwards the old model is no longer the
/// stable revision, so going back is a new canary of the old storageUri.
pub struct PromoteStep {
    spec: PromoteSpec,
    api: Api<DynamicObject>,
    stop: StopSignal,
}

impl PromoteStep {
    /// The step of `spec` on the cluster of `client`.
    pub fn from_spec(spec: PromoteSpec, client: kube::Client) -> PromoteStep {
        let api = Api::namespaced_with(client, &spec.plan.namespace, &inference_service_resource());
        PromoteStep {
            spec,
            api,
            stop: StopSignal::global().clone(),
        }
    }

    /// (chainable) The stop signal its waits watch (default: the process-wide one).
    pub fn with_stop_signal(mut self, stop: StopSignal) -> PromoteStep {
        self.stop = stop;
        self
    }
}

impl Step for PromoteStep {
    fn id(&self) -> &str {
        &self.spec.id
    }
    fn component(&self) -> &str {
        "kserve"
    }
    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }
    fn description(&self) -> String {
        format!(
            "promote {} in InferenceService {}/{} (remove canaryTrafficPercent)",
            self.spec.plan.storage_uri, self.spec.plan.namespace, self.spec.plan.name
        )
    }
    fn irreversible(&self) -> Option<String> {
        Some("after promotion the new model is the rolled-out revision; go back with a new canary of the old storageUri".into())
    }
    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(capture_predictor(&self.api, &self.spec.plan, snapshot))
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move { Ok(patch_traffic(&self.api, &self.spec.plan, None, None).await?) })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            wait_ready(&self.api, &self.spec.plan, &self.stop)
                .await?
                .map(|_| ())
                .map_err(|reason| format!("after promotion: {reason}").into())
        })
    }
    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            Err("promotion cannot be undone by the executor; start a new canary of the old storageUri".into())
        })
    }
}

/// Sets `canaryTrafficPercent` (`None` removes it: promotion), and with `new_model` (the
/// predictor key holding storageUri) points the predictor at the plan's storageUri.
async fn patch_traffic(
    api: &Api<DynamicObject>,
    plan: &CanaryPlan,
    percent: Option<u8>,
    new_model: Option<&str>,
) -> Result<()> {
    let mut predictor = serde_json::Map::new();
    predictor.insert("canaryTrafficPercent".into(), json!(percent));
    if let Some(field) = new_model {
        predictor.insert(field.into(), json!({"storageUri": plan.storage_uri}));
    }
    let patch = json!({"spec": {"predictor": predictor}});
    let action = if percent.is_some() {
        "patch"
    } else {
        "promote"
    };
    api.patch(&plan.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_error(plan, action, e))?;
    Ok(())
}

/// Why a step's analysis fails the canary, if it does.
fn analysis_failure(percent: u8, findings: &[Finding]) -> Option<String> {
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .map(|f| format!("{}: {} (expected {})", f.name, f.actual, f.expected))
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "canary at {percent}% failed its analysis: {}",
            failed.join("; ")
        )
    })
}

/// Records the predictor as it is, before a step changes it.
async fn capture_predictor(
    api: &Api<DynamicObject>,
    plan: &CanaryPlan,
    snapshot: &mut SnapshotWriter,
) -> Result<(), StepError> {
    let isvc = api
        .get(&plan.name)
        .await
        .map_err(|e| kube_error(plan, "read", e))?;
    snapshot.put_json(PREDICTOR_FILE, &isvc.data["spec"]["predictor"])?;
    Ok(())
}

const PREDICTOR_FILE: &str = "predictor.json";

/// Puts the predictor back as captured (fields added since are removed) and waits for Ready.
async fn restore_predictor(
    api: &Api<DynamicObject>,
    plan: &CanaryPlan,
    before: Value,
    stop: &StopSignal,
) -> Result<(), StepError> {
    let now = api
        .get(&plan.name)
        .await
        .map_err(|e| kube_error(plan, "read", e))?;
    let mut predictor = before.as_object().cloned().unwrap_or_default();
    // A merge patch keeps keys it does not name: name the ones added since, as null.
    if let Some(current) = now.data["spec"]["predictor"].as_object() {
        for key in current.keys() {
            predictor.entry(key.clone()).or_insert(Value::Null);
        }
    }
    let patch = json!({"spec": {"predictor": predictor}});
    api.patch(&plan.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_error(plan, "restore the predictor of", e))?;
    wait_ready(api, plan, stop)
        .await?
        .map_err(|reason| -> StepError {
            format!(
                "InferenceService {}/{} was given back its stable model but is not ready: {reason}",
                plan.namespace, plan.name
            )
            .into()
        })?;
    Ok(())
}

impl StepContext {
    fn from_status(percent: u8, isvc: &Value) -> Self {
        StepContext {
            percent,
            canary_revision: revision(isvc, "latestCreatedRevision"),
            stable_revision: revision(isvc, "latestRolledoutRevision"),
        }
    }
}

/// Sends all traffic back to stable and waits for it; `Ok(false)`: not ready in time.
async fn roll_back(api: &Api<DynamicObject>, plan: &CanaryPlan, stop: &StopSignal) -> Result<bool> {
    let patch = json!({"spec": {"predictor": {"canaryTrafficPercent": 0}}});
    api.patch(&plan.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_error(plan, "roll back", e))?;
    Ok(wait_ready(api, plan, stop).await?.is_ok())
}

/// Polls until the status has observed the latest generation and Ready is True.
/// The inner `Err` is why it did not get there in time.
async fn wait_ready(
    api: &Api<DynamicObject>,
    plan: &CanaryPlan,
    stop: &StopSignal,
) -> Result<Result<Value, String>> {
    let deadline = Instant::now() + plan.ready_timeout;
    loop {
        let obj = api
            .get(&plan.name)
            .await
            .map_err(|e| kube_error(plan, "read", e))?;
        let generation = obj.metadata.generation.unwrap_or(0);
        let observed = obj.data["status"]["observedGeneration"]
            .as_i64()
            .unwrap_or(-1);
        let ready = obj.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready");
        let is_ready = ready.is_some_and(|c| c["status"] == "True");
        if observed >= generation && is_ready {
            return Ok(Ok(obj.data));
        }
        if Instant::now() >= deadline {
            let why = if observed < generation {
                format!(
                    "the InferenceService has not observed generation {generation} (status is at {observed})"
                )
            } else {
                let c = ready.cloned().unwrap_or(Value::Null);
                format!(
                    "Ready is {} ({}: {})",
                    c["status"].as_str().unwrap_or("missing"),
                    c["reason"].as_str().unwrap_or("no reason"),
                    c["message"].as_str().unwrap_or("no message")
                )
            };
            return Ok(Err(format!(
                "not ready within {}: {why}",
                crate::duration::render(plan.ready_timeout)
            )));
        }
        if stop.pause(plan.poll_interval).await.is_err() {
            return Ok(Err("stopped on request".into()));
        }
    }
}

fn revision(isvc: &Value, field: &str) -> Option<String> {
    isvc["status"]["components"]["predictor"][field]
        .as_str()
        .map(str::to_string)
}

/// The predictor key holding `storageUri` (`model`, or a framework such as `sklearn`) and its value.
fn storage_uri_of(isvc: &Value) -> Option<(String, String)> {
    let predictor = isvc["spec"]["predictor"].as_object()?;
    let mut keys: Vec<&String> = predictor.keys().collect();
    keys.sort_by_key(|k| *k != "model");
    keys.into_iter().find_map(|k| {
        predictor[k]["storageUri"]
            .as_str()
            .map(|uri| (k.clone(), uri.to_string()))
    })
}

fn kube_error(plan: &CanaryPlan, action: &str, source: kube::Error) -> Error {
    Error::Kube {
        action: format!("{action} InferenceService {}/{}", plan.namespace, plan.name),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_within_1_to_100() {
        let mut plan = CanaryPlan::new("ns", "iris", "s3://m/v2");
        assert!(plan.validate().is_ok());
        for bad in [
            vec![],
            vec![50, 10],
            vec![0, 100],
            vec![10, 101],
            vec![10, 10],
        ] {
            plan.steps = bad;
            assert!(
                plan.validate()
                    .unwrap_err()
                    .to_string()
                    .contains("increasing percentages")
            );
        }
    }

    #[test]
    fn finds_the_storage_uri() {
        let v =
            json!({"spec": {"predictor": {"minReplicas": 1, "model": {"storageUri": "s3://a"}}}});
        assert_eq!(storage_uri_of(&v), Some(("model".into(), "s3://a".into())));
        let v = json!({"spec": {"predictor": {"sklearn": {"storageUri": "gs://b"}}}});
        assert_eq!(
            storage_uri_of(&v),
            Some(("sklearn".into(), "gs://b".into()))
        );
        assert_eq!(storage_uri_of(&json!({"spec": {}})), None);
    }
}
