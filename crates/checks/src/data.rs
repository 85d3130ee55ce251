//! The version data the checks rely on, embedded in the binary, every row with its source and
//! the day it was checked.
//!
//! Three files under `crates/checks/data/`:
//! - `removed_apis.yaml`: API versions removed (or deprecated) per kind, replacement and since
//!   when the replacement is served (the official migration guide, plus later alpha/beta
//!   removals from pluto with its known errors corrected);
//! - `eks.yaml`: the EKS support calendar and the EKS add-on versions per minor;
//! - `compatibility.yaml`: supported and tested Kubernetes ranges of Karpenter, KServe, Argo
//!   Workflows, Argo CD and cert-manager.
//!
//! The data ends somewhere; [`Data::coverage`] says where, so a target beyond it becomes a
//! warning that names the end, never a silent pass.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize};

use upgrade_core::version::{KubeMinor, parse_loose_semver};

const REMOVED_APIS_YAML: &str = include_str!("../data/removed_apis.yaml");
const EKS_YAML: &str = include_str!("../data/eks.yaml");
const COMPATIBILITY_YAML: &str = include_str!("../data/compatibility.yaml");

/// Data that failed to load or validate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data file is not valid YAML of the expected shape.
    #[error("data file `{file}` does not parse: {source}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// The YAML error (with line and column).
        #[source]
        source: serde_norway::Error,
    },
    /// A row parses but breaks a rule (unknown source, bad date, inverted range…).
    #[error("data file `{file}`, row {row} ({what}): {reason}")]
    Invalid {
        /// Which file.
        file: &'static str,
        /// The 1-based row number within its list.
        row: usize,
        /// What the row describes.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A data file of a data folder could not be read.
    #[error("cannot read the data file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A data folder holds none of the three files.
    #[error(
        "{} holds none of removed_apis.yaml, eks.yaml and compatibility.yaml; give the folder that holds the newer data files",
        dir.display()
    )]
    NoDataFiles {
        /// The folder.
        dir: PathBuf,
    },
    /// A file of a data folder is broken.
    #[error("in the data folder {}: {source}", dir.display())]
    InDir {
        /// The folder.
        dir: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<DataError>,
    },
}

/// A calendar day, `YYYY-MM-DD` (UTC). Compares chronologically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IsoDate(String);

impl IsoDate {
    /// Parses `YYYY-MM-DD` with a plausible month and day.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return None;
        }
        let month: u32 = text[5..7].parse().ok()?;
        let day: u32 = text[8..10].parse().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then(|| Self(text.to_owned()))
    }

    /// The date as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(&self, later: &IsoDate) -> i64 {
        later.day_number() - self.day_number()
    }

    /// Days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's days-from-civil).
    fn day_number(&self) -> i64 {
        let number = |range: std::ops::Range<usize>| self.0[range].parse::<i64>().unwrap_or(0);
        let (y, m, d) = (number(0..4), number(5..7), number(8..10));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }
}

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IsoDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IsoDate::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a date in the form YYYY-MM-DD"))
        })
    }
}

/// Where a row's facts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A human title.
    pub title: String,
    /// A public address.
    pub url: String,
    /// The exact document read (repository@commit:path, or which snapshot).
    pub reference: String,
}

/// One removed (or deprecated) API version of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedApi {
    /// `group/version` as written in manifests (`policy/v1beta1`).
    pub api_version: String,
    /// The kind (`PodDisruptionBudget`).
    pub kind: String,
    /// The minor that deprecated it, when known.
    #[serde(default)]
    pub deprecated_in: Option<KubeMinor>,
    /// The first minor that no longer serves it; `None` = deprecated, not yet removed.
    #[serde(default)]
    pub removed_in: Option<KubeMinor>,
    /// The `group/version` to migrate to; `None` = no replacement API.
    #[serde(default)]
    pub replacement: Option<String>,
    /// The first minor that serves the replacement.
    #[serde(default)]
    pub replacement_available_in: Option<KubeMinor>,
    /// A correction or caveat.
    #[serde(default)]
    pub note: Option<String>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked against its source.
    pub checked: IsoDate,
}

