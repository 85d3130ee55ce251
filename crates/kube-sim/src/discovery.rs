//! Discovery (`/version`, `/api`, `/apis`, resource lists) and the OpenAPI v2/v3 documents,
//! all generated from the resource [`Registry`].
//!
//! The OpenAPI documents describe every PATCH operation with the `fieldValidation` query
//! parameter, which tells kubectl and helm to leave validation to the server instead of
//! downloading schemas. Strategic merge patch is not advertised there, so `kubectl apply`
//! computes its patches from its compiled-in types (and JSON merge patches for custom kinds),
//! as it does against clusters without published schemas.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::resources::{Registry, ResourceType};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version` for a server version such as `v1.30.4-eks-a737599`.
pub fn version_info(git_version: &str) -> Value {
    let core = git_version.trim_start_matches('v');
    let mut parts = core.split(['.', '-', '+']);
    let major = parts.next().unwrap_or("1").to_string();
    let mut minor = parts.next().unwrap_or("0").to_string();
    if core.contains('-') {
        // Managed distributions (EKS, GKE) report the minor as "30+".
        minor.push('+');
    }
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first.
fn version_rank(v: &str) -> (u8, i64, i64) {
    let rest = v.trim_start_matches('v');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major: i64 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, n) = if let Some(b) = tail.strip_prefix("beta") {
        (1, b.parse().unwrap_or(0))
    } else if let Some(a) = tail.strip_prefix("alpha") {
        (0, a.parse().unwrap_or(0))
    } else if tail.is_empty() {
        (2, 0)
    } else {
        return (0, -1, 0);
    };
    (stage, major, n)
}

fn sorted_versions(mut versions: Vec<String>) -> Vec<String> {
    versions.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
    versions
}

fn api_group(name: &str, versions: Vec<String>) -> Value {
    let versions = sorted_versions(versions);
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| api_group(&g, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if served.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let (g, versions) = registry.groups().into_iter().find(|(g, _)| g == name)?;
    let mut group = api_group(&g, versions);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// `/api/v1` or `/apis/<group>/<version>`, if served.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry
        .types()
        .iter()
        .map(|t| t.as_ref())
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "storageVersionHash": short_hash(&t.key()),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if t.group.is_empty() && t.plural == "pods" {
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            resources.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
            resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &digest[..8])
}

/// The OpenAPI schema name of a kind (`io.k8s.api.apps.v1.Deployment`).
fn schema_name(t: &ResourceType) -> String {
    if t.custom {
        let reversed: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
    } else {
        let group = if t.group.is_empty() {
            "core"
        } else {
            t.group.split('.').next().unwrap_or("core")
        };
        format!("io.k8s.api.{group}.{}.{}", t.version, t.kind)
    }
}

fn item_path(t: &ResourceType, prefix: &str) -> String {
    let base = format!("{prefix}{}", t.group_version_path());
    if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
    } else {
        format!("{base}/{}/{{name}}", t.plural)
    }
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn query_params() -> Vec<Value> {
    ["fieldValidation", "fieldManager", "force", "dryRun", "pretty"]
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}, "type": "string", "uniqueItems": true}))
        .collect()
}

