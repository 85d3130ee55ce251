//! Helm's release storage format: decoding and encoding `sh.helm.release.v1.NAME.vN` objects.
//!
//! Each revision is one Secret (the default driver) or ConfigMap (`HELM_DRIVER=configmap`)
//! in the release's namespace, labelled `owner=helm,name=NAME,version=N,status=S`, whose
//! `release` key holds **base64(gzip(JSON))** of the whole release record (chart included).
//! For a Secret, Kubernetes' own base64 layer is already undone by the client, so the bytes
//! are Helm's base64 text, exactly like a ConfigMap's string.

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::record::{
    ChartMetadata, Hook, ReleaseInfo, ReleaseRef, ReleaseStatus, Values, null_as_default,
};

/// The name prefix of Helm 3/4 storage objects.
pub const OBJECT_PREFIX: &str = "sh.helm.release.v1.";

/// The gzip magic Helm checks before inflating (older records were not compressed).
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Decoding a storage object failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object has no `release` key.
    #[error("{object}: no `release` key; not a Helm release record")]
    MissingPayload {
        /// `namespace/name` of the object.
        object: String,
    },
    /// The payload is not base64.
    #[error("{object}: the release payload is not base64: {source}")]
    Base64 {
        /// `namespace/name` of the object.
        object: String,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The payload is not valid gzip.
    #[error("{object}: the release payload is not valid gzip: {source}")]
    Gzip {
        /// `namespace/name` of the object.
        object: String,
        /// The inflater's error.
        #[source]
        source: std::io::Error,
    },
    /// The inflated payload is not a release record.
    #[error("{object}: the release payload is not a Helm release record: {source}")]
    Json {
        /// `namespace/name` of the object.
        object: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// One release revision as Helm stores it (the chart's templates and files are skipped).
///
/// Its `Debug` shows sizes instead of values and manifests, which hold secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRelease {
    /// The release name.
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
    /// The revision.
    pub version: u32,
    /// Status, times, description.
    pub info: ReleaseInfo,
    /// The chart's metadata (Chart.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<StoredChart>,
    /// The user-supplied values.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: Values,
    /// The rendered manifests.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifest: String,
    /// The hooks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hooks: Vec<Hook>,
    /// `ssa`/`csa` (Helm 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_method: Option<String>,
}

/// The part of the stored chart the toolkit reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChart {
    /// Chart.yaml.
    pub metadata: ChartMetadata,
}

impl std::fmt::Debug for StoredRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRelease")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("status", &self.info.status)
            .field("chart", &self.chart_label())
            .field("config_keys", &self.config.len())
            .field("manifest_bytes", &self.manifest.len())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl StoredRelease {
    /// The release's name and namespace.
    pub fn release_ref(&self) -> ReleaseRef {
        ReleaseRef::new(&self.name, &self.namespace)
    }

    /// The status of this revision.
    pub fn status(&self) -> ReleaseStatus {
        self.info.status
    }

    /// `name-version` as `helm list` and `helm history` print it.
    pub fn chart_label(&self) -> String {
        self.chart
            .as_ref()
            .map(|c| format!("{}-{}", c.metadata.name, c.metadata.version))
            .unwrap_or_default()
    }

    /// The chart's appVersion (empty when none).
    pub fn app_version(&self) -> String {
        self.chart
            .as_ref()
            .and_then(|c| c.metadata.app_version.clone())
            .unwrap_or_default()
    }
}

/// Decodes a `release` payload: Helm's base64 text, optionally gzip, then JSON.
/// `object` names the Secret/ConfigMap in errors.
pub fn decode_release(object: &str, payload: &[u8]) -> Result<StoredRelease, StorageError> {
    let json = decode_payload(object, payload)?;
    serde_json::from_slice(&json).map_err(|source| StorageError::Json {
        object: object.to_string(),
        source,
    })
}

/// Decodes a `release` payload to the release JSON bytes.
pub fn decode_payload(object: &str, payload: &[u8]) -> Result<Vec<u8>, StorageError> {
    let trimmed = payload.trim_ascii();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map_err(|source| StorageError::Base64 {
            object: object.to_string(),
            source,
        })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut json = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut json)
        .map_err(|source| StorageError::Gzip {
            object: object.to_string(),
            source,
        })?;
    Ok(json)
}

/// Encodes release JSON the way Helm stores it: base64(gzip(JSON)), best compression.
/// Useful for fixtures and for writing storage objects in tests and benchmarks.
pub fn encode_release(release_json: &[u8]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(release_json)
        .and_then(|_| gz.finish())
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
        .expect("gzip into memory cannot fail")
}

/// Splits `sh.helm.release.v1.NAME.vN` into the release name and revision.
pub fn parse_object_name(object: &str) -> Option<(&str, u32)> {
    let rest = object.strip_prefix(OBJECT_PREFIX)?;
    let (name, revision) = rest.rsplit_once(".v")?;
    Some((name, revision.parse().ok()?))
}

/// The storage object name of a release revision.
pub fn object_name(release: &str, revision: u32) -> String {
    format!("{OBJECT_PREFIX}{release}.v{revision}")
}

