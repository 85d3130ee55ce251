//! `upgrade-nodes`: cordon, drain (PodDisruptionBudgets honoured) and roll the nodes of a
//! node group or label selector that run below the control plane (seed 004's node procedure).

use anyhow::Context;
use upgrade_core::executor::Step;
use upgrade_core::version::KubeMinor;
use upgrade_kube::facts::{GatherOptions, gather};
use upgrade_kube::step::NodeRolloutStep;

use crate::cli::CommonArgs;
use crate::exit::CliError;
use crate::replacer::{Commands, RolloutArgs};
use crate::session::{Plan, Session, live_version};

/// The label EKS managed node groups put on their nodes.
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

/// `upgrade-nodes`: roll a node group or selector onto the control plane's version.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-nodes",
    version,
    about = "Cordon, drain (PodDisruptionBudgets honoured) and replace the nodes of a group or selector that run below the control plane",
    after_help = "Exactly one of --selector or --node-group.\n\
                  Rollback lifts the cordons this run set on nodes that were not replaced (replaced nodes stay replaced).\n\
                  Exit codes: 0 done (or planned), 1 failed (rolled back), 2 bad input (nothing changed)."
)]
pub struct Args {
    /// The nodes to roll, by label: key=value[,key=value...].
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "node_group")]
    pub selector: Option<String>,
    /// The nodes of an EKS managed node group (label eks.amazonaws.com/nodegroup).
    #[arg(long, value_name = "NAME")]
    pub node_group: Option<String>,
    /// Replace nodes below this minor (default: the control plane's minor).
    #[arg(long, value_name = "MINOR")]
    pub target: Option<String>,
    /// Node rollout flags.
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The arguments, checked without the cluster.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The label selector.
    pub selector: Vec<(String, String)>,
    /// `--target`, when given.
    pub target: Option<KubeMinor>,
    /// The replacer's commands.
    pub commands: Option<Commands>,
}

/// Checks the arguments: one selector that parses, a target that parses, replacer flags.
pub fn validate(args: &Args) -> Result<Inputs, CliError> {
    let selector = match (&args.selector, &args.node_group) {
        (Some(text), None) => parse_selector(text)?,
        (None, Some(group)) if !group.is_empty() => {
            vec![(NODEGROUP_LABEL.to_string(), group.clone())]
        }
        _ => {
            return Err(CliError::usage(anyhow::anyhow!(
                "name the nodes to roll: --node-group NAME or --selector key=value"
            )));
        }
    };
    let target = args
        .target
        .as_deref()
        .map(|t| {
            t.parse::<KubeMinor>().map_err(|e| {
                CliError::usage(anyhow::anyhow!(
                    "--target {t}: {e}; give a Kubernetes minor such as 1.31"
                ))
            })
        })
        .transpose()?;
    let commands = args.rollout.validate()?;
    Ok(Inputs {
        selector,
        target,
        commands,
    })
}

/// Parses `key=value[,key=value...]`.
pub fn parse_selector(text: &str) -> Result<Vec<(String, String)>, CliError> {
    text.split(',')
        .map(|pair| {
            pair.split_once('=')
                .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    CliError::usage(anyhow::anyhow!(
                        "--selector {text}: expected key=value[,key=value], e.g. {NODEGROUP_LABEL}=default"
                    ))
                })
        })
        .collect()
}

/// A name for the selection in step ids: `nodegroup-default`, or the selector's values.
fn selection_name(args: &Args, inputs: &Inputs) -> String {
    match &args.node_group {
        Some(group) => format!("nodegroup-{group}"),
        None => inputs
            .selector
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// The rollout step (one), its id from the arguments only: `nodes/roll-nodegroup-default`.
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    let inputs = validate(args)?;
    let target = target(&inputs, session).await?;
    Ok(vec![Box::new(
        build_step(args, &inputs, session, target, "").await?,
    )])
}

async fn target(inputs: &Inputs, session: &Session) -> Result<KubeMinor, CliError> {
    match inputs.target {
        Some(t) => Ok(t),
        None => Ok(live_version(&session.cluster).await?.minor),
    }
}

async fn build_step(
    args: &Args,
    inputs: &Inputs,
    session: &Session,
    target: KubeMinor,
    run_id: &str,
) -> Result<NodeRolloutStep, CliError> {
    args.rollout
        .rollout_step(
            format!("nodes/roll-{}", selection_name(args, inputs)),
            "nodes",
            session,
            target,
            inputs.selector.clone(),
            inputs.commands.clone(),
            run_id,
        )
        .await
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let inputs = validate(args)?;
    let session = Session::open(&args.common).await?;
    let target = target(&inputs, &session).await?;
    let run_id = Session::new_run_id("nodes");
    let step = build_step(args, &inputs, &session, target, &run_id).await?;
    let nodes = step.nodes().await.map_err(CliError::failed)?;
    let gathered = gather(&session.cluster, &GatherOptions::default())
        .await
        .context("gather the cluster's facts for the drain prediction")
        .map_err(CliError::failed)?;
    let mut changes = vec![format!(
        "replace {} node(s) below {target}: {}",
        nodes.len(),
        if nodes.is_empty() {
            "none".to_string()
        } else {
            nodes.join(", ")
        }
    )];
    for prediction in gathered.drains.iter().filter(|d| nodes.contains(&d.node)) {
        let mut line = format!(
            "drain {}: {} pod(s) evicted, {} stay (DaemonSet/mirror)",
            prediction.node, prediction.evictable, prediction.skipped
        );
        for blocked in &prediction.blocked {
            let budgets = if blocked.budgets.is_empty() {
                String::new()
            } else {
                format!(" [budget {}]", blocked.budgets.join(", "))
            };
            line.push_str(&format!(
                "; blocked now: {}/{} ({}){budgets}",
                blocked.namespace, blocked.name, blocked.reason
            ));
        }
        changes.push(line);
    }
    let plan = Plan {
        command: "upgrade-nodes".into(),
        run_id,
        changes,
        findings: gathered.notes.clone(),
    };
    session.execute(&plan, &[&step], out).await
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}
