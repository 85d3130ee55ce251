//! ACK (AWS Controllers for Kubernetes) SageMaker endpoints across a blue/green upgrade (seed
//! 001's `ack_helper.py`): on the old cluster each `endpoints.sagemaker.services.k8s.aws` is
//! kept from deleting its SageMaker endpoint (the `services.k8s.aws/deletion-policy: retain`
//! annotation for ACK runtime > 0.22.1, else its ACK finalizer removed); on the new cluster an
//! `AdoptedResource` binds a new custom resource to the existing endpoint. An endpoint is never
//! deleted or created twice.

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::connect::Cluster;
use crate::error::{Error, Result, api_code};

/// ACK's SageMaker endpoint kind.
pub const ENDPOINT: (&str, &str, &str, &str) = (
    "sagemaker.services.k8s.aws",
    "v1alpha1",
    "Endpoint",
    "endpoints",
);
/// ACK's adoption kind.
pub const ADOPTED_RESOURCE: (&str, &str, &str, &str) = (
    "services.k8s.aws",
    "v1alpha1",
    "AdoptedResource",
    "adoptedresources",
);
/// The annotation that keeps ACK from deleting the AWS resource with its custom resource.
pub const DELETION_POLICY: &str = "services.k8s.aws/deletion-policy";
/// The last ACK runtime without the deletion-policy annotation (seed 001: annotate above it).
pub const LAST_RUNTIME_WITHOUT_POLICY: semver::Version = semver::Version::new(0, 22, 1);

/// How the old cluster's endpoints are kept from deleting their SageMaker endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// `services.k8s.aws/deletion-policy: retain` (ACK runtime > 0.22.1).
    RetainAnnotation,
    /// The ACK finalizer removed (older runtimes).
    RemoveFinalizer,
}

impl Protection {
    /// The method seed 001 gives for ACK runtime `runtime`.
    pub fn for_runtime(runtime: &semver::Version) -> Protection {
        if *runtime > LAST_RUNTIME_WITHOUT_POLICY {
            Protection::RetainAnnotation
        } else {
            Protection::RemoveFinalizer
        }
    }
}

