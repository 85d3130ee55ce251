//! `upgrade-rollback`: undo a whole run, or one component of it, from the journal and the
//! snapshots its steps took.
//!
//! The steps are rebuilt from the run's record (`<snapshot-dir>/runs/<run>.json`, the argv
//! the run was started with) through [`steps_for`], so they are the very steps the run
//! journaled; each applied step is undone from its own snapshot, newest first, and a step
//! that cannot be undone stops the rollback with the documented way forward.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow};
use clap::Parser;
use upgrade_core::executor::Step;
use upgrade_core::journal::{Journal, RunState, StepStatus};

use crate::cli::CommonArgs;
use crate::commands::{argo_workflows, eks, karpenter, kserve, mlflow, nodes, tf_providers};
use crate::exit::{CliError, FAILED, OK};
use crate::progress::Progressed;
use crate::run::rollback_locked;
use crate::session::{Plan, RunRecord, RunReport, Session, StepLine, confirm, status_name};

/// `upgrade-rollback`: undo a run, or one component of it.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-rollback",
    about = "Undo an upgrade run (or one component of it) from the journal and its snapshots",
    after_help = "Without --apply it shows which steps would be undone and what cannot be. \
                  Exit codes: 0 everything undone (or planned), 1 a step blocked the rollback \
                  (it says why and what to do), 2 bad input: unknown run, no journal, or a run \
                  made by a command this rollback does not know (nothing changed)."
)]
pub struct Args {
    /// The run to undo (default: the unfinished run, else the latest run in the journal).
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: Option<String>,
    /// Undo only this component's steps, e.g. `kserve`.
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Rebuilds a recorded run's steps: the record's argv re-parsed by the command that made it,
/// then that command's own `steps`. Every command whose runs can be undone is listed here.
pub async fn steps_for(
    record: &RunRecord,
    session: &Session,
) -> Result<Vec<Box<dyn Step>>, CliError> {
    let argv = std::iter::once(record.command.clone()).chain(record.args.iter().cloned());
    let unreadable = |e: clap::Error| {
        CliError::usage(anyhow!(
            "the record of run {} holds arguments `{}` cannot read ({}); the record was edited or written by another version",
            record.run_id,
            record.command,
            crate::exit::one_line(&e.to_string())
        ))
    };
    match record.command.as_str() {
        "upgrade-karpenter" => {
            let args = karpenter::Args::try_parse_from(argv).map_err(unreadable)?;
            karpenter::steps(&args, session).await
        }
        "upgrade-kserve" => {
            let args = kserve::Args::try_parse_from(argv).map_err(unreadable)?;
            kserve::steps(&args, session).await
        }
        "upgrade-argo-workflows" => {
            let args = argo_workflows::Args::try_parse_from(argv).map_err(unreadable)?;
            argo_workflows::steps(&args, session).await
        }
        "upgrade-eks" => {
            let args = eks::Args::try_parse_from(argv).map_err(unreadable)?;
            eks::steps(&args, session).await
        }
        "upgrade-nodes" => {
            let args = nodes::Args::try_parse_from(argv).map_err(unreadable)?;
            nodes::steps(&args, session).await
        }
        "upgrade-mlflow" => {
            let mut args = mlflow::Args::try_parse_from(argv).map_err(unreadable)?;
            // Its snapshot names come from the run id, which the argv does not hold.
            args.run_id = Some(record.run_id.clone());
            mlflow::steps(&args, session).await
        }
        "upgrade-tf-providers" => {
            let args = tf_providers::Args::try_parse_from(argv).map_err(unreadable)?;
            tf_providers::steps(&args, session).await
        }
        other => Err(CliError::usage(anyhow!(
            "run {} was made by `{other}`, which upgrade-rollback does not know; use that command's own recovery, or an upgrade-rollback that registers it",
            record.run_id
        ))),
    }
}

/// The steps of a rollback: the recorded run's steps, rebuilt (see [`steps_for`]).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    let journal = session.journal();
    let state = pick_run(&journal, args.run_id.as_deref())?;
    let record = read_record(&session.runs_dir(), &state.run_id)?;
    steps_for(&record, session).await
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let common = &args.common;
    // Everything that names the run is checked before connecting.
    let journal = common.snapshot_dir.join("journal.jsonl");
    let state = pick_run(&journal, args.run_id.as_deref())?;
    let record = read_record(&common.snapshot_dir.join("runs"), &state.run_id)?;
    if let Some(component) = &args.component
        && !state.steps.iter().any(|s| &s.component == component)
    {
        let mut known: Vec<&str> = state.steps.iter().map(|s| s.component.as_str()).collect();
        known.dedup();
        return Err(CliError::usage(anyhow!(
            "run {} has no component `{component}`; its components: {}",
            state.run_id,
            known.join(", ")
        )));
    }
    let session = Session::open(common).await?;
    let steps = steps_for(&record, &session).await?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let planned: Vec<&str> = state.steps.iter().map(|s| s.id.as_str()).collect();
    let rebuilt: Vec<&str> = refs.iter().map(|s| s.id()).collect();
    if planned != rebuilt {
        return Err(CliError::usage(anyhow!(
            "run {} journaled steps {planned:?}, but its record rebuilds {rebuilt:?}; it was made by another version of {}",
            state.run_id,
            record.command
        )));
    }

