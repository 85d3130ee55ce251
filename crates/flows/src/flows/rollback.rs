//! Undoing a recorded run, or one component of it, from its record and the snapshots its
//! steps took.
//!
//! The steps are rebuilt from the run record alone (see [`crate::record`]): the record is the
//! truth about what ran, so the rollback needs neither the original arguments nor `aws` nor a
//! fresh look at the nodes. Each applied step is undone from its own snapshot, newest first;
//! a step that cannot be undone stops the rollback, which says what stays applied.

use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_core::journal::{Journal, RunState, StepStatus};

use crate::context::{FlowContext, StateDir};
use crate::error::{FlowError, Result};
use crate::record::RunRecord;
use crate::report::{Plan, RunReport, StepLine, status_name};
use crate::run::rollback_locked;

/// What to undo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackSpec {
    /// The run (default: the unfinished run, else the latest run in the journal).
    #[serde(default)]
    pub run_id: Option<String>,
    /// Only this component's steps, e.g. `kserve`.
    #[serde(default)]
    pub component: Option<String>,
}

/// The run to undo and its record, found without a cluster (so a wrong state folder or run
/// id is reported before connecting).
#[derive(Debug, Clone)]
pub struct RecordedRun {
    /// The run as journaled.
    pub state: RunState,
    /// Its record.
    pub record: RunRecord,
}

/// Finds the run `spec` names in `state` and reads its record.
pub fn find(state: &StateDir, spec: &RollbackSpec) -> Result<RecordedRun> {
    let journal = state.journal();
    if !journal.is_file() {
        return Err(FlowError::input(format!(
            "there is no journal at {}; point at the state folder the upgrade wrote (--snapshot-dir, default .upgrade)",
            journal.display()
        )));
    }
    let runs = Journal::runs(&journal).map_err(FlowError::input)?;
    let picked = match &spec.run_id {
        Some(id) => runs.iter().find(|r| &r.run_id == id),
        None => runs
            .iter()
            .find(|r| r.is_unfinished())
            .or_else(|| runs.last()),
    };
    let state_of_run = picked.cloned().ok_or_else(|| {
        let known: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        FlowError::invalid(
            "run_id",
            format!(
                "no run {} in the journal {}",
                spec.run_id.as_deref().unwrap_or("at all"),
                journal.display()
            ),
            format!(
                "name one of: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    if let Some(component) = &spec.component
        && !state_of_run.steps.iter().any(|s| &s.component == component)
    {
        let mut known: Vec<&str> = state_of_run
            .steps
            .iter()
            .map(|s| s.component.as_str())
            .collect();
        known.dedup();
        return Err(FlowError::invalid(
            "component",
            format!("run {} has no component `{component}`", state_of_run.run_id),
            format!("its components: {}", known.join(", ")),
        ));
    }
    let record = RunRecord::read(&state.runs(), &state_of_run.run_id)?;
    let planned: Vec<&str> = state_of_run.steps.iter().map(|s| s.id.as_str()).collect();
    let recorded: Vec<&str> = record.steps.iter().map(|s| s.id.as_str()).collect();
    if planned != recorded {
        return Err(FlowError::input(format!(
            "run {} journaled steps {planned:?}, but its record holds {recorded:?}; the record belongs to another run or was edited",
            state_of_run.run_id
        )));
    }
    Ok(RecordedRun {
        state: state_of_run,
        record,
    })
}

/// A rollback, planned: what will be undone and what cannot be.
pub struct RollbackPlanned {
    plan: Plan,
    run: RecordedRun,
    component: Option<String>,
    steps: Vec<Box<dyn Step>>,
}

impl std::fmt::Debug for RollbackPlanned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollbackPlanned")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// Plans the rollback: the run found, its steps rebuilt from the record, each applied step
/// listed with what undoing it does, and the first step that cannot be undone named.
pub async fn plan(ctx: &FlowContext, spec: &RollbackSpec) -> Result<RollbackPlanned> {
    let run = find(ctx.state(), spec)?;
    let steps = run.record.steps(ctx)?;
    let selected: Vec<&dyn Step> = steps
        .iter()
        .rev()
        .map(|s| s.as_ref())
        .filter(|s| spec.component.as_deref().is_none_or(|c| c == s.component()))
        .collect();
    let scope = match &spec.component {
        Some(c) => format!("component {c} of "),
        None => String::new(),
    };
    let mut plan = Plan {
        command: format!(
            "upgrade-rollback of {scope}{} ({})",
            run.record.command, run.state.run_id
        ),
        cluster: ctx.cluster_name(),
        run_id: run.state.run_id.clone(),
        ..Plan::default()
    };
    for step in &selected {
        let status = run.state.status_of(step.id());
        if status < StepStatus::SnapshotTaken || status == StepStatus::RolledBack {
            plan.changes.push(format!(
                "{}: nothing to undo ({})",
                step.id(),
                status_name(status)
            ));
        } else if let Some(why) = step.irreversible() {
            plan.findings.push(format!(
                "{} cannot be undone ({why}): the rollback stops there",
                step.id()
            ));
        } else {
            plan.changes.push(format!(
                "undo {} ({}) from its snapshot: {}",
                step.id(),
                status_name(status),
                step.description()
            ));
        }
    }
    plan.steps = selected
        .iter()
        .map(|s| StepLine::of(*s, run.state.status_of(s.id())))
        .collect();
    Ok(RollbackPlanned {
        plan,
        run,
        component: spec.component.clone(),
        steps,
    })
}

impl RollbackPlanned {
    /// What will be undone.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// How many steps the rollback would undo.
    pub fn undoable(&self) -> usize {
        self.plan
            .changes
            .iter()
            .filter(|c| c.starts_with("undo "))
            .count()
    }

    /// Undoes the selected steps under the upgrade lock. A step that cannot be undone (or
    /// whose rollback fails) stops it: [`FlowError::Unfinished`], saying what stays applied.
    pub async fn apply(self, ctx: &FlowContext) -> Result<RunReport> {
        let reason = format!(
            "upgrade-rollback{}",
            self.component
                .as_deref()
                .map(|c| format!(" --component {c}"))
                .unwrap_or_default()
        );
        let refs: Vec<&dyn Step> = self.steps.iter().map(|s| s.as_ref()).collect();
        let rolled = rollback_locked(
            ctx,
            &self.run.state.run_id,
            self.component.as_deref(),
            &refs,
            &reason,
        )
        .await?;
        let mut report = RunReport::of_plan(&self.plan);
        report.applied = true;
        report.journal = Some(ctx.state().journal());
        report.snapshots = Some(ctx.state().snapshots());
        if let Ok(Some(after)) = Journal::run(&ctx.state().journal(), &self.run.state.run_id) {
            for line in &mut report.steps {
                line.status = status_name(after.status_of(&line.id)).to_string();
            }
        }
        match &rolled.blocked {
            None => {
                report.outcome = format!("rolled back {} step(s)", rolled.rolled_back.len());
                Ok(report)
            }
            Some((step, why)) => {
                report.outcome = format!(
                    "rolled back {} step(s), then stopped at {step}: {why}",
                    rolled.rolled_back.len()
                );
                if ctx.stop_signal().is_stopped() {
                    Err(FlowError::Stopped(Box::new(report)))
                } else {
                    Err(FlowError::Unfinished(Box::new(report)))
                }
            }
        }
    }
}
