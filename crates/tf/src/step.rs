//! Terraform changes as recorded, resumable, reversible steps of an upgrade run
//! (`upgrade_core::executor::Step`).
//!
//! Both steps capture the bytes they will edit and `.terraform.lock.hcl` (never re-serialised:
//! Terraform owns its format) and the state serial, then edit, init, plan, review and apply
//! only an approved plan. Their rollback writes the captured bytes back, re-initialises and
//! applies the plan that returns the infrastructure to them.
//!
//! - [`TfvarsChangeStep`]: one variable in a `.tfvars` file (seed 000's `cluster_version`).
//!   Mark it irreversible for the EKS control plane, whose minor cannot go down.
//! - [`ProviderUpgradeStep`]: a provider constraint in `versions.tf` with `init -upgrade`
//!   (seed 000's provider upgrade; its rollback restores the lock file's exact bytes).
//!
//! Each step is its spec (serde data with absolute paths, recorded in the run record) plus
//! the Terraform handle it runs with; the handle is rebuilt from the spec's folder.

use std::path::{Path, PathBuf};

use upgrade_core::atomic_file;
use upgrade_core::executor::{Step, StepError, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::asynchronous::AsyncTerraform;
use crate::hclfile::HclFile;
use crate::options::{ApplyOptions, InitOptions, PlanOptions};
use crate::review::ReviewRules;

const EDITED_FILE: &str = "edited-file";
const LOCK_FILE: &str = ".terraform.lock.hcl";
const LOCK_ABSENT: &str = "lock-absent";
const STATE_FILE: &str = "state.json";

/// How a step plans and applies (shared by both steps).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ApplyPolicy {
    /// Plan options (vars, targets, ...); the plan file is always written.
    pub plan: PlanOptions,
    /// Review rules; a plan with blockers is never applied.
    pub rules: ReviewRules,
    /// Apply options.
    pub apply: ApplyOptions,
}

/// What [`TfvarsChangeStep`] does: one variable in a `.tfvars` file, then plan, review and
/// apply in `terraform_dir`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TfvarsChangeSpec {
    /// Step id, e.g. `eks/cluster-version-1.31`.
    pub id: String,
    /// Component, e.g. `eks`.
    pub component: String,
    /// The Terraform working directory (absolute).
    pub terraform_dir: PathBuf,
    /// The `.tfvars` file to edit (absolute).
    pub tfvars: PathBuf,
    /// The variable, e.g. `cluster_version`.
    pub variable: String,
    /// Its new value.
    pub value: String,
    /// Why it cannot be undone, if it cannot (the EKS control plane's minor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
    /// How to plan and apply.
    #[serde(default)]
    pub policy: ApplyPolicy,
}

impl StepSpec for TfvarsChangeSpec {
    const KIND: &'static str = "terraform-tfvars-change";
}

/// Sets one variable in a `.tfvars` file, then plans, reviews and applies.
#[derive(Debug, Clone)]
pub struct TfvarsChangeStep {
    /// What it does.
    pub spec: TfvarsChangeSpec,
    /// Terraform in `spec.terraform_dir`.
    pub tf: AsyncTerraform,
}

/// What [`ProviderUpgradeStep`] does: a provider's version constraint in `versions.tf`,
/// `terraform init -upgrade`, then plan, review and apply in `terraform_dir`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderUpgradeSpec {
    /// Step id, e.g. `terraform/aws-provider-6`.
    pub id: String,
    /// Component, e.g. `terraform`.
    pub component: String,
    /// The Terraform working directory (absolute).
    pub terraform_dir: PathBuf,
    /// The file with `required_providers` (absolute).
    pub versions_tf: PathBuf,
    /// The provider's local name, e.g. `aws`.
    pub provider: String,
    /// The new constraint, e.g. `~> 6.0`.
    pub constraint: String,
    /// How to plan and apply.
    #[serde(default)]
    pub policy: ApplyPolicy,
}

impl StepSpec for ProviderUpgradeSpec {
    const KIND: &'static str = "terraform-provider-upgrade";
}

/// Sets a provider's version constraint in `versions.tf`, runs `init -upgrade`, then plans,
/// reviews and applies.
#[derive(Debug, Clone)]
pub struct ProviderUpgradeStep {
    /// What it does.
    pub spec: ProviderUpgradeSpec,
    /// Terraform in `spec.terraform_dir`.
    pub tf: AsyncTerraform,
}

