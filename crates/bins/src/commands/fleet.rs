//! `upgrade-fleet`: one of the toolkit's commands on many clusters, in waves, on Argo
//! Workflows (see `upgrade_flows::flows::fleet`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use upgrade_flows::flows::fleet::{
    self, FleetSpec, Inventory, Threshold, WavesBy, rehearse, report::FleetReport, workflow,
};
use upgrade_flows::report::Format;

use crate::cli::{OutputArgs, parse_duration, print};
use crate::exit::{CliError, Flags};

/// `upgrade-fleet`: plan a fleet rollout as an Argo workflow, rehearse it, report on it.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-fleet",
    version,
    about = "Upgrade a fleet of clusters in waves on Argo Workflows: the plan as a \
             WorkflowTemplate (canaries first, waves by label or percentage, concurrency per \
             account, soak, a failure threshold, approvals), a local rehearsal of that \
             template, and one report across the clusters",
    after_help = "Exit codes: plan 0 (2 bad input); run-cluster 0 ok or warnings, 75 the \
                  cluster did not answer (retried), 1 otherwise (the result file says which); \
                  gate 0 go on, 1 stop; rehearse 0 the rollout completed, 1 a gate stopped it; \
                  report 0 all ok, 3 warnings, 1 a cluster failed."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The plan's flags.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The inventory (YAML or JSON): `clusters:` with name, account, region, context or
    /// endpoint, terraformDir, labels.
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// The command each cluster runs, placeholders in braces: {cluster} {account} {region}
    /// {context} {endpoint} {terraform_dir} {state_dir}; e.g. "upgrade-eks --target 1.31
    /// --kube-context {context} --expect-cluster {endpoint} --snapshot-dir {state_dir}
    /// --apply --yes".
    #[arg(long, value_name = "COMMAND")]
    pub command: String,
    /// The image holding the toolkit's commands.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// Clusters with this label go first, as the canary wave (any failure there stops).
    #[arg(long, value_name = "KEY=VALUE", value_parser = fleet::parse_label)]
    pub canary: Option<(String, String)>,
    /// Waves by a label's values, in order (the rest last): KEY=V1,V2,...
    #[arg(long, value_name = "KEY=V1,V2", conflicts_with = "waves_percent", value_parser = WavesBy::parse_label)]
    pub waves_by_label: Option<WavesBy>,
    /// Waves by cumulative percentages of the clusters: 25,50,100.
    #[arg(long, value_name = "P1,P2,...", default_value = "100", value_parser = WavesBy::parse_percent)]
    pub waves_percent: WavesBy,
    /// Clusters of one AWS account at once, at most.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency_per_account: u32,
    /// Clusters at once, at most.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub parallelism: u32,
    /// Wait between waves, e.g. 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub soak: Duration,
    /// Failed clusters past which the rollout stops: a count (0: the first failure) or a
    /// percentage of the fleet (10%).
    #[arg(long, value_name = "N|P%", value_parser = Threshold::parse, default_value = "0")]
    pub max_failures: Threshold,
    /// A person approves before these waves (1: the first after the canaries).
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub approval_before: Vec<usize>,
    /// The WorkflowTemplate's name.
    #[arg(long, value_name = "NAME", default_value = "fleet-upgrade")]
    pub name: String,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Plan the waves and write the Argo objects (workflowtemplate.yaml, semaphores.yaml,
    /// workflow.yaml) into --out-dir.
    Plan {
        /// The plan.
        #[command(flatten)]
        plan: PlanArgs,
        /// Where to write the Argo objects.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Run the plan's WorkflowTemplate locally (its DAG, gates, parallelism and semaphores)
    /// against the clusters of a kubeconfig: simulated ones, or a staging fleet.
    Rehearse {
        /// The plan.
        #[command(flatten)]
        plan: PlanArgs,
        /// The kubeconfig with the inventory's contexts.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Where each cluster's outputs go (<dir>/<cluster>/report.json, state/).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Soak time is multiplied by this (0: no wait).
        #[arg(long, value_name = "FACTOR", default_value_t = 0.0, value_parser = soak_scale)]
        soak_scale: f64,
        /// Each command's time limit, e.g. 2h.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2h")]
        step_timeout: Duration,
    },
    /// One report across the clusters from their report artifacts (<dir>/<cluster>/report.json).
    Report {
        /// The folder of the artifacts.
        #[arg(long, value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// A cluster's step (in the workflow's container): run the command after `--`, write
    /// result and report.json into --out-dir.
    #[command(name = "run-cluster", disable_help_flag = true)]
    RunCluster {
        /// --cluster C [--context X] --out-dir D -- COMMAND...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// The failure path's step: upgrade-rollback from the cluster's state artifact.
    #[command(name = "rollback-cluster", disable_help_flag = true)]
    RollbackCluster {
        /// --cluster C [--context X] [--endpoint U] --state-dir D
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// A wave's gate: exit 1 (the rollout stops) when more clusters failed than allowed.
    #[command(disable_help_flag = true)]
    Gate {
        /// --wave W --max-failures N --results r1,r2,...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

fn soak_scale(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0 && *f <= 1000.0)
        .ok_or_else(|| format!("`{text}` is not a factor from 0 to 1000"))
}

impl PlanArgs {
    fn spec(&self, flags: &Flags) -> Result<FleetSpec, CliError> {
        let inventory =
            Inventory::read(&self.inventory).map_err(|e| CliError::from_flow(e, flags))?;
        let command = upgrade_flows::flows::split_words("command", &self.command)
            .map_err(|e| CliError::from_flow(e, flags))?;
        Ok(FleetSpec {
            inventory,
            command,
            image: self.image.clone(),
            canary: self.canary.clone(),
            waves: self
                .waves_by_label
                .clone()
                .unwrap_or_else(|| self.waves_percent.clone()),
            concurrency_per_account: self.concurrency_per_account,
            parallelism: self.parallelism,
            soak: self.soak,
            failure_threshold: self.max_failures,
            approval_before: self.approval_before.clone(),
        })
    }
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let format = Format::from(self.output.output);
        match &self.action {
            Action::Plan { plan, out_dir } => {
                let planned =
                    fleet::plan(&plan.spec(&flags)?).map_err(|e| CliError::from_flow(e, &flags))?;
                let objects = workflow::FleetObjects::new(&planned, &plan.name);
                if let Some(dir) = out_dir {
                    objects.write(dir).map_err(|e| {
                        CliError::failed(format!(
                            "write the Argo objects into {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let text = match format {
                    Format::Json => {
                        serde_json::to_string_pretty(&serde_json::json!({
                            "plan": planned, "workflowTemplate": objects.template,
                            "semaphores": objects.semaphores, "workflow": objects.workflow,
                        }))
                        .expect("serialises")
                            + "\n"
                    }
                    _ => {
                        let mut text = planned.render();
                        if let Some(dir) = out_dir {
                            text.push_str(&format!(
                                "wrote {0}/workflowtemplate.yaml, {0}/semaphores.yaml, {0}/workflow.yaml: kubectl apply -f the first two, then argo submit (or kubectl create -f) the last\n",
                                dir.display()
                            ));
                        }
                        text
                    }
                };
                print(out, &text)?;
                Ok(upgrade_core::exit::OK)
            }
            Action::Rehearse {
                plan,
                kubeconfig,
                out_dir,
                soak_scale,
                step_timeout,
            } => {
                let planned =
                    fleet::plan(&plan.spec(&flags)?).map_err(|e| CliError::from_flow(e, &flags))?;
                let objects = workflow::FleetObjects::new(&planned, &plan.name);
                let mut env = Vec::new();
                if let Some(k) = kubeconfig {
                    env.push(("KUBECONFIG".to_string(), k.display().to_string()));
                }
                let rehearsal = rehearse::rehearse(
                    &objects.template,
                    &objects.semaphores,
                    &rehearse::RehearsalOptions {
                        out_dir: out_dir.clone(),
                        kubeconfig: kubeconfig.clone(),
                        soak_scale: *soak_scale,
                        timeout: *step_timeout,
                        env,
                        stop: upgrade_core::process::StopSignal::global().clone(),
                    },
                )
                .await
                .map_err(|e| CliError::from_flow(e, &flags))?;
                let text = match format {
                    Format::Json => {
                        serde_json::to_string_pretty(&rehearsal).expect("serialises") + "\n"
                    }
                    _ => rehearsal.render(),
                };
                print(out, &text)?;
                Ok(if rehearsal.succeeded() {
                    upgrade_core::exit::OK
                } else {
                    upgrade_core::exit::FAILED
                })
            }
            Action::Report { artifacts } => {
                let report =
                    FleetReport::read(artifacts).map_err(|e| CliError::from_flow(e, &flags))?;
                print(out, &report.render(format))?;
                Ok(report.exit_code())
            }
            Action::RunCluster { args }
            | Action::RollbackCluster { args }
            | Action::Gate { args } => {
                let sub = match &self.action {
                    Action::RunCluster { .. } => "run-cluster",
                    Action::RollbackCluster { .. } => "rollback-cluster",
                    _ => "gate",
                };
                let mut all = vec![sub.to_string()];
                all.extend(args.iter().cloned());
                let call =
                    rehearse::StepCall::parse(&all).map_err(|e| CliError::from_flow(e, &flags))?;
                let outcome = rehearse::run_step(
                    &call,
                    None,
                    Duration::from_secs(24 * 3600),
                    &[],
                    upgrade_core::process::StopSignal::global(),
                )
                .await;
                print(out, &format!("{}\n", outcome.message))?;
                Ok(match &outcome.run {
                    // 75 for a cluster that did not answer: the one failure Argo retries.
                    Some(run) => run.result.step_exit_code(),
                    None if outcome.succeeded => upgrade_core::exit::OK,
                    None => upgrade_core::exit::FAILED,
                })
            }
        }
    }
}
