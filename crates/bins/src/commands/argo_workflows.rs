//! `upgrade-argo-workflows`: the Argo Workflows chart upgrade (Workflow, WorkflowTemplate and
//! CronWorkflow backup, the snapshotted `helm upgrade`, the controller verified), planned
//! first and rolled back by itself on failure.

use std::io::Write;

use upgrade_core::executor::Step;

use crate::cli::CommonArgs;
use crate::commands::helm_component::{ARGO_WORKFLOWS, HelmArgs, component_steps, run_upgrade};
use crate::exit::CliError;
use crate::session::Session;

/// `upgrade-argo-workflows`: upgrade the Argo Workflows chart.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-argo-workflows",
    about = "Upgrade Argo Workflows' Helm release: plan, check, back up Workflows and WorkflowTemplates, upgrade, verify, roll back on failure",
    mut_arg("chart", |a| a.default_value(ARGO_WORKFLOWS.chart)),
    mut_arg("values", |a| a.default_value("infrastructure/helm/aws/argo-workflows-values.yaml")),
    mut_arg("release", |a| a.default_value(ARGO_WORKFLOWS.release)),
    mut_arg("namespace", |a| a.default_value(ARGO_WORKFLOWS.namespace)),
    after_help = "Without --apply it only shows current -> target. A rollback restores the release \
                  and re-applies the backed-up Workflows, WorkflowTemplates and CronWorkflows. \
                  Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing \
                  changed), 4 blocked by a compatibility check (nothing changed)."
)]
pub struct Args {
    /// The chart, version and values.
    #[command(flatten)]
    pub helm: HelmArgs,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    run_upgrade(&ARGO_WORKFLOWS, &args.helm, &args.common, out).await
}

/// The run's steps, from the arguments only (also how `upgrade-rollback` rebuilds them).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    component_steps(&ARGO_WORKFLOWS, &args.helm, session)
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
