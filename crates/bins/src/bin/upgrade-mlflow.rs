//! `upgrade-mlflow`: the MLflow tracking server's upgrade with a database snapshot, planned
//! first, applied with --apply.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::mlflow::Args>()
}
