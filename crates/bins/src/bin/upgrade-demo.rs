//! `upgrade-demo`: the README's main command (run it with `./dev demo`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let repo_root = std::env::current_dir().unwrap_or_default();
    match upgrade_bins::demo::run(&repo_root, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
