//! `upgrade-release`: see `upgrade_bins::commands::release`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::release::Args>()
}
