//! Probes as a step of an upgrade run (`upgrade_core::executor::Step`): seed 000's "check
//! /health after the upgrade" made part of the run, so a failing check rolls back the steps
//! before it.
//!
//! The step changes nothing: its verify runs every probe (each with its own retries) and
//! fails, naming each failing probe with what came back, unless all pass.

use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::probe::{ProbeSpec, Prober};
use crate::report::Status;

/// Runs probes after the steps before it; fails the run when one fails. It needs no handle,
/// so it is its own spec.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeStep {
    /// Step id, e.g. `mlflow/health`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// The probes, run concurrently.
    pub probes: Vec<ProbeSpec>,
}

impl StepSpec for ProbeStep {
    const KIND: &'static str = "verify-probes";
}

impl Step for ProbeStep {
    fn id(&self) -> &str {
        &self.id
    }

    fn component(&self) -> &str {
        &self.component
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(self)
    }

    fn description(&self) -> String {
        let targets: Vec<String> = self
            .probes
            .iter()
            .map(|p| {
                let request = p.check.request();
                format!("{} {}", request.method, request.url)
            })
            .collect();
        format!(
            "check {} (up to {} attempt(s) each)",
            targets.join(", "),
            self.probes
                .iter()
                .map(|p| p.retry.attempts.max(1))
                .max()
                .unwrap_or(1)
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let findings = Prober::new()?.run_all(&self.probes).await;
            let failed: Vec<String> = findings
                .iter()
                .filter(|f| f.status == Status::Fail)
                .map(|f| format!("{} ({}): {}", f.name, f.target, f.actual))
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("probe failed: {}", failed.join("; ")).into())
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}
