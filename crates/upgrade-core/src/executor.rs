//! Runs the steps of an upgrade so that each one is recorded, resumable and reversible.
//!
//! For each step, in order: journal `started`; the step captures everything its rollback
//! needs into a snapshot (committed atomically); journal `snapshot-taken`; apply (the step
//! must be idempotent); journal `applied`; verify; journal `verified`. A run that dies
//! anywhere is found on the next start ([`Executor::unfinished`]) and the caller chooses:
//! [`Executor::resume`] repeats nothing already done (and never re-captures a snapshot, which
//! would record a half-changed state), [`Executor::rollback`] undoes every step that got as
//! far as its snapshot, newest first.
//!
//! A step that cannot be undone (the EKS control plane's minor) says so
//! ([`Step::irreversible`]); the plan shows it before it runs, and a rollback stops at it and
//! says what stays applied.
//!
//! Every step can be written down as a [`StepRecord`] (its kind and serde spec), so a run
//! record holds exactly what another process needs to rebuild the steps and undo them.
//!
//! Tests can kill the process at any step boundary with [`ExecutorOptions::kill_at`] (see
//! [`Boundary`]); nothing in production reads it from the environment.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::journal::{Event, Journal, JournalError, Outcome, PlannedStep, RunState, StepStatus};
use crate::process::StopSignal;
use crate::snapshot::{Snapshot, SnapshotError, SnapshotKey, SnapshotStore, SnapshotWriter};

/// A step's failure (any error; its Display should name the problem and the fix).
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// A step's failure that is known to have changed nothing beyond its own rollback's reach
/// (the tool refused before any change, e.g. EKS refusing `UpdateClusterVersion`; a node
/// cordoned and drained but not yet retired): even an irreversible step is then rolled back
/// (its files put back, its cordon lifted), since nothing irreversible happened.
#[derive(Debug)]
pub struct NotApplied(pub String);

impl std::fmt::Display for NotApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotApplied {}

/// A step's line in the `upgrade-status` ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusPart {
    /// What it upgrades, e.g. `Control Plane`, `kserve`.
    pub name: String,
    /// The version before, when known.
    pub from: Option<String>,
    /// The version after, when known.
    pub to: Option<String>,
}

/// What a step's async operations return.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StepError>> + Send + 'a>>;

/// One reversible unit of an upgrade (a Helm upgrade, a tfvars edit and apply, a backup, ...).
pub trait Step: Send + Sync {
    /// Unique in the run and stable across resumes, e.g. `kserve/helm-upgrade`.
    fn id(&self) -> &str;
    /// The component it changes, e.g. `kserve` (rollback can target one component).
    fn component(&self) -> &str;
    /// What it does, for people.
    fn description(&self) -> String;
    /// Why it cannot be undone, when it cannot.
    fn irreversible(&self) -> Option<String> {
        None
    }
    /// The part of the platform it upgrades, as the `upgrade-status` ConfigMap shows it
    /// (`Control Plane 1.30 → 1.31`, `kserve → v0.15.2`); by default its id, no versions.
    fn status_part(&self) -> StatusPart {
        StatusPart {
            name: self.id().to_string(),
            from: None,
            to: None,
        }
    }
    /// The step as data: its kind and spec, from which a registry rebuilds the same step in
    /// another process (the run record `upgrade-rollback` reads). Paths in the spec are
    /// absolute and versions resolved, so the rebuilt step does not depend on where or when
    /// it is rebuilt.
    fn record(&self) -> StepRecord;
    /// Records into `snapshot` everything [`rollback`](Step::rollback) needs. Runs before any change.
    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a>;
    /// Makes the change. Must be idempotent: a resumed run may call it again.
    fn apply(&self) -> StepFuture<'_>;
    /// Checks the change took effect.
    fn verify(&self) -> StepFuture<'_>;
    /// Restores the state recorded in `snapshot`. Must be idempotent.
    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a>;
}

/// A step written down: its kind (the registry's key, e.g. `helm-upgrade`) and its spec in
/// that kind's own serde form.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// The step type, e.g. `helm-upgrade`.
    pub kind: String,
    /// The step's spec.
    pub spec: serde_json::Value,
}

