//! `upgrade-kserve`: seed 000's KServe upgrade (`upgrade`: InferenceService and
//! ServingRuntime backup, the snapshotted `helm upgrade`, every InferenceService verified;
//! a rollback restores the release and re-applies the backup).

use std::io::Write;

use upgrade_core::executor::Step;

use crate::cli::CommonArgs;
use crate::commands::helm_component::{HelmArgs, KSERVE, component_steps, run_upgrade};
use crate::exit::CliError;
use crate::session::Session;

/// `upgrade-kserve`: KServe's chart upgrade.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-kserve",
    about = "Upgrade KServe: the controller's Helm release (with InferenceServices backed up and verified)",
    after_help = "Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing \
                  changed), 4 blocked by a check (nothing changed)."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The operations.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Upgrade the KServe chart (InferenceServices backed up, verified, restored on failure).
    ///
    /// Backs up InferenceServices and ServingRuntimes, runs the snapshotted helm upgrade and
    /// verifies the controller and every InferenceService; on failure rolls the release back
    /// and re-applies the backup.
    Upgrade(UpgradeArgs),
}

/// `upgrade-kserve upgrade`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("chart", |a| a.default_value(KSERVE.chart)),
    mut_arg("values", |a| a.default_value("infrastructure/helm/aws/kserve-values.yaml")),
    mut_arg("release", |a| a.default_value(KSERVE.release)),
    mut_arg("namespace", |a| a.default_value(KSERVE.namespace)),
    after_help = "Without --apply it only shows current -> target. Exit codes: 0 done (or planned), \
                  1 failed and rolled back, 2 bad input (nothing changed), 4 blocked by a \
                  compatibility check (nothing changed)."
)]
pub struct UpgradeArgs {
    /// The chart, version and values.
    #[command(flatten)]
    pub helm: HelmArgs,
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    match &args.action {
        Action::Upgrade(upgrade) => run_upgrade(&KSERVE, &upgrade.helm, &args.common, out).await,
    }
}

/// The run's steps, from the arguments only (also how `upgrade-rollback` rebuilds them).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    match &args.action {
        Action::Upgrade(upgrade) => component_steps(&KSERVE, &upgrade.helm, session),
    }
}
