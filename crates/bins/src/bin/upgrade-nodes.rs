//! `upgrade-nodes --node-group NAME`: cordon, drain and replace the nodes below the control
//! plane (seed 004's node procedure).

use clap::Parser;
use upgrade_bins::commands::nodes::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::cli::stop_on_ctrl_c();
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
