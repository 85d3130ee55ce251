//! What Helm prints, as serde types that accept both majors' quirks.
//!
//! - Helm 3 prints zero times as `""`; Helm 4 omits them: both become `None`.
//! - `helm list` prints the revision as a string; `history`/`status` as a number: both parse.
//! - `get values` prints `null` when there are no user values: an empty map.
//! - Statuses include `superseded` and the `pending-*` ones; an unknown status parses as
//!   [`ReleaseStatus::Unknown`] instead of failing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

pub use upgrade_helm_storage::record::{
    Hook, ReleaseInfo, ReleaseRef, ReleaseStatus, Values, empty_as_none, null_as_default,
};

/// One entry of `helm history NAME -o json` (ascending revision order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The revision.
    pub revision: u32,
    /// When it was written; `None` for Helm 3's `""` and Helm 4's omitted zero time.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub updated: Option<String>,
    /// Its status.
    pub status: ReleaseStatus,
    /// `name-version` (ambiguous to split; use [`ReleaseMetadata`] for the parts).
    #[serde(default)]
    pub chart: String,
    /// The chart's appVersion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_version: String,
    /// Helm's description ("Install complete", "Rollback to 2", "Upgrade \"x\" failed: ...").
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// The revision this one rolled back to (Helm 4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_revision: Option<u32>,
}

/// `helm status NAME -o json` (and `upgrade -o json`): a release revision.
///
/// Its `Debug` shows sizes instead of values and manifests, which hold secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The release name.
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
    /// The revision.
    pub version: u32,
    /// Status and times.
    pub info: ReleaseInfo,
    /// The user-supplied values of this revision (`null` becomes empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: Values,
    /// The rendered manifests.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifest: String,
    /// The hooks with their manifests.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hooks: Vec<Hook>,
    /// `ssa` or `csa` (Helm 4; `None` for releases written by Helm 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_method: Option<String>,
}

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Release")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("info", &self.info)
            .field("config_keys", &self.config.len())
            .field("manifest_bytes", &self.manifest.len())
            .field("hooks", &self.hooks.len())
            .field("apply_method", &self.apply_method)
            .finish()
    }
}

impl Release {
    /// The release's name and namespace.
    pub fn release_ref(&self) -> ReleaseRef {
        ReleaseRef::new(&self.name, &self.namespace)
    }
}

/// `helm get metadata NAME -o json` (Helm 3.13+; camelCase keys unlike the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseMetadata {
    /// The release name.
    pub name: String,
    /// The chart name.
    pub chart: String,
    /// The chart version.
    pub version: String,
    /// The chart's appVersion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_version: String,
    /// The namespace.
    pub namespace: String,
    /// The revision.
    pub revision: u32,
    /// The status.
    pub status: ReleaseStatus,
    /// When this revision was deployed.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub deployed_at: Option<String>,
    /// `ssa` or `csa` (Helm 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_method: Option<String>,
    /// Chart annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Release labels (Helm 4).
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// The chart's dependencies.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dependencies: Vec<serde_json::Value>,
}

/// One entry of `helm list -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    /// The release name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The latest revision (Helm prints it as a string here).
    #[serde(deserialize_with = "u32_from_string_or_number")]
    pub revision: u32,
    /// Go `time.String()` text, or `-`; kept as printed.
    #[serde(default)]
    pub updated: String,
    /// The status.
    pub status: ReleaseStatus,
    /// `name-version`.
    #[serde(default)]
    pub chart: String,
    /// The chart's appVersion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_version: String,
}

impl ListEntry {
    /// The release's name and namespace.
    pub fn release_ref(&self) -> ReleaseRef {
        ReleaseRef::new(&self.name, &self.namespace)
    }
}

/// One entry of `helm search repo -o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartVersionEntry {
    /// `repo/chart`.
    pub name: String,
    /// The chart version.
    pub version: String,
    /// The chart's appVersion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_version: String,
    /// The chart's description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
}

fn u32_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u32),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("revision `{text}` is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_accepts_helm3_empty_time_and_helm4_rollback_revision() {
        let v3 = r#"[{"revision":1,"updated":"","status":"superseded","chart":"karpenter-1.5.0","app_version":"1.5.0","description":"Install complete"},
                    {"revision":2,"updated":"2026-11-22T00:10:00.1+00:00","status":"deployed","chart":"karpenter-1.6.0","app_version":"1.6.0","description":"Upgrade complete"}]"#;
        let entries: Vec<HistoryEntry> = serde_json::from_str(v3).unwrap();
        assert_eq!(entries[0].updated, None);
        assert_eq!(entries[0].status, ReleaseStatus::Superseded);
        assert!(entries[1].updated.is_some());

        let v4 = r#"[{"revision":3,"status":"pending-rollback","chart":"x-1","app_version":"","description":"Rollback to 1","rollback_revision":1}]"#;
        let entries: Vec<HistoryEntry> = serde_json::from_str(v4).unwrap();
        assert_eq!(entries[0].updated, None);
        assert_eq!(entries[0].rollback_revision, Some(1));
        assert!(entries[0].status.is_pending());
    }

    #[test]
    fn list_revision_is_a_string_and_unknown_statuses_parse() {
        let json = r#"[{"name":"kserve","namespace":"kserve","revision":"12","updated":"2026-11-22 00:10:00.123 +0000 UTC","status":"some-future-status","chart":"kserve-0.15.0","app_version":"v0.15.0"}]"#;
        let entries: Vec<ListEntry> = serde_json::from_str(json).unwrap();
        assert_eq!(entries[0].revision, 12);
        assert_eq!(entries[0].status, ReleaseStatus::Unknown);
        let bad = r#"[{"name":"a","namespace":"b","revision":"x","status":"deployed"}]"#;
        let err = serde_json::from_str::<Vec<ListEntry>>(bad).unwrap_err();
        assert!(
            err.to_string().contains("revision `x` is not a number"),
            "{err}"
        );
    }

    #[test]
    fn status_accepts_null_config_and_hooks_and_helm3_deleted() {
        let json = r#"{"name":"mlflow","namespace":"mlops","version":4,
            "info":{"first_deployed":"2026-11-22T00:00:00Z","last_deployed":"2026-11-22T00:01:00Z","deleted":"","description":"Upgrade complete","status":"deployed"},
            "config":null,"manifest":"---\nkind: Service\n","hooks":null}"#;
        let release: Release = serde_json::from_str(json).unwrap();
        assert!(release.config.is_empty());
        assert!(release.hooks.is_empty());
        assert_eq!(release.info.deleted, None);
        assert_eq!(release.apply_method, None);
        assert_eq!(release.release_ref().to_string(), "mlops/mlflow");
        let with_secret = r#"{"name":"m","namespace":"n","version":1,"info":{"status":"deployed"},
            "config":{"db":{"password":"s3cret-value"}},"manifest":"password: czNjcmV0LXZhbHVl"}"#;
        let shown = format!(
            "{:?}",
            serde_json::from_str::<Release>(with_secret).unwrap()
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("czNj"),
            "{shown}"
        );
    }

    #[test]
    fn every_status_round_trips() {
        for status in [
            ReleaseStatus::Deployed,
            ReleaseStatus::Superseded,
            ReleaseStatus::Failed,
            ReleaseStatus::Uninstalled,
            ReleaseStatus::Uninstalling,
            ReleaseStatus::PendingInstall,
            ReleaseStatus::PendingUpgrade,
            ReleaseStatus::PendingRollback,
            ReleaseStatus::Unknown,
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(
                serde_json::from_str::<ReleaseStatus>(&json).unwrap(),
                status
            );
        }
    }
}