impl StepRecord {
    /// The record of a step whose spec is `spec`.
    pub fn of<S: StepSpec>(spec: &S) -> StepRecord {
        StepRecord {
            kind: S::KIND.to_string(),
            spec: serde_json::to_value(spec).expect("a step spec serialises"),
        }
    }

    /// The spec, read back as `S` (`None` when this record is of another kind).
    pub fn spec<S: StepSpec>(&self) -> Option<Result<S, serde_json::Error>> {
        (self.kind == S::KIND).then(|| serde_json::from_value(self.spec.clone()))
    }
}

/// A step type's spec: the serde data a step is built from, under a stable kind name.
pub trait StepSpec: serde::Serialize + serde::de::DeserializeOwned {
    /// The kind in run records, e.g. `helm-upgrade`; never changed once released.
    const KIND: &'static str;
}

/// A step boundary where a test can kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// After `started` is journaled, before the snapshot.
    BeforeCapture,
    /// After `snapshot-taken`, before apply.
    AfterCapture,
    /// After `applied`, before verify.
    AfterApply,
    /// After `verified`.
    AfterVerify,
    /// During a rollback, after this step's `rolled-back`.
    AfterRollback,
}

impl Boundary {
    /// Every boundary of a forward run, in order.
    pub const FORWARD: [Boundary; 4] = [
        Boundary::BeforeCapture,
        Boundary::AfterCapture,
        Boundary::AfterApply,
        Boundary::AfterVerify,
    ];

    /// The boundary named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Boundary> {
        Boundary::FORWARD
            .into_iter()
            .chain([Boundary::AfterRollback])
            .find(|b| b.name() == name)
    }

    /// The boundary's name, e.g. `after-apply`.
    pub fn name(self) -> &'static str {
        match self {
            Boundary::BeforeCapture => "before-capture",
            Boundary::AfterCapture => "after-capture",
            Boundary::AfterApply => "after-apply",
            Boundary::AfterVerify => "after-verify",
            Boundary::AfterRollback => "after-rollback",
        }
    }
}

/// A run-level problem (a step's own failure is an [`RunOutcome`], not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The snapshot store failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A new run was asked for while another is unfinished.
    #[error("run `{run_id}` did not finish (journal {}); nothing new starts until it is resolved\nhint: resume it (repeats nothing already done) or roll it back (undoes its applied steps)", journal.display())]
    Unfinished {
        /// The unfinished run.
        run_id: String,
        /// The journal that records it.
        journal: PathBuf,
    },
    /// Resume or rollback was asked for but there is no such run.
    #[error("there is no {what} run in {}", journal.display())]
    NoRun {
        /// "unfinished" or the run id.
        what: String,
        /// The journal searched.
        journal: PathBuf,
    },
    /// The steps given do not match the run's plan (a different plan cannot resume it).
    #[error(
        "the steps given do not match run `{run_id}`'s plan: {detail}\nhint: resume with the same plan (same component versions and targets), or roll the run back"
    )]
    PlanMismatch {
        /// The run.
        run_id: String,
        /// What differs.
        detail: String,
    },
}

/// How a run (or a resume) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every step applied and verified.
    Completed,
    /// A step failed and the steps applied so far were rolled back.
    RolledBack {
        /// The step that failed.
        failed_step: String,
        /// Its error.
        error: String,
        /// The rollback's own result.
        rollback: RollbackReport,
    },
    /// A step failed and the run stopped there, as asked ([`OnFailure::Stop`]).
    Stopped {
        /// The step that failed.
        failed_step: String,
        /// Its error.
        error: String,
    },
}

/// What a rollback did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackReport {
    /// Steps undone, in the order they were undone.
    pub rolled_back: Vec<String>,
    /// The step that stopped the rollback and why (irreversible, or its rollback failed).
    pub blocked: Option<(String, String)>,
}

/// What to do when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Roll back every step applied so far in this run (the default).
    RollBack,
    /// Stop and leave the run unfinished for a person to resume or roll back.
    Stop,
}

/// How an executor behaves beyond its journal and snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorOptions {
    /// Tests only: abort the process (no destructors, no flushing: the closest thing to a
    /// power cut) when this step reaches this boundary, to prove a run resumes or rolls back
    /// from any point.
    pub kill_at: Option<(String, Boundary)>,
}

/// Runs steps against a journal and a snapshot store.
#[derive(Debug)]
pub struct Executor {
    journal: Journal,
    store: SnapshotStore,
    on_failure: OnFailure,
    options: ExecutorOptions,
    stop: StopSignal,
}

