//! The platform lockfile: what is deployed, kept next to the infrastructure code.
//!
//! Human-readable TOML, sorted and stable under re-writing (reading and writing it again
//! gives the same bytes), so it diffs well in review. It records the cluster version; per
//! component its chart reference and version, app version, image tags, a digest of the
//! values and the Helm revision; Terraform provider versions; and EKS add-on versions.
//!
//! A `lock` operation fills one from the live platform; [`PlatformLock::diff`] compares the
//! desired (file) against the live one and lists every drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_file;

/// The lockfile format version this code reads and writes.
pub const SCHEMA: u32 = 1;

/// A lockfile problem; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockfileError {
    /// The file could not be read or written.
    #[error("could not {action} the platform lockfile {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The lockfile.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid lockfile TOML.
    #[error("the platform lockfile {} is not valid: {message}\nhint: fix it by hand, or write a fresh one from the live platform with `upgrade-lock write`", path.display())]
    Invalid {
        /// The lockfile.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The file was written by a newer version of the toolkit.
    #[error("the platform lockfile {} has schema {found}, this toolkit reads schema {SCHEMA}\nhint: upgrade the toolkit", path.display())]
    UnsupportedSchema {
        /// The lockfile.
        path: PathBuf,
        /// The schema it declares.
        found: u32,
    },
}

/// The whole platform as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformLock {
    /// Lockfile format version ([`SCHEMA`]).
    pub schema: u32,
    /// The EKS cluster.
    pub cluster: ClusterLock,
    /// Helm-managed components by name (e.g. `karpenter`, `kserve`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentLock>,
    /// Terraform state of the infrastructure code.
    #[serde(default)]
    pub terraform: TerraformLock,
    /// EKS add-on versions by add-on name (e.g. `vpc-cni = "v1.18.3-eksbuild.1"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addons: BTreeMap<String, String>,
}

/// The cluster itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLock {
    /// The EKS cluster name (or the API server URL for other clusters).
    pub name: String,
    /// The control plane's Kubernetes minor, e.g. `1.30`.
    pub version: String,
    /// Kubelet versions of the nodes, by node group or node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_versions: BTreeMap<String, String>,
}

/// One Helm-managed component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentLock {
    /// The Helm release name.
    pub release: String,
    /// The release namespace.
    pub namespace: String,
    /// The chart reference: `repo/name`, `oci://...` or a local path.
    pub chart: String,
    /// The chart version.
    pub chart_version: String,
    /// The chart's appVersion.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    /// Container images by container name, `repository:tag`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// `sha256:<hex>` of the user-supplied values (see [`values_digest`]).
    pub values_digest: String,
    /// The deployed Helm revision.
    pub helm_revision: u32,
}

/// Terraform facts that a rollback needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformLock {
    /// Provider versions by source address (e.g. `registry.terraform.io/hashicorp/aws`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, String>,
    /// The state serial when the lock was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_serial: Option<u64>,
}

/// One difference between the desired (lockfile) and the live platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Dotted path of the field, e.g. `components.kserve.chart_version`.
    pub path: String,
    /// The lockfile's value (`None`: not in the lockfile).
    pub desired: Option<String>,
    /// The live value (`None`: not on the platform).
    pub live: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_string());
        write!(
            f,
            "{}: locked {} but live {}",
            self.path,
            show(&self.desired),
            show(&self.live)
        )
    }
}

impl PlatformLock {
    /// An empty lock for a cluster.
    pub fn new(cluster_name: impl Into<String>, version: impl Into<String>) -> Self {
        PlatformLock {
            schema: SCHEMA,
            cluster: ClusterLock {
                name: cluster_name.into(),
                version: version.into(),
                node_versions: BTreeMap::new(),
            },
            components: BTreeMap::new(),
            terraform: TerraformLock::default(),
            addons: BTreeMap::new(),
        }
    }

