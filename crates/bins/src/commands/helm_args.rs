//! The flags of a Helm component upgrade (`upgrade-karpenter`, `upgrade-kserve upgrade`,
//! `upgrade-argo-workflows`) and the run that all three share.

use std::io::Write;
use std::path::PathBuf;

use upgrade_flows::flows::helm_component::{self, ComponentUpgradeSpec};

use crate::cli::{ClusterArgs, OutputArgs, RunArgs, context, execute};
use crate::exit::{CliError, Flags};

/// The chart, version and values (defaults per component, see each command's help).
#[derive(Debug, Clone, clap::Args)]
pub struct HelmArgs {
    /// The chart: `oci://...`, `repo/chart`, or a local chart folder or `.tgz`.
    #[arg(long, value_name = "REF")]
    pub chart: Option<String>,
    /// The chart version to upgrade to (`1.6.0` or `v1.6.0`); required.
    #[arg(long, value_name = "X.Y.Z", required_unless_present = "print_version")]
    pub chart_version: Option<String>,
    /// Print this command's version. Listed in the help's footer: it once took the chart
    /// version, so given a value it is refused and names `--chart-version`.
    #[arg(long = "version", num_args = 0..=1, value_name = "X.Y.Z", hide = true)]
    pub print_version: Option<Option<String>>,
    /// The values file with the component's pins (must be a YAML mapping).
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// The Helm release.
    #[arg(long, value_name = "NAME")]
    pub release: Option<String>,
    /// The release's namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Pin this image tag in the values file first (seed 000 step 1), keeping the file's
    /// comments and layout; a rollback puts the file's bytes back.
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,
    /// Where the values file pins the image tag.
    #[arg(long, value_name = "KEY.PATH", default_value = "controller.image.tag")]
    pub image_tag_key: String,
    /// The chart of the release that holds the component's CRDs (`karpenter-crd`,
    /// `kserve-crd`), upgraded first to the same version; by default the chart of that name
    /// beside `--chart` (same repository, OCI path or folder).
    #[arg(long, value_name = "REF")]
    pub crd_chart: Option<String>,
}

impl HelmArgs {
    /// What `--version` asks for, when given: this command's version (`Ok`), or the old
    /// spelling of `--chart-version` (a bad-input error that names it).
    pub fn version_request(&self, command: &str) -> Option<Result<String, CliError>> {
        Some(match self.print_version.as_ref()? {
            None => Ok(format!("{command} {}", env!("CARGO_PKG_VERSION"))),
            Some(chart) => Err(CliError::usage(format!(
                "`--version` prints {command}'s version; the chart version to upgrade to is \
                 `--chart-version {chart}`"
            ))),
        })
    }

    /// The chart version (clap requires it unless `--version` was given).
    pub fn chart_version(&self) -> &str {
        self.chart_version.as_deref().unwrap_or_default()
    }

    /// The spec: the component's seed defaults with these flags over them.
    pub fn spec(
        &self,
        seed: ComponentUpgradeSpec,
        timeout: Option<std::time::Duration>,
    ) -> ComponentUpgradeSpec {
        ComponentUpgradeSpec {
            chart: self.chart.clone().unwrap_or(seed.chart),
            values: self.values.clone().unwrap_or(seed.values),
            release: self.release.clone().unwrap_or(seed.release),
            namespace: self.namespace.clone().unwrap_or(seed.namespace),
            image_tag: self.image_tag.clone(),
            image_tag_key: self.image_tag_key.clone(),
            crd_chart: self.crd_chart.clone(),
            timeout: timeout.unwrap_or(seed.timeout),
            ..seed
        }
    }
}

/// Plans and (with `--apply`) runs a component upgrade.
pub async fn run_upgrade(
    spec: ComponentUpgradeSpec,
    cluster: &ClusterArgs,
    run: &RunArgs,
    output: &OutputArgs,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let flags = Flags::default();
    helm_component::check(&spec).map_err(|e| CliError::from_flow(e, &flags))?;
    let ctx = context(&spec.command, cluster, Some(run)).await?;
    let planned = helm_component::plan(&ctx, &spec)
        .await
        .map_err(|e| CliError::from_flow(e, &flags))?;
    execute(&ctx, planned, run, output, &flags, out).await
}
