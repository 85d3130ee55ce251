//! A read-only report of every Helm release in the cluster (`upgrade-releases`): its chart
//! and app version, the newest version a chart source offers (a folder of charts or a
//! repository's `index.yaml`), and whether that version's `kubeVersion` allows the next
//! Kubernetes minors, as the Helm in use evaluates it. Nothing changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_core::version::{KubeMinor, parse_loose_semver};
use upgrade_helm::ListOptions;

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};

/// Where the newest versions come from, and how far ahead to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReportSpec {
    /// A folder of charts (each `Chart.yaml` under it, at most four levels down).
    #[serde(default)]
    pub charts: Option<PathBuf>,
    /// A chart repository's `index.yaml`.
    #[serde(default)]
    pub index: Option<PathBuf>,
    /// How many minors after the cluster's to check each chart's `kubeVersion` against.
    pub next_minors: u32,
}

/// One chart version a source offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferedChart {
    /// The chart version.
    pub version: String,
    /// Its app version.
    #[serde(default)]
    pub app_version: Option<String>,
    /// Its Kubernetes constraint.
    #[serde(default)]
    pub kube_version: Option<String>,
}

/// Whether a chart allows one Kubernetes minor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinorFit {
    /// The minor, e.g. `1.33`.
    pub minor: String,
    /// Whether the chart's `kubeVersion` allows it.
    pub allowed: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    /// `namespace/name`.
    pub release: String,
    /// The chart's name.
    pub chart: String,
    /// The chart version running.
    pub version: String,
    /// The app version running.
    pub app_version: String,
    /// The release's status.
    pub status: String,
    /// The newest version the source offers (`None`: the source does not have the chart).
    pub newest: Option<OfferedChart>,
    /// The newest version's (else the running one's, when the source has it) `kubeVersion`
    /// against the next minors.
    pub next_minors: Vec<MinorFit>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseReport {
    /// The cluster's minor.
    pub cluster_minor: String,
    /// Every release, by namespace and name.
    pub releases: Vec<ReleaseRow>,
}

impl ReleaseReport {
    /// A table for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{} Helm release(s) on Kubernetes {}\n",
            self.releases.len(),
            self.cluster_minor
        );
        for row in &self.releases {
            let newest = match &row.newest {
                None => "not in the source".to_string(),
                Some(n) if parse_loose_semver(&n.version) == parse_loose_semver(&row.version) => {
                    "up to date".to_string()
                }
                Some(n) => format!(
                    "newest {} (app {})",
                    n.version,
                    n.app_version.as_deref().unwrap_or("none")
                ),
            };
            let fits: Vec<String> = row
                .next_minors
                .iter()
                .map(|f| format!("{} {}", f.minor, if f.allowed { "ok" } else { "refused" }))
                .collect();
            out.push_str(&format!(
                "  {}: {} {} (app {}, {}); {newest}{}\n",
                row.release,
                row.chart,
                row.version,
                if row.app_version.is_empty() {
                    "none"
                } else {
                    &row.app_version
                },
                row.status,
                if fits.is_empty() {
                    String::new()
                } else {
                    format!("; kubeVersion: {}", fits.join(", "))
                }
            ));
        }
        out
    }

    /// 3 when a chart's `kubeVersion` refuses one of the next minors, else 0.
    pub fn exit_code(&self) -> u8 {
        let refused = self
            .releases
            .iter()
            .any(|r| r.next_minors.iter().any(|f| !f.allowed));
        if refused { 3 } else { 0 }
    }
}

/// `name-version` as `helm list` prints a chart, split where the rest is a version.
pub fn split_chart(chart: &str) -> (String, String) {
    for (i, _) in chart.match_indices('-') {
        let rest = &chart[i + 1..];
        if parse_loose_semver(rest).is_some() {
            return (chart[..i].to_string(), rest.to_string());
        }
    }
    (chart.to_string(), String::new())
}

