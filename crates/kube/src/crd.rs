//! CustomResourceDefinitions a chart brings, against the cluster's.
//!
//! `helm upgrade` never touches the CRDs under a chart's `crds/`, and a separate CRD chart
//! (`karpenter-crd`, `kserve-crd`) is a release of its own: a component upgrade that only
//! runs `helm upgrade` on the main release leaves the cluster's definitions at the old
//! version (seen: Karpenter 1.5.0 → 1.14.0 without the `nodeoverlays` and `capacitybuffers`
//! CRDs). This module compares definitions ([`compare_definition`], by
//! [`CrdFingerprint`]), names the stored versions a new definition would drop (the API
//! server refuses such an update, and objects stored at that version could not be read),
//! applies definitions as a reversible step ([`CrdApplyStep`]) and checks after the upgrade
//! that the cluster serves what the chart ships ([`not_current`]).

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::backup::clean;
use crate::connect::Cluster;
use crate::cordon::FIELD_MANAGER;
use crate::error::{Error, Result, api_code};

/// One served version of a definition, as compared: its flags and a digest of its schema,
/// subresources and printer columns (what changes between releases of a CRD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrdVersionPrint {
    /// The version's name, e.g. `v1`.
    pub name: String,
    /// Whether it is served.
    pub served: bool,
    /// Whether it is the storage version.
    pub storage: bool,
    /// SHA-256 of the version's canonical JSON without `name`, `served` and `storage`.
    pub digest: String,
}

/// What a definition is, in a few hundred bytes (recorded in run records, where the
/// definitions themselves would take megabytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrdFingerprint {
    /// `plural.group`.
    pub name: String,
    /// Its versions, in the definition's order.
    pub versions: Vec<CrdVersionPrint>,
}

/// A definition's `metadata.name`.
pub fn crd_name(definition: &Value) -> &str {
    definition["metadata"]["name"].as_str().unwrap_or_default()
}

/// JSON with object keys sorted, so equal values give equal bytes.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

impl CrdFingerprint {
    /// The fingerprint of a definition (as a chart ships it or as the cluster serves it).
    pub fn of(definition: &Value) -> CrdFingerprint {
        let versions = definition["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|version| {
                let mut rest = version.clone();
                if let Some(map) = rest.as_object_mut() {
                    for field in ["name", "served", "storage"] {
                        map.remove(field);
                    }
                    // Absent and empty are the same to the API server.
                    map.retain(|_, v| !v.is_null() && v != &Value::Array(Vec::new()));
                }
                CrdVersionPrint {
                    name: version["name"].as_str().unwrap_or_default().to_string(),
                    served: version["served"].as_bool().unwrap_or(false),
                    storage: version["storage"].as_bool().unwrap_or(false),
                    digest: format!("{:x}", Sha256::digest(canonical(&rest).as_bytes())),
                }
            })
            .collect();
        CrdFingerprint {
            name: crd_name(definition).to_string(),
            versions,
        }
    }

    /// How `live` differs from this (the wanted) fingerprint, one phrase each; empty when
    /// they are the same.
    pub fn differences(&self, live: &CrdFingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for want in &self.versions {
            match live.versions.iter().find(|v| v.name == want.name) {
                None => out.push(format!("version {} is missing", want.name)),
                Some(have) => {
                    if have.served != want.served {
                        out.push(format!(
                            "version {} is {}served",
                            want.name,
                            if have.served { "" } else { "not " }
                        ));
                    }
                    if have.storage != want.storage {
                        out.push(format!(
                            "the storage version is {}",
                            live.versions
                                .iter()
                                .find(|v| v.storage)
                                .map_or("none", |v| v.name.as_str())
                        ));
                    }
                    if have.digest != want.digest {
                        out.push(format!("version {}'s schema differs", want.name));
                    }
                }
            }
        }
        for have in &live.versions {
            if !self.versions.iter().any(|v| v.name == have.name) {
                out.push(format!("version {} is not in the chart's", have.name));
            }
        }
        out
    }
}

