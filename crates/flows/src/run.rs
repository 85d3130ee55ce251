//! Running a flow's steps the safe way: the cluster's upgrade lock held (one run at a time,
//! renewed while it runs), the run recorded before its first step, the steps journaled
//! through the executor, and the outcome mapped to the flow's result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use upgrade_core::executor::{Executor, RollbackReport, RunError, RunOutcome, Step};
use upgrade_kube::lock::{LockOptions, UpgradeLock};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::events::Observed;
use crate::record::RunRecord;
use crate::report::{Plan, RunReport, describe_outcome};
use crate::status_board::{StatusBoard, Tracked};

/// A check run after every step of a run verified; what it finds makes the exit code 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostCheck {
    /// The cluster's health (nodes Ready, workloads available, nothing crash-looping).
    ClusterHealth,
}

/// A flow's plan with its steps built: show [`plan`](Self::plan), then
/// [`apply`](Self::apply) it (or drop it: nothing has changed).
pub struct Planned {
    plan: Plan,
    steps: Vec<Box<dyn Step>>,
    flow: &'static str,
    spec: serde_json::Value,
    post_checks: Vec<PostCheck>,
    refusal: Option<FlowError>,
    /// Stop at a failed step instead of rolling the run back (multi-hop EKS runs: the hops
    /// done stay, `--resume` continues at the failed one).
    stop_on_failure: bool,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("flow", &self.flow)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Planned {
    /// A plan of `steps` by `flow` for `spec` (the spec is written into the run record).
    ///
    /// The flows build theirs; use it to run steps of your own (any [`Step`] whose kind a
    /// registry can rebuild) through the same lock, record, journal and rollback.
    pub fn new(
        flow: &'static str,
        spec: &impl serde::Serialize,
        plan: Plan,
        steps: Vec<Box<dyn Step>>,
    ) -> Planned {
        Planned {
            plan,
            steps,
            flow,
            spec: serde_json::to_value(spec).expect("a flow spec serialises"),
            post_checks: Vec::new(),
            refusal: None,
            stop_on_failure: false,
        }
    }

    /// (chainable) Stop at a failed step, leaving what was done recorded for `--resume` or
    /// `upgrade-rollback`, instead of rolling back by itself.
    pub(crate) fn stopping_on_failure(mut self) -> Planned {
        self.stop_on_failure = true;
        self
    }

    /// (chainable) A reason the plan may be shown but not applied (bad input that only
    /// matters for a change, e.g. a migration without a database snapshot).
    pub(crate) fn refuse_apply(mut self, why: FlowError) -> Planned {
        self.refusal = Some(why);
        self
    }

    /// (chainable) Checks to run after the steps.
    pub(crate) fn with_post_checks(mut self, checks: Vec<PostCheck>) -> Planned {
        self.post_checks = checks;
        self
    }

    /// What will be done.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The steps, in order.
    pub fn steps(&self) -> Vec<&dyn Step> {
        self.steps.iter().map(|s| s.as_ref()).collect()
    }

    /// Runs the steps under the cluster's upgrade lock: recorded, journaled, snapshotted
    /// before each change, rolled back by themselves on failure.
    ///
    /// Refused (nothing changed): a plan with blockers ([`FlowError::Blocked`]), a context
    /// without an expected cluster, an unfinished run in the journal unless the context
    /// resumes it, a lock held by another run.
    pub async fn apply(self, ctx: &FlowContext) -> Result<RunReport> {
        if let Some(refusal) = self.refusal {
            return Err(refusal);
        }
        if !self.plan.blockers.is_empty() {
            return Err(FlowError::Blocked(Box::new(self.plan)));
        }
        ctx.cluster().guard()?;
        let refs: Vec<&dyn Step> = self.steps.iter().map(|s| s.as_ref()).collect();
        let run_id = self.plan.run_id.clone();
        let board = StatusBoard::new(ctx, &run_id, &refs);
        let observed: Vec<Observed> = refs
            .iter()
            .map(|s| Observed::new(*s, ctx.events()))
            .collect();
        let tracked: Vec<Tracked> = observed
            .iter()
            .map(|s| Tracked::new(s as &dyn Step, &board))
            .collect();
        let observed: Vec<&dyn Step> = tracked.iter().map(|s| s as &dyn Step).collect();
        let (flow, command, spec) = (self.flow, &self.plan.command, &self.spec);
        let (refs, observed, run_id, board) = (&refs, &observed, &run_id, &board);
        let stops_before = ctx.stop_signal().requests();
        let on_failure = if self.stop_on_failure {
            upgrade_core::executor::OnFailure::Stop
        } else {
            upgrade_core::executor::OnFailure::RollBack
        };
        let (outcome, lock_lost) = with_upgrade_lock(ctx, run_id, |executor| async move {
            let mut executor = executor.on_failure(on_failure);
            match executor.unfinished()? {
                None => {
                    RunRecord::new(ctx, run_id, flow, command, spec.clone(), refs)
                        .write(&ctx.state().runs())?;
                    board
                        .begin(refs, format!("run {run_id} of {command} started"))
                        .await;
                    Ok(executor.start(run_id, observed).await?)
                }
                Some(run) if ctx.resume() && &run.run_id == run_id => {
                    board
                        .begin(refs, format!("run {run_id} of {command} resumed"))
                        .await;
                    Ok(executor.resume(observed).await?)
                }
                Some(run) => Err(FlowError::input(format!(
                    "run `{}` did not finish (journal {}); nothing new starts until it is resolved: resume it (--resume, repeats nothing already done) or undo it (upgrade-rollback)",
                    run.run_id,
                    ctx.state().journal().display()
                ))),
            }
        })
        .await?;
        let rolled_back = matches!(&outcome, RunOutcome::RolledBack { rollback, .. } if rollback.blocked.is_none());
        board
            .end(
                format!("run {run_id}: {}", describe_outcome(&outcome)),
                rolled_back,
            )
            .await;
        let mut report = self.report(ctx, &outcome);
        if outcome == RunOutcome::Completed {
            if !self.post_checks.is_empty() {
                let mut problems = Vec::new();
                for check in &self.post_checks {
                    problems.extend(post_check(ctx, *check).await?);
                }
                report.post_checks = Some(problems);
            }
            return Ok(report);
        }
        Err(failure(ctx, &outcome, report, stops_before, lock_lost))
    }

    fn report(&self, ctx: &FlowContext, outcome: &RunOutcome) -> RunReport {
        let mut report = RunReport::of_plan(&self.plan);
        report.applied = true;
        report.findings = self.plan.findings.clone();
        report.outcome = describe_outcome(outcome);
        report.failure = match outcome {
            RunOutcome::Completed => None,
            RunOutcome::RolledBack { error, .. } | RunOutcome::Stopped { error, .. } => {
                Some(error.clone())
            }
        };
        report.journal = Some(ctx.state().journal());
        report.snapshots = Some(ctx.state().snapshots());
        report.with_statuses(&ctx.state().journal())
    }
}

/// The error of a run that did not complete: stopped (on request, or the upgrade lock was
/// lost), fully rolled back, or stopped with a recorded way back.
fn failure(
    ctx: &FlowContext,
    outcome: &RunOutcome,
    mut report: RunReport,
    stops_before: u32,
    lock_lost: Option<String>,
) -> FlowError {
    let fully_undone =
        matches!(outcome, RunOutcome::RolledBack { rollback, .. } if rollback.blocked.is_none());
    if let Some(why) = lock_lost {
        report.outcome = format!(
            "stopped: the upgrade lock was lost ({why}), so nothing was rolled back while another run may hold the cluster: {}",
            report.outcome
        );
        return FlowError::Stopped(Box::new(report));
    }
    if ctx.stop_signal().requests() > stops_before {
        report.outcome = format!("stopped on request: {}", report.outcome);
        return FlowError::Stopped(Box::new(report));
    }
    if fully_undone {
        FlowError::RolledBack(Box::new(report))
    } else {
        FlowError::Unfinished(Box::new(report))
    }
}

async fn post_check(ctx: &FlowContext, check: PostCheck) -> Result<Vec<String>> {
    match check {
        PostCheck::ClusterHealth => {
            let health = upgrade_kube::health::check(ctx.cluster())
                .await
                .map_err(|e| FlowError::failed("post-check: cluster health", e))?;
            Ok(if health.healthy() {
                Vec::new()
            } else {
                health
                    .render()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
        }
    }
}

/// Under the upgrade lock, undoes the applied steps of `run_id` (of one component when
/// given) from their snapshots, newest first, stopping at a step that cannot be undone.
pub async fn rollback_locked(
    ctx: &FlowContext,
    run_id: &str,
    component: Option<&str>,
    steps: &[&dyn Step],
    reason: &str,
) -> Result<RollbackReport> {
    ctx.cluster().guard()?;
    let board = StatusBoard::new(ctx, run_id, steps);
    let observed: Vec<Observed> = steps
        .iter()
        .map(|s| Observed::new(*s, ctx.events()))
        .collect();
    let tracked: Vec<Tracked> = observed
        .iter()
        .map(|s| Tracked::new(s as &dyn Step, &board))
        .collect();
    let observed: Vec<&dyn Step> = tracked.iter().map(|s| s as &dyn Step).collect();
    let (report, lock_lost) = with_upgrade_lock(ctx, run_id, |mut executor| async move {
        Ok(executor
            .rollback(Some(run_id), component, &observed, reason)
            .await?)
    })
    .await?;
    board
        .end(
            match &report.blocked {
                None => format!("run {run_id} rolled back ({reason})"),
                Some((step, why)) => {
                    format!("run {run_id} partly rolled back, stopped at {step}: {why}")
                }
            },
            report.blocked.is_none() && component.is_none(),
        )
        .await;
    if let Some(why) = lock_lost {
        tracing::error!(
            run_id,
            "the rollback stopped: the upgrade lock was lost ({why})"
        );
    }
    Ok(report)
}

impl From<RunError> for FlowError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Unfinished { .. }
            | RunError::NoRun { .. }
            | RunError::PlanMismatch { .. } => FlowError::input(err),
            other => FlowError::failed("the run's journal and snapshots", other),
        }
    }
}

