//! Patch formats: JSON merge patch, JSON patch, strategic merge patch and server-side apply.
//!
//! Strategic merge uses the well-known merge keys of the built-in types (containers by
//! `name`, volume mounts by `mountPath`, ...), looked up by field name. Server-side apply
//! merges the applied configuration with the same keys and removes the fields the manager
//! applied before but no longer applies, tracked as `managedFields` (`FieldsV1`).

use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// JSON merge patch (RFC 7386).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// JSON patch (RFC 6902).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

/// The merge key of a list field, by field name, for the built-in types. `items` lets
/// `ports` pick `containerPort` (containers) or `port` (services).
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "hostAliasesNames" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists merged as sets by strategic merge (`metadata.finalizers`).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Strategic merge patch of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(retain) = patch_map.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        if let Some(t) = target.as_object_mut() {
            t.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    for (key, value) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        let t = target.as_object_mut().expect("made an object above");
        match value {
            Value::Null => {
                t.remove(key);
            }
            Value::Object(_) => {
                if value.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(key);
                    continue;
                }
                let entry = t.entry(key.clone()).or_insert(Value::Null);
                if entry.is_object() {
                    strategic_merge(entry, value);
                } else {
                    *entry = strip_directives(value);
                }
            }
            Value::Array(items) => {
                let existing = t.entry(key.clone()).or_insert(Value::Null);
                merge_list(key, existing, items);
            }
            other => {
                t.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_list(field: &str, existing: &mut Value, items: &[Value]) {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = strip_directives(&Value::Array(items.to_vec()));
        return;
    }
    if is_set_list(field) {
        let mut list = existing.as_array().cloned().unwrap_or_default();
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        *existing = Value::Array(list);
        return;
    }
    let current = existing.as_array().cloned().unwrap_or_default();
    let Some(key) = merge_key(field, items).or_else(|| merge_key(field, &current)) else {
        *existing = strip_directives(&Value::Array(items.to_vec()));
        return;
    };
    let mut list = current;
    for item in items {
        let id = item.get(key).cloned().unwrap_or(Value::Null);
        let pos = list.iter().position(|e| e.get(key) == Some(&id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                list.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => strategic_merge(&mut list[p], item),
            None => list.push(strip_directives(item)),
        }
    }
    *existing = Value::Array(list);
}

/// The `FieldsV1` set of an applied configuration (`{"f:spec": {"f:replicas": {}}}`).
pub fn field_set(config: &Value) -> Value {
    fn walk(field: &str, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, child) in m {
                    out.insert(format!("f:{k}"), walk(k, child));
                }
                Value::Object(out)
            }
            Value::Array(items) => match merge_key(field, items) {
                Some(key) if items.iter().all(|i| i.get(key).is_some()) => {
                    let mut out = Map::new();
                    for item in items {
                        let mut set = walk("", item);
                        if let Some(m) = set.as_object_mut() {
                            m.insert(".".into(), json!({}));
                        }
                        let id = json!({ key: item[key] });
                        out.insert(format!("k:{id}"), set);
                    }
                    Value::Object(out)
                }
                _ => json!({}),
            },
            _ => json!({}),
        }
    }
    let mut set = walk("", config);
    if let Some(m) = set.as_object_mut() {
        // Identity fields are not owned.
        m.remove("f:apiVersion");
        m.remove("f:kind");
        if let Some(meta) = m.get_mut("f:metadata").and_then(Value::as_object_mut) {
            meta.remove("f:name");
            meta.remove("f:namespace");
            meta.remove("f:resourceVersion");
            if meta.is_empty() {
                m.remove("f:metadata");
            }
        }
    }
    set
}

/// Removes from `live` the fields in `old` (a manager's previous field set) that are not in
/// `new` (what it applies now).
pub fn remove_dropped_fields(live: &mut Value, old: &Value, new: &Value) {
    let (Some(old), Some(live_map)) = (old.as_object(), live.as_object_mut()) else {
        return;
    };
    for (path, old_child) in old {
        if path == "." {
            continue;
        }
        let new_child = new.get(path);
        if let Some(field) = path.strip_prefix("f:") {
            let leaf = old_child.as_object().is_none_or(|m| m.is_empty());
            if new_child.is_none() && leaf {
                live_map.remove(field);
                continue;
            }
            let empty = json!({});
            let nc = new_child.unwrap_or(&empty);
            if let Some(lv) = live_map.get_mut(field) {
                if lv.is_array() {
                    remove_dropped_items(lv, old_child, nc);
                } else {
                    remove_dropped_fields(lv, old_child, nc);
                }
                // A parent the manager no longer sets goes once nothing is left in it.
                let emptied = lv.as_object().is_some_and(|m| m.is_empty())
                    || lv.as_array().is_some_and(|a| a.is_empty());
                if new_child.is_none() && emptied && field != "metadata" {
                    live_map.remove(field);
                }
            }
        }
    }
}

