//! `upgrade-rollback`: undo a run, or one component of it; see `upgrade_bins::commands::rollback`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::rollback::Args>()
}
