//! `upgrade-lock write|diff`: the platform lockfile against the live platform.

use clap::Parser;
use upgrade_bins::commands::lock::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