fn remove_dropped_items(list: &mut Value, old: &Value, new: &Value) {
    let (Some(old), Some(items)) = (old.as_object(), list.as_array_mut()) else {
        return;
    };
    for (path, old_child) in old {
        let Some(id) = path
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Value>(k).ok())
        else {
            continue;
        };
        let Some((key, want)) = id.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let pos = items.iter().position(|i| i.get(key) == Some(want));
        match (new.get(path), pos) {
            (None, Some(p)) => {
                items.remove(p);
            }
            (Some(nc), Some(p)) => remove_dropped_fields(&mut items[p], old_child, nc),
            _ => {}
        }
    }
}

/// Applies `config` for `manager`: merges it into `live`, drops fields the manager owned
/// before but no longer sets, and records the manager's field set in `managedFields`.
pub fn server_side_apply(
    live: &mut Value,
    config: &Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let new_set = field_set(config);
    let previous = live["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| {
            entries.iter().find(|e| {
                e["manager"].as_str() == Some(manager) && e["operation"].as_str() == Some("Apply")
            })
        })
        .map(|e| e["fieldsV1"].clone());
    if let Some(old) = &previous {
        remove_dropped_fields(live, old, &new_set);
    }
    let mut config = config.clone();
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    strategic_merge(live, &config);
    record_manager(live, manager, "Apply", api_version, now, new_set);
}

/// The field set of what changed between `old` and `new`: an `Update` manager owns the
/// fields it changed. Only the object's content and its labels and annotations count.
pub fn changed_field_set(old: &Value, new: &Value) -> Value {
    fn walk(field: &str, old: &Value, new: &Value) -> Option<Value> {
        if old == new {
            return None;
        }
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                let mut out = Map::new();
                for (k, nv) in n {
                    if let Some(c) = walk(k, o.get(k).unwrap_or(&Value::Null), nv) {
                        out.insert(format!("f:{k}"), c);
                    }
                }
                Some(Value::Object(out))
            }
            (Value::Array(o), Value::Array(n)) => match merge_key(field, n) {
                Some(key) if n.iter().all(|i| i.get(key).is_some()) => {
                    let mut out = Map::new();
                    for item in n {
                        let before = o
                            .iter()
                            .find(|i| i.get(key) == item.get(key))
                            .unwrap_or(&Value::Null);
                        if let Some(mut c) = walk("", before, item) {
                            if let Some(m) = c.as_object_mut() {
                                m.insert(".".into(), json!({}));
                            }
                            out.insert(format!("k:{}", json!({ key: item[key] })), c);
                        }
                    }
                    Some(Value::Object(out))
                }
                _ => Some(json!({})),
            },
            _ => Some(json!({})),
        }
    }
    let mut out = Map::new();
    let empty = Value::Null;
    for (k, nv) in new.as_object().into_iter().flatten() {
        if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
            continue;
        }
        if k == "metadata" {
            let mut meta = Map::new();
            for field in ["labels", "annotations"] {
                if let Some(c) = walk(
                    field,
                    old["metadata"].get(field).unwrap_or(&empty),
                    &nv[field],
                )
                .filter(|_| !nv[field].is_null())
                {
                    meta.insert(format!("f:{field}"), c);
                }
            }
            if !meta.is_empty() {
                out.insert("f:metadata".into(), Value::Object(meta));
            }
            continue;
        }
        if let Some(c) = walk(k, old.get(k).unwrap_or(&empty), nv) {
            out.insert(format!("f:{k}"), c);
        }
    }
    Value::Object(out)
}

/// A field that another manager owns with a value the applied configuration changes.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    /// The other manager.
    pub manager: String,
    /// The API version it used.
    pub api_version: String,
    /// The field, as upstream prints it (`.spec.replicas`, `.spec.containers[name="app"].image`).
    pub field: String,
}

fn is_leaf(set: &Value) -> bool {
    set.as_object().is_none_or(|m| m.is_empty())
}

/// The item of a keyed list whose `key` is `want`.
fn find_item<'a>(list: Option<&'a Value>, key: &str, want: &Value) -> Option<&'a Value> {
    list.and_then(Value::as_array)
        .and_then(|a| a.iter().find(|i| i.get(key) == Some(want)))
}

