//! `upgrade-demo`: the README's main command (run it with `./dev demo`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// `upgrade-demo`: the whole upgrade on the built-in simulated platform.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-demo",
    version,
    about = "Run the platform upgrade end to end on the built-in simulated platform (kube-sim, \
             the simulated Terraform provider, the real terraform and helm)",
    after_help = "Needs the real tools that `./dev tools` installs (terraform, helm); `./dev demo` \
                  builds the commands and runs this. Run it from the repository's root: it reads \
                  the fixtures there."
)]
struct Args {
    /// Where the simulated platform's files go (default: a new folder in the temp dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// API faults for the commands to survive, as `kube-sim serve --faults` takes them:
    /// comma-separated VERB:RESOURCE:KIND=RATE (KIND 429, 500, 503, drop, drop-response),
    /// seed=N, latency=MS; e.g. `seed=7,*:*:429=4%,*:*:503=3%,*:*:500=2%,*:*:drop=1%`.
    #[arg(long, value_name = "SPEC")]
    faults: Option<kube_sim::FaultConfig>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let repo_root = std::env::current_dir().unwrap_or_default();
    let work = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mlops-upgrade-demo-{}", std::process::id()))
    });
    let result = async {
        let bin_dir = upgrade_demo::demo::commands_dir()?;
        let tools = upgrade_demo::sample::Tools {
            terraform: upgrade_core::tool::TERRAFORM.resolve()?,
            helm: upgrade_core::tool::HELM.resolve()?,
        };
        let options = upgrade_demo::demo::DemoOptions {
            faults: args.faults,
            without_bluegreen: false,
        };
        upgrade_demo::demo::run_with(
            &repo_root,
            &bin_dir,
            tools,
            &work,
            &options,
            &mut std::io::stdout(),
        )
        .await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
