//! `upgrade-rollback`: undo a whole run, or one component of it, from its record and the
//! snapshots its steps took. The steps are rebuilt from the run record alone; the command
//! that made the run, its arguments, `aws` and the node list are never consulted again.

use std::io::Write;

use upgrade_flows::flows::rollback::{self, RollbackSpec};
use upgrade_flows::report::{Format, RunReport};

use crate::cli::{ClusterArgs, OutputArgs, context, print};
use crate::exit::{CliError, Flags};

/// `upgrade-rollback`: undo a run, or one component of it.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-rollback",
    version,
    about = "Undo an upgrade run (or one component of it) from its record and its snapshots",
    after_help = "Without --apply it shows which steps would be undone and what cannot be. \
                  Exit codes: 0 everything undone (or planned), 2 bad input: unknown run, no \
                  journal, a record of another format (nothing changed), 5 a step blocked the \
                  rollback (it says why and what to do), 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// The run to undo (default: the unfinished run, else the latest run in the journal).
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: Option<String>,
    /// Undo only this component's steps, e.g. `kserve`.
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// Where the run's journal, snapshots and record are.
    #[arg(long, value_name = "DIR", default_value = ".upgrade")]
    pub snapshot_dir: std::path::PathBuf,
    /// Undo. Without it the command only shows what it would undo.
    #[arg(long)]
    pub apply: bool,
    /// Answer yes to every question (for pipelines).
    #[arg(long)]
    pub yes: bool,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default().rename("run_id", "--run");
        let spec = RollbackSpec {
            run_id: self.run_id.clone(),
            component: self.component.clone(),
        };
        // Everything that names the run is checked before connecting.
        rollback::find(&upgrade_flows::StateDir::new(&self.snapshot_dir), &spec)
            .map_err(|e| CliError::from_flow(e, &flags))?;
        let run = crate::cli::RunArgs {
            snapshot_dir: self.snapshot_dir.clone(),
            apply: self.apply,
            yes: self.yes,
            resume: false,
        };
        let ctx = context("upgrade-rollback", &self.cluster, Some(&run)).await?;
        undo(&ctx, &spec, &run, &self.output, &flags, out).await
    }
}

/// Plans the rollback of `spec`'s run and, with `--apply`, undoes it: the one path
/// `upgrade-rollback` and `upgrade-bluegreen failback` share.
pub(crate) async fn undo(
    ctx: &upgrade_flows::FlowContext,
    spec: &RollbackSpec,
    run: &crate::cli::RunArgs,
    output: &OutputArgs,
    flags: &Flags,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let planned = rollback::plan(ctx, spec)
        .await
        .map_err(|e| CliError::from_flow(e, flags))?;
    let format = Format::from(output.output);
    if !run.apply {
        let mut report = RunReport::of_plan(planned.plan());
        report.outcome = format!(
            "dry run: nothing was changed; re-run with --apply to undo {} step(s)",
            planned.undoable()
        );
        print(out, &report.render(format))?;
        return Ok(0);
    }
    if !run.yes {
        crate::cli::confirm(planned.plan(), out)?;
    }
    match planned.apply(ctx).await {
        Ok(report) => {
            print(out, &report.render(format))?;
            Ok(report.exit_code())
        }
        Err(err) => {
            if let Some(report) = err.report() {
                print(out, &report.render(format))?;
            }
            Err(CliError::from_flow(err, flags))
        }
    }
}
