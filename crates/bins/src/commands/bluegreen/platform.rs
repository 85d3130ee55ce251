//! `upgrade-bluegreen platform`.

use std::path::PathBuf;
use std::time::Duration;

use upgrade_flows::flows::bluegreen::{GreenRelease, PlatformSpec};
use upgrade_helm::{ChartRef, ReleaseRef};

use super::GreenArgs;

/// `platform`'s flags.
#[derive(Debug, clap::Args)]
pub struct PlatformArgs {
    /// The green cluster.
    #[command(flatten)]
    pub green: GreenArgs,
    /// A release to install on green, in order: `NAMESPACE/NAME=CHART[@VERSION]` (a folder,
    /// an archive, repo/chart or oci://; the version blue runs when none is given). Repeat.
    #[arg(long = "release", value_name = "NS/NAME=CHART[@VERSION]", value_parser = green_release, required = true)]
    pub releases: Vec<GreenRelease>,
    /// A values file for one release, after blue's values: `NAME=FILE` (green's own
    /// settings, e.g. the cloned database's endpoint). Repeat.
    #[arg(long = "values", value_name = "NAME=FILE", value_parser = name_and_file)]
    pub values: Vec<(String, PathBuf)>,
    /// Install this release without blue's values (one blue does not run). Repeat.
    #[arg(long, value_name = "NAME")]
    pub no_blue_values: Vec<String>,
    /// Helm's wait for each release, e.g. `10m`.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration, default_value = "10m")]
    pub release_timeout: Duration,
}

fn green_release(text: &str) -> Result<GreenRelease, String> {
    let usage = "NAMESPACE/NAME=CHART[@VERSION], e.g. kserve/kserve=oci://ghcr.io/kserve/charts/kserve@v0.15.2";
    let (release, chart) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not {usage}"))?;
    let (namespace, name) = release
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| format!("`{release}` is not NAMESPACE/NAME ({usage})"))?;
    // A version after the last `@` (an OCI digest's `@sha256:` is not one).
    let (chart, version) = match chart.rsplit_once('@') {
        Some((chart, version)) if !version.contains(':') && !version.is_empty() => {
            (chart, Some(version.to_string()))
        }
        _ => (chart, None),
    };
    let mut chart = ChartRef::parse(chart).map_err(|e| e.to_string())?;
    chart.version = version;
    Ok(GreenRelease {
        release: ReleaseRef::new(name, namespace),
        chart,
        values_files: Vec::new(),
        blue_values: true,
    })
}

fn name_and_file(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("`{text}` is not NAME=FILE")),
    }
}

impl PlatformArgs {
    pub(crate) fn spec(
        &self,
        blue_kubeconfig: Option<&PathBuf>,
    ) -> Result<PlatformSpec, crate::exit::CliError> {
        let mut releases = self.releases.clone();
        let named = |name: &str| {
            releases
                .iter()
                .position(|r| r.release.name == name || r.release.to_string() == name)
        };
        let unknown = |flag: &str, name: &str| {
            crate::exit::CliError::usage(format!(
                "{flag} {name}: no --release of that name (give --release NAMESPACE/{name}=CHART first)"
            ))
        };
        let mut files = Vec::new();
        for (name, file) in &self.values {
            files.push((
                named(name).ok_or_else(|| unknown("--values", name))?,
                file.clone(),
            ));
        }
        let mut without = Vec::new();
        for name in &self.no_blue_values {
            without.push(named(name).ok_or_else(|| unknown("--no-blue-values", name))?);
        }
        for (i, file) in files {
            releases[i].values_files.push(file);
        }
        for i in without {
            releases[i].blue_values = false;
        }
        Ok(PlatformSpec {
            green: self.green.cluster(blue_kubeconfig),
            releases,
            timeout_secs: self.release_timeout.as_secs(),
        })
    }
}
