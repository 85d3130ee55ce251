//! Moving a Helm release's stored manifest off removed APIs, as the helm-mapkubeapis plugin
//! does, as a snapshotted and reversible step.
//!
//! Helm compares a new render with the manifest stored in the release's latest revision; once
//! the cluster no longer serves an API that manifest names, `helm upgrade` fails with
//! "unable to recognize" until the stored record is rewritten. The record (a Secret, Helm's
//! default, or a ConfigMap with `HELM_DRIVER=configmap`; Helm 3 and 4 share the format) is
//! decoded with the one codec of `upgrade-helm-storage`, only its `manifest` field changes,
//! every other field of the record (the chart, values, hooks) is kept byte for byte in its
//! JSON, and the payload before is snapshotted so the rollback puts it back.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use upgrade_checks::manifest::{ApiMapping, map_api_versions, objects};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_helm_storage::codec::{decode_payload, encode_release, parse_object_name};

use crate::connect::Cluster;
use crate::error::{Error, Result};
use crate::helm_storage::RELEASE_SECRET_TYPE;

/// Where Helm keeps the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Secrets (Helm's default driver).
    Secret,
    /// ConfigMaps (`HELM_DRIVER=configmap`).
    ConfigMap,
}

/// The latest stored revision of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    /// Which kind of object holds it.
    pub storage: StorageKind,
    /// The object, `sh.helm.release.v1.NAME.vN`.
    pub object: String,
    /// The revision.
    pub revision: u32,
    /// Its status (`deployed`, `failed`, `pending-upgrade`…).
    pub status: String,
    /// Its stored manifest.
    pub manifest: String,
}

/// The latest stored revision of release `name` in `namespace`, from either driver
/// (`None` when Helm keeps no record of it there).
pub async fn latest_revision(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<StoredRevision>> {
    let params = ListParams::default().labels(&format!("owner=helm,name={name}"));
    let secrets: Api<Secret> = Api::namespaced(cluster.client().clone(), namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), namespace);
    let action = format!("list the Helm records of {namespace}/{name}");
    let (secrets, configmaps) = tokio::try_join!(
        crate::retry::read(&action, secrets.list(&params)),
        crate::retry::read(&action, configmaps.list(&params)),
    )?;
    let mut found: Vec<(u32, StorageKind, String, String)> = Vec::new();
    for secret in secrets.items {
        if secret.type_.as_deref() != Some(RELEASE_SECRET_TYPE) {
            continue;
        }
        let object = secret.metadata.name.unwrap_or_default();
        let payload = secret.data.and_then(|d| {
            d.get("release")
                .map(|p| String::from_utf8_lossy(&p.0).into_owned())
        });
        if let (Some((_, revision)), Some(payload)) = (parse_object_name(&object), payload) {
            found.push((revision, StorageKind::Secret, object.clone(), payload));
        }
    }
    for cm in configmaps.items {
        let object = cm.metadata.name.unwrap_or_default();
        let payload = cm.data.and_then(|d| d.get("release").cloned());
        if let (Some((_, revision)), Some(payload)) = (parse_object_name(&object), payload) {
            found.push((revision, StorageKind::ConfigMap, object.clone(), payload));
        }
    }
    let Some((revision, storage, object, payload)) = found.into_iter().max_by_key(|f| f.0) else {
        return Ok(None);
    };
    let record = decode_record(&format!("{namespace}/{object}"), &payload)?;
    Ok(Some(StoredRevision {
        storage,
        object,
        revision,
        status: record["info"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        manifest: record["manifest"].as_str().unwrap_or_default().to_string(),
    }))
}

/// The release record of a payload, as JSON (every field kept).
fn decode_record(object: &str, payload: &str) -> Result<serde_json::Value> {
    let json = decode_payload(object, payload.as_bytes()).map_err(|e| Error::Facts {
        object: object.to_string(),
        problem: e.to_string(),
    })?;
    serde_json::from_slice(&json).map_err(|e| Error::Facts {
        object: object.to_string(),
        problem: format!("the release record is not JSON: {e}"),
    })
}

/// What [`ReleaseApiMapStep`] rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseApiMapSpec {
    /// Step id, e.g. `release/map-apis`.
    pub id: String,
    /// Component, e.g. the release name.
    pub component: String,
    /// The release's namespace.
    pub namespace: String,
    /// The release.
    pub release: String,
    /// The driver that holds it.
    pub storage: StorageKind,
    /// The storage object of the latest revision.
    pub object: String,
    /// The APIs to move.
    pub mappings: Vec<ApiMapping>,
}

impl StepSpec for ReleaseApiMapSpec {
    const KIND: &'static str = "helm-release-map-apis";
}