/// How a live definition stands against a chart's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrdState {
    /// Not in the cluster.
    Missing,
    /// In the cluster, but not as the chart has it (what differs).
    Differs(Vec<String>),
    /// As the chart has it.
    Current,
}

/// A chart's definition against the cluster's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdComparison {
    /// `plural.group`.
    pub name: String,
    /// How the live definition stands.
    pub state: CrdState,
    /// Versions in the live `status.storedVersions` that the chart's definition drops: the
    /// API server refuses the update until a storage migration removes them.
    pub dropped_stored_versions: Vec<String>,
    /// The Helm release that owns the live definition (`meta.helm.sh/release-namespace`,
    /// `meta.helm.sh/release-name`).
    pub owner: Option<(String, String)>,
    /// The kind the live definition serves, at its storage version (for a backup of its
    /// objects); `None` when it is missing.
    pub live_kind: Option<crate::backup::BackupKind>,
}

/// The kind a definition serves at its storage version.
pub fn storage_kind(definition: &Value) -> Option<crate::backup::BackupKind> {
    let spec = &definition["spec"];
    let version = spec["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))?;
    Some(crate::backup::BackupKind::new(
        spec["group"].as_str()?,
        version["name"].as_str()?,
        spec["names"]["kind"].as_str()?,
        spec["names"]["plural"].as_str()?,
    ))
}

/// Compares a chart's definition with the live one (`None`: not in the cluster).
pub fn compare_definition(new: &Value, live: Option<&Value>) -> CrdComparison {
    let name = crd_name(new).to_string();
    let Some(live) = live else {
        return CrdComparison {
            name,
            state: CrdState::Missing,
            dropped_stored_versions: Vec::new(),
            owner: None,
            live_kind: None,
        };
    };
    let differences = CrdFingerprint::of(new).differences(&CrdFingerprint::of(live));
    let kept: Vec<&str> = new["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let dropped_stored_versions = live["status"]["storedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|v| !kept.contains(v))
        .map(str::to_string)
        .collect();
    let annotations = &live["metadata"]["annotations"];
    let owner = match (
        annotations["meta.helm.sh/release-namespace"].as_str(),
        annotations["meta.helm.sh/release-name"].as_str(),
    ) {
        (Some(ns), Some(name)) => Some((ns.to_string(), name.to_string())),
        _ => None,
    };
    CrdComparison {
        name,
        state: if differences.is_empty() {
            CrdState::Current
        } else {
            CrdState::Differs(differences)
        },
        dropped_stored_versions,
        owner,
        live_kind: storage_kind(live),
    }
}

fn crd_api(cluster: &Cluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    Api::all_with(cluster.client().clone(), &ApiResource::from_gvk(&gvk))
}

/// The live definition named `name`, as JSON (`None` when there is none).
pub async fn live_crd(cluster: &Cluster, name: &str) -> Result<Option<Value>> {
    let api = crd_api(cluster);
    let found = crate::retry::read(&format!("read CRD {name}"), api.get_opt(name)).await?;
    Ok(found.map(|obj| serde_json::to_value(obj).expect("an object serialises")))
}

/// Compares each of a chart's definitions with the cluster's.
pub async fn compare(cluster: &Cluster, definitions: &[Value]) -> Result<Vec<CrdComparison>> {
    let mut out = Vec::new();
    for new in definitions {
        let live = live_crd(cluster, crd_name(new)).await?;
        out.push(compare_definition(new, live.as_ref()));
    }
    Ok(out)
}

/// What is not current among `expected`: one line per definition that is missing or differs.
pub async fn not_current(cluster: &Cluster, expected: &[CrdFingerprint]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for want in expected {
        match live_crd(cluster, &want.name).await? {
            None => problems.push(format!("CRD {} is missing: the chart ships it", want.name)),
            Some(live) => {
                let differences = want.differences(&CrdFingerprint::of(&live));
                if !differences.is_empty() {
                    problems.push(format!(
                        "CRD {} is not the chart's: {}",
                        want.name,
                        differences.join("; ")
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// What [`CrdApplyStep`] applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrdApplySpec {
    /// Step id, e.g. `karpenter/crds`.
    pub id: String,
    /// Component, e.g. `karpenter`.
    pub component: String,
    /// The chart's definitions, whole (from its `crds/`).
    pub definitions: Vec<Value>,
}

impl StepSpec for CrdApplySpec {
    const KIND: &'static str = "kube-crd-apply";
}

/// Puts a chart's `crds/` definitions into the cluster, which `helm upgrade` never does: a
/// missing definition is created with server-side apply; an existing one gets the chart's
/// spec whole (a replace, so a field the new schema dropped does not survive as it would
/// under an apply, where Helm still owns it from the install). The definitions before are
/// snapshotted; the rollback puts them back and deletes the ones it created while they have
/// no objects (one with objects is kept, and the rollback says so, rather than delete data).
#[derive(Debug, Clone)]
pub struct CrdApplyStep {
    /// What it applies.
    pub spec: CrdApplySpec,
    /// The cluster.
    pub cluster: Cluster,
}

const BEFORE_FILE: &str = "crds-before.json";

/// How many times a replace is tried against concurrent writers (409 Conflict).
const REPLACE_ATTEMPTS: u32 = 5;

impl CrdApplyStep {
    fn names(&self) -> Vec<&str> {
        self.spec.definitions.iter().map(crd_name).collect()
    }

    /// Sets the live definition's spec, labels and annotations to `wanted`'s, or creates it.
    async fn put(&self, wanted: &Value) -> Result<()> {
        let api = crd_api(&self.cluster);
        let name = crd_name(wanted);
        let action = format!("replace CRD {name}");
        for attempt in 1..=REPLACE_ATTEMPTS {
            let Some(live) = crate::retry::read(&action, api.get_opt(name)).await? else {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let patch = Patch::Apply(wanted);
                crate::retry::idempotent_write(&format!("create CRD {name}"), || {
                    api.patch(name, &params, &patch)
                })
                .await?;
                return Ok(());
            };
            let mut next = serde_json::to_value(&live).expect("an object serialises");
            next["spec"] = wanted["spec"].clone();
            for field in ["labels", "annotations"] {
                if let Some(map) = wanted["metadata"][field].as_object() {
                    for (k, v) in map {
                        next["metadata"][field][k] = v.clone();
                    }
                }
            }
            let next: DynamicObject = serde_json::from_value(next).map_err(|e| {
                Error::Backup(format!("the definition of CRD {name} is not valid: {e}"))
            })?;
            match api.replace(name, &PostParams::default(), &next).await {
                Ok(_) => return Ok(()),
                Err(err) if api_code(&err) == Some(409) && attempt < REPLACE_ATTEMPTS => {
                    tracing::debug!(
                        crd = name,
                        "CRD changed while replacing it; reading it again"
                    );
                }
                Err(err) if crate::retry::is_transient(&err) && attempt < REPLACE_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => return Err(Error::api(action, err)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Whether any object of the definition's kind exists.
    async fn has_objects(&self, definition: &Value) -> Result<bool> {
        let group = definition["spec"]["group"].as_str().unwrap_or_default();
        let kind = definition["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or_default();
        let plural = definition["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default();
        let Some(version) = definition["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["served"].as_bool() == Some(true))
            .and_then(|v| v["name"].as_str())
        else {
            return Ok(false);
        };
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(self.cluster.client().clone(), &ar);
        match api.list(&ListParams::default().limit(1)).await {
            Ok(list) => Ok(!list.items.is_empty()),
            Err(err) if api_code(&err) == Some(404) => Ok(false),
            Err(err) => Err(Error::api(format!("list {plural}.{group}"), err)),
        }
    }
}

impl Step for CrdApplyStep {
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
        format!("apply the chart's CRDs: {}", self.names().join(", "))
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let mut before = serde_json::Map::new();
            for name in self.names() {
                let live = live_crd(&self.cluster, name).await?;
                before.insert(name.to_string(), live.map(clean).unwrap_or(Value::Null));
            }
            snapshot.put_json(BEFORE_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.cluster.guard()?;
            for definition in &self.spec.definitions {
                self.put(definition).await?;
            }
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let expected: Vec<CrdFingerprint> = self
                .spec
                .definitions
                .iter()
                .map(CrdFingerprint::of)
                .collect();
            let problems = not_current(&self.cluster, &expected).await?;
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("\n").into())
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: serde_json::Map<String, Value> = snapshot.get_json(BEFORE_FILE)?;
            let mut kept = Vec::new();
            for definition in &self.spec.definitions {
                let name = crd_name(definition);
                match before.get(name) {
                    Some(old) if !old.is_null() => self.put(old).await?,
                    _ => {
                        if self.has_objects(definition).await? {
                            kept.push(name.to_string());
                            continue;
                        }
                        let api = crd_api(&self.cluster);
                        let params = DeleteParams::default();
                        let deleted =
                            crate::retry::idempotent_write(&format!("delete CRD {name}"), || {
                                api.delete(name, &params)
                            })
                            .await;
                        match deleted {
                            Ok(_) => {}
                            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            if !kept.is_empty() {
                tracing::warn!(
                    crds = kept.join(", "),
                    "kept CRDs the upgrade created: objects of their kinds exist now, and deleting a CRD deletes them"
                );
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(versions: Value, stored: &[&str]) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "nodepools.karpenter.sh", "annotations": {
                "meta.helm.sh/release-name": "karpenter-crd", "meta.helm.sh/release-namespace": "karpenter"}},
            "spec": {"group": "karpenter.sh", "names": {"kind": "NodePool", "plural": "nodepools"},
                     "scope": "Cluster", "versions": versions},
            "status": {"storedVersions": stored},
        })
    }

    fn version(name: &str, storage: bool, schema: Value) -> Value {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}}})
    }

    #[test]
    fn definitions_compare_by_versions_and_schema_whatever_the_key_order() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let old = crd(json!([version("v1", true, schema.clone())]), &["v1"]);
        let same = serde_json::from_str::<Value>(
            r#"{"metadata": {"name": "nodepools.karpenter.sh"}, "spec": {"versions": [
                {"subresources": {"status": {}}, "storage": true, "served": true, "name": "v1",
                 "schema": {"openAPIV3Schema": {"properties": {"spec": {"type": "object"}}, "type": "object"}}}]}}"#,
        )
        .unwrap();
        let compared = compare_definition(&same, Some(&old));
        assert_eq!(compared.state, CrdState::Current);
        assert_eq!(
            compared.owner,
            Some(("karpenter".into(), "karpenter-crd".into()))
        );
        let wider = json!({"type": "object", "properties": {"spec": {"type": "object"}, "x": {"type": "string"}}});
        let new = crd(
            json!([
                version("v1", true, wider),
                version("v1beta2", false, schema.clone())
            ]),
            &[],
        );
        assert_eq!(
            compare_definition(&new, Some(&old)).state,
            CrdState::Differs(vec![
                "version v1's schema differs".into(),
                "version v1beta2 is missing".into()
            ])
        );
        assert_eq!(compare_definition(&new, None).state, CrdState::Missing);
    }

    #[test]
    fn a_stored_version_the_new_definition_drops_is_named() {
        let schema = json!({"type": "object"});
        let live = crd(
            json!([
                version("v1alpha5", false, schema.clone()),
                version("v1", true, schema.clone())
            ]),
            &["v1alpha5", "v1"],
        );
        let new = crd(json!([version("v1", true, schema)]), &[]);
        let compared = compare_definition(&new, Some(&live));
        assert_eq!(compared.dropped_stored_versions, ["v1alpha5"]);
        assert_eq!(
            compared.state,
            CrdState::Differs(vec!["version v1alpha5 is not in the chart's".into()])
        );
    }
}
