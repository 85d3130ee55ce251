//! `upgrade-emergency`: the runbook's mitigations for a Deployment (seeds 000 and 002), each
//! planned first, journaled and undone by `upgrade-rollback`.

use std::io::Write;

use upgrade_flows::flows::emergency::{
    self, EmergencyAction, EmergencySpec, HelmRollbackSpec, RenewCertificateSpec,
};

use upgrade_flows::flows::mlflow_access::{self, MlflowAccessSpec};
use upgrade_flows::flows::replace_node::{self, ReplaceNodeSpec};
use upgrade_flows::report::Format;

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, context, execute, print};
use crate::commands::aws_args::AwsArgs;
use crate::commands::rollout_args::DrainArgs;
use crate::exit::{CliError, Flags};

/// `upgrade-emergency`: mitigate a failing component now, with a way back.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-emergency",
    version,
    about = "Mitigate a failing component: scale a Deployment (to zero and back), restart its \
             pods, put its previous revision back, roll a Helm release back, renew a \
             certificate, replace a NotReady node; each planned first and journaled, and \
             reversible with upgrade-rollback where it can be",
    after_help = "Exit codes: 0 done (or planned; check-mlflow: every check passed), 1 failed \
                  and rolled back, 2 bad input (nothing changed), 4 blocked (a plan's blockers; \
                  check-mlflow: a check failed), 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Which cluster (listed after each action's own flags).
    #[command(flatten, next_display_order = 1000)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The Deployment and the wait.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The Deployment, NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub deployment: String,
    /// How long its rollout may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub rollout_timeout: u64,
}

/// The mitigations.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Scale the Deployment (`--replicas 0` takes it out of service); the rollback restores
    /// its replicas.
    Scale {
        /// The Deployment.
        #[command(flatten)]
        target: Target,
        /// The replicas.
        #[arg(long, value_name = "N")]
        replicas: i32,
    },
    /// Restart its pods (`kubectl rollout restart`).
    Restart {
        /// The Deployment.
        #[command(flatten)]
        target: Target,
    },
    /// Put its previous revision back (`kubectl rollout undo`); the rollback restores the
    /// current one.
    Undo {
        /// The Deployment.
        #[command(flatten)]
        target: Target,
    },
    /// Roll a Helm release back to its previous deployed revision, or `--revision N`; the
    /// undo restores the current one.
    HelmRollback {
        /// The release, NAMESPACE/NAME.
        #[arg(long, value_name = "NAMESPACE/NAME")]
        release: String,
        /// The revision to go back to (default: the previous deployed one).
        #[arg(long, value_name = "N")]
        revision: Option<u32>,
        /// Helm's wait, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        rollback_timeout: u64,
    },
    /// Replace a node (a NotReady one): cordon, drain, then retire it the way its
    /// provisioner needs (Karpenter's NodeClaim deleted; an Auto Scaling group's instance
    /// terminated with the group's size kept; or --retire-command), and wait until it is
    /// gone, its replacement Ready and its workloads available. No way back once retired.
    ReplaceNode {
        /// The node.
        #[arg(long, value_name = "NAME")]
        node: String,
        /// Retire it with this command instead, `{node}` is the node (split like a shell
        /// would, run without one).
        #[arg(long, value_name = "COMMAND")]
        retire_command: Option<String>,
        /// What the drain may evict.
        #[command(flatten)]
        drain: DrainArgs,
        /// How to reach AWS (Auto Scaling).
        #[command(flatten)]
        aws: AwsArgs,
        /// The limit of the drain, and of the wait for the replacement and the workloads,
        /// in seconds each.
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        replace_timeout: u64,
    },
    /// Check MLflow's database connection and S3 artifact access from where MLflow runs: a
    /// Job with its pod template (image, environment, secrets, service account) connects
    /// to the backend store and writes, lists and deletes a probe object; the Job is
    /// deleted after. Exit 0 all passed, 4 a check failed.
    CheckMlflow {
        /// The MLflow Deployment, NAMESPACE/NAME.
        #[arg(long, value_name = "NAMESPACE/NAME")]
        deployment: String,
        /// Its container that runs the server (default: the one with MLflow's image).
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
        /// The image to run the check in (default: the server's; it needs Python, and
        /// boto3 for S3).
        #[arg(long, value_name = "IMAGE")]
        check_image: Option<String>,
        /// How long the Job may take, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        check_timeout: u64,
    },
    /// Renew a cert-manager Certificate now: its secret is deleted so cert-manager issues a
    /// new one; the old secret is put back if none comes in time.
    RenewCertificate {
        /// The Certificate, NAMESPACE/NAME.
        #[arg(long, value_name = "NAMESPACE/NAME")]
        certificate: String,
        /// How long cert-manager may take, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        issue_timeout: u64,
    },
}