/// How sure the calendar row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// AWS's own table.
    Official,
    /// Two non-AWS sources agree.
    Secondary,
    /// One non-authoritative source.
    Unverified,
}

/// One EKS Kubernetes version in the support calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EksRelease {
    /// The Kubernetes minor.
    pub minor: KubeMinor,
    /// When EKS released it.
    pub eks_release: IsoDate,
    /// When standard support ends (extended support billing starts).
    pub end_of_standard_support: IsoDate,
    /// When extended support ends (EKS then upgrades the control plane itself), when known.
    #[serde(default)]
    pub end_of_extended_support: Option<IsoDate>,
    /// How sure the dates are.
    pub confidence: Confidence,
    /// What an upgrade to this minor changes on EKS, worth knowing before the hop.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Key into the file's `sources` for `notes`.
    #[serde(default)]
    pub notes_source: Option<String>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked.
    pub checked: IsoDate,
}

/// The newest documented version of an EKS add-on for one Kubernetes minor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonVersion {
    /// `coredns`, `kube-proxy` or `vpc-cni`.
    pub addon: String,
    /// The Kubernetes minor.
    pub minor: KubeMinor,
    /// The newest documented add-on version (`v1.11.4-eksbuild.33`).
    pub version: String,
    /// The version EKS installs by default for the minor, when a source gives it.
    #[serde(default)]
    pub default_version: Option<String>,
    /// A caveat about the row.
    #[serde(default)]
    pub note: Option<String>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked.
    pub checked: IsoDate,
}

/// A Kubernetes minor released upstream (or due) that the EKS calendar does not list yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRelease {
    /// The Kubernetes minor.
    pub minor: KubeMinor,
    /// When upstream released it.
    #[serde(default)]
    pub released: Option<IsoDate>,
    /// When upstream plans to release it (not out yet).
    #[serde(default)]
    pub due: Option<IsoDate>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked.
    pub checked: IsoDate,
}

impl fmt::Display for UpstreamRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.released, &self.due) {
            (Some(day), _) => write!(
                f,
                "Kubernetes {} was released upstream on {day} but is not on EKS yet",
                self.minor
            ),
            (None, Some(day)) => write!(
                f,
                "Kubernetes {} is not released yet (due upstream on {day})",
                self.minor
            ),
            (None, None) => write!(f, "Kubernetes {} is not on EKS yet", self.minor),
        }
    }
}

/// An API version served by a component's CRDs (cert-manager, the CSI snapshot CRDs): removed
/// by a release of that component whatever the cluster's minor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentApi {
    /// `group/version` as written in manifests (`cert-manager.io/v1alpha2`).
    pub api_version: String,
    /// The kind (`Issuer`).
    pub kind: String,
    /// The component whose releases version it (`cert-manager`).
    pub component: String,
    /// The component release that deprecated it, when known.
    #[serde(default)]
    pub deprecated_in: Option<String>,
    /// The first component release that no longer serves it; `None` = deprecated only.
    #[serde(default)]
    pub removed_in: Option<String>,
    /// The `group/version` to migrate to.
    #[serde(default)]
    pub replacement: Option<String>,
    /// A correction or caveat.
    #[serde(default)]
    pub note: Option<String>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked against its source.
    pub checked: IsoDate,
}

/// An inclusive range of Kubernetes minors; `max: None` = no published upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinorRange {
    /// The oldest minor in the range.
    pub min: KubeMinor,
    /// The newest minor in the range.
    #[serde(default)]
    pub max: Option<KubeMinor>,
}

impl MinorRange {
    /// Whether `minor` lies in the range.
    pub fn contains(&self, minor: KubeMinor) -> bool {
        minor >= self.min && self.max.is_none_or(|max| minor <= max)
    }
}

impl fmt::Display for MinorRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(max) => write!(f, "{}–{}", self.min, max),
            None => write!(f, "{}+", self.min),
        }
    }
}