    /// Parses lockfile text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LockfileError> {
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: Option<u32>,
        }
        if let Ok(SchemaOnly {
            schema: Some(found),
        }) = toml::from_str::<SchemaOnly>(text)
            && found > SCHEMA
        {
            return Err(LockfileError::UnsupportedSchema {
                path: path.to_path_buf(),
                found,
            });
        }
        toml::from_str(text).map_err(|e| LockfileError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a lockfile.
    pub fn read(path: &Path) -> Result<Self, LockfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockfileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The lockfile's text: a header comment, then sorted TOML.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a PlatformLock always serialises");
        format!(
            "# Platform lockfile: the deployed platform, written by `upgrade-lock write`.\n\
             # Review changes to it like code; `upgrade-lock diff` shows drift from the live platform.\n{body}"
        )
    }

    /// Writes the lockfile atomically (it is reviewed and committed like code, so an
    /// existing file keeps its permissions; a new one is `0644`).
    pub fn write(&self, path: &Path) -> Result<(), LockfileError> {
        atomic_file::write(path, self.to_toml().as_bytes()).map_err(|source| LockfileError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Every field where `live` differs from `self` (the desired state), sorted by path.
    pub fn diff(&self, live: &PlatformLock) -> Vec<Drift> {
        let desired = flatten(self);
        let live = flatten(live);
        let mut paths: Vec<&String> = desired.keys().chain(live.keys()).collect();
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .filter(|p| !same_value(p, desired.get(*p), live.get(*p)))
            .map(|p| Drift {
                path: p.clone(),
                desired: desired.get(p).cloned(),
                live: live.get(p).cloned(),
            })
            .collect()
    }
}

/// Whether a field holds the same value in both: equal text, or, for a version field
/// (`chart_version`, `app_version`, `version`), one version spelled with and without a
/// leading `v` (KServe's charts until 0.16 say `v0.15.2`; a lock may say `0.15.2`).
fn same_value(path: &str, desired: Option<&String>, live: Option<&String>) -> bool {
    match (desired, live) {
        (Some(a), Some(b)) if a != b => {
            let is_version = path
                .rsplit('.')
                .next()
                .is_some_and(|f| f.ends_with("version"));
            is_version
                && crate::version::parse_loose_semver(a)
                    .is_some_and(|v| crate::version::parse_loose_semver(b) == Some(v))
        }
        (a, b) => a == b,
    }
}

/// `sha256:<hex>` of a values document, stable under key order: the JSON is canonicalised
/// (objects sorted) before hashing.
pub fn values_digest(values: &serde_json::Value) -> String {
    // serde_json's Map is a BTreeMap without the preserve_order feature, so this is sorted.
    let canonical = serde_json::to_vec(values).expect("JSON values serialise");
    format!("sha256:{:x}", Sha256::digest(&canonical))
}

fn flatten(lock: &PlatformLock) -> BTreeMap<String, String> {
    let value = serde_json::to_value(lock).expect("a PlatformLock converts to JSON");
    let mut out = BTreeMap::new();
    flatten_into(&value, String::new(), &mut out);
    out
}

fn flatten_into(value: &serde_json::Value, prefix: String, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(v, path, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix, s.clone());
        }
        other => {
            out.insert(prefix, other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlatformLock {
        let mut lock = PlatformLock::new("mlops-platform-dev", "1.30");
        lock.cluster
            .node_versions
            .insert("general".into(), "v1.30.4-eks-a737599".into());
        lock.components.insert(
            "karpenter".into(),
            ComponentLock {
                release: "karpenter".into(),
                namespace: "karpenter".into(),
                chart: "oci://public.ecr.aws/karpenter/karpenter".into(),
                chart_version: "1.5.0".into(),
                app_version: "1.5.0".into(),
                images: [(
                    "controller".to_string(),
                    "public.ecr.aws/karpenter/controller:1.5.0".to_string(),
                )]
                .into(),
                values_digest: values_digest(&serde_json::json!({"replicas": 2})),
                helm_revision: 3,
            },
        );
        lock.terraform.providers.insert(
            "registry.terraform.io/hashicorp/aws".into(),
            "5.99.0".into(),
        );
        lock.terraform.state_serial = Some(12);
        lock.addons
            .insert("vpc-cni".into(), "v1.18.3-eksbuild.1".into());
        lock
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let text = sample().to_toml();
        let again = PlatformLock::parse(&text, Path::new("platform.lock")).unwrap();
        assert_eq!(again, sample());
        assert_eq!(again.to_toml(), text, "stable under re-writing");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn diff_lists_every_drift() {
        let desired = sample();
        let mut live = sample();
        live.components.get_mut("karpenter").unwrap().chart_version = "1.6.0".into();
        live.components.get_mut("karpenter").unwrap().helm_revision = 4;
        live.addons.remove("vpc-cni");
        live.addons
            .insert("coredns".into(), "v1.11.3-eksbuild.2".into());
        let drift: Vec<String> = desired.diff(&live).iter().map(|d| d.to_string()).collect();
        insta::assert_snapshot!(drift.join("\n"), @r"
        addons.coredns: locked (absent) but live v1.11.3-eksbuild.2
        addons.vpc-cni: locked v1.18.3-eksbuild.1 but live (absent)
        components.karpenter.chart_version: locked 1.5.0 but live 1.6.0
        components.karpenter.helm_revision: locked 3 but live 4
        ");
        assert!(desired.diff(&sample()).is_empty());
    }

    #[test]
    fn a_version_spelled_with_a_leading_v_is_the_same_version() {
        let desired = sample();
        let mut live = sample();
        let locked = desired.components["karpenter"].chart_version.clone();
        live.components.get_mut("karpenter").unwrap().chart_version = format!("v{locked}");
        assert!(desired.diff(&live).is_empty(), "{:?}", desired.diff(&live));
        live.components.get_mut("karpenter").unwrap().chart_version = "v9.9.9".into();
        assert_eq!(desired.diff(&live).len(), 1);
    }

    #[test]
    fn values_digest_ignores_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).unwrap();
        assert_eq!(values_digest(&a), values_digest(&b));
        assert_ne!(
            values_digest(&a),
            values_digest(&serde_json::json!({"a": 2}))
        );
    }

    #[test]
    fn bad_input_names_the_file_and_the_fix() {
        let err = PlatformLock::parse(
            "schema = 1\n[cluster]\nname = 3\n",
            Path::new("x/platform.lock"),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x/platform.lock is not valid"), "{text}");
        assert!(text.contains("upgrade-lock write"), "{text}");
        let err = PlatformLock::parse("schema = 9\n", Path::new("p.lock")).unwrap_err();
        assert!(matches!(
            err,
            LockfileError::UnsupportedSchema { found: 9, .. }
        ));
        let err = PlatformLock::read(Path::new("/nonexistent/platform.lock")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("could not read the platform lockfile /nonexistent/platform.lock")
        );
    }
}
