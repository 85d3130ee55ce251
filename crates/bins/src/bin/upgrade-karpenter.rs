//! `upgrade-karpenter`: the Karpenter chart upgrade, planned, checked, journaled and reversible.

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::karpenter::Args>()
}
