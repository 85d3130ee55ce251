//! The node rollout flags `upgrade-eks` and `upgrade-nodes` share.

use std::time::Duration;

use upgrade_flows::flows::nodes::RolloutSpec;

use crate::cli::parse_duration;

/// Node rollout flags. Each node is replaced the way its provisioner needs: Karpenter's
/// nodes by Karpenter (no flags); self-managed nodes, and managed node groups' nodes, by
/// --surge-command/--retire-command. Selected nodes nothing replaces block the plan.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// For nodes no autoscaler replaces: run before a node is drained to add capacity,
    /// `{node}` is the node (split like a shell would, run without one), e.g. "aws
    /// autoscaling set-desired-capacity ...". The nodes that join meanwhile are retired
    /// again by a rollback.
    #[arg(long, value_name = "COMMAND")]
    pub surge_command: Option<String>,
    /// For nodes no autoscaler replaces: run after a node is drained to remove it, e.g.
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
            surge_command: self.surge_command.clone(),
            retire_command: self.retire_command.clone(),
            batch_size: self.batch_size,
            pause: self.pause,
            validation_interval: self.validation_interval,
            ..RolloutSpec::default()
        }
    }
}
