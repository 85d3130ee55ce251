//! Every run's lines in seed 004's `upgrade-status` ConfigMap (`kube-system`): a part per
//! step (the control plane, nodes, each component) with its state as the run goes, the
//! timeline, and "Rollback Available" from what the run can actually undo (every step
//! reversible, and not already rolled back). Node rollouts add a line per node to the same
//! document.
//!
//! The ConfigMap is for people watching; a write of the board that fails (an identity that
//! may not write ConfigMaps in kube-system, a busy API server) is logged and never fails the
//! run. (A node rollout's own writes, which record its surge nodes for its rollback, do.) A
//! document of another run that still records surge nodes is left as it is: that run's
//! rollback needs it.

use std::sync::atomic::{AtomicBool, Ordering};

use upgrade_core::executor::{StatusPart, Step, StepFuture, StepRecord};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_kube::status::{PartState, UpgradeStatus};

use crate::context::FlowContext;

/// Publishes one run's status.
pub(crate) struct StatusBoard<'a> {
    ctx: &'a FlowContext,
    run_id: String,
    /// `Err(why)` when a step of the run cannot be undone.
    reversible: Result<(), String>,
    warned: AtomicBool,
}

impl<'a> StatusBoard<'a> {
    /// The board of run `run_id` of `steps`.
    pub(crate) fn new(ctx: &'a FlowContext, run_id: &str, steps: &[&dyn Step]) -> Self {
        let reversible = match steps
            .iter()
            .find_map(|s| s.irreversible().map(|why| (s.id().to_string(), why)))
        {
            Some((id, why)) => Err(format!("{id} cannot be undone: {why}")),
            None => Ok(()),
        };
        StatusBoard {
            ctx,
            run_id: run_id.to_string(),
            reversible,
            warned: AtomicBool::new(false),
        }
    }

    /// Reads the document (this run's, or a fresh one), changes it, writes it back.
    pub(crate) async fn update(&self, change: impl FnOnce(&mut UpgradeStatus)) {
        let cluster = self.ctx.cluster();
        let mut status = match UpgradeStatus::read(cluster).await {
            Ok(Some(status)) if status.run_id == self.run_id => status,
            // Another run's node rollout left surge nodes only its rollback knows of (they
            // are recorded here alone): its document stays until that rollback has run.
            Ok(Some(status)) if !status.surged.is_empty() => {
                if !self.warned.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        run = %status.run_id,
                        surged = ?status.surged,
                        "kube-system/upgrade-status records surge nodes of an unfinished node rollout; left as it is until upgrade-rollback of that run retires them"
                    );
                }
                return;
            }
            Ok(_) => UpgradeStatus {
                run_id: self.run_id.clone(),
                ..UpgradeStatus::default()
            },
            Err(e) => return self.warn(&e),
        };
        status.rollback_available = self.reversible.is_ok();
        status.rollback_note = self.reversible.clone().err();
        change(&mut status);
        if let Err(e) = status.publish(cluster).await {
            self.warn(&e);
        }
    }

    fn warn(&self, error: &upgrade_kube::Error) {
        if !self.warned.swap(true, Ordering::SeqCst) {
            tracing::warn!(%error, "could not update kube-system/upgrade-status; the run goes on without it");
        }
    }

    /// Lists every step's part (pending unless already there) and notes `event`.
    pub(crate) async fn begin(&self, steps: &[&dyn Step], event: String) {
        self.update(|status| {
            for step in steps {
                let part = step.status_part();
                if !status.parts.iter().any(|p| p.name == part.name) {
                    status.parts.push(upgrade_kube::status::Part {
                        name: part.name,
                        from: part.from.unwrap_or_default(),
                        to: part.to.unwrap_or_default(),
                        state: PartState::Pending,
                    });
                }
            }
            status.event(event);
        })
        .await;
    }

    /// Notes how the run ended; a run rolled back has nothing left to undo.
    pub(crate) async fn end(&self, event: String, rolled_back: bool) {
        self.update(|status| {
            if rolled_back {
                status.rollback_available = false;
                status.rollback_note = Some("the run was rolled back".into());
            }
            status.event(event);
        })
        .await;
    }

    async fn set(&self, part: &StatusPart, state: PartState) {
        self.update(|status| {
            status.set(
                &part.name,
                part.from.as_deref().unwrap_or_default(),
                part.to.as_deref().unwrap_or_default(),
                state,
            )
        })
        .await;
    }
}

/// A step whose phases move its part on the board; everything else is the step's own.
pub(crate) struct Tracked<'a> {
    step: &'a dyn Step,
    board: &'a StatusBoard<'a>,
}

impl<'a> Tracked<'a> {
    /// Wraps `step`.
    pub(crate) fn new(step: &'a dyn Step, board: &'a StatusBoard<'a>) -> Self {
        Tracked { step, board }
    }
}

impl Step for Tracked<'_> {
    fn id(&self) -> &str {
        self.step.id()
    }
    fn component(&self) -> &str {
        self.step.component()
    }
    fn description(&self) -> String {
        self.step.description()
    }
    fn irreversible(&self) -> Option<String> {
        self.step.irreversible()
    }
    fn status_part(&self) -> StatusPart {
        self.step.status_part()
    }
    fn record(&self) -> StepRecord {
        self.step.record()
    }
    fn capture<'s>(&'s self, snapshot: &'s mut SnapshotWriter) -> StepFuture<'s> {
        self.step.capture(snapshot)
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let part = self.step.status_part();
            self.board.set(&part, PartState::InProgress).await;
            let result = self.step.apply().await;
            if result.is_err() {
                self.board.set(&part, PartState::Failed).await;
            }
            result
        })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let result = self.step.verify().await;
            let state = if result.is_ok() {
                PartState::Complete
            } else {
                PartState::Failed
            };
            self.board.set(&self.step.status_part(), state).await;
            result
        })
    }
    fn rollback<'s>(&'s self, snapshot: &'s Snapshot) -> StepFuture<'s> {
        Box::pin(async move {
            let result = self.step.rollback(snapshot).await;
            let state = if result.is_ok() {
                PartState::RolledBack
            } else {
                PartState::Failed
            };
            self.board.set(&self.step.status_part(), state).await;
            result
        })
    }
}
