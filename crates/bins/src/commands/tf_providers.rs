//! `upgrade-tf-providers`: a Terraform provider's major upgrade (seed 000, "Terraform Provider
//! Upgrades"): the constraint bump in `required_providers`, `terraform init -upgrade`, the plan
//! review, and the apply; rolled back by writing the captured `versions.tf` and
//! `.terraform.lock.hcl` bytes back and re-applying.
//!
//! The plan is made in a throw-away copy of the folder, so looking never changes the user's
//! files: the copy gets the new constraint and `init -upgrade`, which says which version
//! Terraform would pick, and its plan goes through the same review the apply uses. A plan the
//! review blocks (a protected resource replaced or deleted) stops here with exit 4, nothing
//! changed. Should the live plan differ at apply time and be blocked then, the step fails and
//! the run rolls back by itself (exit 1).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Parser;
use upgrade_core::executor::Step;
use upgrade_core::tool::TERRAFORM;
use upgrade_tf::step::{ApplyPolicy, ProviderUpgradeStep};
use upgrade_tf::version::check_provider_constraint;
use upgrade_tf::{HclFile, InitOptions, LockFile, PlanOptions, ReviewRules, Terraform};

use crate::cli::CommonArgs;
use crate::exit::CliError;
use crate::progress::Spinner;
use crate::session::{Plan, RunReport, Session};

/// The command's name, in run records and reports.
pub const COMMAND: &str = "upgrade-tf-providers";

/// Exit code when the plan review finds blockers.
const BLOCKED: u8 = upgrade_checks::checks::EXIT_BLOCKERS;

/// `upgrade-tf-providers` arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "upgrade-tf-providers",
    version,
    about = "Upgrade a Terraform provider: bump its constraint, init -upgrade, review the plan, apply",
    after_help = "The plan (without --apply) is made in a temporary copy of the folder; your files change only with --apply.\n\
Rollback: versions.tf and .terraform.lock.hcl get their exact bytes back, then init and apply.\n\n\
Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed),\n\
4 the plan review found blockers (nothing changed)."
)]
pub struct Args {
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The Terraform environment's folder (where `terraform init` was run).
    #[arg(long, value_name = "DIR")]
    pub terraform_dir: PathBuf,
    /// The provider's local name in `required_providers`, e.g. `aws`.
    #[arg(long, value_name = "NAME")]
    pub provider: String,
    /// The new version constraint, in Terraform's syntax, e.g. `~> 6.0`.
    #[arg(long, value_name = "CONSTRAINT")]
    pub constraint: String,
    /// The file holding `required_providers` (default: the `.tf` file in the folder that
    /// names the provider there).
    #[arg(long, value_name = "FILE")]
    pub versions_file: Option<PathBuf>,
    /// A resource address the review may let be deleted or replaced (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub allow_destroy: Vec<String>,
}

impl Args {
    fn rules(&self) -> ReviewRules {
        self.allow_destroy
            .iter()
            .fold(ReviewRules::default(), |rules, address| {
                rules.allow_destroy(address)
            })
    }
}

/// The inputs, checked.
#[derive(Debug)]
struct Inputs {
    versions_file: PathBuf,
    previous_constraint: String,
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let inputs = validate(args)?;
    let session = Session::open(&args.common).await?;
    let preview = preview(args, &inputs).await?;
    let steps = steps(args, &session).await?;
    let step_refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let plan = Plan {
        command: COMMAND.into(),
        run_id: Session::new_run_id("tf-providers"),
        changes: vec![
            format!(
                "provider {}: {} -> {} (constraint \"{}\" -> \"{}\" in {})",
                args.provider,
                preview.from,
                preview.to,
                inputs.previous_constraint,
                args.constraint,
                inputs.versions_file.display()
            ),
            preview.summary.clone(),
        ],
        findings: preview.changes.clone(),
    };
    if !preview.blockers.is_empty() {
        let mut report = RunReport::planned(&session, &plan, &step_refs);
        report.applied = false;
        report
            .findings
            .extend(preview.blockers.iter().map(|b| format!("BLOCKER {b}")));
        report.outcome = format!(
            "blocked: the plan review refuses {} change(s) after the upgrade; nothing was changed \
             (fix the configuration, or pass --allow-destroy ADDRESS for a deliberate one)",
            preview.blockers.len()
        );
        out.write_all(report.render(args.common.output).as_bytes())
            .map_err(|e| CliError::failed(anyhow!("write the report: {e}")))?;
        return Ok(BLOCKED);
    }
    session.execute(&plan, &step_refs, out).await
}

