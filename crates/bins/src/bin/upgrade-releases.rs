//! `upgrade-releases`: see `upgrade_bins::commands::releases`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::releases::Args>()
}
