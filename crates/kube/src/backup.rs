//! Custom-resource backup and restore (the seeds' `kubectl get inferenceservice -A -o yaml >
//! backup.yaml` and `kubectl apply -f backup.yaml`, done so the restore really works).
//!
//! The export strips what the server sets (uid, resourceVersion, managedFields, status,
//! creationTimestamp, generation, ...), so the file re-applies cleanly on the same or a new
//! cluster; the restore uses server-side apply with our field manager.

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde::{Deserialize, Serialize};

use crate::connect::Cluster;
use crate::cordon::FIELD_MANAGER;
use crate::error::{Error, Result, api_code};

/// A kind to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupKind {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
}

impl BackupKind {
    /// A kind by group, version, kind and plural.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        BackupKind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    pub(crate) fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }
}

/// The kinds the seeds back up before an upgrade, by component.
pub fn platform_kinds(component: &str) -> Vec<BackupKind> {
    match component {
        "kserve" => vec![
            BackupKind::new(
                "serving.kserve.io",
                "v1beta1",
                "InferenceService",
                "inferenceservices",
            ),
            BackupKind::new(
                "serving.kserve.io",
                "v1alpha1",
                "ServingRuntime",
                "servingruntimes",
            ),
        ],
        "argo-workflows" => vec![
            BackupKind::new("argoproj.io", "v1alpha1", "Workflow", "workflows"),
            BackupKind::new(
                "argoproj.io",
                "v1alpha1",
                "WorkflowTemplate",
                "workflowtemplates",
            ),
            BackupKind::new("argoproj.io", "v1alpha1", "CronWorkflow", "cronworkflows"),
        ],
        "karpenter" => vec![
            BackupKind::new("karpenter.sh", "v1", "NodePool", "nodepools"),
            BackupKind::new("karpenter.k8s.aws", "v1", "EC2NodeClass", "ec2nodeclasses"),
        ],
        "argocd" => vec![
            BackupKind::new("argoproj.io", "v1alpha1", "Application", "applications"),
            BackupKind::new("argoproj.io", "v1alpha1", "AppProject", "appprojects"),
        ],
        _ => Vec::new(),
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backup {
    /// The objects, cleaned.
    pub objects: Vec<serde_json::Value>,
    /// Kinds the cluster does not serve (no CRD): nothing to back up, noted for the report.
    pub not_served: Vec<String>,
}

impl Backup {
    /// Multi-document YAML, one object per document, in a stable order.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for obj in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(obj).expect("JSON values serialise to YAML"));
        }
        out
    }

    /// Parses multi-document YAML written by [`to_yaml`](Self::to_yaml) (or by kubectl,
    /// including `kind: List` documents).
    pub fn from_yaml(text: &str) -> Result<Backup> {
        let mut objects = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(doc)
                .map_err(|e| Error::Backup(format!("the backup is not valid YAML: {e}")))?;
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::Object(ref map)
                    if map.get("kind").and_then(|k| k.as_str()) == Some("List") =>
                {
                    for item in map
                        .get("items")
                        .and_then(|i| i.as_array())
                        .into_iter()
                        .flatten()
                    {
                        objects.push(clean(item.clone()));
                    }
                }
                other => objects.push(clean(other)),
            }
        }
        Ok(Backup {
            objects,
            not_served: Vec::new(),
        })
    }
}

/// Removes the fields the server sets, so the object re-applies cleanly.
pub fn clean(mut obj: serde_json::Value) -> serde_json::Value {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for field in [
                "uid",
                "resourceVersion",
                "managedFields",
                "creationTimestamp",
                "generation",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(field);
            }
        }
    }
    obj
}

