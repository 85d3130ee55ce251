//! `upgrade-bluegreen`: the blue/green cluster upgrade of seeds 001 and 003, one subcommand
//! per stage. Built so far: `inputs` (the green environment's variables from blue's
//! Terraform outputs), `irsa` (green's OIDC provider in the profile roles' trust), `switch`
//! (the DNS record to green, inside the maintenance window) and `failback` (back to blue).

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::bluegreen::{self, AwsSettings, InputsSpec, IrsaSpec, SwitchSpec};

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
    /// Add the green cluster's OIDC provider to the trust policy of each profile role
    /// (IRSA), beside blue's; reversible.
    Irsa(IrsaArgs),
    /// Point the platform's DNS record (Route 53) from blue to green, inside the
    /// maintenance window; `failback` undoes it.
    Switch(SwitchArgs),
    /// Point the DNS record back at blue: the rollback of the latest switch.
    Failback,
}

/// `switch`'s flags.
#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// The Route 53 hosted zone id.
    #[arg(long, value_name = "ID")]
    pub zone_id: String,
    /// The record users reach the platform by.
    #[arg(long, value_name = "NAME")]
    pub record: String,
    /// Its type.
    #[arg(long, value_name = "TYPE", default_value = "CNAME")]
    pub record_type: String,
    /// Green's address (its load balancer's DNS name).
    #[arg(long, value_name = "DNS_NAME")]
    pub green_target: String,
    /// The maintenance window, START/END in RFC 3339 (e.g.
    /// 2026-12-05T22:00:00Z/2026-12-06T02:00:00Z); a switch outside it is refused.
    #[arg(long, value_name = "START/END", value_parser = |w: &str| w.parse::<bluegreen::Window>())]
    pub window: Option<bluegreen::Window>,
    /// Switch outside the window anyway (recorded in the run).
    #[arg(long)]
    pub force_window: bool,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// How a stage reaches AWS (the AWS CLI's settings).
#[derive(Debug, clap::Args)]
pub struct AwsArgs {
    /// The AWS region.
    #[arg(long, value_name = "REGION")]
    pub aws_region: Option<String>,
    /// The AWS CLI profile.
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,
    /// Another AWS endpoint (moto in tests).
    #[arg(long, value_name = "URL")]
    pub aws_endpoint_url: Option<String>,
}

impl AwsArgs {
    fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws_region.clone(),
            profile: self.aws_profile.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
        }
    }
}

/// `irsa`'s flags.
#[derive(Debug, clap::Args)]
pub struct IrsaArgs {
    /// A role the profiles' service accounts assume. Repeatable.
    #[arg(long = "role", value_name = "NAME", required = true)]
    pub roles: Vec<String>,
    /// The green cluster's IAM OIDC provider ARN.
    #[arg(long, value_name = "ARN")]
    pub green_oidc_provider_arn: String,
    /// How to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `inputs`' flags.
#[derive(Debug, clap::Args)]
pub struct InputsArgs {
    /// The blue deployment's Terraform folder.
    #[arg(long, value_name = "DIR")]
    pub blue_terraform_dir: PathBuf,
    /// The green deployment's Terraform folder.
    #[arg(long, value_name = "DIR")]
    pub green_terraform_dir: PathBuf,
    /// The variables file to write (default: GREEN_DIR/bluegreen.auto.tfvars.json).
    #[arg(long, value_name = "FILE")]
    pub green_vars_file: Option<PathBuf>,
    /// The green cluster's name.
    #[arg(long, value_name = "NAME")]
    pub green_cluster: String,
    /// The green cluster's Kubernetes minor.
    #[arg(long, value_name = "MINOR")]
    pub eks_version: String,
    /// The green stage (the CNAME's stage part).
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// The redirect alias the switch points traffic through.
    #[arg(long, value_name = "NAME")]
    pub redirect_alias: Option<String>,
    /// The Velero (transfer) bucket.
    #[arg(long, value_name = "BUCKET")]
    pub velero_bucket: Option<String>,
    /// Blue uses Cognito: its user pool and certificate outputs are required.
    #[arg(long)]
    pub cognito: bool,
    /// The blue output that holds a green variable, when not the default, e.g.
    /// src_vpc_id=main_vpc_id. Repeatable.
    #[arg(long = "output-for", value_name = "VARIABLE=OUTPUT", value_parser = variable_output)]
    pub outputs: Vec<(String, String)>,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default()
            .rename("outputs", "--output-for")
            .rename("green_cluster_name", "--green-cluster");
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
        let planned = match &self.stage {
            Stage::Inputs(a) => bluegreen::plan_inputs(&ctx, &a.spec()).await,
            Stage::Irsa(a) => bluegreen::plan_irsa(&ctx, &a.spec()).await,
            Stage::Switch(a) => bluegreen::plan_switch(&ctx, &a.spec()).await,
            Stage::Failback => unreachable!("handled above"),
        }
        .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(&ctx, planned, &self.run, &self.output, &flags, out).await
    }
}

fn variable_output(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(var, output)| (var.to_string(), output.to_string()))
        .ok_or_else(|| format!("write VARIABLE=OUTPUT, e.g. src_vpc_id=main_vpc_id, not `{pair}`"))
}

impl InputsArgs {
    fn spec(&self) -> InputsSpec {
        InputsSpec {
            blue_terraform_dir: self.blue_terraform_dir.clone(),
            green_terraform_dir: self.green_terraform_dir.clone(),
            green_vars_file: self.green_vars_file.clone(),
            green_cluster_name: self.green_cluster.clone(),
            eks_version: self.eks_version.clone(),
            stage: self.stage.clone(),
            redirect_alias: self.redirect_alias.clone(),
            velero_bucket: self.velero_bucket.clone(),
            cognito: self.cognito,
            outputs: self.outputs.iter().cloned().collect(),
        }
    }
}

impl IrsaArgs {
    fn spec(&self) -> IrsaSpec {
        IrsaSpec {
            roles: self.roles.clone(),
            green_oidc_provider_arn: self.green_oidc_provider_arn.clone(),
            aws: self.aws.settings(),
        }
    }
}

impl SwitchArgs {
    fn spec(&self) -> SwitchSpec {
        SwitchSpec {
            zone_id: self.zone_id.clone(),
            record_name: self.record.clone(),
            record_type: self.record_type.clone(),
            green_target: self.green_target.clone(),
            window: self.window.clone(),
            force_window: self.force_window,
            aws: self.aws.settings(),
        }
    }
}
