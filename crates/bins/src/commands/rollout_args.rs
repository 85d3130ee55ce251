//! The node rollout flags `upgrade-eks` and `upgrade-nodes` share.

use std::time::Duration;

use upgrade_flows::flows::nodes::{DrainSpec, RolloutSpec};

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
    /// What each drain may evict.
    #[command(flatten)]
    pub drain: DrainArgs,
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
            drain: self.drain.spec(),
            ..RolloutSpec::default()
        }
    }
}

/// kubectl drain's flags, for every command that drains nodes.
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// Leave DaemonSet pods on drained nodes (kubectl drain's flag; on unless
    /// `--ignore-daemonsets=false`, with which they block the drain).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes; their data is lost (kubectl drain's flag): for
    /// scratch space such as the Argo Workflows server's and Argo CD's.
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Evict pods no controller recreates and pods annotated karpenter.sh/do-not-disrupt;
    /// they do not come back (kubectl drain's --force).
    #[arg(long)]
    pub force_drain: bool,
    /// Seconds each evicted pod gets to stop (kubectl drain's flag); -1, the default, uses
    /// the pod's own terminationGracePeriodSeconds.
    #[arg(long, value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub grace_period: i64,
}

impl DrainArgs {
    /// The drain spec.
    pub fn spec(&self) -> DrainSpec {
        DrainSpec {
            ignore_daemonsets: self.ignore_daemonsets,
            delete_emptydir_data: self.delete_emptydir_data,
            force: self.force_drain,
            grace_period_seconds: u64::try_from(self.grace_period).ok(),
        }
    }
}
