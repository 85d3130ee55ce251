//! Helm's release record: the JSON Helm 3 and 4 keep for every revision of a release, and
//! the parts of it `helm` prints, as serde types that accept both majors' quirks.
//!
//! - Helm 3 prints zero times as `""`; Helm 4 omits them: both become `None`.
//! - `get values` prints `null` when there are no user values: an empty map.
//! - Statuses include `superseded` and the `pending-*` ones; an unknown status parses as
//!   [`ReleaseStatus::Unknown`] instead of failing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Helm values: a JSON object.
pub type Values = serde_json::Map<String, serde_json::Value>;

/// A release: its name and namespace (Helm is always called with `-n`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// The release name.
    pub name: String,
    /// The namespace Helm keeps it in.
    pub namespace: String,
}

impl ReleaseRef {
    /// A release `name` in `namespace`.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        ReleaseRef {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A release revision's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    /// Live and current.
    Deployed,
    /// Replaced by a later revision (a rollback target).
    Superseded,
    /// The operation failed.
    Failed,
    /// Uninstalled with `--keep-history`.
    Uninstalled,
    /// Being uninstalled.
    Uninstalling,
    /// An install is running or died half-way.
    PendingInstall,
    /// An upgrade is running or died half-way.
    PendingUpgrade,
    /// A rollback is running or died half-way.
    PendingRollback,
    /// A status this toolkit does not know (a newer Helm), or Helm's own `unknown`.
    #[serde(other)]
    Unknown,
}

impl ReleaseStatus {
    /// `pending-install`, `pending-upgrade` or `pending-rollback`: Helm refuses changes.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            ReleaseStatus::PendingInstall
                | ReleaseStatus::PendingUpgrade
                | ReleaseStatus::PendingRollback
        )
    }

    /// `deployed` or `superseded`: a revision that once ran successfully (a rollback target).
    pub fn was_deployed(self) -> bool {
        matches!(self, ReleaseStatus::Deployed | ReleaseStatus::Superseded)
    }

    /// Helm's spelling, e.g. `pending-upgrade`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Uninstalled => "uninstalled",
            ReleaseStatus::Uninstalling => "uninstalling",
            ReleaseStatus::PendingInstall => "pending-install",
            ReleaseStatus::PendingUpgrade => "pending-upgrade",
            ReleaseStatus::PendingRollback => "pending-rollback",
            ReleaseStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `info` block of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// First install time.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub first_deployed: Option<String>,
    /// This revision's time.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub last_deployed: Option<String>,
    /// Uninstall time (Helm 3 prints `""` when zero).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub deleted: Option<String>,
    /// Helm's description of the revision.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// The status.
    pub status: ReleaseStatus,
    /// The rendered NOTES.txt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The revision rolled back to (Helm 4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_revision: Option<u32>,
}

/// A chart hook (Job, Pod, ...) recorded in the release.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    /// The resource name.
    #[serde(default)]
    pub name: String,
    /// The resource kind.
    #[serde(default)]
    pub kind: String,
    /// The template path.
    #[serde(default)]
    pub path: String,
    /// The rendered manifest.
    #[serde(default)]
    pub manifest: String,
    /// The events it runs on (`pre-upgrade`, ...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<String>,
    /// The ordering weight.
    #[serde(default)]
    pub weight: i64,
    /// When Helm deletes it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub delete_policies: Vec<String>,
}

impl fmt::Debug for Hook {
    /// The manifest may hold secrets: only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("events", &self.events)
            .field("manifest_bytes", &self.manifest.len())
            .finish_non_exhaustive()
    }
}

/// Chart.yaml as printed by `helm show chart` (camelCase keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMetadata {
    /// `v2` for Helm 3+ charts.
    #[serde(default)]
    pub api_version: String,
    /// The chart name.
    pub name: String,
    /// The chart version.
    pub version: String,
    /// The application version.
    #[serde(default)]
    pub app_version: Option<String>,
    /// The Kubernetes versions the chart supports (Helm constraint syntax).
    #[serde(default)]
    pub kube_version: Option<String>,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// `application` or `library`.
    #[serde(default, rename = "type")]
    pub chart_type: Option<String>,
    /// Whether the chart is deprecated.
    #[serde(default)]
    pub deprecated: bool,
    /// Sub-charts.
    #[serde(default)]
    pub dependencies: Vec<ChartDependency>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A chart dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartDependency {
    /// The sub-chart's name.
    pub name: String,
    /// Its version constraint.
    #[serde(default)]
    pub version: Option<String>,
    /// Where it comes from.
    #[serde(default)]
    pub repository: Option<String>,
    /// The values path that enables it.
    #[serde(default)]
    pub condition: Option<String>,
    /// Its alias.
    #[serde(default)]
    pub alias: Option<String>,
}

/// Deserializes `""`, `null` or a missing field as `None`.
pub fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|s| !s.is_empty()))
}

/// Deserializes `null` as the type's default.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
