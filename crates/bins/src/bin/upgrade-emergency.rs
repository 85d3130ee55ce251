//! `upgrade-emergency`: see `upgrade_bins::commands::emergency`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::emergency::Args>()
}