/// Helm's storage driver (`HELM_DRIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriver {
    /// Secrets (Helm's default).
    #[default]
    Secret,
    /// ConfigMaps.
    ConfigMap,
}

impl StorageDriver {
    /// The `HELM_DRIVER` value.
    pub fn as_env_value(self) -> &'static str {
        match self {
            StorageDriver::Secret => "secret",
            StorageDriver::ConfigMap => "configmap",
        }
    }
}

/// The newest revision of each release, in (namespace, name) order: what `helm list` shows.
pub fn latest_revisions(mut revisions: Vec<StoredRelease>) -> Vec<StoredRelease> {
    revisions.sort_by(|a, b| {
        (&a.namespace, &a.name, b.version).cmp(&(&b.namespace, &b.name, a.version))
    });
    revisions
        .dedup_by(|later, first| later.namespace == first.namespace && later.name == first.name);
    revisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn release_json(name: &str, version: u32, status: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "namespace": "karpenter",
            "version": version,
            "info": {
                "first_deployed": "2026-11-22T00:00:00Z",
                "last_deployed": "2026-11-22T00:05:00Z",
                "deleted": "",
                "description": "Upgrade complete",
                "status": status
            },
            "chart": {
                "metadata": {"apiVersion": "v2", "name": "karpenter", "version": "1.6.0", "appVersion": "1.6.0", "kubeVersion": ">=1.29.0-0"},
                "templates": [{"name": "templates/deployment.yaml", "data": "YXBpVmVyc2lvbjogYXBwcy92MQ=="}],
                "values": {"replicas": 1}
            },
            "config": {"controller": {"image": {"tag": "1.6.0"}}},
            "manifest": "---\n# Source: karpenter/templates/deployment.yaml\nkind: Deployment\n",
            "hooks": null
        })
    }

    #[test]
    fn round_trips_base64_gzip_json() {
        let json = serde_json::to_vec(&release_json("karpenter", 3, "deployed")).unwrap();
        let payload = encode_release(&json);
        // gzip magic under the base64.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&payload)
            .unwrap();
        assert_eq!(&raw[..3], &GZIP_MAGIC);
        let release = decode_release(
            "karpenter/sh.helm.release.v1.karpenter.v3",
            payload.as_bytes(),
        )
        .unwrap();
        assert_eq!(release.version, 3);
        assert_eq!(release.status(), ReleaseStatus::Deployed);
        assert_eq!(release.chart_label(), "karpenter-1.6.0");
        assert_eq!(release.app_version(), "1.6.0");
        assert_eq!(release.info.deleted, None);
        assert!(release.hooks.is_empty());
        assert_eq!(release.config["controller"]["image"]["tag"], "1.6.0");
    }

    #[test]
    fn accepts_uncompressed_legacy_records() {
        let json = serde_json::to_vec(&release_json("kserve", 1, "superseded")).unwrap();
        let payload = base64::engine::general_purpose::STANDARD.encode(&json);
        let release = decode_release("x", payload.as_bytes()).unwrap();
        assert_eq!(release.status(), ReleaseStatus::Superseded);
    }

    #[test]
    fn names_the_object_on_bad_payloads() {
        let err = decode_release("ns/obj", b"%%%").unwrap_err();
        assert!(matches!(err, StorageError::Base64 { .. }));
        assert!(err.to_string().starts_with("ns/obj:"), "{err}");

        let mut truncated = base64::engine::general_purpose::STANDARD
            .decode(encode_release(b"{\"name\":\"x\"}"))
            .unwrap();
        truncated.truncate(12);
        let payload = base64::engine::general_purpose::STANDARD.encode(truncated);
        assert!(matches!(
            decode_release("ns/obj", payload.as_bytes()).unwrap_err(),
            StorageError::Gzip { .. }
        ));

        let payload = encode_release(b"{\"not\":\"a release\"}");
        assert!(matches!(
            decode_release("ns/obj", payload.as_bytes()).unwrap_err(),
            StorageError::Json { .. }
        ));
    }

    #[test]
    fn object_names() {
        assert_eq!(
            object_name("argo-workflows", 12),
            "sh.helm.release.v1.argo-workflows.v12"
        );
        assert_eq!(
            parse_object_name("sh.helm.release.v1.my.dotted.name.v7"),
            Some(("my.dotted.name", 7))
        );
        assert_eq!(parse_object_name("sh.helm.release.v1.x.vX"), None);
        assert_eq!(parse_object_name("other"), None);
    }

    #[test]
    fn latest_revision_per_release() {
        let decode = |name: &str, v: u32, status: &str| {
            serde_json::from_value::<StoredRelease>(release_json(name, v, status)).unwrap()
        };
        let latest = latest_revisions(vec![
            decode("a", 1, "superseded"),
            decode("b", 1, "deployed"),
            decode("a", 3, "failed"),
            decode("a", 2, "deployed"),
        ]);
        let got: Vec<(String, u32)> = latest.iter().map(|r| (r.name.clone(), r.version)).collect();
        assert_eq!(got, [("a".to_string(), 3), ("b".to_string(), 1)]);
    }
}