/// Which Kubernetes minors one version line of a component supports or was tested with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentCompat {
    /// `karpenter`, `kserve`, `argo-workflows`, `argo-cd` or `cert-manager`.
    pub component: String,
    /// `1.0.x` or `0.14` (a minor line) or `1.0.5` (that patch and later in the line).
    pub version: String,
    /// The vendor's published supported range (outside it is a blocker).
    #[serde(default)]
    pub supported: Option<MinorRange>,
    /// What upstream tested or recommends (outside it is a warning).
    #[serde(default)]
    pub tested: Option<MinorRange>,
    /// A caveat.
    #[serde(default)]
    pub note: Option<String>,
    /// Key into the file's `sources`.
    pub source: String,
    /// When the row was checked.
    pub checked: IsoDate,
}

impl ComponentCompat {
    /// (major, minor, first patch) of the row's version, and whether it names a patch.
    fn line(&self) -> Option<(u64, u64, u64, bool)> {
        let trimmed = self.version.trim_end_matches(".x");
        let parts: Vec<&str> = trimmed.split('.').collect();
        let major = parts.first()?.parse().ok()?;
        let minor = parts.get(1)?.parse().ok()?;
        match parts.get(2) {
            Some(patch) => Some((major, minor, patch.parse().ok()?, true)),
            None => Some((major, minor, 0, false)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemovedApisFile {
    sources: BTreeMap<String, Source>,
    apis: Vec<RemovedApi>,
    #[serde(default)]
    component_apis: Vec<ComponentApi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EksFile {
    sources: BTreeMap<String, Source>,
    calendar: Vec<EksRelease>,
    addons: Vec<AddonVersion>,
    #[serde(default)]
    upstream: Vec<UpstreamRelease>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompatibilityFile {
    sources: BTreeMap<String, Source>,
    components: Vec<ComponentCompat>,
    #[serde(default)]
    upgrade_notes: BTreeMap<String, String>,
}

/// Where the embedded data ends, for reports and the beyond-the-data warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The newest minor in the EKS calendar.
    pub newest_calendar_minor: KubeMinor,
    /// The newest minor any removed-API row names.
    pub newest_removal_minor: KubeMinor,
    /// The newest minor any compatibility row supports or was tested with.
    pub newest_compat_minor: KubeMinor,
    /// The most recent `checked` date of any row.
    pub checked: IsoDate,
}

/// One of the three data files: where it was read from, how new its rows are, its sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFile {
    /// `removed_apis.yaml`, `eks.yaml` or `compatibility.yaml`.
    pub name: &'static str,
    /// The file read at run time (`--data DIR`); `None` = compiled into the binary.
    pub path: Option<PathBuf>,
    /// The most recent `checked` date of its rows.
    pub checked: Option<IsoDate>,
    /// How many rows it has.
    pub rows: usize,
    /// Its sources, by key.
    pub sources: Vec<String>,
}

/// The version data, validated: the embedded files, or newer ones from a folder.
#[derive(Debug, Clone)]
pub struct Data {
    /// The three files the data came from.
    pub files: Vec<DataFile>,
    /// Sources of every file, by key (keys are unique across files).
    pub sources: BTreeMap<String, Source>,
    /// Removed and deprecated APIs.
    pub removed_apis: Vec<RemovedApi>,
    /// APIs versioned by a component's releases.
    pub component_apis: Vec<ComponentApi>,
    /// The EKS support calendar, oldest first.
    pub calendar: Vec<EksRelease>,
    /// EKS add-on versions per minor.
    pub addons: Vec<AddonVersion>,
    /// Upstream minors newer than the EKS calendar.
    pub upstream: Vec<UpstreamRelease>,
    /// Component compatibility rows.
    pub components: Vec<ComponentCompat>,
    /// Each component's upgrade notes (the page to read before a major version change), by
    /// component.
    pub upgrade_notes: BTreeMap<String, String>,
}

impl Data {
    /// The data compiled into this binary.
    ///
    /// # Panics
    ///
    /// Never for a released build: the embedded files are validated by this crate's tests
    /// (`every_embedded_row_parses_and_has_a_source`); a panic here means a data file was
    /// edited without running them.
    pub fn embedded() -> &'static Data {
        static DATA: OnceLock<Data> = OnceLock::new();
        DATA.get_or_init(|| {
            Data::from_yaml(REMOVED_APIS_YAML, EKS_YAML, COMPATIBILITY_YAML)
                .unwrap_or_else(|e| panic!("embedded version data is invalid: {e}"))
        })
    }

    /// The data of folder `dir` (`--data DIR`): each of the three files it holds replaces the
    /// embedded one; a file it lacks stays embedded ([`Data::files`] says which is which).
    pub fn from_dir(dir: &Path) -> Result<Data, DataError> {
        let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DataError::Read {
                path: dir.join(name),
                source,
            }),
        };
        let texts = [
            read("removed_apis.yaml")?,
            read("eks.yaml")?,
            read("compatibility.yaml")?,
        ];
        if texts.iter().all(Option::is_none) {
            return Err(DataError::NoDataFiles {
                dir: dir.to_path_buf(),
            });
        }
        let mut data = Data::from_yaml(
            texts[0].as_deref().unwrap_or(REMOVED_APIS_YAML),
            texts[1].as_deref().unwrap_or(EKS_YAML),
            texts[2].as_deref().unwrap_or(COMPATIBILITY_YAML),
        )
        .map_err(|e| DataError::InDir {
            dir: dir.to_path_buf(),
            source: Box::new(e),
        })?;
        for (file, text) in data.files.iter_mut().zip(&texts) {
            if text.is_some() {
                file.path =
                    Some(std::path::absolute(dir.join(file.name)).unwrap_or(dir.join(file.name)));
            }
        }
        Ok(data)
    }

    /// The embedded data, or the folder's when `dir` is given.
    pub fn load(dir: Option<&Path>) -> Result<std::borrow::Cow<'static, Data>, DataError> {
        Ok(match dir {
            Some(dir) => std::borrow::Cow::Owned(Data::from_dir(dir)?),
            None => std::borrow::Cow::Borrowed(Data::embedded()),
        })
    }