/// The hash that versions a group-version's v3 document (clients cache by it).
pub fn v3_hash(
    registry: &Registry,
    group: &str,
    version: &str,
    crd_schemas: &[(String, Value)],
) -> String {
    let doc = v3_document(registry, group, version, "", crd_schemas);
    let digest = Sha256::digest(doc.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v3`: the index of group-version documents.
pub fn v3_root(registry: &Registry, crd_schemas: &[(String, Value)]) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, versions) in registry.groups() {
        for v in versions {
            let key = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let hash = v3_hash(registry, &g, &v, crd_schemas);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/<group>/<version>`: paths with their PATCH parameters and a schema per
/// kind (the CRD's own schema for custom kinds). `crd_schemas` maps schema names to the
/// `openAPIV3Schema` of served custom versions.
pub fn v3_document(
    registry: &Registry,
    group: &str,
    version: &str,
    git_version: &str,
    crd_schemas: &[(String, Value)],
) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object"}),
    );
    for t in registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let name = schema_name(t);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let patch_body = json!({"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        paths.insert(
            item_path(t, ""),
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk(t), "x-kubernetes-action": "get", "responses": ok},
                "put": {"x-kubernetes-group-version-kind": gvk(t), "x-kubernetes-action": "put", "parameters": query_params(),
                        "requestBody": {"content": {"application/json": {"schema": reference}}}, "responses": ok},
                "patch": {"x-kubernetes-group-version-kind": gvk(t), "x-kubernetes-action": "patch", "parameters": query_params(),
                          "requestBody": {"content": {
                              "application/json-patch+json": patch_body,
                              "application/merge-patch+json": patch_body,
                              "application/apply-patch+yaml": patch_body,
                          }}, "responses": ok},
                "delete": {"x-kubernetes-group-version-kind": gvk(t), "x-kubernetes-action": "delete", "responses": ok},
            }),
        );
        let mut schema = crd_schemas
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        schema["x-kubernetes-group-version-kind"] = json!([gvk(t)]);
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": git_version},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The schema names and `openAPIV3Schema`s of every served custom version.
pub fn crd_schemas(crds: &[std::sync::Arc<Value>]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for crd in crds {
        for t in crate::resources::types_from_crd(crd) {
            let schema = crd["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"].as_str() == Some(t.version.as_str()))
                .map(|v| v["schema"]["openAPIV3Schema"].clone())
                .filter(Value::is_object);
            if let Some(schema) = schema {
                out.push((schema_name(&t), schema));
            }
        }
    }
    out
}

/// The media type of the OpenAPI v2 document in protobuf (gnostic's `openapi_v2.Document`).
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `/openapi/v2` in protobuf: a Swagger 2.0 document with its version and no definitions.
/// kubectl's schema validation skips kinds a document does not define, so this answers the
/// fallback it takes for kinds outside `/openapi/v3` without a schema encoder; the JSON form
/// ([`v2_document`]) and `/openapi/v3` carry the definitions.
pub fn v2_document_protobuf(git_version: &str) -> Vec<u8> {
    // Field 1 (swagger) and field 2 (info: title = 1, version = 2), length-delimited.
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes");
    field(&mut info, 2, git_version.as_bytes());
    let mut document = Vec::new();
    field(&mut document, 1, b"2.0");
    field(&mut document, 2, &info);
    document
}

/// `/openapi/v2` as JSON: the same paths and parameters in Swagger 2.0 form.
pub fn v2_document(registry: &Registry, git_version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut definitions = serde_json::Map::new();
    for t in registry.types() {
        let name = schema_name(t);
        let params: Vec<Value> = query_params()
            .into_iter()
            .map(|mut p| {
                if let Some(m) = p.as_object_mut() {
                    m.remove("schema");
                }
                p
            })
            .collect();
        paths.insert(
            item_path(t, ""),
            json!({"patch": {"x-kubernetes-group-version-kind": gvk(t), "x-kubernetes-action": "patch", "parameters": params,
                             "consumes": ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"],
                             "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{name}")}}}}}),
        );
        definitions.insert(
            name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk(t)]}),
        );
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": git_version}, "paths": paths, "definitions": definitions})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_versions_report_a_plus_minor() {
        let v = version_info("v1.30.4-eks-a737599");
        assert_eq!(
            (v["major"].as_str(), v["minor"].as_str()),
            (Some("1"), Some("30+"))
        );
        assert_eq!(version_info("v1.31.0")["minor"], "31");
    }

    #[test]
    fn preferred_version_is_the_most_stable() {
        assert_eq!(
            sorted_versions(vec![
                "v1alpha1".into(),
                "v1".into(),
                "v1beta1".into(),
                "v2".into()
            ]),
            ["v2", "v1", "v1beta1", "v1alpha1"]
        );
    }
}