impl Step for TfvarsChangeStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: format!("{} ({})", self.spec.component, self.spec.variable),
            from: None,
            to: Some(self.spec.value.clone()),
        }
    }

    fn description(&self) -> String {
        format!(
            "set {} = \"{}\" in {}, then terraform plan, review and apply",
            self.spec.variable,
            self.spec.value,
            self.spec.tfvars.display()
        )
    }

    fn irreversible(&self) -> Option<String> {
        self.spec.irreversible.clone()
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(capture(&self.tf, &self.spec.tfvars, snapshot))
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let mut vars = HclFile::read(&self.spec.tfvars)?;
            if vars.get_string(&self.spec.variable).as_deref() != Some(self.spec.value.as_str()) {
                vars.set_string(&self.spec.variable, &self.spec.value)?;
                vars.write()?;
            }
            self.tf.init(InitOptions::default()).await?;
            match plan_review_apply(&self.tf, &self.spec.policy).await {
                Err(e) => Err(not_applied(e)),
                ok => ok,
            }
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let vars = HclFile::read(&self.spec.tfvars)?;
            if vars.get_string(&self.spec.variable).as_deref() != Some(self.spec.value.as_str()) {
                return Err(format!(
                    "{} does not set {} = \"{}\"",
                    self.spec.tfvars.display(),
                    self.spec.variable,
                    self.spec.value
                )
                .into());
            }
            converged(&self.tf, &self.spec.policy).await
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            restore_files(&self.tf, &self.spec.tfvars, snapshot)?;
            self.tf.init(InitOptions::default()).await?;
            plan_review_apply(&self.tf, &self.spec.policy).await
        })
    }
}

impl Step for ProviderUpgradeStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "set provider {} to \"{}\" in {}, terraform init -upgrade, then plan, review and apply",
            self.spec.provider,
            self.spec.constraint,
            self.spec.versions_tf.display()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(capture(&self.tf, &self.spec.versions_tf, snapshot))
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let mut file = HclFile::read(&self.spec.versions_tf)?;
            if file
                .required_provider_version(&self.spec.provider)
                .as_deref()
                != Some(self.spec.constraint.as_str())
            {
                file.set_required_provider_version(&self.spec.provider, &self.spec.constraint)?;
                file.write()?;
            }
            self.tf
                .init(InitOptions {
                    upgrade: true,
                    ..InitOptions::default()
                })
                .await?;
            plan_review_apply(&self.tf, &self.spec.policy).await
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(converged(&self.tf, &self.spec.policy))
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            restore_files(&self.tf, &self.spec.versions_tf, snapshot)?;
            // The restored lock file pins the old versions; init installs exactly those.
            self.tf.init(InitOptions::default()).await?;
            plan_review_apply(&self.tf, &self.spec.policy).await
        })
    }
}

async fn capture(
    tf: &AsyncTerraform,
    edited: &Path,
    snapshot: &mut SnapshotWriter,
) -> Result<(), StepError> {
    snapshot.put(
        EDITED_FILE,
        &std::fs::read(edited).map_err(|e| io_error(edited, e))?,
    )?;
    let lock_path = tf.blocking().lock_file_path();
    match std::fs::read(&lock_path) {
        Ok(bytes) => snapshot.put(LOCK_FILE, &bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => snapshot.put(LOCK_ABSENT, b"")?,
        Err(e) => return Err(io_error(&lock_path, e)),
    }
    // Forensics only: pushing an old state back is not a rollback.
    let state = tf.run(|tf| tf.state_info()).await?;
    snapshot.put_json(STATE_FILE, &state)?;
    Ok(())
}

fn restore_files(tf: &AsyncTerraform, edited: &Path, snapshot: &Snapshot) -> Result<(), StepError> {
    atomic_file::write(edited, &snapshot.get(EDITED_FILE)?).map_err(|e| io_error(edited, e))?;
    let lock_path = tf.blocking().lock_file_path();
    if snapshot.contains(LOCK_FILE) {
        atomic_file::write(&lock_path, &snapshot.get(LOCK_FILE)?)
            .map_err(|e| io_error(&lock_path, e))?;
    } else {
        atomic_file::remove(&lock_path).map_err(|e| io_error(&lock_path, e))?;
    }
    Ok(())
}

/// Plans with `policy`'s options, reviews the plan against its rules (a plan with blockers
/// is never applied) and applies it; a plan without changes applies nothing.
pub async fn plan_review_apply(tf: &AsyncTerraform, policy: &ApplyPolicy) -> Result<(), StepError> {
    let run = tf.plan(policy.plan.clone()).await?;
    if !run.has_changes {
        return Ok(());
    }
    let reviewed = tf.review(run.plan, policy.rules.clone()).await?;
    let approved = reviewed.approve()?;
    tf.apply(approved, policy.apply.clone()).await?;
    Ok(())
}

async fn converged(tf: &AsyncTerraform, policy: &ApplyPolicy) -> Result<(), StepError> {
    let run = tf.plan(policy.plan.clone()).await?;
    if run.has_changes {
        return Err(
            "terraform still plans changes after the apply; run `terraform plan` to see them"
                .into(),
        );
    }
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> StepError {
    format!("{}: {e}", path.display()).into()
}

/// An apply that the provider refused before any resource changed becomes
/// [`NotApplied`](upgrade_core::executor::NotApplied), with the provider's words first, so
/// the run rolls the step's file back even when the step is irreversible.
fn not_applied(error: StepError) -> StepError {
    let refused = match error.downcast_ref::<crate::Error>() {
        Some(crate::Error::Failed(failure)) if failure.applied_nothing() => {
            Some(failure.error_summaries())
        }
        _ => None,
    };
    match refused {
        Some(summaries) => Box::new(upgrade_core::executor::NotApplied(format!(
            "terraform apply changed nothing: {summaries}\n{error}"
        ))),
        None => error,
    }
}
