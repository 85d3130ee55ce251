//! `upgrade-eks --target 1.31 --terraform-dir DIR`: one EKS minor hop (control plane, nodes,
//! add-ons, post-checks).

use clap::Parser;
use upgrade_bins::commands::eks::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    upgrade_bins::cli::init_logging(&args.common);
    upgrade_bins::cli::stop_on_ctrl_c();
    upgrade_bins::exit::report(run(&args, &mut std::io::stdout()).await)
}