/// Rewrites the stored manifest of a release's latest revision to the replacement APIs.
#[derive(Debug, Clone)]
pub struct ReleaseApiMapStep {
    /// What to rewrite.
    pub spec: ReleaseApiMapSpec,
    /// The cluster.
    pub cluster: Cluster,
}

const BEFORE_FILE: &str = "release-record.json";

#[derive(Serialize, Deserialize)]
struct Before {
    object: String,
    payload: String,
}

impl ReleaseApiMapStep {
    fn label(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.object)
    }

    async fn read_payload(&self) -> Result<String> {
        let action = format!("read the Helm record {}", self.label());
        let missing = || Error::Facts {
            object: self.label(),
            problem: "the Helm record (or its `release` key) is gone".into(),
        };
        match self.spec.storage {
            StorageKind::Secret => {
                let api: Api<Secret> =
                    Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
                let secret = crate::retry::read(&action, api.get_opt(&self.spec.object))
                    .await?
                    .ok_or_else(missing)?;
                let bytes = secret
                    .data
                    .and_then(|d| d.get("release").cloned())
                    .ok_or_else(missing)?;
                Ok(String::from_utf8_lossy(&bytes.0).into_owned())
            }
            StorageKind::ConfigMap => {
                let api: Api<ConfigMap> =
                    Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
                let cm = crate::retry::read(&action, api.get_opt(&self.spec.object))
                    .await?
                    .ok_or_else(missing)?;
                cm.data
                    .and_then(|d| d.get("release").cloned())
                    .ok_or_else(missing)
            }
        }
    }

    /// Puts `payload` in the record's `release` key (a merge patch: the same payload twice is
    /// the same write, so a lost answer is sent again).
    async fn write_payload(&self, payload: &str) -> Result<()> {
        let action = format!("write the Helm record {}", self.label());
        let params = PatchParams::default();
        match self.spec.storage {
            StorageKind::Secret => {
                let api: Api<Secret> =
                    Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
                let patch = Secret {
                    data: Some(BTreeMap::from([(
                        "release".to_string(),
                        ByteString(payload.as_bytes().to_vec()),
                    )])),
                    ..Secret::default()
                };
                let patch = Patch::Merge(&patch);
                crate::retry::idempotent_write(&action, || {
                    api.patch(&self.spec.object, &params, &patch)
                })
                .await?;
            }
            StorageKind::ConfigMap => {
                let api: Api<ConfigMap> =
                    Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
                let patch = ConfigMap {
                    data: Some(BTreeMap::from([(
                        "release".to_string(),
                        payload.to_string(),
                    )])),
                    ..ConfigMap::default()
                };
                let patch = Patch::Merge(&patch);
                crate::retry::idempotent_write(&action, || {
                    api.patch(&self.spec.object, &params, &patch)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// What of the mappings' removed APIs the stored manifest still holds.
    fn left(&self, manifest: &str) -> Vec<String> {
        objects(manifest)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| {
                self.spec
                    .mappings
                    .iter()
                    .any(|m| m.kind == o.kind && m.from == o.api_version)
            })
            .map(|o| format!("{} {} ({})", o.kind, o.name, o.api_version))
            .collect()
    }
}

impl Step for ReleaseApiMapStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        let moves: Vec<String> = self
            .spec
            .mappings
            .iter()
            .map(|m| format!("{} {} -> {}", m.kind, m.from, m.to))
            .collect();
        format!(
            "rewrite the stored manifest of release {}/{} ({}): {}",
            self.spec.namespace,
            self.spec.release,
            self.spec.object,
            moves.join(", ")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let payload = self.read_payload().await?;
            snapshot.put_json(
                BEFORE_FILE,
                &Before {
                    object: self.spec.object.clone(),
                    payload,
                },
            )?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.cluster.guard()?;
            let payload = self.read_payload().await?;
            let mut record = decode_record(&self.label(), &payload)?;
            let manifest = record["manifest"].as_str().unwrap_or_default();
            let (mapped, moved) = map_api_versions(manifest, &self.spec.mappings);
            if moved.is_empty() {
                // Already rewritten (a resumed run): nothing to write.
                return Ok(());
            }
            record["manifest"] = serde_json::Value::String(mapped);
            let json = serde_json::to_vec(&record).expect("a JSON value serialises");
            self.write_payload(&encode_release(&json)).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let payload = self.read_payload().await?;
            let record = decode_record(&self.label(), &payload)?;
            let left = self.left(record["manifest"].as_str().unwrap_or_default());
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the stored manifest of {} still holds {}",
                    self.label(),
                    left.join(", ")
                )
                .into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Before = snapshot.get_json(BEFORE_FILE)?;
            if self.read_payload().await? != before.payload {
                self.write_payload(&before.payload).await?;
            }
            Ok(())
        })
    }
}
