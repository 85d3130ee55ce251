//! `upgrade-lock write|diff`: the platform lockfile against the live platform.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::lock::Args>()
}
