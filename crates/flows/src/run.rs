//! Running a flow's steps the safe way: the cluster's upgrade lock held (one run at a time,
//! renewed while it runs), the run recorded before its first step, the steps journaled
//! through the executor, and the outcome mapped to the flow's result.

use std::sync::Arc;

use upgrade_core::executor::{Executor, RollbackReport, RunError, RunOutcome, Step};
use upgrade_kube::lock::{LockOptions, UpgradeLock};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::events::Observed;
use crate::record::RunRecord;
use crate::report::{Plan, RunReport, describe_outcome};

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
        }
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
        let observed: Vec<Observed> = refs
            .iter()
            .map(|s| Observed::new(*s, ctx.events()))
            .collect();
        let observed: Vec<&dyn Step> = observed.iter().map(|s| s as &dyn Step).collect();
        let run_id = self.plan.run_id.clone();
        let (flow, command, spec) = (self.flow, &self.plan.command, &self.spec);
        let (refs, observed, run_id) = (&refs, &observed, &run_id);
        let outcome = with_upgrade_lock(ctx, run_id, |mut executor| async move {
            match executor.unfinished()? {
                None => {
                    RunRecord::new(ctx, run_id, flow, command, spec.clone(), refs)
                        .write(&ctx.state().runs())?;
                    Ok(executor.start(run_id, observed).await?)
                }
                Some(run) if ctx.resume() && &run.run_id == run_id => {
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
        Err(failure(ctx, &outcome, report))
    }

    fn report(&self, ctx: &FlowContext, outcome: &RunOutcome) -> RunReport {
        let mut report = RunReport::of_plan(&self.plan);
        report.applied = true;
        report.findings = self.plan.findings.clone();
        report.outcome = describe_outcome(outcome);
        report.journal = Some(ctx.state().journal());
        report.snapshots = Some(ctx.state().snapshots());
        report.with_statuses(&ctx.state().journal())
    }
}

/// The error of a run that did not complete: stopped on request, fully rolled back, or
/// stopped with a recorded way back.
fn failure(ctx: &FlowContext, outcome: &RunOutcome, mut report: RunReport) -> FlowError {
    let fully_undone =
        matches!(outcome, RunOutcome::RolledBack { rollback, .. } if rollback.blocked.is_none());
    if ctx.stop_signal().is_stopped() {
        report.outcome = format!(
            "stopped on request (Ctrl-C or a lost upgrade lock): {}",
            report.outcome
        );
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
    let observed: Vec<Observed> = steps
        .iter()
        .map(|s| Observed::new(*s, ctx.events()))
        .collect();
    let observed: Vec<&dyn Step> = observed.iter().map(|s| s as &dyn Step).collect();
    with_upgrade_lock(ctx, run_id, |mut executor| async move {
        Ok(executor
            .rollback(Some(run_id), component, &observed, reason)
            .await?)
    })
    .await
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

/// The one lock path: takes the cluster's upgrade lock for `run_id`, renews it in the
/// background while `work` runs on the journaled executor, and releases it afterwards. If
/// the lock is lost, the context's stop signal stops every running command gracefully.
async fn with_upgrade_lock<T, F, Fut>(ctx: &FlowContext, run_id: &str, work: F) -> Result<T>
where
    F: FnOnce(Executor) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let options = LockOptions {
        ttl: ctx.lock_ttl(),
        ..LockOptions::new(ctx.holder())
    };
    let lock = UpgradeLock::acquire(ctx.cluster(), options, run_id).await?;
    let lock = Arc::new(tokio::sync::Mutex::new(Some(lock)));
    let keeper = {
        let lock = Arc::clone(&lock);
        let every = ctx.lock_ttl() / 3;
        let stop = ctx.stop_signal().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut guard = lock.lock().await;
                let Some(held) = guard.as_mut() else { break };
                if let Err(err) = held.renew(None).await {
                    tracing::error!(%err, "lost the upgrade lock; stopping");
                    stop.stop();
                    break;
                }
            }
        })
    };
    let result = async {
        let executor = Executor::open(&ctx.state().journal(), &ctx.state().snapshots())
            .map_err(FlowError::from)?
            .options(ctx.executor_options().clone());
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
    result
}