impl Executor {
    /// An executor writing to the journal at `journal_path` and snapshots under `snapshot_root`.
    pub fn open(journal_path: &Path, snapshot_root: &Path) -> Result<Self, RunError> {
        Ok(Executor {
            journal: Journal::open(journal_path)?,
            store: SnapshotStore::open(snapshot_root)?,
            on_failure: OnFailure::RollBack,
            options: ExecutorOptions::default(),
            stop: StopSignal::global().clone(),
        })
    }

    /// (chainable) Options (test fault injection).
    pub fn options(mut self, options: ExecutorOptions) -> Self {
        self.options = options;
        self
    }

    /// (chainable) The stop signal the steps' commands watch (default: the process-wide one).
    ///
    /// A stop ends the forward run at the step running (or before the next one) and the
    /// rollback that follows acknowledges it, so the rollback's own commands run; a further
    /// stop ends the rollback too, leaving the rest recorded in the journal to undo later.
    pub fn stop_signal(mut self, stop: StopSignal) -> Self {
        self.stop = stop;
        self
    }

    /// (chainable) What to do when a step fails.
    pub fn on_failure(mut self, policy: OnFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// The snapshot store.
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// The unfinished run, if any.
    pub fn unfinished(&self) -> Result<Option<RunState>, RunError> {
        Ok(Journal::unfinished(self.journal.path())?)
    }

    /// The plan as it would be journaled: each step with its irreversibility, so a caller can
    /// show it before anything runs.
    pub fn plan_of(steps: &[&dyn Step]) -> Vec<PlannedStep> {
        steps
            .iter()
            .map(|s| PlannedStep {
                id: s.id().to_string(),
                component: s.component().to_string(),
                description: s.description(),
                irreversible: s.irreversible(),
            })
            .collect()
    }

    /// Starts a new run. Refused while another run is unfinished.
    pub async fn start(
        &mut self,
        run_id: &str,
        steps: &[&dyn Step],
    ) -> Result<RunOutcome, RunError> {
        if let Some(run) = self.unfinished()? {
            return Err(RunError::Unfinished {
                run_id: run.run_id,
                journal: self.journal.path().to_path_buf(),
            });
        }
        self.journal.append(
            run_id,
            Event::Planned {
                steps: Self::plan_of(steps),
            },
        )?;
        let state = Journal::run(self.journal.path(), run_id)?.expect("just planned");
        self.forward(state, steps).await
    }

    /// Resumes the unfinished run with the same steps, repeating nothing already done.
    pub async fn resume(&mut self, steps: &[&dyn Step]) -> Result<RunOutcome, RunError> {
        let state = self.unfinished()?.ok_or_else(|| RunError::NoRun {
            what: "unfinished".into(),
            journal: self.journal.path().to_path_buf(),
        })?;
        check_plan(&state, steps)?;
        self.forward(state, steps).await
    }

    /// Rolls back a run (the unfinished one when `run_id` is `None`), or only one component's
    /// steps of it, undoing every step that reached its snapshot, newest first.
    pub async fn rollback(
        &mut self,
        run_id: Option<&str>,
        component: Option<&str>,
        steps: &[&dyn Step],
        reason: &str,
    ) -> Result<RollbackReport, RunError> {
        let state = match run_id {
            Some(id) => Journal::run(self.journal.path(), id)?,
            None => self.unfinished()?,
        }
        .ok_or_else(|| RunError::NoRun {
            what: run_id.unwrap_or("unfinished").to_string(),
            journal: self.journal.path().to_path_buf(),
        })?;
        check_plan(&state, steps)?;
        let report = self.undo(&state, component, steps, reason).await?;
        // Rolling back one component leaves the rest of the run as it was; a whole-run
        // rollback ends the run.
        if component.is_none() {
            let outcome = if report.blocked.is_some() {
                Outcome::Stopped
            } else {
                Outcome::RolledBack
            };
            self.journal
                .append(&state.run_id, Event::Finished { outcome })?;
        }
        Ok(report)
    }

    async fn forward(
        &mut self,
        mut state: RunState,
        steps: &[&dyn Step],
    ) -> Result<RunOutcome, RunError> {
        let run_id = state.run_id.clone();
        for (idx, step) in steps.iter().enumerate() {
            let id = step.id();
            let key = SnapshotKey {
                run_id: run_id.clone(),
                seq: idx as u32 + 1,
                component: step.component().to_string(),
                step: id.to_string(),
            };
            let status = state.status_of(id);
            if status == StepStatus::Verified {
                continue;
            }
            if self.stop.is_stopped() {
                let why: StepError = "stopped on request before it started".into();
                return self.fail(&mut state, steps, id, why).await;
            }
            if status < StepStatus::Started || status == StepStatus::RolledBack {
                self.journal
                    .append(&run_id, Event::Started { step: id.into() })?;
            }
            self.fault_point(id, Boundary::BeforeCapture);
            // Capture only if no snapshot was committed: after a crash past this point the
            // live state may already be half-changed, and the old snapshot is the truth.
            if state.status_of(id) < StepStatus::SnapshotTaken
                || status == StepStatus::RolledBack
                || !self.store.exists(&key)
            {
                let mut writer = self.store.begin(key.clone())?;
                if let Err(e) = step.capture(&mut writer).await {
                    return self.fail(&mut state, steps, id, e).await;
                }
                let snapshot = writer.commit()?;
                self.journal.append(
                    &run_id,
                    Event::SnapshotTaken {
                        step: id.into(),
                        dir: snapshot.dir().to_path_buf(),
                    },
                )?;
                state.status.insert(id.into(), StepStatus::SnapshotTaken);
                state
                    .snapshots
                    .insert(id.into(), snapshot.dir().to_path_buf());
            }
            self.fault_point(id, Boundary::AfterCapture);
            if state.status_of(id) < StepStatus::Applied {
                if let Err(e) = step.apply().await {
                    return self.fail(&mut state, steps, id, e).await;
                }
                self.journal
                    .append(&run_id, Event::Applied { step: id.into() })?;
                state.status.insert(id.into(), StepStatus::Applied);
            }
            self.fault_point(id, Boundary::AfterApply);
            if let Err(e) = step.verify().await {
                return self.fail(&mut state, steps, id, e).await;
            }
            self.journal
                .append(&run_id, Event::Verified { step: id.into() })?;
            state.status.insert(id.into(), StepStatus::Verified);
            self.fault_point(id, Boundary::AfterVerify);
        }
        self.journal.append(
            &run_id,
            Event::Finished {
                outcome: Outcome::Completed,
            },
        )?;
        Ok(RunOutcome::Completed)
    }

    async fn fail(
        &mut self,
        state: &mut RunState,
        steps: &[&dyn Step],
        step: &str,
        error: StepError,
    ) -> Result<RunOutcome, RunError> {
        let applied_nothing = error.downcast_ref::<NotApplied>().is_some();
        let error = error.to_string();
        tracing::error!(step, %error, "step failed");
        self.journal.append(
            &state.run_id,
            Event::Failed {
                step: step.into(),
                error: error.clone(),
            },
        )?;
        match self.on_failure {
            OnFailure::Stop => Ok(RunOutcome::Stopped {
                failed_step: step.into(),
                error,
            }),
            OnFailure::RollBack => {
                if self.stop.is_stopped() && !self.stop.is_aborted() {
                    // The stopped step has returned, so nothing that was asked to stop is
                    // still running: let the rollback's own commands run.
                    self.stop.acknowledge();
                    tracing::warn!(
                        run_id = %state.run_id,
                        "stopped; rolling back what this run applied (stop again to leave the rest of the rollback for later)"
                    );
                }
                let fresh = Journal::run(self.journal.path(), &state.run_id)?.expect("run exists");
                let reason = format!("step `{step}` failed: {error}");
                let not_applied = applied_nothing.then_some(step);
                let rollback = self
                    .undo_inner(&fresh, None, steps, &reason, not_applied)
                    .await?;
                let outcome = if rollback.blocked.is_some() {
                    Outcome::Stopped
                } else {
                    Outcome::RolledBack
                };
                self.journal
                    .append(&state.run_id, Event::Finished { outcome })?;
                Ok(RunOutcome::RolledBack {
                    failed_step: step.into(),
                    error,
                    rollback,
                })
            }
        }
    }

    async fn undo(
        &mut self,
        state: &RunState,
        component: Option<&str>,
        steps: &[&dyn Step],
        reason: &str,
    ) -> Result<RollbackReport, RunError> {
        self.undo_inner(state, component, steps, reason, None).await
    }

    /// [`undo`](Self::undo); `not_applied` names a failed step known to have changed nothing,
    /// which is rolled back even when irreversible.
    async fn undo_inner(
        &mut self,
        state: &RunState,
        component: Option<&str>,
        steps: &[&dyn Step],
        reason: &str,
        not_applied: Option<&str>,
    ) -> Result<RollbackReport, RunError> {
        let run_id = state.run_id.clone();
        self.journal.append(
            &run_id,
            Event::RollbackStarted {
                reason: reason.to_string(),
            },
        )?;
        let mut report = RollbackReport::default();
        for step in steps.iter().rev() {
            let id = step.id();
            if component.is_some_and(|c| c != step.component()) {
                continue;
            }
            let status = state.status_of(id);
            // Nothing changed before the snapshot; nothing to undo after a rollback.
            if status < StepStatus::SnapshotTaken || status == StepStatus::RolledBack {
                continue;
            }
            // The first step that cannot be undone stops the rollback; why is journaled.
            let blocked = if self.stop.is_stopped() {
                Some(stopped_rollback(&run_id, id, self.stop.is_aborted()))
            } else if let Some(why) = step.irreversible().filter(|_| not_applied != Some(id)) {
                Some(format!(
                    "`{id}` cannot be undone ({why}); it and every step before it stay applied. \
                     To go back, follow the documented recovery for it (for EKS: a new cluster \
                     at the previous version, restored from backups)"
                ))
            } else {
                let dir =
                    state
                        .snapshots
                        .get(id)
                        .cloned()
                        .ok_or_else(|| SnapshotError::BadManifest {
                            dir: self.store.root().to_path_buf(),
                            message: format!("the journal records no snapshot folder for `{id}`"),
                        })?;
                match Snapshot::open(&dir) {
                    Err(e) => Some(format!("`{id}`'s snapshot cannot be used: {e}")),
                    Ok(snapshot) => match step.rollback(&snapshot).await {
                        Err(_) if self.stop.is_stopped() => {
                            Some(stopped_rollback(&run_id, id, self.stop.is_aborted()))
                        }
                        Err(e) => Some(format!("rolling back `{id}` failed: {e}")),
                        Ok(()) => None,
                    },
                }
            };
            if let Some(reason) = blocked {
                self.journal.append(
                    &run_id,
                    Event::RollbackBlocked {
                        step: id.into(),
                        reason: reason.clone(),
                    },
                )?;
                report.blocked = Some((id.to_string(), reason));
                break;
            }
            self.journal
                .append(&run_id, Event::RolledBack { step: id.into() })?;
            report.rolled_back.push(id.to_string());
            self.fault_point(id, Boundary::AfterRollback);
        }
        Ok(report)
    }

    fn fault_point(&self, step: &str, boundary: Boundary) {
        if let Some((fault_step, fault_boundary)) = &self.options.kill_at
            && fault_step == step
            && *fault_boundary == boundary
        {
            tracing::warn!(
                step,
                boundary = boundary.name(),
                "fault injection: killing the process"
            );
            // Abort, not exit: no destructors, no flushing; the closest thing to a power cut.
            std::process::abort();
        }
    }
}

/// Why a rollback stopped at `step` on a stop request, and how to finish it.
fn stopped_rollback(run_id: &str, step: &str, aborted: bool) -> String {
    let why = if aborted {
        "the run was aborted (the upgrade lock was lost)"
    } else {
        "stopped on request during the rollback"
    };
    format!(
        "{why}: `{step}` and every step before it stay applied; their snapshots are kept. \
         Finish the rollback later: `upgrade-rollback --run {run_id}` (it repeats nothing already undone)"
    )
}

fn check_plan(state: &RunState, steps: &[&dyn Step]) -> Result<(), RunError> {
    let planned: Vec<&str> = state.steps.iter().map(|s| s.id.as_str()).collect();
    let given: Vec<&str> = steps.iter().map(|s| s.id()).collect();
    if planned != given {
        return Err(RunError::PlanMismatch {
            run_id: state.run_id.clone(),
            detail: format!("planned {planned:?}, given {given:?}"),
        });
    }
    Ok(())
}
