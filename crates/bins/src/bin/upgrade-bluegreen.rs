//! `upgrade-bluegreen`: see `upgrade_bins::commands::bluegreen`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::bluegreen::Args>()
}
