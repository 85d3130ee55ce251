//! `upgrade-rollback`: undo a run, or one component of it; see `upgrade_bins::commands::rollback`.

use clap::Parser;
use upgrade_bins::commands::rollback::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::cli::stop_on_ctrl_c();
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
