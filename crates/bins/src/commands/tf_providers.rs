//! `upgrade-tf-providers`: a Terraform provider's major upgrade (seed 000, "Terraform Provider
//! Upgrades"): the constraint bump, `terraform init -upgrade`, the plan review, and the
//! apply; rolled back by writing the captured `versions.tf` and `.terraform.lock.hcl` bytes
//! back and re-applying.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::tf_providers::{self, ProviderSpec};

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, TerraformTimeoutArgs, context_with, execute};
use crate::exit::{CliError, Flags};

/// `upgrade-tf-providers` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upgrade-tf-providers",
    version,
    about = "Upgrade a Terraform provider: bump its constraint, init -upgrade, review the plan, apply",
    after_help = "The plan (without --apply) is made in a temporary copy of the folder; your files change only with --apply.\n\
Rollback: versions.tf and .terraform.lock.hcl get their exact bytes back, then init and apply.\n\n\
Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed),\n\
4 the plan review found blockers (nothing changed), 5 failed with a recorded way back, 130 stopped by Ctrl-C."
)]
pub struct Args {
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
    /// The limit of each Terraform command.
    #[command(flatten)]
    pub terraform: TerraformTimeoutArgs,
    /// Which cluster (the run holds its upgrade lock).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let spec = ProviderSpec {
            terraform_dir: self.terraform_dir.clone(),
            provider: self.provider.clone(),
            constraint: self.constraint.clone(),
            versions_file: self.versions_file.clone(),
            allow_destroy: self.allow_destroy.clone(),
        };
        tf_providers::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
        let timeout = self.terraform.terraform_timeout;
        let ctx = context_with(
            "upgrade-tf-providers",
            &self.cluster,
            Some(&self.run),
            |b| b.terraform_timeout(timeout),
        )
        .await?;
        let planned = tf_providers::plan(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(&ctx, planned, &self.run, &self.output, &flags, out).await
    }
}
