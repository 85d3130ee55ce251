//! A Terraform provider's major upgrade (seed 000, "Terraform Provider Upgrades"): the
//! constraint bump in `required_providers`, `terraform init -upgrade`, the plan review, and
//! the apply; rolled back by writing the captured `versions.tf` and `.terraform.lock.hcl`
//! bytes back and re-applying.
//!
//! The plan is made in a throw-away copy of the folder, so looking never changes the user's
//! files: the copy gets the new constraint and `init -upgrade`, which says which version
//! Terraform would pick, and its plan goes through the same review the apply uses. A plan the
//! review blocks (a protected resource replaced or deleted) is a blocker; nothing changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_tf::step::{ApplyPolicy, ProviderUpgradeSpec, ProviderUpgradeStep};
use upgrade_tf::version::check_provider_constraint;
use upgrade_tf::{HclFile, InitOptions, LockFile, PlanOptions, ReviewRules, Terraform};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::events::Event;
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "terraform-provider-upgrade";

/// A provider upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSpec {
    /// The Terraform environment's folder (where `terraform init` was run).
    pub terraform_dir: PathBuf,
    /// The provider's local name in `required_providers`, e.g. `aws`.
    pub provider: String,
    /// The new version constraint, in Terraform's syntax, e.g. `~> 6.0`.
    pub constraint: String,
    /// The file holding `required_providers` (default: the `.tf` file in the folder that
    /// names the provider there).
    #[serde(default)]
    pub versions_file: Option<PathBuf>,
    /// Resource addresses the review may let be deleted or replaced.
    #[serde(default)]
    pub allow_destroy: Vec<String>,
}

impl ProviderSpec {
    fn rules(&self) -> ReviewRules {
        self.allow_destroy
            .iter()
            .fold(ReviewRules::default(), |rules, address| {
                rules.allow_destroy(address)
            })
    }
}

/// The spec checked.
#[derive(Debug)]
struct Inputs {
    terraform_dir: PathBuf,
    versions_file: PathBuf,
    previous_constraint: String,
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Every check that needs no cluster: the folder, the file, the provider, the constraint and
/// the lock file.
fn validate(spec: &ProviderSpec) -> Result<Inputs> {
    let dir = absolute(&spec.terraform_dir);
    if !dir.is_dir() {
        return Err(FlowError::invalid(
            "terraform_dir",
            format!("the Terraform folder {} does not exist", dir.display()),
            "give the environment's folder",
        ));
    }
    check_provider_constraint(&spec.constraint)
        .map_err(|e| FlowError::invalid("constraint", e.to_string(), ""))?;
    let versions_file = match &spec.versions_file {
        Some(file) => absolute(file),
        None => find_versions_file(&dir, &spec.provider)?,
    };
    let file = HclFile::read(&versions_file).map_err(|e| {
        FlowError::invalid(
            "versions_file",
            format!("cannot read {}: {e}", versions_file.display()),
            format!(
                "fix the file or set {} to the one holding required_providers",
                field("versions_file")
            ),
        )
    })?;
    let previous_constraint = file
        .required_provider_version(&spec.provider)
        .ok_or_else(|| {
            FlowError::invalid(
                "provider",
                format!(
                    "{} has no `{}` with a version in required_providers",
                    versions_file.display(),
                    spec.provider
                ),
                format!(
                    "check {} (the local name, e.g. aws) or set {}",
                    field("provider"),
                    field("versions_file")
                ),
            )
        })?;
    let lock_path = dir.join(".terraform.lock.hcl");
    match LockFile::read_optional(&lock_path) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(FlowError::invalid(
                "terraform_dir",
                format!("{} has no .terraform.lock.hcl", dir.display()),
                "run `terraform init` there first so the upgrade has versions to start from",
            ));
        }
        Err(e) => {
            return Err(FlowError::invalid(
                "terraform_dir",
                format!("cannot read {}: {e}", lock_path.display()),
                "restore it from version control",
            ));
        }
    }
    Ok(Inputs {
        terraform_dir: dir,
        versions_file,
        previous_constraint,
    })
}

