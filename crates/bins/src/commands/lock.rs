//! `upgrade-lock`: write the platform lockfile from the live platform, or show the drift
//! between the lockfile and the live platform. Read only (apart from the lockfile itself).

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::lock::{self, LockedComponent, PlatformSpec, read_lockfile};

use crate::cli::{ClusterArgs, OutputArgs, OutputFormat, context, print};
use crate::exit::{CliError, Flags};

/// `upgrade-lock`: the platform lockfile, written from or compared with the live platform.
#[derive(Debug, clap::Parser)]
#[command(
    name = "upgrade-lock",
    version,
    about = "Write the platform lockfile from the live platform, or show the drift between them",
    after_help = "Exit codes: 0 done (diff: no drift), 3 drift found, 2 bad input."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// The platform lockfile, kept next to the infrastructure code.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "platform.lock",
        global = true
    )]
    pub lockfile: PathBuf,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output and logging.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The two operations.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Read the live platform and write the lockfile (components from --component, or from
    /// the existing lockfile).
    Write {
        /// A Helm component: NAME=NAMESPACE/RELEASE=CHART (e.g.
        /// karpenter=karpenter/karpenter=oci://public.ecr.aws/karpenter/karpenter). Repeatable.
        #[arg(long = "component", value_name = "NAME=NS/RELEASE=CHART")]
        components: Vec<String>,
        /// The Terraform environment whose providers are locked.
        #[arg(long, value_name = "DIR")]
        terraform_dir: Option<PathBuf>,
        /// The cluster's name in the lockfile (default: --expect-cluster, else the API URL).
        #[arg(long, value_name = "NAME")]
        cluster_name: Option<String>,
    },
    /// Compare the lockfile with the live platform.
    Diff {
        /// The Terraform environment whose providers are locked.
        #[arg(long, value_name = "DIR")]
        terraform_dir: Option<PathBuf>,
    },
}

impl crate::cli::Command for Args {
    fn output(&self) -> &OutputArgs {
        &self.output
    }

    async fn run(&self, out: &mut dyn Write) -> Result<u8, CliError> {
        let flags = Flags::default().rename("components", "--component");
        let flow_err = |e| CliError::from_flow(e, &flags);
        // Every input is checked before touching the cluster.
        let existing = read_lockfile(&self.lockfile).map_err(flow_err)?;
        let no_lockfile = || {
            CliError::usage(format!(
                "there is no lockfile at {}; write one first with `upgrade-lock write --component NAME=NS/RELEASE=CHART ...`",
                self.lockfile.display()
            ))
        };
        match &self.action {
            Action::Write {
                components,
                terraform_dir,
                cluster_name,
            } => {
                let components = components
                    .iter()
                    .map(|c| LockedComponent::parse(c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(flow_err)?;
                let mut spec = match (&existing, components.is_empty()) {
                    (_, false) => PlatformSpec {
                        cluster_name: String::new(),
                        components,
                        terraform_dir: terraform_dir.clone(),
                    },
                    (Some(lock), true) => PlatformSpec::of_lock(lock, terraform_dir.clone()),
                    (None, true) => return Err(no_lockfile()),
                };
                let ctx = context("upgrade-lock", &self.cluster, None).await?;
                spec.cluster_name = cluster_name
                    .clone()
                    .or_else(|| existing.as_ref().map(|l| l.cluster.name.clone()))
                    .or_else(|| self.cluster.expect_cluster.clone())
                    .unwrap_or_else(|| ctx.cluster().identity().server_url.clone());
                lock::write(&ctx, &spec, &self.lockfile)
                    .await
                    .map_err(flow_err)?;
                print(out, &format!("wrote {}\n", self.lockfile.display()))?;
                Ok(0)
            }
            Action::Diff { terraform_dir } => {
                let desired = existing.ok_or_else(no_lockfile)?;
                let ctx = context("upgrade-lock", &self.cluster, None).await?;
                let drift = lock::diff(&ctx, &desired, terraform_dir.clone())
                    .await
                    .map_err(flow_err)?;
                let text = match self.output.output {
                    OutputFormat::Json => {
                        serde_json::to_string_pretty(&drift).expect("drift serialises") + "\n"
                    }
                    _ if drift.is_empty() => {
                        "no drift: the live platform matches the lockfile\n".to_string()
                    }
                    _ => drift.iter().map(|d| format!("{d}\n")).collect(),
                };
                print(out, &text)?;
                Ok(if drift.is_empty() {
                    0
                } else {
                    upgrade_flows::error::EXIT_WARNINGS
                })
            }
        }
    }
}