    /// Loads and validates the three data files from text (tests, or newer data at run time).
    pub fn from_yaml(
        removed_apis: &str,
        eks: &str,
        compatibility: &str,
    ) -> Result<Data, DataError> {
        let removed: RemovedApisFile =
            serde_norway::from_str(removed_apis).map_err(|source| DataError::Parse {
                file: "removed_apis.yaml",
                source,
            })?;
        let eks: EksFile = serde_norway::from_str(eks).map_err(|source| DataError::Parse {
            file: "eks.yaml",
            source,
        })?;
        let compat: CompatibilityFile =
            serde_norway::from_str(compatibility).map_err(|source| DataError::Parse {
                file: "compatibility.yaml",
                source,
            })?;
        let mut calendar = eks.calendar;
        calendar.sort_by_key(|r| r.minor);
        let file = |name, checked: Vec<&IsoDate>, sources: &BTreeMap<String, Source>| DataFile {
            name,
            path: None,
            rows: checked.len(),
            checked: checked.into_iter().max().cloned(),
            sources: sources.keys().cloned().collect(),
        };
        let files = vec![
            file(
                "removed_apis.yaml",
                removed
                    .apis
                    .iter()
                    .map(|r| &r.checked)
                    .chain(removed.component_apis.iter().map(|r| &r.checked))
                    .collect(),
                &removed.sources,
            ),
            file(
                "eks.yaml",
                calendar
                    .iter()
                    .map(|r| &r.checked)
                    .chain(eks.addons.iter().map(|r| &r.checked))
                    .chain(eks.upstream.iter().map(|r| &r.checked))
                    .collect(),
                &eks.sources,
            ),
            file(
                "compatibility.yaml",
                compat.components.iter().map(|r| &r.checked).collect(),
                &compat.sources,
            ),
        ];
        let data = Data {
            files,
            sources: removed
                .sources
                .into_iter()
                .chain(eks.sources)
                .chain(compat.sources)
                .collect(),
            removed_apis: removed.apis,
            component_apis: removed.component_apis,
            calendar,
            addons: eks.addons,
            upstream: eks.upstream,
            components: compat.components,
            upgrade_notes: compat.upgrade_notes,
        };
        data.validate()?;
        Ok(data)
    }

