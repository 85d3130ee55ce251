//! The node rollout flags `upgrade-eks` and `upgrade-nodes` share.

use std::time::Duration;

use upgrade_flows::flows::nodes::{ReplacerKind, RolloutSpec};

use crate::cli::parse_duration;

/// Who replaces drained nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Replacer {
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
    #[arg(long, value_enum, default_value_t = Replacer::Karpenter)]
    pub replacer: Replacer,
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
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub pause: Duration,
    /// Time between the two validations after each batch, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub validation_interval: Duration,
}

impl RolloutArgs {
    /// The rollout spec.
    pub fn spec(&self) -> RolloutSpec {
        RolloutSpec {
            replacer: match self.replacer {
                Replacer::Karpenter => ReplacerKind::Karpenter,
                Replacer::Command => ReplacerKind::Command,
            },
            surge_command: self.surge_command.clone(),
            retire_command: self.retire_command.clone(),
            batch_size: self.batch_size,
            pause: self.pause,
            validation_interval: self.validation_interval,
        }
    }
}
