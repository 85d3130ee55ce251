//! `upgrade-verify baseline|check`: post-upgrade verification.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::verify::Args>()
}
