//! `upgrade-preflight --target 1.31`: all checks for the target, as a report and an exit code.

use clap::Parser;
use upgrade_bins::commands::preflight::{Args, run};

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()))
}
