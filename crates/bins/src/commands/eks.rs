//! `upgrade-eks`: one EKS control-plane hop (seed 000's procedure): preflight, add-on
//! versions, the `cluster_version` edit with plan review and apply, the wait for the control
//! plane, the node rollout (or the managed node group following in Terraform), the add-on
//! bumps, and post-checks.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::eks::{self, AddonVar, AddonVersions, EksHopSpec, NodesMode};

use crate::cli::{ChangeFlags, OutputArgs, TerraformTimeoutArgs, context_with, execute};
use crate::commands::aws_args::EksApiArgs;
use crate::commands::rollout_args::RolloutArgs;
use crate::exit::{CliError, Flags};

/// How managed node groups' nodes follow the control plane (Karpenter's are always rolled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Nodes {
    /// Roll them (canary, PDB-aware drain, validation) with --surge-command/--retire-command.
    Rollout,
    /// Their version follows the cluster in Terraform: the apply rolls them.
    Managed,
}

/// `upgrade-eks`: one EKS control-plane minor hop, end to end.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-eks",
    version,
    about = "Upgrade an EKS cluster one Kubernetes minor: preflight, control plane via Terraform, nodes, add-ons, post-checks",
    after_help = "EKS moves one minor per hop: a --target further than the live minor + 1 runs every hop on the way as one run; a failure stops it at its hop (the hops done stay): --resume continues there.\n\
                  The control-plane step is undone with EKS's version rollback for 7 days when the EKS cluster is known (--eks-cluster or the kubeconfig's ARN), managed node groups first; otherwise, or after the window, a failure after it rolls back the later steps and stops there.\n\
                  EKS Upgrade Insights for the target are read through the AWS CLI when the EKS cluster is known: an ERROR one blocks (EKS refuses the update) unless --force.\n\
                  Add-on versions are chosen while planning and recorded, so upgrade-rollback needs no `aws`.\n\
                  Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed), 3 done with post-check warnings, 4 preflight blockers (nothing changed), 5 failed with a recorded way back (e.g. after the control plane), 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// The Kubernetes minor to move to, e.g. 1.31 (the live minor + 1), or further: every hop
    /// on the way, in one run.
    #[arg(long, value_name = "MINOR")]
    pub target: String,
    /// The Terraform environment that owns the cluster.
    #[arg(long, value_name = "DIR")]
    pub terraform_dir: PathBuf,
    /// The variables file with the cluster version (default: DIR/terraform.tfvars).
    #[arg(long, value_name = "FILE")]
    pub tfvars: Option<PathBuf>,
    /// The variable that holds the control plane's minor.
    #[arg(long, value_name = "NAME", default_value = "cluster_version")]
    pub cluster_version_var: String,
    /// An installed EKS add-on and the tfvars variable with its version, e.g.
    /// coredns=coredns_version. Repeatable.
    #[arg(long = "addon", value_name = "NAME=VARIABLE")]
    pub addons: Vec<String>,
    /// An EKS managed add-on moved through EKS's API (UpdateAddon, wait until ACTIVE, the
    /// previous version and configuration restored by a rollback), e.g. vpc-cni. Repeatable.
    #[arg(long = "managed-addon", value_name = "NAME")]
    pub managed_addons: Vec<String>,
    /// What EKS does with managed add-on fields changed by hand.
    #[arg(long, value_name = "MODE", default_value = "PRESERVE", value_parser = ["PRESERVE", "OVERWRITE", "NONE"])]
    pub resolve_conflicts: String,
    /// `aws eks describe-addon-versions` JSON (default: run `aws` for the target when on PATH).
    #[arg(long, value_name = "FILE")]
    pub addon_versions: Option<PathBuf>,
    /// Move an add-on to an older version when the installed one does not run on the target
    /// and only older ones do (otherwise such a hop is blocked; a version that runs on the
    /// target is never moved down).
    #[arg(long)]
    pub allow_addon_downgrade: bool,
    /// How managed node groups' nodes follow the control plane.
    #[arg(long, value_enum, default_value_t = Nodes::Rollout)]
    pub nodes: Nodes,
    /// Node rollout flags.
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Check configuration for the preflight: thresholds, severities, ignores.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder with newer version data files (see upgrade-preflight --data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// EKS's own API (Upgrade Insights) through the AWS CLI.
    #[command(flatten)]
    pub eks_api: EksApiArgs,
    /// Go past ERROR upgrade-readiness insights (EKS's force on UpdateClusterVersion), set
    /// through --force-update-var for this update only and recorded in the run.
    #[arg(long)]
    pub force: bool,
    /// The tfvars variable your Terraform passes to aws_eks_cluster's force_update_version.
    #[arg(long, value_name = "NAME", default_value = "force_update_version")]
    pub force_update_var: String,
    /// The limit of each Terraform command.
    #[command(flatten)]
    pub terraform: TerraformTimeoutArgs,
    /// Cluster, run, timeout and output flags.
    #[command(flatten)]
    pub flags: ChangeFlags,
}

impl Args {
    /// The spec these flags describe.
    pub fn spec(&self, flags: &Flags) -> Result<EksHopSpec, CliError> {
        let addons = self
            .addons
            .iter()
            .map(|a| AddonVar::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::from_flow(e, flags))?;
        let defaults = EksHopSpec::new(&self.target, &self.terraform_dir);
        Ok(EksHopSpec {
            tfvars: self.tfvars.clone(),
            cluster_version_var: self.cluster_version_var.clone(),
            addons,
            addon_versions: match &self.addon_versions {
                Some(path) => AddonVersions::File(path.clone()),
                None => AddonVersions::Aws,
            },
            allow_addon_downgrade: self.allow_addon_downgrade,
            nodes: match self.nodes {
                Nodes::Rollout => NodesMode::Rollout,
                Nodes::Managed => NodesMode::Managed,
            },
            rollout: self.rollout.spec(),
            config: self.config.clone(),
            data: self.data.clone(),
            eks_api: self.eks_api.spec(),
            force: self.force,
            force_update_var: self.force_update_var.clone(),
            managed_addons: self.managed_addons.clone(),
            resolve_conflicts: self.resolve_conflicts.clone(),
            timeout: self.flags.timeout.timeout.unwrap_or(defaults.timeout),
            ..defaults
        })
    }
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.flags.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default().rename("addons", "--addon");
        let spec = self.spec(&flags)?;
        eks::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
        let timeout = self.terraform.terraform_timeout;
        let ctx = context_with(
            "upgrade-eks",
            &self.flags.cluster,
            Some(&self.flags.run),
            |builder| builder.terraform_timeout(timeout),
        )
        .await?;
        let planned = eks::plan(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(
            &ctx,
            planned,
            &self.flags.run,
            &self.flags.output,
            &flags,
            out,
        )
        .await
    }
}
