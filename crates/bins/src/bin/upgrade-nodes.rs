//! `upgrade-nodes --node-group NAME`: cordon, drain and replace the nodes below the control
//! plane (seed 004's node procedure).

fn main() -> std::process::ExitCode {
    upgrade_bins::cli::main::<upgrade_bins::commands::nodes::Args>()
}