fn namespaced(flag: &str, text: &str) -> Result<(String, String), CliError> {
    text.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| CliError::usage(format!("{flag} {text}: give NAMESPACE/NAME")))
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let (target, action) = match &self.action {
            Action::Scale { target, replicas } => (target, EmergencyAction::Scale(*replicas)),
            Action::Restart { target } => (target, EmergencyAction::Restart),
            Action::Undo { target } => (target, EmergencyAction::Undo),
            Action::HelmRollback {
                release,
                revision,
                rollback_timeout,
            } => {
                let (namespace, release) = namespaced("--release", release)?;
                let spec = HelmRollbackSpec {
                    namespace,
                    release,
                    revision: *revision,
                    timeout_secs: *rollback_timeout,
                };
                let ctx = context("upgrade-emergency", &self.cluster, Some(&self.run)).await?;
                let planned = emergency::plan_helm_rollback(&ctx, &spec)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?;
                return execute(&ctx, planned, &self.run, &self.output, &flags, out).await;
            }
            Action::CheckMlflow {
                deployment,
                container,
                check_image,
                check_timeout,
            } => {
                let (namespace, deployment) = namespaced("--deployment", deployment)?;
                let spec = MlflowAccessSpec {
                    namespace,
                    deployment,
                    container: container.clone(),
                    image: check_image.clone(),
                    timeout_secs: *check_timeout,
                };
                let ctx = context("upgrade-emergency", &self.cluster, None).await?;
                let report = mlflow_access::check_mlflow_access(&ctx, &spec)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?;
                print(out, &report.render(Format::from(self.output.output)))?;
                return Ok(report.exit_code());
            }
            Action::ReplaceNode {
                node,
                retire_command,
                drain,
                aws,
                replace_timeout,
            } => {
                let spec = ReplaceNodeSpec {
                    node: node.clone(),
                    retire_command: retire_command.clone(),
                    aws: aws.settings(),
                    drain: drain.spec(),
                    timeout_secs: *replace_timeout,
                };
                let ctx = context("upgrade-emergency", &self.cluster, Some(&self.run)).await?;
                let planned = replace_node::plan_replace_node(&ctx, &spec)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?;
                return execute(&ctx, planned, &self.run, &self.output, &flags, out).await;
            }
            Action::RenewCertificate {
                certificate,
                issue_timeout,
            } => {
                let (namespace, certificate) = namespaced("--certificate", certificate)?;
                let spec = RenewCertificateSpec {
                    namespace,
                    certificate,
                    timeout_secs: *issue_timeout,
                };
                let ctx = context("upgrade-emergency", &self.cluster, Some(&self.run)).await?;
                let planned = emergency::plan_renew_certificate(&ctx, &spec)
                    .await
                    .map_err(|e| CliError::from_flow(e, &flags))?;
                return execute(&ctx, planned, &self.run, &self.output, &flags, out).await;
            }
        };
        let (namespace, deployment) = namespaced("--deployment", &target.deployment)?;
        let spec = EmergencySpec {
            namespace,
            deployment,
            action,
            timeout_secs: target.rollout_timeout,
        };
        let ctx = context("upgrade-emergency", &self.cluster, Some(&self.run)).await?;
        let planned = emergency::plan_emergency(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(&ctx, planned, &self.run, &self.output, &flags, out).await
    }
}
