//! `upgrade-map-apis`: see `upgrade_bins::commands::map_apis`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::map_apis::Args>()
}
