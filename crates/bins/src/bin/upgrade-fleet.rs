//! `upgrade-fleet`: see `upgrade_bins::commands::fleet`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::fleet::Args>()
}
