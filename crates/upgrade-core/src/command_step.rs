//! A step made of commands, for what the toolkit does not wrap itself: seed 000's MLflow
//! database snapshot (`aws rds create-db-snapshot ...`) before the upgrade and its restore on
//! rollback, or any site-specific backup tool.
//!
//! Each command runs through the [`ProcessBuilder`] runner (argv only, secrets redacted,
//! timeouts). The capture command's output is kept in the step's snapshot, so the rollback
//! can be traced to the backup it restores.

use crate::executor::{Step, StepFuture};
use crate::process::ProcessBuilder;
use crate::snapshot::{Snapshot, SnapshotWriter};

const CAPTURE_OUTPUT: &str = "capture-output.txt";

/// Commands for each phase of a step; a missing one does nothing.
#[derive(Debug, Clone)]
pub struct CommandStep {
    /// Step id, e.g. `mlflow/db-snapshot`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// What it does, for people.
    pub description: String,
    /// Runs before any change (e.g. create a database snapshot).
    pub capture: Option<ProcessBuilder>,
    /// The change (often none: the snapshot is the point of the step).
    pub apply: Option<ProcessBuilder>,
    /// Checks the change (e.g. wait until the snapshot is available).
    pub verify: Option<ProcessBuilder>,
    /// Undoes it (e.g. restore the database from the snapshot).
    pub rollback: Option<ProcessBuilder>,
}

async fn run(cmd: &Option<ProcessBuilder>) -> Result<Vec<u8>, crate::executor::StepError> {
    match cmd {
        Some(cmd) => Ok(cmd.exec_async().await?.stdout),
        None => Ok(Vec::new()),
    }
}

impl Step for CommandStep {
    fn id(&self) -> &str {
        &self.id
    }

    fn component(&self) -> &str {
        &self.component
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let output = run(&self.capture).await?;
            snapshot.put(CAPTURE_OUTPUT, &output)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move { run(&self.apply).await.map(drop) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move { run(&self.verify).await.map(drop) })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            // Reading it checks the snapshot is intact before restoring anything.
            snapshot.get(CAPTURE_OUTPUT)?;
            run(&self.rollback).await.map(drop)
        })
    }
}
