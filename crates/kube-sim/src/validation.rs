//! The validation and normalisation rules of the real API server that upgrades trip over:
//! immutable fields (a changed Deployment selector, a changed Job template, StatefulSet
//! fields other than the updatable ones) and selectors that do not match their template.
//! Secrets' `stringData` is folded into `data`, as upstream.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selectors::LabelSelector;

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn immutable(ty: &ResourceType, obj: &Value, field: &str, value: &Value) -> ApiError {
    ApiError::invalid(
        &ty.kind,
        &ty.group,
        name(obj),
        &[(field, format!("Invalid value: {value}: field is immutable"))],
    )
}

/// Rewrites what the server stores differently from what it was sent.
pub fn normalize(ty: &ResourceType, obj: &mut Value) {
    // ObjectMeta's maps and lists are `omitempty`: an empty one (a patch that removed the
    // last annotation) is not stored.
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match meta.get(field) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
    if ty.group.is_empty()
        && ty.kind == "Secret"
        && let Some(string_data) = obj.get_mut("stringData").map(Value::take)
    {
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            if !obj["data"].is_object() {
                obj["data"] = json!({});
            }
            obj["data"][k] = json!(encoded);
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("stringData");
        }
    }
}

/// Checks a create (`old` is `None`) or an update of the object itself.
pub fn validate(ty: &ResourceType, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let workload = matches!(
        (ty.group.as_str(), ty.kind.as_str()),
        (
            "apps",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
        ) | ("batch", "Job")
    );
    if workload {
        let selector = &new["spec"]["selector"];
        let labels = &new["spec"]["template"]["metadata"]["labels"];
        if ty.kind != "Job" && selector.is_null() {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                name(new),
                &[("spec.selector", "Required value".into())],
            ));
        }
        if !selector.is_null() && !LabelSelector::from_object(selector).matches_labels(labels) {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                name(new),
                &[(
                    "spec.template.metadata.labels",
                    format!("Invalid value: {labels}: `selector` does not match template `labels`"),
                )],
            ));
        }
    }
    let Some(old) = old else { return Ok(()) };
    match (ty.group.as_str(), ty.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet")
            if old["spec"]["selector"] != new["spec"]["selector"] =>
        {
            return Err(immutable(
                ty,
                new,
                "spec.selector",
                &new["spec"]["selector"],
            ));
        }
        ("apps", "StatefulSet") => {
            for field in [
                "selector",
                "serviceName",
                "volumeClaimTemplates",
                "podManagementPolicy",
            ] {
                if old["spec"][field] != new["spec"][field] {
                    return Err(ApiError::invalid(
                        &ty.kind,
                        &ty.group,
                        name(new),
                        &[("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into())],
                    ));
                }
            }
        }
        ("batch", "Job") => {
            for field in ["selector", "template", "completions"] {
                if old["spec"][field] != new["spec"][field] {
                    return Err(immutable(
                        ty,
                        new,
                        &format!("spec.{field}"),
                        &new["spec"][field],
                    ));
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            // Objects stored at a version the new definition drops could no longer be read:
            // the API server refuses it until the version leaves status.storedVersions.
            let served: Vec<&str> = new["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["name"].as_str())
                .collect();
            let stored = old["status"]["storedVersions"].as_array();
            for (i, version) in stored.into_iter().flatten().enumerate() {
                let version = version.as_str().unwrap_or_default();
                if !served.contains(&version) {
                    return Err(ApiError::invalid(
                        &ty.kind,
                        &ty.group,
                        name(new),
                        &[(
                            &format!("status.storedVersions[{i}]"),
                            format!("Invalid value: \"{version}\": must appear in spec.versions"),
                        )],
                    ));
                }
            }
        }
        ("", "Service") => {
            let (was, now) = (&old["spec"]["clusterIP"], &new["spec"]["clusterIP"]);
            if !now.is_null() && was != now && was.as_str() != Some("None") {
                return Err(ApiError::invalid(
                    &ty.kind,
                    &ty.group,
                    name(new),
                    &[(
                        "spec.clusterIPs[0]",
                        format!("Invalid value: [{now}]: may not change once set"),
                    )],
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
