//! `upgrade-demo`: the README's main command (run it with `./dev demo`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let repo_root = std::env::current_dir().unwrap_or_default();
    let work = std::env::temp_dir().join(format!("mlops-upgrade-demo-{}", std::process::id()));
    let result = async {
        let bin_dir = upgrade_demo::demo::commands_dir()?;
        let tools = upgrade_demo::sample::Tools {
            terraform: upgrade_core::tool::TERRAFORM.resolve()?,
            helm: upgrade_core::tool::HELM.resolve()?,
        };
        upgrade_demo::demo::run(&repo_root, &bin_dir, tools, &work, &mut std::io::stdout()).await
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
