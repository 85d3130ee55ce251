//! `upgrade-bluegreen`: the blue/green cluster upgrade of seeds 001 and 003, one subcommand
//! per stage, in the seed's order: `inputs`, `storage`, `green-up`, `platform`, `transfer`,
//! `configure`, `irsa`, `ack`, `verify-green`, `switch`/`failback`, `retire`.

use std::io::Write;

use upgrade_flows::flows::bluegreen;

pub use crate::commands::aws_args::{AwsArgs, ServicesArgs};

pub use ack::AckArgs;
pub use configure::ConfigureArgs;
pub use green::GreenArgs;
pub use green_up::GreenUpArgs;
pub use inputs::InputsArgs;
pub use irsa::IrsaArgs;
pub use platform::PlatformArgs;
pub use retire::RetireArgs;
pub use storage::StorageArgs;
pub use switch::SwitchArgs;
pub use transfer::TransferArgs;
pub use verify_green::VerifyGreenArgs;

mod ack;
mod configure;
mod green;
mod green_up;
mod inputs;
mod irsa;
mod platform;
mod retire;
mod storage;
mod switch;
mod transfer;
mod verify_green;

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, context, execute};
use crate::exit::{CliError, Flags};

/// `upgrade-bluegreen`: upgrade by building a green cluster beside blue.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-bluegreen",
    version,
    about = "Blue/green cluster upgrade (build green beside blue, move state, switch, fail back)",
    after_help = "Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed), 4 blocked, 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// The stage.
    #[command(subcommand)]
    pub stage: Stage,
    /// Which cluster: blue (listed after each stage's own flags).
    #[command(flatten, next_display_order = 1000)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The stages.
#[derive(Debug, clap::Subcommand)]
pub enum Stage {
    /// Write the green environment's variables file from blue's Terraform outputs (VPC,
    /// subnets, security group, EFS/FSx, S3, RDS, Cognito) and green's own values.
    Inputs(InputsArgs),
    /// Clone blue's RDS instance (snapshot, restore like it) and/or copy its S3 bucket for
    /// green; reversible (the clones are deleted).
    Storage(StorageArgs),
    /// Create green from its Terraform (a reviewed plan, then the apply) and wait for its
    /// API server; the rollback destroys what the apply created.
    GreenUp(GreenUpArgs),
    /// Install the platform's Helm releases on green as blue runs them (blue's values and
    /// chart versions unless others are named, green's values files on top); reversible
    /// (each release is uninstalled).
    Platform(PlatformArgs),
    /// Copy the user namespaces' objects (seed 001's Velero scope: claims and their
    /// shared-file-system volumes, profiles, notebooks, InferenceServices, config maps,
    /// service accounts, bare pods) from blue to green; reversible.
    Transfer(TransferArgs),
    /// Configure green as seed 001 does: Knative's domain, Prometheus scrape jobs;
    /// reversible.
    Configure(ConfigureArgs),
    /// Add the green cluster's OIDC provider to the trust policy of each profile role
    /// (IRSA), beside blue's; reversible.
    Irsa(IrsaArgs),
    /// Keep blue's ACK SageMaker endpoint resources from deleting their endpoints
    /// (deletion-policy retain, or the finalizer removed on ACK runtime <= 0.22.1) and adopt
    /// each endpoint on green; reversible.
    Ack(AckArgs),
    /// Check green before traffic moves: its health, a predict call for each
    /// InferenceService, the configured probes; recorded, and required by `switch`.
    VerifyGreen(VerifyGreenArgs),
    /// Point the ALB listener rule's redirect and/or a DNS record (Route 53) from blue to
    /// green, inside the maintenance window, once green passed `verify-green`; `failback`
    /// undoes it.
    Switch(SwitchArgs),
    /// Point the listener rule and the DNS record back at blue: the rollback of the latest
    /// switch.
    Failback,
    /// Delete blue (a targeted terraform destroy) once the latest switch has soaked,
    /// keeping the backup vault, the VPC, security groups and the stores green uses.
    /// Irreversible.
    Retire(RetireArgs),
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default()
            .rename("outputs", "--output-for")
            .rename("green_cluster_name", "--green-cluster")
            .rename("green", "--green-context")
            .rename("namespaces", "--namespace")
            .rename("kinds", "--kind")
            .rename("record_name", "--record")
            .rename("confirm_cluster", "--confirm-cluster");
        if let Stage::Failback = self.stage {
            // The switch to undo is found before connecting.
            let state = upgrade_flows::StateDir::new(&self.run.snapshot_dir);
            let run_id =
                bluegreen::latest_switch_run(&state).map_err(|e| CliError::from_flow(e, &flags))?;
            let spec = upgrade_flows::flows::rollback::RollbackSpec {
                run_id: Some(run_id),
                component: None,
            };
            let ctx = context("upgrade-bluegreen", &self.cluster, Some(&self.run)).await?;
            return crate::commands::rollback::undo(
                &ctx,
                &spec,
                &self.run,
                &self.output,
                &flags,
                out,
            )
            .await;
        }
        let ctx = context("upgrade-bluegreen", &self.cluster, Some(&self.run)).await?;
        if let Stage::VerifyGreen(a) = &self.stage {
            let spec = a.spec(self.cluster.kubeconfig.as_ref(), &flags)?;
            let verification = bluegreen::verify_green(&ctx, &spec)
                .await
                .map_err(|e| CliError::from_flow(e, &flags))?;
            let rendered = match self.output.output {
                crate::cli::OutputFormat::Json => verification.report.json(),
                _ => verification.report.text(),
            };
            crate::cli::print(out, &rendered)?;
            return Ok(verification.report.exit_code());
        }
        let planned = match &self.stage {
            Stage::Inputs(a) => bluegreen::plan_inputs(&ctx, &a.spec()).await,
            Stage::Transfer(a) => {
                bluegreen::plan_transfer(&ctx, &a.spec(self.cluster.kubeconfig.as_ref())).await
            }
            Stage::GreenUp(a) => {
                bluegreen::plan_green_up(&ctx, &a.spec(self.cluster.kubeconfig.as_ref())).await
            }
            Stage::Platform(a) => {
                let spec = a.spec(self.cluster.kubeconfig.as_ref())?;
                bluegreen::plan_platform(&ctx, &spec).await
            }
            Stage::Configure(a) => {
                bluegreen::plan_configure(&ctx, &a.spec(self.cluster.kubeconfig.as_ref())).await
            }
            Stage::Ack(a) => {
                bluegreen::plan_ack(&ctx, &a.spec(self.cluster.kubeconfig.as_ref())).await
            }
            Stage::Retire(a) => bluegreen::plan_retire(&ctx, &a.spec()).await,
            Stage::Storage(a) => bluegreen::plan_storage(&ctx, &a.spec()).await,
            Stage::Irsa(a) => bluegreen::plan_irsa(&ctx, &a.spec()).await,
            Stage::Switch(a) => bluegreen::plan_switch(&ctx, &a.spec()).await,
            Stage::Failback | Stage::VerifyGreen(_) => unreachable!("handled above"),
        }
        .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(&ctx, planned, &self.run, &self.output, &flags, out).await
    }
}