/// The `.tf` file in `dir` whose `required_providers` names `provider`.
fn find_versions_file(dir: &Path, provider: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        FlowError::invalid(
            "terraform_dir",
            format!("cannot list {}: {e}", dir.display()),
            "give a readable folder",
        )
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
            FlowError::invalid(
                "provider",
                format!(
                    "no .tf file in {} names `{provider}` with a version in required_providers",
                    dir.display()
                ),
                format!(
                    "check {} (the local name, e.g. aws) or set {}",
                    field("provider"),
                    field("versions_file")
                ),
            )
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

/// Checks the spec without a cluster (folder, versions file, provider, constraint, lock
/// file); [`plan`] checks it again.
pub fn check(spec: &ProviderSpec) -> Result<()> {
    validate(spec).map(drop)
}

/// Plans the provider upgrade in a copy of the folder and builds the step.
pub async fn plan(ctx: &FlowContext, spec: &ProviderSpec) -> Result<Planned> {
    let inputs = validate(spec)?;
    let what = format!(
        "planning {} \"{}\" in a copy of {} (init -upgrade, plan, review)",
        spec.provider,
        spec.constraint,
        inputs.terraform_dir.display()
    );
    ctx.events().event(&Event::Waiting {
        what: what.clone(),
        detail: None,
    });
    let preview = async {
        let scratch = tempfile::Builder::new()
            .prefix("upgrade-tf-providers-")
            .tempdir()
            .map_err(|e| FlowError::failed("create a temporary folder", e))?;
        let copy = scratch.path().join("env");
        let copied_versions = copy_environment(&inputs, &copy)?;
        let tf = ctx.terraform("terraform_dir", &copy)?;
        let spec = spec.clone();
        let resume = ctx.resume();
        let identity = ctx.cluster().identity().clone();
        let dir = inputs.terraform_dir.clone();
        let preview = tokio::task::spawn_blocking(move || {
            let bound = Bound {
                identity: &identity,
                dir: &dir,
            };
            preview_blocking(&spec, tf.blocking(), &copied_versions, resume, bound)
        })
        .await
        .map_err(|e| FlowError::failed("the plan preview", e))?;
        drop(scratch);
        preview
    }
    .await;
    ctx.events().event(&Event::WaitEnded {
        what,
        done: preview.is_ok(),
    });
    let preview = preview?;
    let tf = ctx.terraform("terraform_dir", &inputs.terraform_dir)?;
    let step = ProviderUpgradeStep {
        spec: ProviderUpgradeSpec {
            id: format!("terraform/provider-{}", spec.provider),
            component: "terraform".into(),
            terraform_dir: inputs.terraform_dir.clone(),
            versions_tf: inputs.versions_file.clone(),
            provider: spec.provider.clone(),
            constraint: spec.constraint.clone(),
            policy: ApplyPolicy {
                rules: spec.rules(),
                ..ApplyPolicy::default()
            },
        },
        tf,
    };
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-tf-providers",
        ctx.cluster_name(),
        ctx.new_run_id("tf-providers")?,
        &refs,
    );
    plan.changes = vec![
        format!(
            "provider {}: {} -> {} (constraint \"{}\" -> \"{}\" in {})",
            spec.provider,
            preview.from,
            preview.to,
            inputs.previous_constraint,
            spec.constraint,
            inputs.versions_file.display()
        ),
        preview.summary,
    ];
    plan.findings = preview.changes;
    plan.blockers = preview
        .blockers
        .into_iter()
        .map(|b| {
            format!(
                "{b} (fix the configuration, or allow a deliberate one: allow_destroy, --allow-destroy ADDRESS)"
            )
        })
        .collect();
    let mut recorded = spec.clone();
    recorded.terraform_dir = inputs.terraform_dir;
    recorded.versions_file = Some(inputs.versions_file);
    Ok(Planned::new(FLOW, &recorded, plan, vec![Box::new(step)]))
}

