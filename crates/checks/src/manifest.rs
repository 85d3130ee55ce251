//! Reading rendered manifests (multi-document YAML) down to what the removed-API check needs:
//! apiVersion, kind, name and namespace of every object, including the items of `List`s.
//!
//! Scanning what Helm renders (rather than `last-applied-configuration` annotations or what
//! the API server returns, which it converts to the version asked for) is what avoids the
//! false positives behind most of kubent's and pluto's open issues.

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One object found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name` (empty when missing, as in a `generateName` object).
    pub name: String,
    /// `metadata.namespace`, when set.
    pub namespace: Option<String>,
    /// The 1-based index of the YAML document it came from.
    pub document: usize,
    /// Where in the document the object was found.
    pub origin: Origin,
}

/// Where an object was found: the document itself, or the copy of it kept in an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The object as written.
    Manifest,
    /// The object as last applied, kept by `kubectl apply` or kapp in the annotation named: a
    /// live object read back in the served version can still have been applied (and be
    /// applied again) with a removed API.
    Annotation(&'static str),
}

/// The annotations that keep the last applied object, by the tool that writes them.
pub const APPLIED_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "kapp.k14s.io/original",
];

/// A document that is not YAML.
#[derive(Debug, thiserror::Error)]
#[error("document {document} of the manifest is not a readable Kubernetes object: {source}")]
pub struct ManifestError {
    /// The 1-based index of the broken document.
    pub document: usize,
    /// The YAML error.
    #[source]
    pub source: serde_norway::Error,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Object {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    items: Vec<Object>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: IfMapping<Applied>,
}

/// `T` when the YAML node is a mapping; a sequence or scalar in its place is passed over
/// unread (a JSON array of results, annotations written as a list): such a document is not
/// a Kubernetes object, and an object is not broken by a malformed annotations field.
struct IfMapping<T>(Option<T>);

impl<T> Default for IfMapping<T> {
    fn default() -> Self {
        IfMapping(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for IfMapping<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MappingVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MappingVisitor<T> {
            type Value = IfMapping<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| IfMapping(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IfMapping(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IfMapping(None))
            }
        }
        deserializer.deserialize_any(MappingVisitor(PhantomData))
    }
}

/// Only the annotations that keep an applied copy; every other key is skipped unread.
#[derive(Deserialize, Default)]
struct Applied {
    #[serde(default, rename = "kubectl.kubernetes.io/last-applied-configuration")]
    kubectl: Option<String>,
    #[serde(default, rename = "kapp.k14s.io/original")]
    kapp: Option<String>,
}

/// Every object in `text`; empty documents (`---` separators, comments) are skipped.
pub fn objects(text: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    match objects_until_error(text) {
        (found, None) => Ok(found),
        (_, Some(error)) => Err(error),
    }
}

/// The objects of every document before the first broken one, and that document's error.
/// A scanner uses what it could read and still reports the rest as unscanned.
pub fn objects_until_error(text: &str) -> (Vec<ManifestObject>, Option<ManifestError>) {
    let mut found = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        // Straight into the few fields needed: the rest of each object is skipped, not built.
        let parsed = IfMapping::<Object>::deserialize(document);
        match parsed {
            Ok(IfMapping(Some(object))) => collect(object, document_number, &mut found),
            Ok(IfMapping(None)) => {}
            Err(source) => {
                let error = ManifestError {
                    document: document_number,
                    source,
                };
                return (found, Some(error));
            }
        }
    }
    (found, None)
}

fn collect(object: Object, document: usize, found: &mut Vec<ManifestObject>) {
    let Object {
        api_version,
        kind,
        metadata,
        items,
    } = object;
    if let (Some(api_version), Some(kind)) = (api_version, kind) {
        if kind.ends_with("List") && !items.is_empty() {
            for item in items {
                collect(item, document, found);
            }
            return;
        }
        let Metadata {
            name,
            namespace,
            annotations,
        } = metadata;
        found.push(ManifestObject {
            api_version: api_version.clone(),
            kind: kind.clone(),
            name: name.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            document,
            origin: Origin::Manifest,
        });
        let annotations = annotations.0.unwrap_or_default();
        let copies = [
            (APPLIED_ANNOTATIONS[0], annotations.kubectl),
            (APPLIED_ANNOTATIONS[1], annotations.kapp),
        ];
        for (key, text) in copies {
            // A copy that does not parse is not this object's problem: the object was read.
            let Some(applied) = text.and_then(|t| serde_json::from_str::<Object>(&t).ok()) else {
                continue;
            };
            let (Some(applied_api), Some(applied_kind)) = (applied.api_version, applied.kind)
            else {
                continue;
            };
            // The same API as the object itself adds nothing.
            if applied_api == api_version && applied_kind == kind {
                continue;
            }
            found.push(ManifestObject {
                api_version: applied_api,
                kind: applied_kind,
                name: applied
                    .metadata
                    .name
                    .or_else(|| name.clone())
                    .unwrap_or_default(),
                namespace: applied.metadata.namespace.or_else(|| namespace.clone()),
                document,
                origin: Origin::Annotation(key),
            });
        }
    }
}

/// One API to move in a stored manifest: objects of `kind` at `from` go to `to`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiMapping {
    /// The kind (`Deployment`).
    pub kind: String,
    /// The removed API version (`extensions/v1beta1`).
    pub from: String,
    /// Its replacement (`apps/v1`).
    pub to: String,
}

/// The APIs of `text` removed on the way to `target`, each with its replacement (followed
/// through replacements removed too), as mappings; and the ones that cannot be mapped yet
/// because the cluster at `current` does not serve their replacement (or there is none).
pub fn api_mappings(
    text: &str,
    data: &crate::data::Data,
    current: upgrade_core::version::KubeMinor,
    target: upgrade_core::version::KubeMinor,
) -> (Vec<ApiMapping>, Vec<String>) {
    let (mut mappings, mut unmappable) = (Vec::new(), Vec::new());
    let (found, _) = objects_until_error(text);
    for object in found.iter().filter(|o| o.origin == Origin::Manifest) {
        let Some(row) = data.removed_api(&object.api_version, &object.kind) else {
            continue;
        };
        if row.removed_in.is_none_or(|removed| removed > target) {
            continue;
        }
        let mapping = match data.final_replacement(row, target) {
            (Some(to), available) if available.is_none_or(|a| a <= current) => ApiMapping {
                kind: object.kind.clone(),
                from: object.api_version.clone(),
                to: to.to_string(),
            },
            (Some(to), Some(available)) => {
                unmappable.push(format!(
                    "{} {} ({}): its replacement {to} is served from {available} only, not by the cluster's {current}",
                    object.kind, object.name, object.api_version
                ));
                continue;
            }
            (_, _) => {
                unmappable.push(format!(
                    "{} {} ({}): there is no replacement API; remove the object from the chart",
                    object.kind, object.name, object.api_version
                ));
                continue;
            }
        };
        if !mappings.contains(&mapping) {
            mappings.push(mapping);
        }
    }
    (mappings, unmappable)
}

/// `text` with the top-level `apiVersion:` of every object matching a mapping rewritten to its
/// replacement, and a line per object moved (`Deployment web: extensions/v1beta1 -> apps/v1`).
/// Only the documents of single objects change, line by line: everything else, comments and
/// `# Source:` lines included, stays byte for byte.
pub fn map_api_versions(text: &str, mappings: &[ApiMapping]) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut moved = Vec::new();
    let mut document = String::new();
    let flush = |document: &mut String, out: &mut String, moved: &mut Vec<String>| {
        let (found, _) = objects_until_error(document);
        let single = match found.as_slice() {
            [only] if only.origin == Origin::Manifest => Some(only.clone()),
            [only, rest @ ..] if rest.iter().all(|o| o.origin != Origin::Manifest) => {
                Some(only.clone())
            }
            _ => None,
        };
        let mapping = single.as_ref().and_then(|o| {
            mappings
                .iter()
                .find(|m| m.kind == o.kind && m.from == o.api_version)
        });
        match (single, mapping) {
            (Some(object), Some(mapping)) => {
                let mut done = false;
                for line in document.split_inclusive('\n') {
                    let value = line
                        .strip_prefix("apiVersion:")
                        .map(|v| v.trim().trim_matches(['"', '\'']));
                    if !done && value == Some(mapping.from.as_str()) {
                        let ending = if line.ends_with("\r\n") {
                            "\r\n"
                        } else if line.ends_with('\n') {
                            "\n"
                        } else {
                            ""
                        };
                        out.push_str(&format!("apiVersion: {}{ending}", mapping.to));
                        done = true;
                    } else {
                        out.push_str(line);
                    }
                }
                if done {
                    moved.push(format!(
                        "{} {}: {} -> {}",
                        object.kind, object.name, mapping.from, mapping.to
                    ));
                }
            }
            _ => out.push_str(document),
        }
        document.clear();
    };
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") {
            flush(&mut document, &mut out, &mut moved);
            out.push_str(line);
        } else {
            document.push_str(line);
        }
    }
    flush(&mut document, &mut out, &mut moved);
    (out, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_document_and_list_items() {
        let text = "\
---
# Source: mlflow/templates/pdb.yaml
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: mlflow
  namespace: mlops
---
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1beta1
    kind: CronJob
    metadata: {name: cleanup}
---
just: a config map body without kind
";
        let objects = objects(text).unwrap();
        let summary: Vec<_> = objects
            .iter()
            .map(|o| {
                (
                    o.api_version.as_str(),
                    o.kind.as_str(),
                    o.name.as_str(),
                    o.document,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("policy/v1beta1", "PodDisruptionBudget", "mlflow", 1),
                ("batch/v1beta1", "CronJob", "cleanup", 3),
            ]
        );
        assert_eq!(objects[0].namespace.as_deref(), Some("mlops"));
    }

    #[test]
    fn the_applied_copy_in_an_annotation_is_read_too() {
        let text = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"extensions/v1beta1","kind":"Ingress","metadata":{"name":"web","namespace":"default"}}
    other: x
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: same
  annotations:
    kapp.k14s.io/original: '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"same"}}'
"#;
        let objects = objects(text).unwrap();
        let summary: Vec<_> = objects
            .iter()
            .map(|o| (o.api_version.as_str(), o.origin))
            .collect();
        assert_eq!(
            summary,
            [
                ("networking.k8s.io/v1", Origin::Manifest),
                (
                    "extensions/v1beta1",
                    Origin::Annotation("kubectl.kubernetes.io/last-applied-configuration")
                ),
                ("apps/v1", Origin::Manifest),
            ]
        );
        assert_eq!(objects[1].namespace.as_deref(), Some("default"));
    }

    #[test]
    fn removed_apis_map_to_their_replacement_in_place() {
        let data = crate::data::Data::embedded();
        let manifest = "---\n# Source: web/templates/deploy.yaml\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: nginx}]\n---\n# Source: web/templates/pdb.yaml\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
        let m = |s: &str| s.parse().unwrap();
        let (mappings, unmappable) = api_mappings(manifest, data, m("1.24"), m("1.25"));
        assert!(unmappable.is_empty(), "{unmappable:?}");
        assert_eq!(mappings.len(), 2);
        let (mapped, moved) = map_api_versions(manifest, &mappings);
        assert_eq!(
            moved,
            [
                "Deployment web: extensions/v1beta1 -> apps/v1",
                "PodDisruptionBudget web: policy/v1beta1 -> policy/v1"
            ]
        );
        assert_eq!(
            mapped,
            manifest
                .replace("apiVersion: extensions/v1beta1", "apiVersion: apps/v1")
                .replace("apiVersion: policy/v1beta1", "apiVersion: policy/v1")
        );
        // Mapping again changes nothing; an older target maps nothing.
        assert_eq!(map_api_versions(&mapped, &mappings).1.len(), 0);
        assert!(
            api_mappings(manifest, data, m("1.14"), m("1.15"))
                .0
                .is_empty()
        );
        // PodSecurityPolicy has no replacement: named, not mapped.
        let psp = "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: p}\n";
        let (none, why) = api_mappings(psp, data, m("1.24"), m("1.25"));
        assert!(none.is_empty());
        assert!(why[0].contains("no replacement API"), "{why:?}");
    }

    #[test]
    fn a_broken_document_is_named() {
        let err = objects("apiVersion: v1\nkind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert_eq!(err.document, 2);
        let (before, error) =
            objects_until_error("apiVersion: v1\nkind: A\n---\nkind: [unclosed\n");
        assert_eq!(before.len(), 1);
        assert_eq!(error.unwrap().document, 2);
        // An object whose fields have the wrong types is refused the same way.
        let not_object = objects("apiVersion: v1\nkind: [A, B]\n").unwrap_err();
        assert_eq!(not_object.document, 1);
        // A document that is not a mapping at all is not a Kubernetes object: passed over.
        assert!(objects("[{Name: a}]\n---\njust text\n").unwrap().is_empty());
        // Annotations written as a list do not hide the object.
        let odd = objects("apiVersion: snapshot.storage.k8s.io/v1beta1\nkind: VolumeSnapshotContent\nmetadata:\n  name: c\n  annotations:\n    - a: b\n").unwrap();
        assert_eq!(odd[0].name, "c");
        assert!(
            err.to_string()
                .starts_with("document 2 of the manifest is not a readable Kubernetes object")
        );
    }
}