fn charts_in_folder(
    dir: &Path,
    depth: u32,
    out: &mut BTreeMap<String, Vec<OfferedChart>>,
) -> Result<()> {
    let chart_file = dir.join("Chart.yaml");
    if chart_file.is_file() {
        let text = std::fs::read_to_string(&chart_file)
            .map_err(|e| FlowError::failed(format!("read {}", chart_file.display()), e))?;
        if let Ok(chart) = serde_norway::from_str::<upgrade_helm::ChartMetadata>(&text) {
            out.entry(chart.name.trim().to_string())
                .or_default()
                .push(OfferedChart {
                    version: chart.version,
                    app_version: chart.app_version,
                    kube_version: chart.kube_version,
                });
        }
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| FlowError::failed(format!("read the folder {}", dir.display()), e))?;
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            charts_in_folder(&entry.path(), depth - 1, out)?;
        }
    }
    Ok(())
}

/// The charts a source offers, by name.
fn catalog(spec: &ReleaseReportSpec) -> Result<BTreeMap<String, Vec<OfferedChart>>> {
    let mut out = BTreeMap::new();
    if let Some(dir) = &spec.charts {
        if !dir.is_dir() {
            return Err(FlowError::invalid(
                "charts",
                format!("{} is not a folder", dir.display()),
                format!("set {} to a folder of charts", field("charts")),
            ));
        }
        charts_in_folder(dir, 4, &mut out)?;
    }
    if let Some(index) = &spec.index {
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            entries: BTreeMap<String, Vec<OfferedChart>>,
        }
        let text = std::fs::read_to_string(index).map_err(|e| {
            FlowError::invalid(
                "index",
                format!("cannot read {}: {e}", index.display()),
                format!("set {} to a repository's index.yaml", field("index")),
            )
        })?;
        let parsed: Index = serde_norway::from_str(&text).map_err(|e| {
            FlowError::invalid(
                "index",
                format!("{} is not a repository index: {e}", index.display()),
                "give the index.yaml a chart repository serves",
            )
        })?;
        for (name, versions) in parsed.entries {
            out.entry(name).or_default().extend(versions);
        }
    }
    Ok(out)
}

/// Reads every release and compares it with the source.
pub async fn report(ctx: &FlowContext, spec: &ReleaseReportSpec) -> Result<ReleaseReport> {
    let offered = catalog(spec)?;
    let helm = ctx.helm()?;
    let major = helm
        .version()
        .await
        .map_err(|e| FlowError::failed("read the Helm version", e))?
        .major();
    let minor: KubeMinor = super::live_version(ctx).await?.minor;
    let releases = helm
        .list(&ListOptions::default())
        .await
        .map_err(|e| FlowError::failed("list the Helm releases", e))?;
    let mut rows = Vec::new();
    for release in releases {
        let (chart, version) = split_chart(&release.chart);
        let versions = offered.get(&chart);
        let newest = versions
            .and_then(|v| v.iter().max_by_key(|o| parse_loose_semver(&o.version)))
            .cloned();
        let judged = newest.clone().or_else(|| {
            versions.and_then(|v| {
                v.iter()
                    .find(|o| parse_loose_semver(&o.version) == parse_loose_semver(&version))
                    .cloned()
            })
        });
        let mut next_minors = Vec::new();
        if let Some(judged) = &judged {
            let mut next = minor;
            for _ in 0..spec.next_minors {
                next = next.next();
                let check = upgrade_helm::chart::check_kube_version(
                    judged.kube_version.as_deref(),
                    &format!("v{}.{}.0", next.major, next.minor),
                    major,
                )
                .map_err(|e| FlowError::failed(format!("check the kubeVersion of {chart}"), e))?;
                next_minors.push(MinorFit {
                    minor: next.to_string(),
                    allowed: check.compatible,
                    reason: check.reason,
                });
            }
        }
        rows.push(ReleaseRow {
            release: format!("{}/{}", release.namespace, release.name),
            chart,
            version,
            app_version: release.app_version,
            status: release.status.to_string(),
            newest,
            next_minors,
        });
    }
    rows.sort_by(|a, b| a.release.cmp(&b.release));
    Ok(ReleaseReport {
        cluster_minor: minor.to_string(),
        releases: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_split_at_their_version() {
        assert_eq!(
            split_chart("karpenter-crd-1.14.0"),
            ("karpenter-crd".into(), "1.14.0".into())
        );
        assert_eq!(
            split_chart("kserve-v0.15.2"),
            ("kserve".into(), "v0.15.2".into())
        );
        assert_eq!(
            split_chart("cert-manager-v1.16.0-rc.1"),
            ("cert-manager".into(), "v1.16.0-rc.1".into())
        );
    }
}
