//! `upgrade-lock`: write the platform lockfile from the live platform, or show the drift
//! between the lockfile and the live platform.

use std::path::PathBuf;

use upgrade_helm::ReleaseRef;

use crate::cli::{CommonArgs, OutputFormat};
use crate::exit::CliError;
use crate::platform::{PlatformSpec, read_live};
use crate::session::{Session, live_version, read_lockfile};

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
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
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

/// Parses `NAME=NAMESPACE/RELEASE=CHART`.
pub fn parse_component(text: &str) -> Result<(String, ReleaseRef, String), String> {
    let bad = || {
        format!(
            "--component {text}: expected NAME=NAMESPACE/RELEASE=CHART, e.g. kserve=kserve/kserve=kserve/kserve"
        )
    };
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let (release, chart) = rest.split_once('=').ok_or_else(bad)?;
    let (namespace, release) = release.split_once('/').ok_or_else(bad)?;
    if [name, namespace, release, chart]
        .iter()
        .any(|s| s.is_empty())
    {
        return Err(bad());
    }
    Ok((
        name.into(),
        ReleaseRef::new(release, namespace),
        chart.into(),
    ))
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let common = &args.common;
    // Validate every input before touching the cluster.
    let existing = read_lockfile(&common.lockfile)?;
    let (components, terraform_dir) = match &args.action {
        Action::Write {
            components,
            terraform_dir,
            ..
        } if !components.is_empty() => (
            components
                .iter()
                .map(|c| parse_component(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::usage(anyhow::anyhow!(e)))?,
            terraform_dir.clone(),
        ),
        Action::Write { terraform_dir, .. } | Action::Diff { terraform_dir } => {
            let lock = existing.as_ref().ok_or_else(|| {
                CliError::usage(anyhow::anyhow!(
                    "there is no lockfile at {}; write one first with `upgrade-lock write --component NAME=NS/RELEASE=CHART ...`",
                    common.lockfile.display()
                ))
            })?;
            let components = lock
                .components
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        ReleaseRef::new(&c.release, &c.namespace),
                        c.chart.clone(),
                    )
                })
                .collect();
            (components, terraform_dir.clone())
        }
    };

    let session = Session::open_with_lock(common, existing).await?;
    let minor = live_version(&session.cluster).await?.minor.to_string();
    let helm = session.helm()?;
    let cluster = &session.cluster;
    let existing = session.lock.as_ref();
    let cluster_name = match &args.action {
        Action::Write {
            cluster_name: Some(name),
            ..
        } => name.clone(),
        _ => existing
            .map(|l| l.cluster.name.clone())
            .or_else(|| common.expect_cluster.clone())
            .unwrap_or_else(|| cluster.identity().server_url.clone()),
    };
    let spec = PlatformSpec {
        cluster_name,
        cluster_version: minor,
        components,
        terraform_dir,
    };
    let live = read_live(&helm, &spec).await.map_err(CliError::failed)?;
    match &args.action {
        Action::Write { .. } => {
            live.write(&common.lockfile).map_err(CliError::failed)?;
            writeln!(out, "wrote {}", common.lockfile.display()).map_err(CliError::failed)?;
            Ok(0)
        }
        Action::Diff { .. } => {
            let desired = existing.expect("checked above");
            let drift = desired.diff(&live);
            let text = match common.output {
                OutputFormat::Json => {
                    serde_json::to_string_pretty(&drift).expect("drift serialises") + "\n"
                }
                _ if drift.is_empty() => {
                    "no drift: the live platform matches the lockfile\n".to_string()
                }
                _ => drift.iter().map(|d| format!("{d}\n")).collect(),
            };
            out.write_all(text.as_bytes()).map_err(CliError::failed)?;
            Ok(if drift.is_empty() {
                0
            } else {
                upgrade_checks::checks::EXIT_WARNINGS
            })
        }
    }
}

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_parse_or_name_the_expected_form() {
        let (name, release, chart) = parse_component(
            "karpenter=karpenter/karpenter=oci://public.ecr.aws/karpenter/karpenter",
        )
        .unwrap();
        assert_eq!(name, "karpenter");
        assert_eq!(release, ReleaseRef::new("karpenter", "karpenter"));
        assert_eq!(chart, "oci://public.ecr.aws/karpenter/karpenter");
        let err = parse_component("kserve").unwrap_err();
        assert!(
            err.contains("expected NAME=NAMESPACE/RELEASE=CHART"),
            "{err}"
        );
        assert!(parse_component("a=/r=c").is_err());
    }
}