    fn validate(&self) -> Result<(), DataError> {
        let invalid = |file, row: usize, what: String, reason: String| DataError::Invalid {
            file,
            row: row + 1,
            what,
            reason,
        };
        let known = |key: &str| self.sources.contains_key(key);
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.removed_apis.iter().enumerate() {
            let what = format!("{} {}", r.api_version, r.kind);
            let file = "removed_apis.yaml";
            if !known(&r.source) {
                return Err(invalid(
                    file,
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            if !seen.insert((r.api_version.clone(), r.kind.clone())) {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "duplicate apiVersion and kind".into(),
                ));
            }
            if !r.api_version.contains('/') && r.api_version != "v1" {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "api_version is not group/version".into(),
                ));
            }
            if r.removed_in.is_none() && r.deprecated_in.is_none() {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "neither deprecated nor removed".into(),
                ));
            }
            if let (Some(d), Some(rem)) = (r.deprecated_in, r.removed_in)
                && d > rem
            {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "deprecated after it was removed".into(),
                ));
            }
            if let (Some(a), Some(rem)) = (r.replacement_available_in, r.removed_in)
                && a > rem
            {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "the replacement arrives after the removal".into(),
                ));
            }
        }
        for (i, r) in self.calendar.iter().enumerate() {
            let what = format!("EKS {}", r.minor);
            if !known(&r.source) {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            match &r.notes_source {
                Some(key) if !known(key) => {
                    return Err(invalid(
                        "eks.yaml",
                        i,
                        what,
                        format!("unknown notes source `{key}`"),
                    ));
                }
                None if !r.notes.is_empty() => {
                    return Err(invalid(
                        "eks.yaml",
                        i,
                        what,
                        "notes without a notes_source".into(),
                    ));
                }
                _ => {}
            }
            let ordered = r.eks_release < r.end_of_standard_support
                && r.end_of_extended_support
                    .as_ref()
                    .is_none_or(|e| r.end_of_standard_support < *e);
            if !ordered {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    "dates are not in order".into(),
                ));
            }
        }
        for (i, r) in self.addons.iter().enumerate() {
            let what = format!("{} for {}", r.addon, r.minor);
            if !known(&r.source) {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            let versions = std::iter::once(&r.version).chain(&r.default_version);
            if versions
                .into_iter()
                .any(|v| parse_loose_semver(v).is_none())
            {
                return Err(invalid("eks.yaml", i, what, "version is not semver".into()));
            }
        }
        for (i, r) in self.upstream.iter().enumerate() {
            let what = format!("upstream {}", r.minor);
            if !known(&r.source) {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            if self.eks_release(r.minor).is_some() {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    "the calendar lists it: drop the upstream row".into(),
                ));
            }
            if r.released.is_some() == r.due.is_some() {
                return Err(invalid(
                    "eks.yaml",
                    i,
                    what,
                    "give exactly one of `released` and `due`".into(),
                ));
            }
        }
        for (i, r) in self.component_apis.iter().enumerate() {
            let what = format!("{} {} ({})", r.api_version, r.kind, r.component);
            let file = "removed_apis.yaml";
            if !known(&r.source) {
                return Err(invalid(
                    file,
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            if self.removed_api(&r.api_version, &r.kind).is_some()
                || !seen.insert((r.api_version.clone(), r.kind.clone()))
            {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "duplicate apiVersion and kind".into(),
                ));
            }
            let versions = [&r.deprecated_in, &r.removed_in];
            if versions.iter().all(|v| v.is_none()) {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "neither deprecated nor removed".into(),
                ));
            }
            if versions
                .iter()
                .filter_map(|v| v.as_deref())
                .any(|v| parse_loose_semver(v).is_none())
            {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "a component version is not `X.Y` or `X.Y.Z`".into(),
                ));
            }
        }
        for (i, r) in self.components.iter().enumerate() {
            let what = format!("{} {}", r.component, r.version);
            let file = "compatibility.yaml";
            if !known(&r.source) {
                return Err(invalid(
                    file,
                    i,
                    what,
                    format!("unknown source `{}`", r.source),
                ));
            }
            if r.line().is_none() {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "version is not `X.Y`, `X.Y.x` or `X.Y.Z`".into(),
                ));
            }
            if r.supported.is_none() && r.tested.is_none() {
                return Err(invalid(
                    file,
                    i,
                    what,
                    "neither supported nor tested".into(),
                ));
            }
            for range in [r.supported, r.tested].into_iter().flatten() {
                if range.max.is_some_and(|max| max < range.min) {
                    return Err(invalid(file, i, what, format!("range {range} is inverted")));
                }
            }
        }
        Ok(())
    }

    /// Where the data ends.
    pub fn coverage(&self) -> Coverage {
        let max =
            |it: &mut dyn Iterator<Item = KubeMinor>| it.max().unwrap_or(KubeMinor::new(1, 0));
        let checked = self
            .removed_apis
            .iter()
            .map(|r| &r.checked)
            .chain(self.calendar.iter().map(|r| &r.checked))
            .chain(self.addons.iter().map(|r| &r.checked))
            .chain(self.upstream.iter().map(|r| &r.checked))
            .chain(self.component_apis.iter().map(|r| &r.checked))
            .chain(self.components.iter().map(|r| &r.checked))
            .max()
            .cloned()
            .unwrap_or_else(|| IsoDate("0000-01-01".into()));
        Coverage {
            newest_calendar_minor: max(&mut self.calendar.iter().map(|r| r.minor)),
            newest_removal_minor: max(&mut self
                .removed_apis
                .iter()
                .flat_map(|r| [r.removed_in, r.deprecated_in])
                .flatten()),
            newest_compat_minor: max(&mut self
                .components
                .iter()
                .flat_map(|r| [r.supported, r.tested])
                .flatten()
                .map(|range| range.max.unwrap_or(range.min))),
            checked,
        }
    }

    /// The newest minor the data knows (the end of the EKS calendar).
    pub fn newest_known_minor(&self) -> KubeMinor {
        self.coverage().newest_calendar_minor
    }

    /// The replacement of `row` for a path to `target`, and the first minor serving it,
    /// following replacements that are themselves removed by `target`, so the advice survives
    /// the whole path (flowcontrol v1beta1 → v1beta2 → v1beta3 → v1).
    pub fn final_replacement<'a>(
        &'a self,
        row: &'a RemovedApi,
        target: KubeMinor,
    ) -> (Option<&'a str>, Option<KubeMinor>) {
        let mut replacement = row.replacement.as_deref();
        let mut available = row.replacement_available_in;
        for _ in 0..8 {
            let Some(next) = replacement.and_then(|r| self.removed_api(r, &row.kind)) else {
                break;
            };
            if next.removed_in.is_none_or(|removed| removed > target) {
                break;
            }
            replacement = next.replacement.as_deref();
            available = next.replacement_available_in;
        }
        (replacement, available)
    }

    /// The component-versioned row for an apiVersion and kind.
    pub fn component_api(&self, api_version: &str, kind: &str) -> Option<&ComponentApi> {
        self.component_apis
            .iter()
            .find(|r| r.api_version == api_version && r.kind == kind)
    }

    /// The removal row for an apiVersion and kind.
    pub fn removed_api(&self, api_version: &str, kind: &str) -> Option<&RemovedApi> {
        self.removed_apis
            .iter()
            .find(|r| r.api_version == api_version && r.kind == kind)
    }

    /// The upstream row of a minor the EKS calendar does not list yet.
    pub fn upstream_release(&self, minor: KubeMinor) -> Option<&UpstreamRelease> {
        self.upstream.iter().find(|r| r.minor == minor)
    }

    /// The calendar row of a minor.
    pub fn eks_release(&self, minor: KubeMinor) -> Option<&EksRelease> {
        self.calendar.iter().find(|r| r.minor == minor)
    }

    /// The newest documented add-on version for a minor.
    pub fn addon_version(&self, addon: &str, minor: KubeMinor) -> Option<&AddonVersion> {
        self.addons
            .iter()
            .find(|r| r.addon == addon && r.minor == minor)
    }

    /// Whether the data knows the component at all.
    pub fn knows_component(&self, component: &str) -> bool {
        self.components.iter().any(|r| r.component == component)
    }

    /// The row that applies to `version` of `component`: same minor line, the most specific
    /// patch row not newer than the version (`1.0.5` beats `1.0.x` for 1.0.7).
    pub fn component_compat(&self, component: &str, version: &str) -> Option<&ComponentCompat> {
        let v = parse_loose_semver(version)?;
        self.components
            .iter()
            .filter(|r| r.component == component)
            .filter_map(|r| r.line().map(|line| (r, line)))
            .filter(|(_, (major, minor, patch, _))| {
                *major == v.major && *minor == v.minor && *patch <= v.patch
            })
            .max_by_key(|(_, (_, _, patch, exact))| (*patch, *exact))
            .map(|(r, _)| r)
    }

    /// The newest version line the data has for a component (`1.14.x`).
    pub fn newest_component_line(&self, component: &str) -> Option<&ComponentCompat> {
        self.components
            .iter()
            .filter(|r| r.component == component)
            .filter_map(|r| r.line().map(|line| (r, line)))
            .max_by_key(|(_, (major, minor, patch, _))| (*major, *minor, *patch))
            .map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> KubeMinor {
        s.parse().unwrap()
    }

    #[test]
    fn every_embedded_row_parses_and_has_a_source() {
        let data = Data::from_yaml(REMOVED_APIS_YAML, EKS_YAML, COMPATIBILITY_YAML)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(data.removed_apis.len() >= 60, "{}", data.removed_apis.len());
        assert!(data.calendar.len() >= 9);
        assert!(data.addons.len() >= 20);
        assert!(data.components.len() >= 70);
        // Every row names a known source and a checked date (validate() enforces it; the
        // counts above make sure the rows were not silently dropped).
        for r in &data.removed_apis {
            assert!(data.sources.contains_key(&r.source), "{r:?}");
            assert!(IsoDate::parse(r.checked.as_str()).is_some());
        }
        for s in data.sources.values() {
            assert!(s.url.starts_with("https://"), "{s:?}");
        }
    }

    #[test]
    fn coverage_names_where_the_data_ends() {
        let c = Data::embedded().coverage();
        assert_eq!(c.newest_calendar_minor, m("1.36"));
        assert_eq!(c.newest_removal_minor, m("1.39"));
        assert_eq!(c.newest_compat_minor, m("1.36"));
        assert_eq!(c.checked.as_str(), "2026-12-02");
        let upstream = Data::embedded().upstream_release(m("1.37")).unwrap();
        assert_eq!(
            upstream.to_string(),
            "Kubernetes 1.37 was released upstream on 2026-08-26 but is not on EKS yet"
        );
    }

    /// `--data DIR`: a newer eks.yaml (EKS 1.37 released) replaces the embedded one, the two
    /// files the folder lacks stay embedded, and the files say which came from where.
    #[test]
    fn a_data_folder_replaces_the_files_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let newer = EKS_YAML
            .replace(
                "  - {minor: \"1.37\", released: 2026-08-26, source: k8s-releases, checked: 2026-12-02}\n",
                "",
            )
            .replace(
                "calendar:\n",
                "calendar:\n  - {minor: \"1.37\", eks_release: 2027-01-20, end_of_standard_support: 2028-03-20, confidence: official, source: k8s-releases, checked: 2027-01-21}\n",
            );
        std::fs::write(dir.path().join("eks.yaml"), &newer).unwrap();
        let data = Data::from_dir(dir.path()).unwrap();
        assert!(data.eks_release(m("1.37")).is_some());
        assert_eq!(data.coverage().newest_calendar_minor, m("1.37"));
        assert_eq!(data.files[1].name, "eks.yaml");
        assert!(data.files[1].path.as_ref().unwrap().ends_with("eks.yaml"));
        assert_eq!(
            data.files[1].checked.as_ref().unwrap().as_str(),
            "2027-01-21"
        );
        assert!(data.files[0].path.is_none() && data.files[2].path.is_none());
        assert!(Data::embedded().eks_release(m("1.37")).is_none());

        let empty = tempfile::tempdir().unwrap();
        let err = Data::from_dir(empty.path()).unwrap_err();
        assert!(
            err.to_string().contains("holds none of removed_apis.yaml"),
            "{err}"
        );
        std::fs::write(dir.path().join("eks.yaml"), "calendar: [").unwrap();
        let err = Data::from_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "in the data folder {}: data file `eks.yaml` does not parse",
                dir.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn pluto_errors_are_corrected() {
        let data = Data::embedded();
        let fs = data
            .removed_api("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema")
            .unwrap();
        assert_eq!(
            fs.removed_in,
            Some(m("1.26")),
            "the guide says 1.26, pluto 1.29"
        );
        let v1beta3 = data
            .removed_api("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema")
            .unwrap();
        assert_eq!(
            v1beta3.deprecated_in,
            Some(m("1.29")),
            "pluto's 1.24 is a typo"
        );
        assert!(data.removed_apis.iter().all(|r| r.kind != "FlowControl"));
        assert!(data.removed_apis.iter().all(|r| !r.kind.ends_with("List")));
        let psp = data
            .removed_api("policy/v1beta1", "PodSecurityPolicy")
            .unwrap();
        assert_eq!(psp.replacement, None);
    }

    #[test]
    fn bad_rows_are_refused_with_file_row_and_reason() {
        let broken = REMOVED_APIS_YAML.replacen(
            "source: k8s-deprecation-guide\n    checked",
            "source: nowhere\n    checked",
            1,
        );
        let err = Data::from_yaml(&broken, EKS_YAML, COMPATIBILITY_YAML).unwrap_err();
        assert!(
            err.to_string()
                .contains("removed_apis.yaml`, row 1 (extensions/v1beta1 NetworkPolicy): unknown source `nowhere`"),
            "{err}"
        );
        let bad_date = EKS_YAML.replacen("checked: 2026-08-22", "checked: 2026-8-22", 1);
        let err = Data::from_yaml(REMOVED_APIS_YAML, &bad_date, COMPATIBILITY_YAML).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a date in the form YYYY-MM-DD"),
            "{err}"
        );
        let float = COMPATIBILITY_YAML.replacen("min: \"1.21\"", "min: 1.21", 1);
        let err = Data::from_yaml(REMOVED_APIS_YAML, EKS_YAML, &float).unwrap_err();
        assert!(err.to_string().contains("quote it"), "{err}");
    }

    #[test]
    fn component_rows_pick_the_most_specific_line() {
        let data = Data::embedded();
        let karp = |v| {
            data.component_compat("karpenter", v)
                .unwrap()
                .supported
                .unwrap()
        };
        assert_eq!(karp("1.0.4").max, Some(m("1.30")));
        assert_eq!(karp("1.0.5").max, Some(m("1.31")));
        assert_eq!(karp("v1.0.9").max, Some(m("1.31")));
        assert_eq!(karp("1.14.2").max, Some(m("1.36")));
        assert!(data.component_compat("karpenter", "1.15.0").is_none());
        assert_eq!(
            data.newest_component_line("karpenter").unwrap().version,
            "1.14.x"
        );
        let kserve = data.component_compat("kserve", "0.15.2").unwrap();
        assert_eq!(kserve.supported.unwrap().min, m("1.30"));
        assert_eq!(kserve.tested.unwrap().max, Some(m("1.32")));
    }

    #[test]
    fn iso_dates() {
        assert!(
            IsoDate::parse("2026-02-30").is_some(),
            "plausibility only, not a calendar"
        );
        assert!(IsoDate::parse("2026-13-01").is_none());
        assert!(IsoDate::parse("26-01-01").is_none());
        assert!(IsoDate::parse("2026-01-01").unwrap() < IsoDate::parse("2026-01-02").unwrap());
        let d = |s| IsoDate::parse(s).unwrap();
        assert_eq!(d("1970-01-01").day_number(), 0);
        assert_eq!(d("2026-02-28").days_until(&d("2026-03-01")), 1);
        assert_eq!(d("2024-02-28").days_until(&d("2024-03-01")), 2, "leap year");
        assert_eq!(d("2026-08-22").days_until(&d("2025-08-22")), -365);
    }
}
