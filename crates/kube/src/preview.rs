//! What a release change will do to the cluster, asked of the API server before anything
//! changes: every object of the new manifest is sent as a server-side apply with
//! `dryRun=All`, so the server's own defaulting, admission and validation answer (an
//! immutable field, a Service's cluster IP, a StatefulSet's claim templates), and the
//! result is compared with the live object. Objects of the current manifest that the new
//! one lacks are the ones Helm will delete.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{GroupVersionKind, TypeMeta};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

use crate::connect::Cluster;
use crate::cordon::FIELD_MANAGER;
use crate::error::{Error, Result, api_code};

/// What happens to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created.
    Added,
    /// Deleted (in the current manifest, not in the new one).
    Removed,
    /// Changed: the fields that differ, dotted, two levels deep (`spec.template`).
    Changed(Vec<String>),
    /// The API server refuses the new object (its message): the upgrade would fail here.
    Refused(String),
}

/// One object of the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// `Kind namespace/name` or `Kind name`.
    pub object: String,
    /// What happens to it.
    pub change: Change,
}

impl std::fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.change {
            Change::Added => write!(f, "add {}", self.object),
            Change::Removed => write!(f, "remove {}", self.object),
            Change::Changed(fields) => write!(f, "change {} ({})", self.object, fields.join(", ")),
            Change::Refused(why) => write!(f, "refused: {} ({why})", self.object),
        }
    }
}

fn key(object: &Value, namespace: Option<&str>) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The object without what the server keeps for itself, for comparison.
fn comparable(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "uid",
                "selfLink",
            ] {
                meta.remove(field);
            }
        }
    }
    object
}

/// The dotted paths (at most two levels) where `a` and `b` differ.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return out;
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        match (x.and_then(Value::as_object), y.and_then(Value::as_object)) {
            (Some(xa), Some(ya)) => {
                let mut inner: Vec<&String> = xa.keys().chain(ya.keys()).collect();
                inner.sort();
                inner.dedup();
                out.extend(
                    inner
                        .into_iter()
                        .filter(|k| xa.get(*k) != ya.get(*k))
                        .map(|k| format!("{key}.{k}")),
                );
            }
            _ => out.push(key.clone()),
        }
    }
    out
}

/// Previews replacing the objects of `current` (the release's manifest now) with `rendered`
/// (the new one); objects without a namespace go to `namespace` when their kind is
/// namespaced. Custom resources of a kind the cluster does not serve yet are `Added`.
pub async fn preview(
    cluster: &Cluster,
    rendered: &[Value],
    current: &[Value],
    namespace: &str,
) -> Result<Vec<ObjectChange>> {
    let discovery = Discovery::new(cluster.client().clone())
        .run()
        .await
        .map_err(|e| Error::api("discover the served kinds", e))?;
    let resolve = |object: &Value| {
        let types: TypeMeta = serde_json::from_value(object.clone()).ok()?;
        let gvk = GroupVersionKind::try_from(&types).ok()?;
        let (resource, caps) = discovery.resolve_gvk(&gvk)?;
        let ns = match caps.scope {
            Scope::Namespaced => Some(
                object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(namespace)
                    .to_string(),
            ),
            Scope::Cluster => None,
        };
        Some((resource, ns))
    };
    let mut changes = Vec::new();
    let mut seen = Vec::new();
    for object in rendered {
        let Some((resource, ns)) = resolve(object) else {
            let object_key = key(object, object["metadata"]["namespace"].as_str());
            seen.push(object_key.clone());
            changes.push(ObjectChange {
                object: object_key,
                change: Change::Added,
            });
            continue;
        };
        let object_key = key(object, ns.as_deref());
        seen.push(object_key.clone());
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &resource),
            None => Api::all_with(cluster.client().clone(), &resource),
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let live = crate::retry::read(&format!("read {object_key}"), api.get_opt(name)).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        // A dry run changes nothing, so a server error or a lost answer is sent again.
        let patch = Patch::Apply(object);
        let dry_run =
            crate::retry::idempotent_write(&format!("dry-run apply {object_key}"), || {
                api.patch(name, &params, &patch)
            })
            .await;
        let change = match dry_run {
            Err(Error::Api { source, .. })
                if matches!(api_code(&source), Some(400 | 403 | 409 | 415 | 422)) =>
            {
                let message = match source.as_ref() {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                Change::Refused(message)
            }
            Err(err) => return Err(err),
            Ok(after) => match live {
                None => Change::Added,
                Some(live) => {
                    let before = comparable(serde_json::to_value(live).expect("serialises"));
                    let after = comparable(serde_json::to_value(after).expect("serialises"));
                    let fields = differing_fields(&before, &after);
                    if fields.is_empty() {
                        continue;
                    }
                    Change::Changed(fields)
                }
            },
        };
        changes.push(ObjectChange {
            object: object_key,
            change,
        });
    }
    for object in current {
        let ns = resolve(object).map_or_else(
            || object["metadata"]["namespace"].as_str().map(str::to_string),
            |(_, ns)| ns,
        );
        let object_key = key(object, ns.as_deref());
        if !seen.contains(&object_key) {
            changes.push(ObjectChange {
                object: object_key,
                change: Change::Removed,
            });
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_two_levels_deep() {
        let a = json!({"metadata": {"labels": {"v": "1"}}, "spec": {"replicas": 1, "template": {"x": 1}}});
        let b = json!({"metadata": {"labels": {"v": "2"}}, "spec": {"replicas": 1, "template": {"x": 2}}, "data": {}});
        assert_eq!(
            differing_fields(&a, &b),
            ["data", "metadata.labels", "spec.template"]
        );
        assert!(differing_fields(&a, &a).is_empty());
    }
}
