//! `upgrade-nodes`: cordon, drain (PodDisruptionBudgets honoured) and roll the nodes of a
//! node group or label selector that run below the control plane (seed 004's node procedure).

use std::io::Write;
use std::time::Duration;

use upgrade_flows::flows::nodes::{self, NodeSelection, NodesSpec};

use crate::cli::{ChangeFlags, OutputArgs, context, execute};
use crate::commands::rollout_args::RolloutArgs;
use crate::exit::{CliError, Flags};

/// `upgrade-nodes`: roll a node group or selector onto the control plane's version.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-nodes",
    version,
    about = "Cordon, drain (PodDisruptionBudgets honoured) and replace the nodes of a group or selector that run below the control plane",
    after_help = "Exactly one of --selector or --node-group.\n\
                  Rollback lifts the cordons this run set on nodes that were not replaced (replaced nodes stay replaced).\n\
                  Secrets in --surge-command/--retire-command go in environment variables, written ${env:NAME}: the run \
                  record keeps the reference and a rollback reads the variable again; a credential written out is refused.\n\
                  Exit codes: 0 done (or planned), 1 failed (rolled back), 2 bad input (nothing changed), 130 stopped by Ctrl-C."
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
    /// Cluster, run, timeout and output flags.
    #[command(flatten)]
    pub flags: ChangeFlags,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.flags.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let selection = match (&self.selector, &self.node_group) {
            (Some(text), None) => {
                NodeSelection::parse_selector(text).map_err(|e| CliError::from_flow(e, &flags))?
            }
            (None, Some(group)) => NodeSelection::NodeGroup(group.clone()),
            _ => {
                return Err(CliError::usage(
                    "name the nodes to roll: --node-group NAME or --selector key=value",
                ));
            }
        };
        let spec = NodesSpec {
            selection,
            target: self.target.clone(),
            rollout: self.rollout.spec(),
            timeout: self
                .flags
                .timeout
                .timeout
                .unwrap_or(Duration::from_secs(30 * 60)),
        };
        // Every flag is checked before connecting.
        nodes::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
        let ctx = context("upgrade-nodes", &self.flags.cluster, Some(&self.flags.run)).await?;
        let planned = nodes::plan(&ctx, &spec)
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
