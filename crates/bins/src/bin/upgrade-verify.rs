//! `upgrade-verify baseline|check`: post-upgrade verification.

use clap::Parser;
use upgrade_bins::commands::verify::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
