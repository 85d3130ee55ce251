//! Custom resources checked against their CRD's structural schema (`openAPIV3Schema`), as
//! the API server does: a value of the wrong type, a missing required field or a value
//! outside an enum is a 422; a field the schema does not declare is a 400 when the request
//! asks for strict field validation (`fieldValidation=Strict`, what kubectl sends by default
//! since 1.27) and is otherwise kept (the real server prunes it with a warning; kube-sim
//! keeps it, so a client that depends on pruning is not caught).
//!
//! Covered: `type`, `nullable`, `properties`, `additionalProperties`, `items`, `required`,
//! `enum`, `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`,
//! `x-kubernetes-embedded-resource`; `metadata` at the root is the API server's. Not
//! covered: formats, patterns, lengths and bounds, `anyOf`/`oneOf`/`allOf`, CEL rules.

use serde_json::Value;

/// A schema violation: the field's path (`spec.templates[0].name`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where.
    pub path: String,
    /// What.
    pub message: String,
    /// A field the schema does not declare (an error only under strict field validation).
    pub unknown_field: bool,
}

/// Checks `obj` (a whole custom resource) against `schema` (its version's
/// `openAPIV3Schema`).
pub fn check(schema: &Value, obj: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(properties) = schema["properties"].as_object() else {
        return out;
    };
    for (key, value) in obj.as_object().into_iter().flatten() {
        // The API server owns these at the root.
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.get(key) {
            Some(sub) => walk(sub, value, key, &mut out),
            None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
            None => out.push(unknown(key)),
        }
    }
    required(schema, obj, "", &mut out);
    out
}

fn unknown(path: &str) -> Violation {
    Violation {
        path: path.to_string(),
        message: "field not declared in schema".into(),
        unknown_field: true,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn required(schema: &Value, obj: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(object) = obj.as_object() else {
        return;
    };
    for field in schema["required"].as_array().into_iter().flatten() {
        if let Some(field) = field.as_str()
            && !object.contains_key(field)
        {
            out.push(Violation {
                path: join(path, field),
                message: "Required value".into(),
                unknown_field: false,
            });
        }
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    // The API server drops a null of a non-nullable field rather than refusing it.
    if value.is_null() {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_name(value), "integer" | "string") {
            out.push(Violation {
                path: path.to_string(),
                message: format!(
                    "Invalid value: \"{}\": {path} in body must be of type int-or-string",
                    type_name(value)
                ),
                unknown_field: false,
            });
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            out.push(Violation {
                path: path.to_string(),
                message: format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ),
                unknown_field: false,
            });
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(Violation {
            path: path.to_string(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                shown.join(", ")
            ),
            unknown_field: false,
        });
    }
    match value {
        Value::Object(object) => {
            let embedded = schema["x-kubernetes-embedded-resource"] == true;
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, sub) in object {
                let here = join(path, key);
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match properties.and_then(|p| p.get(key)) {
                    Some(sub_schema) => walk(sub_schema, sub, &here, out),
                    None if additional.is_object() => walk(additional, sub, &here, out),
                    None if additional == &Value::Bool(true) || preserve => {}
                    // A schema that declares nothing (no properties, no additional
                    // properties) for an object only constrains its type.
                    None if properties.is_none() && additional.is_null() => {}
                    None => out.push(unknown(&here)),
                }
            }
            required(schema, value, path, out);
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                walk(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_required_enums_and_unknown_fields_are_found() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string"},
                "replicas": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": true},
                "policy": {"type": "string", "enum": ["Always", "Never"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            }},
        }});
        let good = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"image": "i", "replicas": 2, "port": "http", "policy": "Never",
                "labels": {"a": "b"}, "free": {"anything": [1]}, "list": [{"name": "n"}]}});
        assert_eq!(check(&schema, &good), []);
        let bad = json!({"spec": {"replicas": "two", "port": true, "policy": "Sometimes",
            "labels": {"a": 1}, "list": [{"nom": "n"}], "extra": 1}, "other": 1});
        let found: Vec<(String, bool)> = check(&schema, &bad)
            .into_iter()
            .map(|v| (v.path, v.unknown_field))
            .collect();
        for expected in [
            ("spec.replicas", false),
            ("spec.port", false),
            ("spec.policy", false),
            ("spec.labels.a", false),
            ("spec.list[0].nom", true),
            ("spec.extra", true),
            ("spec.image", false),
            ("other", true),
        ] {
            assert!(
                found.contains(&(expected.0.to_string(), expected.1)),
                "{expected:?} in {found:?}"
            );
        }
    }
}
