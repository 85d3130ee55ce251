//! The demo: what the toolkit can do today, run against the real tools.
//!
//! Until the simulated platform and the component upgrades exist (issues 3 and 9), the demo
//! runs what is built: it finds terraform, helm and kubectl through the runner, shows their
//! versions, and runs `terraform init`, `plan` and `show -json` on a built-in module.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use upgrade_core::tool::{HELM, KUBECTL, TERRAFORM};

/// Runs the demo, writing what it does to `out`.
pub fn run(repo_root: &Path, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "upgrade toolkit demo (partial: the simulated platform is not built yet)\n"
    )?;
    for tool in [TERRAFORM, HELM, KUBECTL] {
        let path = tool.resolve()?;
        let mut cmd = upgrade_core::ProcessBuilder::new(&path);
        match tool.program {
            "kubectl" => cmd.args(["version", "--client"]),
            "helm" => cmd.args(["version", "--short"]),
            _ => cmd.arg("version"),
        };
        let output = cmd.exec()?;
        let first = output
            .stdout_lossy()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        writeln!(out, "{:<10} {first}  ({})", tool.program, path.display())?;
    }

    let work = tempfile::tempdir()?;
    let module = work.path().join("smoke");
    std::fs::create_dir_all(&module)?;
    let src = repo_root.join("fixtures/terraform/smoke/main.tf");
    std::fs::copy(&src, module.join("main.tf"))
        .with_context(|| format!("copy {}", src.display()))?;
    let terraform = TERRAFORM.resolve()?;
    let tf = |args: &[&str]| {
        let mut cmd = upgrade_core::ProcessBuilder::new(&terraform);
        cmd.cwd(&module)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .args(args);
        cmd.exec()
    };
    writeln!(
        out,
        "\nterraform init + plan + show -json on fixtures/terraform/smoke:"
    )?;
    tf(&["init", "-input=false", "-no-color"])?;
    tf(&["plan", "-input=false", "-no-color", "-out=demo.tfplan"])?;
    let shown = tf(&["show", "-json", "demo.tfplan"])?;
    let plan: serde_json::Value = serde_json::from_slice(&shown.stdout).context("plan JSON")?;
    for change in plan["resource_changes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<28} {}",
            change["address"].as_str().unwrap_or("?"),
            change["change"]["actions"]
        )?;
    }
    writeln!(out, "\ndone.")?;
    Ok(())
}