/// The step, rebuilt from the arguments alone (`upgrade-rollback` calls this too).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    let versions_tf = match &args.versions_file {
        Some(file) => file.clone(),
        None => find_versions_file(&args.terraform_dir, &args.provider)?,
    };
    let tf = session.terraform(&args.terraform_dir)?;
    Ok(vec![Box::new(ProviderUpgradeStep {
        id: format!("terraform/provider-{}", args.provider),
        component: "terraform".into(),
        tf,
        versions_tf,
        provider: args.provider.clone(),
        constraint: args.constraint.clone(),
        policy: ApplyPolicy {
            rules: args.rules(),
            ..ApplyPolicy::default()
        },
    })])
}

/// Every check that needs no cluster: the tool, the folder, the file, the provider, the
/// constraint and the lock file.
fn validate(args: &Args) -> Result<Inputs, CliError> {
    TERRAFORM.resolve().map_err(CliError::usage)?;
    let dir = &args.terraform_dir;
    if !dir.is_dir() {
        return Err(CliError::usage(anyhow!(
            "the Terraform folder {} does not exist; pass --terraform-dir with the environment's folder",
            dir.display()
        )));
    }
    check_provider_constraint(&args.constraint)
        .map_err(|e| CliError::usage(anyhow!("--constraint: {e}")))?;
    let versions_file = match &args.versions_file {
        Some(file) => file.clone(),
        None => find_versions_file(dir, &args.provider)?,
    };
    let file = HclFile::read(&versions_file).map_err(|e| {
        CliError::usage(anyhow!(
            "cannot read {}: {e}; fix the file or pass --versions-file with the one holding required_providers",
            versions_file.display()
        ))
    })?;
    let previous_constraint = file.required_provider_version(&args.provider).ok_or_else(|| {
        CliError::usage(anyhow!(
            "{} has no `{}` with a version in required_providers; check --provider (the local name, e.g. aws) or pass --versions-file",
            versions_file.display(),
            args.provider
        ))
    })?;
    let lock_path = dir.join(".terraform.lock.hcl");
    match LockFile::read_optional(&lock_path) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(CliError::usage(anyhow!(
                "{} has no .terraform.lock.hcl; run `terraform init` there first so the upgrade has versions to start from",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(CliError::usage(anyhow!(
                "cannot read {}: {e}; restore it from version control",
                lock_path.display()
            )));
        }
    }
    Ok(Inputs {
        versions_file,
        previous_constraint,
    })
}

/// The `.tf` file in `dir` whose `required_providers` names `provider`.
fn find_versions_file(dir: &Path, provider: &str) -> Result<PathBuf, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::usage(anyhow!(
            "cannot list the Terraform folder {}: {e}; pass --terraform-dir with a readable folder",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    files
        .into_iter()
        .find(|path| {
            HclFile::read(path)
                .map(|f| f.required_provider_version(provider).is_some())
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "no .tf file in {} names `{provider}` with a version in required_providers; check --provider (the local name, e.g. aws) or pass --versions-file",
                dir.display()
            ))
        })
}

/// What the upgrade would do, learned in a copy of the folder.
#[derive(Debug)]
struct Preview {
    from: String,
    to: String,
    summary: String,
    changes: Vec<String>,
    blockers: Vec<String>,
}

async fn preview(args: &Args, inputs: &Inputs) -> Result<Preview, CliError> {
    let spinner = Spinner::start(format!(
        "planning {} \"{}\" in a copy of {} (init -upgrade, plan, review)",
        args.provider,
        args.constraint,
        args.terraform_dir.display()
    ));
    let args = args.clone();
    let versions_file = inputs.versions_file.clone();
    let preview = tokio::task::spawn_blocking(move || preview_blocking(&args, &versions_file))
        .await
        .map_err(|e| CliError::failed(anyhow!("the plan preview stopped: {e}")))?;
    spinner.finish(match &preview {
        Ok(p) => format!("planned: {} -> {}", p.from, p.to),
        Err(_) => "planning failed".into(),
    });
    preview
}

