//! `upgrade-preflight --target 1.31`: all checks for the target, as a report and an exit code.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::preflight::Args>()
}
