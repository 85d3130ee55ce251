//! A step made of commands, for what the toolkit does not wrap itself: seed 000's MLflow
//! database snapshot (`aws rds create-db-snapshot ...`) before the upgrade and its restore on
//! rollback, or any site-specific backup tool.
//!
//! Each command is a [`CommandSpec`] (argv, never a shell) run through the
//! [`ProcessBuilder`] runner (secrets redacted, timeouts). The capture command's output is
//! kept in the step's snapshot, so the rollback can be traced to the backup it restores.

use std::path::PathBuf;
use std::time::Duration;

use crate::executor::{Step, StepFuture, StepRecord, StepSpec};
use crate::process::ProcessBuilder;
use crate::snapshot::{Snapshot, SnapshotWriter};

const CAPTURE_OUTPUT: &str = "capture-output.txt";

/// One command as data: the program (an absolute path, resolved before the run) and its
/// arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandSpec {
    /// The program, as an absolute path.
    pub program: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The working folder (default: the caller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Stop it after this long (one SIGINT, then SIGKILL after the grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl CommandSpec {
    /// `program` with `args`.
    pub fn new<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSpec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            cwd: None,
            timeout: None,
        }
    }

    /// (chainable) The working folder.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// (chainable) The time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The runner for this command, as written: `${env:NAME}` references are resolved only
    /// when it runs ([`ProcessBuilder::resolve_env_refs`]).
    pub fn builder(&self) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.cwd(dir);
        }
        if let Some(timeout) = self.timeout {
            cmd.timeout(timeout);
        }
        cmd
    }
}

impl std::fmt::Display for CommandSpec {
    /// The command line as the runner shows it: secrets redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.builder().fmt(f)
    }
}

/// Commands for each phase of a step; a missing one does nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandStep {
    /// Step id, e.g. `mlflow/db-snapshot`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// What it does, for people.
    pub description: String,
    /// Runs before any change (e.g. create a database snapshot).
    pub capture: Option<CommandSpec>,
    /// The change (often none: the snapshot is the point of the step).
    pub apply: Option<CommandSpec>,
    /// Checks the change (e.g. wait until the snapshot is available).
    pub verify: Option<CommandSpec>,
    /// Undoes it (e.g. restore the database from the snapshot).
    pub rollback: Option<CommandSpec>,
    /// Why it cannot be undone, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

impl StepSpec for CommandStep {
    const KIND: &'static str = "command";
}

async fn run(cmd: &Option<CommandSpec>) -> Result<Vec<u8>, crate::executor::StepError> {
    match cmd {
        Some(cmd) => Ok(cmd.builder().resolve_env_refs()?.exec_async().await?.stdout),
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

    fn irreversible(&self) -> Option<String> {
        self.irreversible.clone()
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(self)
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
