//! `upgrade-preflight --target 1.31`: all checks for the target, as a report and an exit code.

use clap::Parser;
use upgrade_bins::commands::preflight::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::cli::stop_on_ctrl_c();
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
