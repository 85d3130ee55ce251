//! `upgrade-health`: see `upgrade_bins::commands::health`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::health::Args>()
}
