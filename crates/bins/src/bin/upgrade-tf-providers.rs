//! `upgrade-tf-providers`: a Terraform provider upgrade, planned in a copy, applied with --apply.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::tf_providers::Args>()
}