fn api_resource((group, version, kind, plural): (&str, &str, &str, &str)) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn api(cluster: &Cluster, kind: (&str, &str, &str, &str), ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(cluster.client().clone(), ns, &api_resource(kind))
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

fn is_ack_finalizer(finalizer: &str) -> bool {
    finalizer.contains(".services.k8s.aws/")
}

/// Every ACK SageMaker endpoint on `cluster` as JSON, or `None` when it does not serve the kind.
pub async fn endpoints(cluster: &Cluster) -> Result<Option<Vec<Value>>> {
    Ok(
        crate::retry::list_if_served(cluster.client(), ENDPOINT, 500)
            .await?
            .map(|objects| {
                objects
                    .into_iter()
                    .map(|o| serde_json::to_value(o).expect("objects serialise"))
                    .collect()
            }),
    )
}

/// Whether `cluster` serves `AdoptedResource` (the ACK runtime is installed).
pub async fn serves_adoption(cluster: &Cluster) -> Result<bool> {
    let (group, version, _, plural) = ADOPTED_RESOURCE;
    let group_version = format!("{group}/{version}");
    crate::retry::read(&format!("discover {group_version}"), async {
        match cluster
            .client()
            .list_api_group_resources(&group_version)
            .await
        {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
            Err(e) if api_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

/// What protection changes on one endpoint, to put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionState {
    /// `namespace/name`.
    pub endpoint: String,
    /// Its deletion-policy annotation.
    pub deletion_policy: Option<String>,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// The protection-relevant state of each endpoint (`namespace/name`); a missing one is an error.
pub async fn protection_state(cluster: &Cluster, keys: &[String]) -> Result<Vec<ProtectionState>> {
    let mut out = Vec::new();
    for key in keys {
        let (ns, name) = split(key);
        let object = crate::retry::read(
            &format!("read endpoint {key}"),
            api(cluster, ENDPOINT, ns).get(name),
        )
        .await?;
        out.push(ProtectionState {
            endpoint: key.clone(),
            deletion_policy: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_POLICY).cloned()),
            finalizers: object.metadata.finalizers.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Whether `state` is protected by `method`.
pub fn is_protected(state: &ProtectionState, method: Protection) -> bool {
    match method {
        Protection::RetainAnnotation => state.deletion_policy.as_deref() == Some("retain"),
        Protection::RemoveFinalizer => !state.finalizers.iter().any(|f| is_ack_finalizer(f)),
    }
}

async fn merge(cluster: &Cluster, key: &str, patch: Value) -> Result<()> {
    let (ns, name) = split(key);
    let endpoints = api(cluster, ENDPOINT, ns);
    let params = PatchParams::default();
    let patch = Patch::Merge(patch);
    crate::retry::idempotent_write(&format!("patch endpoint {key}"), || {
        endpoints.patch(name, &params, &patch)
    })
    .await?;
    Ok(())
}

/// Protects each endpoint of `states` with `method`.
pub async fn protect(
    cluster: &Cluster,
    states: &[ProtectionState],
    method: Protection,
) -> Result<()> {
    cluster.guard()?;
    for state in states {
        let patch = match method {
            Protection::RetainAnnotation => {
                json!({"metadata": {"annotations": {DELETION_POLICY: "retain"}}})
            }
            Protection::RemoveFinalizer => json!({"metadata": {"finalizers": state
                .finalizers
                .iter()
                .filter(|f| !is_ack_finalizer(f))
                .collect::<Vec<_>>()}}),
        };
        merge(cluster, &state.endpoint, patch).await?;
    }
    Ok(())
}

/// Puts each endpoint's annotation and finalizers back as `states` recorded them.
pub async fn restore_protection(cluster: &Cluster, states: &[ProtectionState]) -> Result<()> {
    cluster.guard()?;
    for state in states {
        merge(
            cluster,
            &state.endpoint,
            json!({"metadata": {
                "annotations": {DELETION_POLICY: state.deletion_policy},
                "finalizers": state.finalizers,
            }}),
        )
        .await?;
    }
    Ok(())
}

/// The `AdoptedResource` that binds a new cluster's custom resource to `endpoint`'s SageMaker
/// endpoint (ACK's adopted-resource pattern), or why there can be none.
pub fn adopted_resource(endpoint: &Value) -> std::result::Result<Value, String> {
    let name = endpoint["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = endpoint["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let aws_name = endpoint["spec"]["endpointName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("endpoint {namespace}/{name} has no spec.endpointName"))?;
    let mut kubernetes = json!({
        "group": ENDPOINT.0,
        "kind": ENDPOINT.2,
        // The new cluster's resource must not delete the endpoint either until the old
        // cluster is retired: whoever owns it then removes the annotation.
        "metadata": {"name": name, "namespace": namespace, "annotations": {DELETION_POLICY: "retain"}},
    });
    if let Some(labels) = endpoint["metadata"]["labels"].as_object() {
        kubernetes["metadata"]["labels"] = Value::Object(labels.clone());
    }
    Ok(json!({
        "apiVersion": format!("{}/{}", ADOPTED_RESOURCE.0, ADOPTED_RESOURCE.1),
        "kind": ADOPTED_RESOURCE.2,
        "metadata": {"name": format!("{name}-adopted"), "namespace": namespace},
        "spec": {"aws": {"nameOrID": aws_name}, "kubernetes": kubernetes},
    }))
}

/// Creates each adopted resource on `cluster`; returns the `namespace/name`s it created (one
/// that exists already is left as it is).
pub async fn create_adopted(cluster: &Cluster, manifests: &[Value]) -> Result<Vec<String>> {
    cluster.guard()?;
    let mut created = Vec::new();
    for manifest in manifests {
        let ns = manifest["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        let object: DynamicObject = serde_json::from_value(manifest.clone())
            .map_err(|e| Error::Backup(format!("adopted resource {ns}/{name}: {e}")))?;
        let adopted = api(cluster, ADOPTED_RESOURCE, ns);
        let params = PostParams::default();
        match crate::retry::idempotent_write(
            &format!("create adopted resource {ns}/{name}"),
            || adopted.create(&params, &object),
        )
        .await
        {
            Ok(_) => created.push(format!("{ns}/{name}")),
            Err(Error::Api { source, .. }) if api_code(&source) == Some(409) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Which of `keys` (`namespace/name`) exist on `cluster` as `kind` ([`ENDPOINT`] or
/// [`ADOPTED_RESOURCE`]); a kind the cluster does not serve has none.
pub async fn present(
    cluster: &Cluster,
    kind: (&str, &str, &str, &str),
    keys: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for key in keys {
        let (ns, name) = split(key);
        match crate::retry::read(
            &format!("read {} {key}", kind.2),
            api(cluster, kind, ns).get_opt(name),
        )
        .await
        {
            Ok(Some(_)) => out.push(key.clone()),
            Ok(None) => {}
            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Deletes the adopted resources `keys` (`namespace/name`) from `cluster`. The endpoint
/// resources ACK created from them keep their SageMaker endpoints: adoption retains them.
pub async fn delete_adopted(cluster: &Cluster, keys: &[String]) -> Result<()> {
    cluster.guard()?;
    for key in keys {
        let (ns, name) = split(key);
        let adopted = api(cluster, ADOPTED_RESOURCE, ns);
        let params = kube::api::DeleteParams::default();
        match crate::retry::idempotent_write(&format!("delete adopted resource {key}"), || {
            adopted.delete(name, &params)
        })
        .await
        {
            Ok(_) => {}
            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_001_picks_the_annotation_only_above_runtime_0_22_1() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert_eq!(
            Protection::for_runtime(&v("0.22.2")),
            Protection::RetainAnnotation
        );
        assert_eq!(
            Protection::for_runtime(&v("0.43.0")),
            Protection::RetainAnnotation
        );
        assert_eq!(
            Protection::for_runtime(&v("0.22.1")),
            Protection::RemoveFinalizer
        );
        assert_eq!(
            Protection::for_runtime(&v("0.21.0")),
            Protection::RemoveFinalizer
        );
    }

    #[test]
    fn an_adopted_resource_names_the_sagemaker_endpoint() {
        let endpoint = json!({"metadata": {"name": "churn", "namespace": "ml", "labels": {"team": "a"}},
            "spec": {"endpointName": "churn-prod", "endpointConfigName": "c"}});
        let adopted = adopted_resource(&endpoint).unwrap();
        assert_eq!(adopted["spec"]["aws"]["nameOrID"], "churn-prod");
        assert_eq!(adopted["spec"]["kubernetes"]["kind"], "Endpoint");
        assert_eq!(
            adopted["spec"]["kubernetes"]["metadata"]["labels"]["team"],
            "a"
        );
        assert_eq!(adopted["metadata"]["namespace"], "ml");
        assert!(adopted_resource(&json!({"metadata": {"name": "x"}, "spec": {}})).is_err());
    }
}