    let selected: Vec<&dyn Step> = refs
        .iter()
        .rev()
        .copied()
        .filter(|s| args.component.as_deref().is_none_or(|c| c == s.component()))
        .collect();
    let mut plan = Plan {
        command: "upgrade-rollback".into(),
        run_id: state.run_id.clone(),
        changes: Vec::new(),
        findings: Vec::new(),
    };
    let mut to_undo = 0;
    for step in &selected {
        let status = state.status_of(step.id());
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
            to_undo += 1;
            plan.changes.push(format!(
                "undo {} ({}) from its snapshot: {}",
                step.id(),
                status_name(status),
                step.description()
            ));
        }
    }
    let scope = match &args.component {
        Some(c) => format!("component {c} of "),
        None => String::new(),
    };
    let mut report = RunReport::planned(&session, &plan, &selected);
    report.command = format!(
        "upgrade-rollback of {scope}{} ({})",
        record.command, state.run_id
    );
    report.steps = step_lines(&state, &selected);
    if !common.apply {
        report.outcome =
            format!("dry run: nothing was changed; re-run with --apply to undo {to_undo} step(s)");
        return print(&report, &session, out).map(|()| OK);
    }
    if !common.yes {
        confirm(&plan, &selected, out)?;
    }
    let reason = format!(
        "upgrade-rollback{}",
        args.component
            .as_deref()
            .map(|c| format!(" --component {c}"))
            .unwrap_or_default()
    );
    let shown: Vec<Progressed> = refs.iter().map(|s| Progressed::new(*s)).collect();
    let shown: Vec<&dyn Step> = shown.iter().map(|s| s as &dyn Step).collect();
    let rolled = rollback_locked(
        &session.cluster,
        &session.run_settings(),
        &state.run_id,
        args.component.as_deref(),
        &shown,
        &reason,
    )
    .await
    .map_err(CliError::failed)?;
    if let Ok(Some(after)) = Journal::run(&session.journal(), &state.run_id) {
        report.steps = step_lines(&after, &selected);
    }
    let code = match &rolled.blocked {
        None => {
            report.outcome = format!("rolled back {} step(s)", rolled.rolled_back.len());
            OK
        }
        Some((step, why)) => {
            report.outcome = format!(
                "rolled back {} step(s), then stopped at {step}: {why}",
                rolled.rolled_back.len()
            );
            FAILED
        }
    };
    print(&report, &session, out)?;
    Ok(code)
}

fn print(report: &RunReport, session: &Session, out: &mut dyn Write) -> Result<(), CliError> {
    out.write_all(report.render(session.common.output).as_bytes())
        .context("write the report")
        .map_err(CliError::failed)
}

fn step_lines(state: &RunState, steps: &[&dyn Step]) -> Vec<StepLine> {
    steps
        .iter()
        .map(|s| StepLine::of(*s, state.status_of(s.id())))
        .collect()
}

/// The run to undo: `run_id`, else the unfinished run, else the latest run in the journal.
pub fn pick_run(journal: &Path, run_id: Option<&str>) -> Result<RunState, CliError> {
    if !journal.is_file() {
        return Err(CliError::usage(anyhow!(
            "there is no journal at {}; pass --snapshot-dir with the folder the upgrade wrote (default .upgrade)",
            journal.display()
        )));
    }
    let runs = Journal::runs(journal).map_err(CliError::usage)?;
    let picked = match run_id {
        Some(id) => runs.iter().find(|r| r.run_id == id),
        None => runs
            .iter()
            .find(|r| r.is_unfinished())
            .or_else(|| runs.last()),
    };
    picked.cloned().ok_or_else(|| {
        let known: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        CliError::usage(anyhow!(
            "no run {} in the journal {}; pass --run with one of: {}",
            run_id.unwrap_or("at all"),
            journal.display(),
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// Reads `<runs_dir>/<run_id>.json`.
pub fn read_record(runs_dir: &Path, run_id: &str) -> Result<RunRecord, CliError> {
    let path = runs_dir.join(format!("{run_id}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::usage(anyhow!(
            "cannot read the record of run {run_id} at {} ({e}); it is written when a run starts, so pass the --snapshot-dir the run used",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(anyhow!(
            "the record of run {run_id} at {} is not valid ({e}); restore it from the run's folder",
            path.display()
        ))
    })
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