/// Copies the environment into `copy` and sets the new constraint there; returns the copied
/// versions file.
fn copy_environment(inputs: &Inputs, copy: &Path) -> Result<PathBuf> {
    let source = &inputs.terraform_dir;
    let versions_file = &inputs.versions_file;
    copy_for_preview(source, copy)
        .map_err(|e| FlowError::failed(format!("copy {} for the plan", source.display()), e))?;
    Ok(match versions_file.strip_prefix(source) {
        Ok(relative) => copy.join(relative),
        Err(_) => {
            // A versions file outside the folder is edited in place at apply time; the
            // preview edits a copy of it inside the scratch folder instead.
            let target = copy.join(versions_file.file_name().unwrap_or_default());
            std::fs::copy(versions_file, &target)
                .map_err(|e| FlowError::failed(format!("copy {}", versions_file.display()), e))?;
            target
        }
    })
}

/// The cluster the environment must manage, if it manages an EKS cluster at all.
struct Bound<'a> {
    identity: &'a upgrade_kube::connect::ClusterIdentity,
    dir: &'a Path,
}

fn preview_blocking(
    spec: &ProviderSpec,
    tf: &Terraform,
    copied_versions: &Path,
    resume: bool,
    bound: Bound<'_>,
) -> Result<Preview> {
    let mut file = HclFile::read(copied_versions)
        .map_err(|e| FlowError::failed("read the copied versions file", e))?;
    file.set_required_provider_version(&spec.provider, &spec.constraint)
        .map_err(|e| FlowError::invalid("constraint", e.to_string(), ""))?;
    file.write()
        .map_err(|e| FlowError::failed("write the copied versions file", e))?;
    let init = tf
        .init(&InitOptions::default().upgrade(true))
        .map_err(|e| {
            FlowError::invalid(
                "constraint",
                format!(
                    "terraform init -upgrade with \"{}\" failed: {e}",
                    spec.constraint
                ),
                "",
            )
        })?;
    let (from, to) = match init.lock_diff.version_change(&spec.provider) {
        Some((from, to)) => (from.to_string(), to.to_string()),
        None => {
            let locked = init
                .lock_after
                .as_ref()
                .and_then(|l| l.version_of(&spec.provider).map(str::to_string))
                .unwrap_or_else(|| "its locked version".into());
            // A resumed run may have upgraded the lock file already; the step finishes it.
            if !resume {
                return Err(FlowError::invalid(
                    "constraint",
                    format!(
                        "\"{}\" keeps provider {} at {locked}: nothing to upgrade",
                        spec.constraint, spec.provider
                    ),
                    format!(
                        "set {} to one that admits a newer version",
                        field("constraint")
                    ),
                ));
            }
            (locked.clone(), locked)
        }
    };
    // An environment that manages an EKS cluster must manage the connected one, before any
    // plan (the copy shares the original's state).
    let state = tf.state().map_err(|e| {
        FlowError::invalid(
            "terraform_dir",
            format!(
                "cannot read the Terraform state of {}: {e}",
                bound.dir.display()
            ),
            "make the backend reachable (credentials, network), then try again",
        )
    })?;
    crate::flows::terraform_binding(state.as_ref(), bound.identity, bound.dir, false)?;
    let planned = tf
        .plan(&PlanOptions::default())
        .map_err(|e| FlowError::failed("terraform plan after the upgrade", e))?;
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
        .review(&planned.plan, &spec.rules())
        .map_err(|e| FlowError::failed("review the plan", e))?;
    let rendered = render_review(reviewed.review(), "after the upgrade");
    Ok(Preview {
        from,
        to,
        summary: rendered.summary,
        changes: rendered.changes,
        blockers: rendered.blockers,
    })
}

/// A reviewed Terraform plan as plan lines: the counts, one line per change, the blockers.
pub(crate) struct RenderedReview {
    pub summary: String,
    pub changes: Vec<String>,
    pub blockers: Vec<String>,
}

/// Renders a plan review for a flow's plan (`when` says which plan, e.g. "after the upgrade").
pub(crate) fn render_review(review: &upgrade_tf::review::PlanReview, when: &str) -> RenderedReview {
    let c = &review.counts;
    RenderedReview {
        summary: format!(
            "terraform plan {when}: {} to create, {} to update in place, {} to replace, {} to delete",
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
    }
}

/// Copies the environment for a plan, leaving out the installed provider binaries (init
/// installs them again, from the plugin cache when one is set) but keeping the backend
/// settings and modules in `.terraform`.
pub(crate) fn copy_for_preview(source: &Path, dest: &Path) -> std::io::Result<()> {
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
