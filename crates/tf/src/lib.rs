//! Typed Terraform API for platform upgrades: init, plan (always to a file), review, apply
//! of an approved plan only, outputs, state identity, provider locks; lossless tfvars and
//! `required_providers` edits; `.terraform.lock.hcl` diffs and byte-exact rollback.
//!
//! - [`Terraform`]: the binary (through `upgrade_core`'s runner), a working directory and an
//!   environment policy (`TF_IN_AUTOMATION=1`, no prompts, `TF_LOG*` blanked, stray
//!   `TF_CLI_ARGS*` refused). The version comes from `version -json`; an option the detected
//!   version lacks is refused with [`Error::UnsupportedVersion`].
//! - [`plan`]: plan JSON format 1.x, decoded fail-soft (unknown actions are kept, and judged
//!   dangerous).
//! - [`review`]: [`PlanReview`] classifies every change against [`ReviewRules`] (protected
//!   types and addresses block deletes and replacements; node-group replacement warns) and
//!   renders a table for people and JSON for pipelines, sensitive values redacted.
//! - [`HclFile`]: get/set `cluster_version = "1.31"` in a `.tfvars` file or a provider's
//!   constraint in `required_providers`, every other byte unchanged.
//! - [`lockfile`]: parse, diff, snapshot and restore `.terraform.lock.hcl` as raw bytes.
//!
//! [`AsyncTerraform`] runs the same calls on tokio's blocking pool for async callers.
//!
//! Errors say what failed (start, exit, timeout, JSON, version gate) and keep Terraform's
//! raw output; a [`FailureHint`] (state lock held, not initialised, no matching provider
//! version, ...) is added when Terraform's `-json` diagnostics identify the situation.
//!
//! # Example: the EKS control-plane bump
//!
//! ```no_run
//! use upgrade_tf::{ApplyOptions, HclFile, PlanOptions, ReviewRules, Terraform, InitOptions};
//!
//! # fn main() -> upgrade_tf::Result<()> {
//! let dir = "infrastructure/terraform/environments/dev";
//! let tf = Terraform::builder(dir).build()?; // TERRAFORM_BIN or `terraform` on PATH
//!
//! let mut vars = HclFile::read(format!("{dir}/terraform.tfvars"))?;
//! vars.set_string("cluster_version", "1.31")?; // comments and spacing untouched
//! vars.write()?;
//!
//! tf.init(&InitOptions::default())?;
//! let run = tf.plan(&PlanOptions::default().var_file("terraform.tfvars"))?;
//! let reviewed = tf.review(&run.plan, &ReviewRules::default())?;
//! println!("{}", reviewed.review().render_table());
//! let approved = reviewed.approve()?; // Err(Error::Blocked) if e.g. the cluster would be replaced
//! tf.apply(&approved, &ApplyOptions::default())?;
//! # Ok(())
//! # }
//! ```

pub mod asynchronous;
pub mod diagnostics;
pub mod error;
pub mod hclfile;
pub mod lockfile;
pub mod options;
pub mod plan;
pub mod review;
pub mod step;
pub mod terraform;
pub mod version;

pub use asynchronous::AsyncTerraform;
pub use diagnostics::{ChangeSummary, Diagnostic};
pub use error::{Error, Failure, FailureHint, Result};
pub use hclfile::HclFile;
pub use lockfile::{LockDiff, LockFile, LockSnapshot, ProviderLock, ProviderLockChange};
pub use options::{
    ApplyOptions, BackendConfig, InitOptions, LockSource, LockfileMode, PlanOptions,
    ProvidersLockOptions, RefreshMode, VarSource,
};
pub use plan::{Action, Plan, ReplaceOrder};
pub use review::{PlanReview, ReviewRules, Severity};
pub use terraform::{
    ApplyRun, ApprovedPlan, InitReport, OutputValue, PlanRun, ReviewedPlan, SavedPlan, State,
    StateInfo, StateInstance, StateResource, Terraform, TerraformBuilder, ValidateOutput,
};
pub use version::{Feature, TfVersion};
