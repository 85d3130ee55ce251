//! The flags `upgrade-eks` and `upgrade-nodes` share for a node rollout: where new nodes
//! come from, how drained nodes go, and how fast to roll.

use std::time::Duration;

use upgrade_core::version::KubeMinor;
use upgrade_kube::connect::Cluster;
use upgrade_kube::drain::DrainOptions;
use upgrade_kube::replace::{NODE_PLACEHOLDER, NodeCommand, Replacer};
use upgrade_kube::rollout::{RolloutOptions, ValidationOptions};
use upgrade_kube::step::NodeRolloutStep;

use crate::exit::CliError;
use crate::session::Session;

/// Who replaces drained nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplacerKind {
    /// Karpenter: the nodes are cordoned, evicted pods wait, Karpenter launches nodes at the
    /// control plane's version; a drained node is retired by deleting its Node object.
    Karpenter,
    /// Your commands: --surge-command (optional) and --retire-command, `{node}` replaced.
    Command,
}

/// Node rollout flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// Who replaces drained nodes.
    #[arg(long, value_enum, default_value_t = ReplacerKind::Karpenter)]
    pub replacer: ReplacerKind,
    /// With --replacer command: run before a node is drained to add capacity, `{node}` is the
    /// node (split like a shell would, run without one), e.g. "aws autoscaling set-desired-capacity ...".
    #[arg(long, value_name = "COMMAND")]
    pub surge_command: Option<String>,
    /// With --replacer command: run after a node is drained to remove it, e.g.
    /// "aws ec2 terminate-instances --instance-ids {node}".
    #[arg(long, value_name = "COMMAND")]
    pub retire_command: Option<String>,
    /// Nodes per batch after the canary.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch_size: usize,
    /// Pause between batches, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration, default_value = "30s")]
    pub pause: Duration,
    /// Time between the two validations after each batch, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration, default_value = "10s")]
    pub validation_interval: Duration,
}

/// The replacer's commands, split and checked (no cluster needed).
#[derive(Debug, Clone)]
pub struct Commands {
    surge: Option<NodeCommand>,
    retire: NodeCommand,
}

impl RolloutArgs {
    /// Checks the flags fit together; for `--replacer command`, splits the commands.
    pub fn validate(&self) -> Result<Option<Commands>, CliError> {
        if self.batch_size == 0 {
            return Err(usage(
                "--batch-size 0: a batch needs at least one node; pass --batch-size 1 or more",
            ));
        }
        match self.replacer {
            ReplacerKind::Karpenter => {
                if self.surge_command.is_some() || self.retire_command.is_some() {
                    return Err(usage(
                        "--surge-command and --retire-command only apply with --replacer command; drop them or add --replacer command",
                    ));
                }
                Ok(None)
            }
            ReplacerKind::Command => {
                let retire = self.retire_command.as_deref().ok_or_else(|| {
                    usage("--replacer command needs --retire-command \"... {node} ...\" (how a drained node is removed)")
                })?;
                let retire = split("--retire-command", retire)?;
                let surge = self
                    .surge_command
                    .as_deref()
                    .map(|s| split("--surge-command", s))
                    .transpose()?;
                Ok(Some(Commands { surge, retire }))
            }
        }
    }

    /// The replacer for `nodes` on `cluster`.
    pub fn replacer(
        &self,
        cluster: &Cluster,
        commands: Option<Commands>,
        nodes: Vec<String>,
        command_timeout: Duration,
    ) -> Replacer {
        match commands {
            None => Replacer::Karpenter {
                cluster: cluster.clone(),
                replacing: nodes,
            },
            Some(Commands { surge, retire }) => Replacer::Command {
                surge,
                retire,
                timeout: command_timeout,
            },
        }
    }

