//! `upgrade-eks --target 1.31 --terraform-dir DIR`: one EKS minor hop (control plane, nodes,
//! add-ons, post-checks).

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::eks::Args>()
}