/// Finds the fields `config` would change that other managers own.
pub fn apply_conflicts(live: &Value, config: &Value, manager: &str) -> Vec<FieldConflict> {
    fn walk(
        new: &Value,
        other: &Value,
        live: Option<&Value>,
        cfg: Option<&Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        for (k, nchild) in new.as_object().into_iter().flatten() {
            let Some(ochild) = other.get(k) else { continue };
            let (lv, cv, p) = if let Some(f) = k.strip_prefix("f:") {
                (
                    live.and_then(|l| l.get(f)),
                    cfg.and_then(|c| c.get(f)),
                    format!("{path}.{f}"),
                )
            } else if let Some((key, want)) = k
                .strip_prefix("k:")
                .and_then(|id| serde_json::from_str::<Value>(id).ok())
                .and_then(|id| {
                    id.as_object()
                        .and_then(|m| m.iter().next().map(|(a, b)| (a.clone(), b.clone())))
                })
            {
                (
                    find_item(live, &key, &want),
                    find_item(cfg, &key, &want),
                    format!("{path}[{key}={want}]"),
                )
            } else {
                continue;
            };
            if is_leaf(nchild) || is_leaf(ochild) {
                if lv != cv {
                    out.push(p);
                }
            } else {
                walk(nchild, ochild, lv, cv, &p, out);
            }
        }
    }
    let new_set = field_set(config);
    let mut conflicts = Vec::new();
    for entry in live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let other = entry["manager"].as_str().unwrap_or_default();
        if other == manager {
            continue;
        }
        let mut fields = Vec::new();
        walk(
            &new_set,
            &entry["fieldsV1"],
            Some(live),
            Some(config),
            "",
            &mut fields,
        );
        for field in fields {
            conflicts.push(FieldConflict {
                manager: other.to_string(),
                api_version: entry["apiVersion"].as_str().unwrap_or_default().to_string(),
                field,
            });
        }
    }
    conflicts
}

/// Removes from every other manager's field set what `config` now owns (a forced apply).
pub fn take_ownership(live: &mut Value, config: &Value, manager: &str) {
    fn subtract(other: &mut Value, new: &Value) {
        let Some(o) = other.as_object_mut() else {
            return;
        };
        for (k, nchild) in new.as_object().into_iter().flatten() {
            if k == "." {
                continue;
            }
            let remove = match o.get_mut(k) {
                Some(ochild) if is_leaf(nchild) || is_leaf(ochild) => true,
                Some(ochild) => {
                    subtract(ochild, nchild);
                    ochild
                        .as_object()
                        .is_some_and(|m| m.keys().all(|k| k == "."))
                }
                None => false,
            };
            if remove {
                o.remove(k);
            }
        }
    }
    let new_set = field_set(config);
    if let Some(entries) = live["metadata"]["managedFields"].as_array_mut() {
        for e in entries
            .iter_mut()
            .filter(|e| e["manager"].as_str() != Some(manager))
        {
            subtract(&mut e["fieldsV1"], &new_set);
        }
        entries.retain(|e| !is_leaf(&e["fieldsV1"]));
    }
}

/// Records (or replaces) one `managedFields` entry.
pub fn record_manager(
    live: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    now: &str,
    fields: Value,
) {
    let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let entries = meta
        .entry("managedFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entries.is_array() {
        *entries = Value::Array(Vec::new());
    }
    let list = entries.as_array_mut().expect("set to an array above");
    list.retain(|e| {
        !(e["manager"].as_str() == Some(manager) && e["operation"].as_str() == Some(operation))
    });
    list.push(json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_containers_by_name() {
        let mut live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "t"}]}});
        strategic_merge(
            &mut live,
            &json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"}
            ], "tolerations": [{"key": "u"}]}}),
        );
        assert_eq!(
            live,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ], "tolerations": [{"key": "u"}]}})
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let mut live = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}}});
        strategic_merge(
            &mut live,
            &json!({"metadata": {"finalizers": ["b"], "labels": {"x": null}}, "$setElementOrder/x": []}),
        );
        assert_eq!(
            live,
            json!({"metadata": {"finalizers": ["a", "b"], "labels": {"y": "2"}}})
        );
        strategic_merge(
            &mut live,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(live["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn apply_conflicts_with_other_managers_unless_forced() {
        let mut live = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1, "containers": [{"name": "a", "image": "a:1"}]}});
        let initial = live.clone();
        server_side_apply(&mut live, &initial, "helm", "apps/v1", "t");
        let mine = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3, "containers": [{"name": "a", "image": "a:1"}]}});
        let conflicts = apply_conflicts(&live, &mine, "kubectl");
        assert_eq!(
            conflicts
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>(),
            [".spec.replicas"]
        );
        assert_eq!(conflicts[0].manager, "helm");
        assert!(
            apply_conflicts(&live, &mine, "helm").is_empty(),
            "a manager never conflicts with itself"
        );
        take_ownership(&mut live, &mine, "kubectl");
        assert!(apply_conflicts(&live, &mine, "kubectl").is_empty());
        let changed = changed_field_set(
            &json!({"spec": {"replicas": 1, "paused": false}}),
            &json!({"spec": {"replicas": 2, "paused": false}}),
        );
        assert_eq!(changed, json!({"f:spec": {"f:replicas": {}}}));
    }

    #[test]
    fn apply_drops_fields_the_manager_stopped_setting() {
        let mut live = json!({"metadata": {"name": "x", "labels": {"keep": "1"}}, "data": {}});
        server_side_apply(
            &mut live,
            &json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k1": "v", "k2": "v"}}),
            "helm",
            "v1",
            "t",
        );
        server_side_apply(
            &mut live,
            &json!({"metadata": {"name": "x"}, "data": {"k1": "w"}}),
            "helm",
            "v1",
            "t",
        );
        assert_eq!(live["data"], json!({"k1": "w"}));
        assert_eq!(live["metadata"]["labels"], json!({"keep": "1"}));
        assert_eq!(
            live["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }
}