    /// The rollout step for the nodes below `target` matching `selector` (all when empty),
    /// with the replacer these flags name; drains and validation within `--timeout`
    /// (default 30 minutes).
    #[allow(clippy::too_many_arguments)]
    pub async fn rollout_step(
        &self,
        id: String,
        component: &str,
        session: &Session,
        target: KubeMinor,
        selector: Vec<(String, String)>,
        commands: Option<Commands>,
        run_id: &str,
    ) -> Result<NodeRolloutStep, CliError> {
        let timeout = session.timeout_or(Duration::from_secs(30 * 60));
        let from = target.prev().map(|m| m.to_string()).unwrap_or_default();
        let step = NodeRolloutStep {
            id,
            component: component.into(),
            cluster: session.cluster.clone(),
            target,
            selector,
            replacer: self.replacer(&session.cluster, commands.clone(), Vec::new(), timeout),
            options: self.options(from, target.to_string(), run_id, timeout),
        };
        // Karpenter cordons every node it replaces before the first drain, so it needs them.
        let nodes = step.nodes().await.map_err(CliError::failed)?;
        let replacer = self.replacer(&session.cluster, commands, nodes, timeout);
        Ok(NodeRolloutStep { replacer, ..step })
    }

    /// Rollout options: canary first, the batch size, drains within `timeout`.
    pub fn options(
        &self,
        from: String,
        to: String,
        run_id: &str,
        timeout: Duration,
    ) -> RolloutOptions {
        RolloutOptions {
            batch_size: self.batch_size,
            canary: true,
            canary_soak: Duration::ZERO,
            pause: self.pause,
            drain: DrainOptions {
                timeout,
                ..DrainOptions::default()
            },
            validation: ValidationOptions {
                passes: 2,
                interval: self.validation_interval,
                timeout,
            },
            from_version: from,
            to_version: to,
            run_id: run_id.to_string(),
        }
    }
}

fn usage(message: &str) -> CliError {
    CliError::usage(anyhow::anyhow!("{message}"))
}

fn split(flag: &str, text: &str) -> Result<NodeCommand, CliError> {
    let words = shlex::split(text).ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "{flag} {text:?} has an unbalanced quote; close it"
        ))
    })?;
    if !words.iter().any(|w| w.contains(NODE_PLACEHOLDER)) {
        return Err(CliError::usage(anyhow::anyhow!(
            "{flag} {text:?} never names the node; put {NODE_PLACEHOLDER} where the node's name goes"
        )));
    }
    let mut command = NodeCommand::from_words(words)
        .ok_or_else(|| CliError::usage(anyhow::anyhow!("{flag} is empty; give a command")))?;
    // Resolved now, so a missing program is bad input before anything changes.
    command.program = which::which(&command.program).map_err(|_| {
        CliError::usage(anyhow::anyhow!(
            "{flag}: `{}` is not an executable on PATH; install it or give its full path",
            command.program.display()
        ))
    })?;
    Ok(command)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        rollout: RolloutArgs,
    }

    fn validate(args: &[&str]) -> Result<Option<Commands>, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
        cli.rollout.validate().map_err(|e| e.error.to_string())
    }

    #[test]
    fn replacer_flags_are_checked_before_anything_runs() {
        assert!(
            validate(&[]).unwrap().is_none(),
            "karpenter needs no commands"
        );
        let err = validate(&["--retire-command", "true {node}"]).unwrap_err();
        assert!(err.contains("add --replacer command"), "{err}");
        let err = validate(&["--replacer", "command"]).unwrap_err();
        assert!(err.contains("needs --retire-command"), "{err}");
        let err = validate(&["--replacer", "command", "--retire-command", "true"]).unwrap_err();
        assert!(err.contains("put {node} where"), "{err}");
        let err =
            validate(&["--replacer", "command", "--retire-command", "true '{node}"]).unwrap_err();
        assert!(err.contains("unbalanced quote"), "{err}");
        let err = validate(&[
            "--replacer",
            "command",
            "--retire-command",
            "no-such-program-x {node}",
        ])
        .unwrap_err();
        assert!(err.contains("not an executable on PATH"), "{err}");
        let err = validate(&["--batch-size", "0"]).unwrap_err();
        assert!(err.contains("--batch-size 1 or more"), "{err}");
        let ok = validate(&[
            "--replacer",
            "command",
            "--retire-command",
            "true 'node {node}'",
            "--surge-command",
            "true {node}",
        ])
        .unwrap()
        .unwrap();
        assert!(ok.retire.program.is_absolute(), "resolved on PATH: {ok:?}");
        assert_eq!(ok.retire.args, ["node {node}"]);
        assert!(ok.surge.is_some());
    }
}