fn preview_blocking(args: &Args, versions_file: &Path) -> Result<Preview, CliError> {
    let source = &args.terraform_dir;
    let scratch = tempfile::Builder::new()
        .prefix("upgrade-tf-providers-")
        .tempdir()
        .map_err(|e| CliError::failed(anyhow!("create a temporary folder: {e}")))?;
    let copy = scratch.path().join("env");
    copy_for_preview(source, &copy)
        .map_err(|e| CliError::failed(anyhow!("copy {} for the plan: {e}", source.display())))?;
    let relative = versions_file.strip_prefix(source).unwrap_or(versions_file);
    let copied_versions = if versions_file.starts_with(source) {
        copy.join(relative)
    } else {
        // A versions file outside the folder is edited in place at apply time; the preview
        // edits a copy of it inside the scratch folder instead.
        let target = copy.join(versions_file.file_name().unwrap_or_default());
        std::fs::copy(versions_file, &target)
            .map_err(|e| CliError::failed(anyhow!("copy {}: {e}", versions_file.display())))?;
        target
    };
    let mut file = HclFile::read(&copied_versions).map_err(CliError::failed)?;
    file.set_required_provider_version(&args.provider, &args.constraint)
        .map_err(CliError::usage)?;
    file.write().map_err(CliError::failed)?;
    let tf = Terraform::builder(&copy).build().map_err(CliError::usage)?;
    let init = tf
        .init(&InitOptions::default().upgrade(true))
        .map_err(|e| {
            CliError::usage(anyhow!(
                "terraform init -upgrade with \"{}\" failed: {e}",
                args.constraint
            ))
        })?;
    let (from, to) = match init.lock_diff.version_change(&args.provider) {
        Some((from, to)) => (from.to_string(), to.to_string()),
        None => {
            let locked = init
                .lock_after
                .as_ref()
                .and_then(|l| l.version_of(&args.provider).map(str::to_string))
                .unwrap_or_else(|| "its locked version".into());
            // A resumed run may have upgraded the lock file already; the step finishes it.
            if !args.common.resume {
                return Err(CliError::usage(anyhow!(
                    "the constraint \"{}\" keeps provider {} at {locked}: nothing to upgrade; pass a --constraint that admits a newer version",
                    args.constraint,
                    args.provider
                )));
            }
            (locked.clone(), locked)
        }
    };
    let planned = tf
        .plan(&PlanOptions::default())
        .map_err(|e| CliError::failed(anyhow!("terraform plan after the upgrade failed: {e}")))?;
    if !planned.has_changes {
        return Ok(Preview {
            from,
            to,
            summary: "terraform plan after the upgrade: no changes".into(),
            changes: Vec::new(),
            blockers: Vec::new(),
        });
    }
    let reviewed = tf
        .review(&planned.plan, &args.rules())
        .map_err(|e| CliError::failed(anyhow!("review the plan: {e}")))?;
    let review = reviewed.review();
    let c = &review.counts;
    Ok(Preview {
        from,
        to,
        summary: format!(
            "terraform plan after the upgrade: {} to create, {} to update in place, {} to replace, {} to delete",
            c.create, c.update, c.replace, c.delete
        ),
        changes: review
            .changes
            .iter()
            .map(|change| {
                format!(
                    "plan: {} {}{}",
                    change.address,
                    change.actions.join("+"),
                    if change.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", change.reasons.join("; "))
                    }
                )
            })
            .collect(),
        blockers: review.blocker_lines(),
    })
}

/// Copies the environment for a plan, leaving out the installed provider binaries (init
/// installs them again, from the plugin cache when one is set) but keeping the backend
/// settings and modules in `.terraform`.
fn copy_for_preview(source: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if path.ends_with(".terraform/providers") {
                continue;
            }
            copy_for_preview(&path, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path)?, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
