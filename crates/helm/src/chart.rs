//! Chart references (repo/name, OCI, local path, URL), chart metadata, CRDs under `crds/`
//! and the kubeVersion check.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::version::HelmMajor;

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartSource {
    /// `repo/chart` from a repository added with `helm repo add`.
    Repo {
        /// The repository's local name.
        repo: String,
        /// The chart's name.
        chart: String,
    },
    /// An OCI artifact (`oci://registry/path/chart`).
    Oci(OciReference),
    /// A chart folder or packaged `.tgz` on disk.
    Path(PathBuf),
    /// A packaged chart at an http(s) URL.
    Url(String),
}

/// A chart and, optionally, its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartRef {
    /// Where it comes from.
    pub source: ChartSource,
    /// The chart version (`--version`); `None` = the latest (or the folder's own).
    pub version: Option<String>,
}

impl ChartRef {
    /// Parses a reference as a user would write it: `oci://...`, `https://...tgz`, a path
    /// (`./x`, `/x`, `../x`, or anything ending in `.tgz`), or `repo/chart`.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidChartRef {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let source = if text.starts_with("oci://") {
            ChartSource::Oci(OciReference::parse(text)?)
        } else if text.starts_with("https://") || text.starts_with("http://") {
            ChartSource::Url(text.to_string())
        } else if text.starts_with('/')
            || text.starts_with("./")
            || text.starts_with("../")
            || text.ends_with(".tgz")
        {
            ChartSource::Path(PathBuf::from(text))
        } else if let Some((repo, chart)) = text.split_once('/') {
            if repo.is_empty() || chart.is_empty() || chart.contains('/') {
                return Err(invalid(
                    "expected `repo/chart`; write local folders as `./path` and OCI as `oci://...`",
                ));
            }
            ChartSource::Repo {
                repo: repo.to_string(),
                chart: chart.to_string(),
            }
        } else {
            return Err(invalid(
                "a bare name is ambiguous: write `repo/chart`, `./path` or `oci://registry/path/chart`",
            ));
        };
        Ok(ChartRef {
            source,
            version: None,
        })
    }

    /// `repo/chart`.
    pub fn repo(repo: impl Into<String>, chart: impl Into<String>) -> Self {
        ChartRef {
            source: ChartSource::Repo {
                repo: repo.into(),
                chart: chart.into(),
            },
            version: None,
        }
    }

    /// A chart folder or `.tgz`.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        ChartRef {
            source: ChartSource::Path(path.into()),
            version: None,
        }
    }

    /// An `oci://` reference; a tag in it becomes the version.
    pub fn oci(url: &str) -> Result<Self> {
        let reference = OciReference::parse(url)?;
        let version = reference.tag.clone();
        Ok(ChartRef {
            source: ChartSource::Oci(reference),
            version,
        })
    }

    /// (builder) Pins the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The chart's name as far as the reference tells (the folder name for a path).
    pub fn chart_name(&self) -> String {
        match &self.source {
            ChartSource::Repo { chart, .. } => chart.clone(),
            ChartSource::Oci(oci) => oci.chart_name().to_string(),
            ChartSource::Path(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".tgz").to_string())
                .unwrap_or_default(),
            ChartSource::Url(url) => url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".tgz")
                .to_string(),
        }
    }

    /// The chart named `name` published beside this one at `version`, such as the CRD chart
    /// of a chart that ships its CRDs separately (`karpenter-crd` beside `karpenter`): the
    /// same repository, OCI path or URL folder with the last name replaced; for a folder on
    /// disk, the sibling folder or packaged chart with that name (`None` when there is none).
    pub fn companion(&self, name: &str, version: &str) -> Option<ChartRef> {
        let source = match &self.source {
            ChartSource::Repo { repo, .. } => ChartSource::Repo {
                repo: repo.clone(),
                chart: name.to_string(),
            },
            ChartSource::Oci(oci) => {
                let (parent, _) = oci.repository.rsplit_once('/').unwrap_or(("", ""));
                let repository = if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{parent}/{name}")
                };
                ChartSource::Oci(OciReference {
                    registry: oci.registry.clone(),
                    repository,
                    tag: None,
                    digest: None,
                })
            }
            ChartSource::Path(path) => {
                let parent = path.parent()?;
                let packaged = parent.join(format!("{name}-{version}.tgz"));
                let named_folder = parent.join(name);
                if named_folder.join("Chart.yaml").is_file() {
                    ChartSource::Path(named_folder)
                } else if packaged.is_file() {
                    ChartSource::Path(packaged)
                } else {
                    // A folder named otherwise whose Chart.yaml names the chart.
                    let mut found = std::fs::read_dir(parent)
                        .ok()?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|dir| {
                            LocalChart::load(dir)
                                .is_ok_and(|chart| chart.metadata.name.trim() == name)
                        })
                        .collect::<Vec<_>>();
                    found.sort();
                    ChartSource::Path(found.into_iter().next()?)
                }
            }
            ChartSource::Url(url) => {
                let (folder, _) = url.rsplit_once('/')?;
                ChartSource::Url(format!("{folder}/{name}-{version}.tgz"))
            }
        };
        Some(ChartRef {
            source,
            version: Some(version.to_string()),
        })
    }

    /// The reference as Helm takes it, followed by `--version V` when pinned.
    pub fn to_args(&self) -> Result<Vec<OsString>> {
        let mut argv: Vec<OsString> = Vec::new();
        let mut version = self.version.clone();
        match &self.source {
            ChartSource::Repo { repo, chart } => argv.push(format!("{repo}/{chart}").into()),
            ChartSource::Path(path) => argv.push(path.clone().into()),
            ChartSource::Url(url) => argv.push(url.clone().into()),
            ChartSource::Oci(oci) => {
                match (&oci.tag, &version) {
                    (Some(tag), Some(v)) if tag != v => {
                        return Err(Error::InvalidChartRef {
                            reference: oci.to_string(),
                            reason: format!("its tag `{tag}` differs from the version `{v}`"),
                        });
                    }
                    (Some(tag), None) => version = Some(tag.clone()),
                    _ => {}
                }
                argv.push(oci.url_without_tag().into());
            }
        }
        if let Some(v) = version {
            argv.push("--version".into());
            argv.push(v.into());
        }
        Ok(argv)
    }
}