/// Exports every object of `kinds` (in all namespaces, or one).
pub async fn backup(
    cluster: &Cluster,
    kinds: &[BackupKind],
    namespace: Option<&str>,
) -> Result<Backup> {
    let mut out = Backup::default();
    for kind in kinds {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &ar),
            None => Api::all_with(cluster.client().clone(), &ar),
        };
        let params = ListParams::default();
        let listed = crate::retry::read(&format!("list {}", kind.plural), api.list(&params)).await;
        let list = match listed {
            Ok(list) => list,
            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => {
                // Not installed: nothing to back up. Installed at other versions only: its
                // objects exist but cannot be read at this one, and an empty backup would
                // restore nothing, so that is an error.
                if let Some(served) = served_versions(cluster, kind).await? {
                    if served.contains(&kind.version) {
                        return Err(Error::Backup(format!(
                            "{} ({}.{}): the CRD serves {} but its API is not available yet (not Established); try again in a moment",
                            kind.kind, kind.plural, kind.group, kind.version
                        )));
                    }
                    return Err(Error::Backup(format!(
                        "{} ({}.{}): the cluster serves {}, not {}; a backup at {} would miss every object. Back up a served version (the kind's apiVersion), or upgrade the CRD first",
                        kind.kind,
                        kind.plural,
                        kind.group,
                        if served.is_empty() {
                            "no version of it".to_string()
                        } else {
                            served.join(", ")
                        },
                        kind.version,
                        kind.version
                    )));
                }
                out.not_served
                    .push(format!("{}.{}/{}", kind.plural, kind.group, kind.version));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut items: Vec<serde_json::Value> = list
            .items
            .into_iter()
            .map(|mut o| {
                o.types = Some(kube::api::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                });
                clean(serde_json::to_value(o).expect("objects serialise"))
            })
            .collect();
        items.sort_by_key(|o| {
            (
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        out.objects.extend(items);
    }
    Ok(out)
}

/// The versions the CRD of `kind` serves, when the CRD is installed.
async fn served_versions(cluster: &Cluster, kind: &BackupKind) -> Result<Option<Vec<String>>> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    if kind.group.is_empty() {
        return Ok(None);
    }
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client().clone());
    let name = format!("{}.{}", kind.plural, kind.group);
    let crd = crate::retry::read(&format!("read CRD {name}"), crds.get_opt(&name)).await?;
    Ok(crd.map(|crd| {
        crd.spec
            .versions
            .into_iter()
            .filter(|v| v.served)
            .map(|v| v.name)
            .collect()
    }))
}

/// Applies every object of `backup` with server-side apply (creating or overwriting).
/// `kinds` maps each object's apiVersion and kind to its plural.
pub async fn restore(cluster: &Cluster, backup: &Backup, kinds: &[BackupKind]) -> Result<usize> {
    cluster.guard()?;
    let mut applied = 0;
    for obj in &backup.objects {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind_name = obj["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind_name)
            .ok_or_else(|| {
                Error::Backup(format!(
                    "the backup holds a {kind_name} ({api_version}), which is not among the kinds to restore"
                ))
            })?;
        let ar = kind.api_resource();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &ar),
            None => Api::all_with(cluster.client().clone(), &ar),
        };
        // Server-side apply is idempotent: an apply that failed for now is tried again.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(obj);
        crate::retry::idempotent_write(&format!("restore {kind_name} {name}"), || {
            api.patch(name, &params, &patch)
        })
        .await?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_server_fields_and_yaml_round_trips() {
        let obj = serde_json::json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": "sklearn-iris", "namespace": "mlops", "uid": "u", "resourceVersion": "9",
                "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}], "labels": {"team": "ml"}
            },
            "spec": {"predictor": {"model": {"storageUri": "s3://models/iris/v1"}}},
            "status": {"url": "http://x"}
        });
        let backup = Backup {
            objects: vec![clean(obj)],
            not_served: vec![],
        };
        let yaml = backup.to_yaml();
        insta::assert_snapshot!(yaml, @r"
        ---
        apiVersion: serving.kserve.io/v1beta1
        kind: InferenceService
        metadata:
          labels:
            team: ml
          name: sklearn-iris
          namespace: mlops
        spec:
          predictor:
            model:
              storageUri: s3://models/iris/v1
        ");
        assert_eq!(Backup::from_yaml(&yaml).unwrap(), backup);
    }

    #[test]
    fn kubectl_list_output_is_accepted() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: argoproj.io/v1alpha1\n  kind: WorkflowTemplate\n  metadata: {name: t, namespace: argo, uid: x}\n  spec: {}\n";
        let b = Backup::from_yaml(yaml).unwrap();
        assert_eq!(b.objects.len(), 1);
        assert!(b.objects[0]["metadata"].get("uid").is_none());
    }
}
