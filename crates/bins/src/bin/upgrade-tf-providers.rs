//! `upgrade-tf-providers`: a Terraform provider upgrade, planned in a copy, applied with --apply.

use clap::Parser;
use upgrade_bins::commands::tf_providers::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::cli::stop_on_ctrl_c();
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