/// Runs of this process that may be changing a cluster: from just before the upgrade lock
/// is taken until it is released.
static RUNS_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// How many runs of this process may be changing a cluster now. A Ctrl-C handler uses it:
/// with none, nothing needs rolling back and the program may simply exit.
pub fn runs_in_progress() -> usize {
    RUNS_IN_PROGRESS.load(Ordering::SeqCst)
}

struct InProgress;

impl InProgress {
    fn enter() -> InProgress {
        RUNS_IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
        InProgress
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        RUNS_IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The one lock path: takes the cluster's upgrade lock for `run_id`, renews it in the
/// background while `work` runs on the journaled executor, and releases it afterwards.
///
/// A renewal that fails is retried with backoff until the lease would expire (the API
/// servers may be rolling). Only then, or at once when another run holds the lease, is the
/// lock lost: the context's stop signal is aborted, so every running command stops
/// gracefully and nothing is rolled back without the lock; the run stays recorded. The
/// second value says why the lock was lost, when it was.
async fn with_upgrade_lock<T, F, Fut>(
    ctx: &FlowContext,
    run_id: &str,
    work: F,
) -> Result<(T, Option<String>)>
where
    F: FnOnce(Executor) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let _in_progress = InProgress::enter();
    let options = LockOptions {
        ttl: ctx.lock_ttl(),
        ..LockOptions::new(ctx.holder())
    };
    let lock = UpgradeLock::acquire(ctx.cluster(), options, run_id).await?;
    let lock = Arc::new(tokio::sync::Mutex::new(Some(lock)));
    let lost: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let keeper = {
        let lock = Arc::clone(&lock);
        let lost = Arc::clone(&lost);
        let ttl = ctx.lock_ttl();
        let every = ttl / 3;
        // Renewals stop this much before the lease runs out, for clock and network slack.
        let margin = (ttl / 10).min(std::time::Duration::from_secs(3));
        let stop = ctx.stop_signal().clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let mut guard = lock.lock().await;
                let Some(held) = guard.as_mut() else { break };
                match held.renew_before(renewed + ttl - margin).await {
                    Ok(()) => renewed = tokio::time::Instant::now(),
                    Err(err) => {
                        tracing::error!(%err, "lost the upgrade lock; stopping the run without rolling back");
                        *lost.lock().expect("not poisoned") = Some(err.to_string());
                        stop.abort();
                        break;
                    }
                }
            }
        })
    };
    let result = async {
        let executor = Executor::open(&ctx.state().journal(), &ctx.state().snapshots())
            .map_err(FlowError::from)?
            .options(ctx.executor_options().clone())
            .stop_signal(ctx.stop_signal().clone());
        work(executor).await
    }
    .await;
    keeper.abort();
    let held = lock.lock().await.take();
    if let Some(held) = held
        && let Err(err) = held.release().await
    {
        tracing::warn!(%err, "could not release the upgrade lock; it expires by itself");
    }
    let lost = lost.lock().expect("not poisoned").take();
    // A stop ends the run it reaches; the caller learns of it from the result, and the next
    // run in this process starts afresh.
    ctx.stop_signal().settle();
    result.map(|value| (value, lost))
}
