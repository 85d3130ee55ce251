//! `upgrade-map-apis`: a Helm release whose stored manifest names APIs removed on the way to a
//! target gets its latest record rewritten to the replacement APIs (what the helm-mapkubeapis
//! plugin does), snapshotted and reversible with `upgrade-rollback`.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::release_apis::{self, ReleaseApisSpec};

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, context, execute};
use crate::exit::{CliError, Flags};

/// `upgrade-map-apis`: move a release's stored manifest off removed APIs.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-map-apis",
    version,
    about = "Rewrite the stored manifest of a Helm release's latest revision from APIs removed by a target minor to their replacements, so helm upgrade works again",
    after_help = "Only Helm's record changes (Secret or ConfigMap driver, Helm 3 and 4), never the objects in the cluster; the record before is snapshotted and upgrade-rollback puts it back.\n\
                  A removed API without a replacement, or whose replacement the cluster does not serve yet, blocks.\n\
                  Exit codes: 0 done (or planned, or nothing to rewrite), 1 failed and rolled back, 2 bad input (nothing changed), 4 blocked (nothing changed), 130 stopped by Ctrl-C."
)]
pub struct Args {
    /// The release.
    #[arg(long, value_name = "NAME")]
    pub release: String,
    /// Its namespace.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: String,
    /// The minor whose removed APIs to map: the next hop's before it, or the cluster's after.
    #[arg(long, value_name = "MINOR")]
    pub target: String,
    /// A folder with newer version data files (see upgrade-preflight --data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How the run runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default();
        let spec = ReleaseApisSpec {
            release: self.release.clone(),
            namespace: self.namespace.clone(),
            target: self.target.clone(),
            data: self.data.clone(),
        };
        let ctx = context("upgrade-map-apis", &self.cluster, Some(&self.run)).await?;
        let planned = release_apis::plan(&ctx, &spec)
            .await
            .map_err(|e| CliError::from_flow(e, &flags))?;
        execute(&ctx, planned, &self.run, &self.output, &flags, out).await
    }
}
