//! `upgrade-demo`: the README's main command (run it with `./dev demo`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let repo_root = std::env::current_dir().unwrap_or_default();
    let work = std::env::temp_dir().join(format!("mlops-upgrade-demo-{}", std::process::id()));
    match upgrade_bins::demo::run(&repo_root, &work, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
