//! `upgrade-argo-workflows`: see `upgrade_bins::commands::argo_workflows`.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::argo_workflows::Args>()
}
