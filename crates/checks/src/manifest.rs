//! Reading rendered manifests (multi-document YAML) down to what the removed-API check needs:
//! apiVersion, kind, name and namespace of every object, including the items of `List`s.
//!
//! Scanning what Helm renders (rather than `last-applied-configuration` annotations or what
//! the API server returns, which it converts to the version asked for) is what avoids the
//! false positives behind most of kubent's and pluto's open issues.

use serde::Deserialize;

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
}

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
        let parsed = Option::<Object>::deserialize(document);
        match parsed {
            Ok(Some(object)) => collect(object, document_number, &mut found),
            Ok(None) => {}
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
        found.push(ManifestObject {
            api_version,
            kind,
            name: metadata.name.unwrap_or_default(),
            namespace: metadata.namespace,
            document,
        });
    }
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
    fn a_broken_document_is_named() {
        let err = objects("apiVersion: v1\nkind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert_eq!(err.document, 2);
        let (before, error) =
            objects_until_error("apiVersion: v1\nkind: A\n---\nkind: [unclosed\n");
        assert_eq!(before.len(), 1);
        assert_eq!(error.unwrap().document, 2);
        // Valid YAML that is not an object is refused the same way.
        let not_object = objects("apiVersion: v1\nkind: [A, B]\n").unwrap_err();
        assert_eq!(not_object.document, 1);
        assert!(
            err.to_string()
                .starts_with("document 2 of the manifest is not a readable Kubernetes object")
        );
    }
}
