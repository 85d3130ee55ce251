//! `upgrade-kserve`: see `upgrade_bins::commands::kserve`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::kserve::Args>()
}