impl fmt::Display for ChartRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            ChartSource::Repo { repo, chart } => write!(f, "{repo}/{chart}")?,
            ChartSource::Oci(oci) => f.write_str(&oci.url_without_tag())?,
            ChartSource::Path(path) => write!(f, "{}", path.display())?,
            ChartSource::Url(url) => f.write_str(url)?,
        }
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

/// A parsed `oci://registry[:port]/path/chart[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciReference {
    /// `host` or `host:port`.
    pub registry: String,
    /// The repository path, ending in the chart name (e.g. `karpenter/karpenter`).
    pub repository: String,
    /// The tag (a chart version; Helm writes `+` as `_` in tags).
    pub tag: Option<String>,
    /// A content digest (`sha256:...`).
    pub digest: Option<String>,
}

impl OciReference {
    /// Parses an `oci://` URL.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidChartRef {
            reference: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| invalid("an OCI reference starts with oci://".into()))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected oci://registry/path/chart".into()))?;
        if registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(invalid(format!("`{registry}` is not a registry host")));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => (p, Some(d.to_string())),
            None => (path, None),
        };
        if let Some(d) = &digest {
            let ok = d
                .strip_prefix("sha256:")
                .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                return Err(invalid(format!("`{d}` is not a sha256:<64 hex> digest")));
            }
        }
        // A tag can only follow the last path segment (the registry may have a :port).
        let (repository, tag) = match path.rsplit_once('/') {
            Some((dir, last)) => match last.split_once(':') {
                Some((name, tag)) => (format!("{dir}/{name}"), Some(tag.to_string())),
                None => (path.to_string(), None),
            },
            None => match path.split_once(':') {
                Some((name, tag)) => (name.to_string(), Some(tag.to_string())),
                None => (path.to_string(), None),
            },
        };
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
                })
        };
        if !repository.split('/').all(segment_ok) {
            return Err(invalid(format!(
                "`{repository}` is not a valid repository path (lower-case segments separated by /)"
            )));
        }
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
            if !ok {
                return Err(invalid(format!("`{tag}` is not a valid tag")));
            }
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The chart name: the repository's last segment.
    pub fn chart_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// `oci://registry/repository[@digest]`: the form Helm takes with `--version`.
    pub fn url_without_tag(&self) -> String {
        match &self.digest {
            Some(d) => format!("oci://{}/{}@{d}", self.registry, self.repository),
            None => format!("oci://{}/{}", self.registry, self.repository),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

pub use upgrade_core::constraint::KubeVersionCheck;
pub use upgrade_helm_storage::record::{ChartDependency, ChartMetadata};

/// Evaluates a kubeVersion constraint the way the given Helm major does at install time
/// (the toolkit's one evaluator, [`upgrade_core::constraint::check_kube_version`], with this
/// major's pre-release rule).
pub fn check_kube_version(
    constraint: Option<&str>,
    kube_version: &str,
    helm: HelmMajor,
) -> Result<KubeVersionCheck> {
    Ok(upgrade_core::constraint::check_kube_version(
        constraint,
        kube_version,
        helm.prerelease_rule(),
    )?)
}

/// What upgrading to a chart version means for a cluster: whether Helm will accept its
/// kubeVersion, and which CRDs the upgrade leaves for you to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartCompatibility {
    /// The chart's name.
    pub chart: String,
    /// The chart's version.
    pub version: String,
    /// The chart's appVersion.
    pub app_version: Option<String>,
    /// Whether the chart is marked deprecated.
    pub deprecated: bool,
    /// The kubeVersion check against the target cluster version.
    pub kube_version: KubeVersionCheck,
    /// The CRDs under `crds/` and how to apply them (`None`: the chart ships none).
    pub crds: Option<CrdUpgradeNotice>,
}

impl ChartCompatibility {
    /// Whether nothing blocks the upgrade (CRDs still need applying when listed).
    pub fn is_compatible(&self) -> bool {
        self.kube_version.compatible
    }
}

/// A CustomResourceDefinition shipped in a chart's `crds/` folder.
///
/// Helm installs these on first install and **never updates or deletes them** on upgrade or
/// uninstall: a chart upgrade that changes a CRD needs them applied separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrdInfo {
    /// `plural.group`.
    pub name: String,
    /// The API group.
    pub group: String,
    /// The kind.
    pub kind: String,
    /// The served versions.
    pub versions: Vec<String>,
    /// The file under `crds/`, when read from a folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Splits multi-document YAML. Besides `---` lines, a top-level `apiVersion:` in a document
/// that already has one starts a new document: Helm 3's `show crds` concatenates the files
/// under `crds/` without separators when they do not start with `---`.
fn split_documents(yaml: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    let mut has_api_version = false;
    for line in yaml.lines() {
        let separator = line.trim_end() == "---" || line.starts_with("--- ");
        let second_api_version = line.starts_with("apiVersion:") && has_api_version;
        if separator || second_api_version {
            documents.push(String::new());
            has_api_version = false;
            if separator {
                continue;
            }
        }
        if line.starts_with("apiVersion:") {
            has_api_version = true;
        }
        let current = documents.last_mut().expect("never empty");
        current.push_str(line);
        current.push('\n');
    }
    documents.retain(|d| !d.trim().is_empty());
    documents
}

/// Every object in multi-document YAML (a manifest as `helm template` or `helm get manifest`
/// prints it), in order; empty documents are skipped.
pub fn manifest_objects(yaml: &str, file: Option<&str>) -> Result<Vec<serde_json::Value>> {
    let mut objects = Vec::new();
    for document in split_documents(yaml) {
        let value: serde_json::Value =
            serde_norway::from_str(&document).map_err(|e| Error::Chart {
                path: PathBuf::from(file.unwrap_or("manifest")),
                message: format!("not valid YAML: {e}"),
            })?;
        if value.is_object() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// The CustomResourceDefinitions in multi-document YAML (a `crds/` file, `helm show crds` or
/// `helm template` output), whole, in order.
pub fn manifest_crds(yaml: &str, file: Option<&str>) -> Result<Vec<serde_json::Value>> {
    Ok(manifest_objects(yaml, Some(file.unwrap_or("crds")))?
        .into_iter()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition"))
        .collect())
}

/// Extracts the CRDs from multi-document YAML (a `crds/` file or `helm show crds` output).
pub fn parse_crds(yaml: &str, file: Option<&str>) -> Result<Vec<CrdInfo>> {
    let crds = manifest_crds(yaml, file)?;
    Ok(crds
        .iter()
        .map(|value| {
            let text = |ptr: &str| {
                value
                    .pointer(ptr)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let versions = value
                .pointer("/spec/versions")
                .and_then(|v| v.as_array())
                .map(|list| {
                    list.iter()
                        .filter(|v| v.get("served").and_then(|s| s.as_bool()).unwrap_or(true))
                        .filter_map(|v| v.get("name").and_then(|n| n.as_str()).map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            CrdInfo {
                name: text("/metadata/name"),
                group: text("/spec/group"),
                kind: text("/spec/names/kind"),
                versions,
                file: file.map(String::from),
            }
        })
        .collect())
}

/// A chart folder on disk: its Chart.yaml and its `crds/`.
#[derive(Debug, Clone)]
pub struct LocalChart {
    /// The folder.
    pub path: PathBuf,
    /// Chart.yaml.
    pub metadata: ChartMetadata,
    /// The CRDs under `crds/` (any depth; `.yaml`, `.yml`, `.json`), sorted by file.
    pub crds: Vec<CrdInfo>,
}

impl LocalChart {
    /// Reads a chart folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let chart_err = |message: String| Error::Chart {
            path: dir.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(dir.join("Chart.yaml"))
            .map_err(|e| chart_err(format!("no readable Chart.yaml ({e})")))?;
        let metadata: ChartMetadata = serde_norway::from_str(&text)
            .map_err(|e| chart_err(format!("Chart.yaml is not valid: {e}")))?;
        let mut files = Vec::new();
        collect_files(&dir.join("crds"), &mut files)
            .map_err(|e| chart_err(format!("cannot read crds/ ({e})")))?;
        files.sort();
        let mut crds = Vec::new();
        for file in files {
            let rel = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&file)
                .map_err(|e| chart_err(format!("cannot read {rel} ({e})")))?;
            crds.extend(parse_crds(&text, Some(&rel))?);
        }
        Ok(LocalChart {
            path: dir.to_path_buf(),
            metadata,
            crds,
        })
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// What an upgrade to a chart version means for its CRDs: Helm will not touch them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrdUpgradeNotice {
    /// The chart (with version).
    pub chart: String,
    /// The CRDs it ships.
    pub crds: Vec<CrdInfo>,
    /// The command that applies them (server-side, so large CRDs fit).
    pub apply_command: String,
}

impl CrdUpgradeNotice {
    /// The notice for `chart`'s CRDs, or `None` when it ships none.
    pub fn for_chart(chart: &ChartRef, crds: Vec<CrdInfo>) -> Option<Self> {
        if crds.is_empty() {
            return None;
        }
        let reference = chart
            .to_args()
            .map(|args| {
                args.iter()
                    .map(|a| upgrade_core::process::shell_quote(&a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| chart.to_string());
        Some(CrdUpgradeNotice {
            chart: chart.to_string(),
            crds,
            apply_command: format!(
                "helm show crds {reference} | kubectl apply --server-side --force-conflicts -f -"
            ),
        })
    }
}

impl fmt::Display for CrdUpgradeNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ships {} CRD(s) under crds/, which `helm upgrade` does not update:",
            self.chart,
            self.crds.len()
        )?;
        for crd in &self.crds {
            writeln!(
                f,
                "  - {} ({}, versions {})",
                crd.name,
                crd.kind,
                crd.versions.join(", ")
            )?;
        }
        write!(
            f,
            "apply them before the upgrade with:\n  {}",
            self.apply_command
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(chart: &ChartRef) -> Vec<String> {
        chart
            .to_args()
            .unwrap()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn parses_the_seed_references() {
        let karpenter = ChartRef::parse("oci://public.ecr.aws/karpenter/karpenter")
            .unwrap()
            .with_version("1.6.0");
        assert_eq!(
            args(&karpenter),
            [
                "oci://public.ecr.aws/karpenter/karpenter",
                "--version",
                "1.6.0"
            ]
        );
        assert_eq!(karpenter.chart_name(), "karpenter");

        let kserve = ChartRef::parse("kserve/kserve").unwrap();
        assert_eq!(args(&kserve), ["kserve/kserve"]);
        let local = ChartRef::parse("./charts/mlflow").unwrap();
        assert_eq!(local.source, ChartSource::Path("./charts/mlflow".into()));
        assert_eq!(local.chart_name(), "mlflow");
    }

    #[test]
    fn oci_tags_ports_and_digests() {
        let r = OciReference::parse("oci://localhost:5000/charts/argo-workflows:0.45.1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "charts/argo-workflows");
        assert_eq!(r.tag.as_deref(), Some("0.45.1"));
        assert_eq!(
            r.to_string(),
            "oci://localhost:5000/charts/argo-workflows:0.45.1"
        );

        let chart = ChartRef::oci("oci://localhost:5000/charts/argo-workflows:0.45.1").unwrap();
        assert_eq!(
            args(&chart),
            [
                "oci://localhost:5000/charts/argo-workflows",
                "--version",
                "0.45.1"
            ]
        );
        let clash = chart.with_version("0.46.0");
        assert!(
            clash
                .to_args()
                .unwrap_err()
                .to_string()
                .contains("differs from the version")
        );

        let digest = format!("oci://r.io/a/b@sha256:{}", "ab".repeat(32));
        let r = OciReference::parse(&digest).unwrap();
        assert_eq!(r.url_without_tag(), digest);

        for bad in [
            "oci://",
            "oci://registry-only",
            "oci://r.io/Upper/case",
            "oci://r.io/a/b@md5:00",
            "oci://r.io/a/b:bad tag",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn bare_names_are_ambiguous() {
        let err = ChartRef::parse("karpenter").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(ChartRef::parse("a/b/c").is_err());
    }

    #[test]
    fn kube_version_check_explains_the_prerelease_trap() {
        let eks = "v1.30.4-eks-a737599";
        for helm in [HelmMajor::V3, HelmMajor::V4] {
            let check = check_kube_version(Some(">=1.28.0"), eks, helm).unwrap();
            assert!(!check.compatible);
            assert!(check.reason.unwrap().contains("-0 suffix"));
            assert!(
                check_kube_version(Some(">=1.28.0-0"), eks, helm)
                    .unwrap()
                    .compatible
            );
            let check = check_kube_version(Some(">=1.25.0-0 <1.30.0-0"), "v1.31.0", helm).unwrap();
            assert!(!check.compatible);
            let reason = check.reason.unwrap();
            assert!(
                reason.contains("outside the chart's kubeVersion"),
                "{reason}"
            );
            assert!(check_kube_version(None, "1.31.0", helm).unwrap().compatible);
        }
        let mixed = Some(">=1.28.0-0 <1.32.0");
        let v3 = check_kube_version(mixed, eks, HelmMajor::V3).unwrap();
        assert!(!v3.compatible);
        assert!(v3.reason.unwrap().contains("Helm 4 accepts it"));
        assert!(
            check_kube_version(mixed, eks, HelmMajor::V4)
                .unwrap()
                .compatible
        );
    }

    #[test]
    fn crds_are_found_in_multi_document_yaml() {
        let yaml = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: workflows.argoproj.io\nspec:\n  group: argoproj.io\n  names:\n    kind: Workflow\n  versions:\n  - name: v1alpha1\n    served: true\n  - name: v0\n    served: false\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";
        let crds = parse_crds(yaml, Some("crds/workflow.yaml")).unwrap();
        assert_eq!(crds.len(), 1);
        // Helm 3's `show crds` joins files without a separator.
        let joined = format!(
            "{yaml}{}",
            yaml.replace("workflows.argoproj.io", "workflowtemplates.argoproj.io")
                .split("---")
                .next()
                .unwrap()
        );
        let names: Vec<String> = parse_crds(&joined, None)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["workflows.argoproj.io", "workflowtemplates.argoproj.io"]
        );
        assert_eq!(crds[0].name, "workflows.argoproj.io");
        assert_eq!(crds[0].kind, "Workflow");
        assert_eq!(crds[0].versions, ["v1alpha1"]);
        let notice = CrdUpgradeNotice::for_chart(
            &ChartRef::repo("argo", "argo-workflows").with_version("0.46.0"),
            crds,
        )
        .unwrap();
        assert_eq!(
            notice.apply_command,
            "helm show crds argo/argo-workflows --version 0.46.0 | kubectl apply --server-side --force-conflicts -f -"
        );
    }
}
