//! Pinning one value in a Helm values file without disturbing the rest of it.
//!
//! The platform's values files (`infrastructure/helm/aws/<component>-values.yaml`) pin each
//! component's image tag, and seed 000's procedure starts by editing that tag. The edit here
//! changes the one scalar's text in place, so comments, key order, quoting and blank lines
//! stay as people wrote them, and then proves it by parsing both versions: the only
//! difference must be the pinned value.
//!
//! [`ValuesPinStep`] makes the edit a step of an upgrade run: the file's bytes are its
//! snapshot and its rollback.
//!
//! ```
//! use upgrade_helm::values_pin::pin;
//!
//! let text = "# pinned by the platform team\ncontroller:\n  image:\n    tag: \"1.5.0\" # keep quoted\n";
//! let pinned = pin(text, &["controller", "image", "tag"], "1.6.0").unwrap();
//! assert_eq!(pinned.text, "# pinned by the platform team\ncontroller:\n  image:\n    tag: \"1.6.0\" # keep quoted\n");
//! assert_eq!(pinned.previous, "1.5.0");
//! ```

use std::path::{Path, PathBuf};

use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::split_image_tag;

/// Why a value could not be pinned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The text is not YAML (or not a mapping at the top).
    #[error(
        "{file} is not a YAML mapping: {detail}; fix the syntax (e.g. `helm template` shows where)"
    )]
    Malformed {
        /// The file (or `<text>`).
        file: String,
        /// The parser's message.
        detail: String,
    },
    /// The key path is not in the file.
    #[error("{file} has no `{key}`; add it (seed 000 pins the component's image tag there)")]
    KeyNotFound {
        /// The file.
        file: String,
        /// The dotted key path.
        key: String,
    },
    /// The key holds a mapping, a list or a flow collection, not one scalar.
    #[error("`{key}` in {file} (line {line}) is not a plain scalar; write it as `{last}: VALUE`")]
    NotScalar {
        /// The file.
        file: String,
        /// The dotted key path.
        key: String,
        /// Its last segment.
        last: String,
        /// The 1-based line.
        line: usize,
    },
    /// The edit changed more than the value (a construct this editor does not understand).
    #[error("pinning `{key}` in {file} would change more than that value; edit it by hand")]
    Unsafe {
        /// The file.
        file: String,
        /// The dotted key path.
        key: String,
    },
}

/// The result of [`pin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The new text.
    pub text: String,
    /// The value that was there (unquoted).
    pub previous: String,
}

/// Reads the scalar at `key` (e.g. `["controller", "image", "tag"]`) of a YAML text.
pub fn read(text: &str, key: &[&str]) -> Result<String, PinError> {
    let value = parse(text, "<text>")?;
    lookup(&value, key)
        .and_then(scalar_text)
        .ok_or_else(|| PinError::KeyNotFound {
            file: "<text>".into(),
            key: key.join("."),
        })
}

/// A value of a values file that pins a version: a tag (`v0.14.1`, `1.5.0`) or an image
/// reference whose tag is that version (`kserve/kserve-controller:v0.14.1`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionPin {
    /// The key path; a list item is `[N]` (such a pin is found, but not edited here).
    pub key: Vec<String>,
    /// The value now.
    pub value: String,
    /// Whether [`pin`] can edit it (every segment a mapping key).
    pub editable: bool,
}

impl VersionPin {
    /// The dotted key path.
    pub fn dotted(&self) -> String {
        self.key.join(".")
    }

    /// The value pinning `version` instead, spelled as this one is (a leading `v` kept or
    /// left out, an image reference's repository kept).
    pub fn respelled(&self, version: &semver::Version) -> String {
        let (repository, tag) = match split_image_tag(&self.value) {
            Some((repository, tag)) if looks_like_version(tag) => (Some(repository), tag),
            _ => (None, self.value.as_str()),
        };
        let prefix = if tag.starts_with(['v', 'V']) {
            &tag[..1]
        } else {
            ""
        };
        let tag = format!("{prefix}{version}");
        match repository {
            Some(repository) => format!("{repository}:{tag}"),
            None => tag,
        }
    }
}

fn looks_like_version(text: &str) -> bool {
    let body = text.strip_prefix(['v', 'V']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit())
        && body.contains('.')
        && upgrade_core::version::parse_loose_semver(body).is_some()
}

/// Every value of a parsed values file that pins `version` (spelled with or without a
/// leading `v`), in key order: the pins an upgrade from `version` must move together.
/// A digest (`sha256:…`) beside such a tag pins the old image whatever the tag says; it is
/// returned too, with its own value.
pub fn version_pins(values: &serde_json::Value, version: &semver::Version) -> Vec<VersionPin> {
    fn walk(
        value: &serde_json::Value,
        path: &mut Vec<String>,
        editable: bool,
        version: &semver::Version,
        out: &mut Vec<VersionPin>,
    ) {
        match value {
            serde_json::Value::Object(map) => {
                let pins_here = map
                    .values()
                    .any(|v| v.as_str().is_some_and(|s| pins(s, version)));
                for (key, child) in map {
                    path.push(key.clone());
                    let digest = pins_here
                        && key == "digest"
                        && child.as_str().is_some_and(|d| d.starts_with("sha256:"));
                    if digest {
                        out.push(VersionPin {
                            key: path.clone(),
                            value: child.as_str().unwrap_or_default().to_string(),
                            editable,
                        });
                    } else {
                        walk(child, path, editable, version, out);
                    }
                    path.pop();
                }
            }
            serde_json::Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(format!("[{index}]"));
                    walk(child, path, false, version, out);
                    path.pop();
                }
            }
            serde_json::Value::String(text) if pins(text, version) => out.push(VersionPin {
                key: path.clone(),
                value: text.clone(),
                editable,
            }),
            _ => {}
        }
    }
    fn pins(text: &str, version: &semver::Version) -> bool {
        let tag = split_image_tag(text).map_or(text, |(_, tag)| tag);
        looks_like_version(tag)
            && upgrade_core::version::parse_loose_semver(tag).as_ref() == Some(version)
    }
    let mut out = Vec::new();
    walk(values, &mut Vec::new(), true, version, &mut out);
    out
}

/// Sets the scalar at `key` to `value` in `text`, keeping everything else byte for byte.
pub fn pin(text: &str, key: &[&str], value: &str) -> Result<Pinned, PinError> {
    pin_in(text, key, value, "<text>")
}

fn pin_in(text: &str, key: &[&str], value: &str, file: &str) -> Result<Pinned, PinError> {
    let before = parse(text, file)?;
    let dotted = key.join(".");
    let not_found = || PinError::KeyNotFound {
        file: file.into(),
        key: dotted.clone(),
    };
    let previous = lookup(&before, key)
        .and_then(scalar_text)
        .ok_or_else(not_found)?;
    // Block mappings only: walk lines keeping the chain of keys by indentation.
    let mut chain: Vec<(usize, String)> = Vec::new();
    let mut out = String::with_capacity(text.len() + value.len());
    let mut done = false;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if done || trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            out.push_str(line);
            continue;
        }
        let indent = body.len() - trimmed.len();
        while chain.last().is_some_and(|(i, _)| *i >= indent) {
            chain.pop();
        }
        let Some((name, rest)) = split_key(trimmed) else {
            out.push_str(line);
            continue;
        };
        let depth = chain.len();
        let on_path = depth < key.len()
            && chain.iter().zip(key).all(|((_, k), want)| k == want)
            && name == key[depth];
        if on_path && depth + 1 == key.len() {
            let (old, comment) = split_comment(rest);
            let old_trimmed = old.trim();
            if old_trimmed.is_empty()
                || old_trimmed.starts_with(['{', '[', '|', '>', '&', '*', '!'])
            {
                return Err(PinError::NotScalar {
                    file: file.into(),
                    key: dotted,
                    last: name,
                    line: index + 1,
                });
            }
            let quoted = match old_trimmed.chars().next() {
                Some('"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
                Some('\'') => format!("'{}'", value.replace('\'', "''")),
                _ if needs_quotes(value) => format!("\"{value}\""),
                _ => value.to_string(),
            };
            let key_part = &body[..body.len() - rest.len()];
            let newline = &line[body.len()..];
            out.push_str(key_part);
            out.push(' ');
            out.push_str(&quoted);
            out.push_str(comment);
            out.push_str(newline);
            done = true;
            continue;
        }
        if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
            chain.push((indent, name));
        }
        out.push_str(line);
    }
    if !done {
        return Err(not_found());
    }
    // Prove it: parsed, the new text differs from the old only at `key`.
    let after = parse(&out, file)?;
    let mut expected = before.clone();
    if let Some(slot) = lookup_mut(&mut expected, key) {
        *slot = serde_json::Value::String(value.to_string());
    }
    let mut got = after;
    if let Some(slot) = lookup_mut(&mut got, key) {
        *slot = serde_json::Value::String(scalar_text(slot).unwrap_or_default());
    }
    if got != expected {
        return Err(PinError::Unsafe {
            file: file.into(),
            key: dotted,
        });
    }
    Ok(Pinned {
        text: out,
        previous,
    })
}

fn parse(text: &str, file: &str) -> Result<serde_json::Value, PinError> {
    let value: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| PinError::Malformed {
            file: file.into(),
            detail: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(PinError::Malformed {
            file: file.into(),
            detail: "the top level is not a mapping".into(),
        });
    }
    Ok(value)
}

fn lookup<'a>(value: &'a serde_json::Value, key: &[&str]) -> Option<&'a serde_json::Value> {
    key.iter().try_fold(value, |v, k| v.get(*k))
}

fn lookup_mut<'a>(
    value: &'a mut serde_json::Value,
    key: &[&str],
) -> Option<&'a mut serde_json::Value> {
    key.iter().try_fold(value, |v, k| v.get_mut(*k))
}

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `name: rest` → (name without quotes, rest after the colon).
fn split_key(line: &str) -> Option<(String, &str)> {
    let (name, rest) = if let Some(stripped) = line.strip_prefix('"') {
        let end = stripped.find('"')?;
        (&stripped[..end], stripped[end + 1..].strip_prefix(':')?)
    } else if let Some(stripped) = line.strip_prefix('\'') {
        let end = stripped.find('\'')?;
        (&stripped[..end], stripped[end + 1..].strip_prefix(':')?)
    } else {
        let colon = line
            .find(": ")
            .or_else(|| line.ends_with(':').then(|| line.len() - 1))?;
        (&line[..colon], &line[colon + 1..])
    };
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some((name.to_string(), rest))
}

/// Splits ` value # comment` into (` value`, ` # comment`), minding quotes.
fn split_comment(rest: &str) -> (&str, &str) {
    let mut quote = None;
    let bytes = rest.as_bytes();
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                let value_end = rest[..i].trim_end().len();
                return (&rest[..value_end], &rest[value_end..]);
            }
            _ => {}
        }
    }
    (rest.trim_end(), &rest[rest.trim_end().len()..])
}

/// Values YAML would read as something other than a string (`1.30` is a number, `true` a bool).
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.parse::<f64>().is_ok()
        || matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        )
        || value.contains(": ")
        || value.contains(" #")
        || value.starts_with(|c: char| "!&*{}[]|>'\"%@`#,?:-".contains(c))
}

/// Checks a values file can be pinned at `key` now (for validation before a run starts).
pub fn check_file(path: &Path, key: &[&str]) -> Result<String, PinError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PinError::Malformed {
        file: file.clone(),
        detail: e.to_string(),
    })?;
    pin_in(&text, key, "0.0.0-check", &file).map(|p| p.previous)
}

const ORIGINAL_FILE: &str = "values-original.yaml";

/// Pins one value in a values file as a step of an upgrade run; the file's bytes are the
/// snapshot, and the rollback writes them back. It needs no handle, so it is its own spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValuesPinStep {
    /// Step id, e.g. `karpenter/pin-image-tag`.
    pub id: String,
    /// The component.
    pub component: String,
    /// The values file (absolute).
    pub path: PathBuf,
    /// The key path, e.g. `["controller", "image", "tag"]`.
    pub key: Vec<String>,
    /// The value to pin.
    pub value: String,
    /// Other keys pinning the same old version, moved in the same edit (a server image
    /// beside the controller's, an image reference): key path and value.
    #[serde(default)]
    pub also: Vec<(Vec<String>, String)>,
}

impl ValuesPinStep {
    fn key(&self) -> Vec<&str> {
        self.key.iter().map(String::as_str).collect()
    }

    /// Every (key, value) this step pins, the main key first.
    fn pins(&self) -> impl Iterator<Item = (Vec<&str>, &str)> {
        std::iter::once((self.key(), self.value.as_str())).chain(
            self.also
                .iter()
                .map(|(key, value)| (key.iter().map(String::as_str).collect(), value.as_str())),
        )
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        upgrade_core::atomic_file::write(&self.path, bytes)
    }
}

impl StepSpec for ValuesPinStep {
    const KIND: &'static str = "helm-values-pin";
}

impl Step for ValuesPinStep {
    fn id(&self) -> &str {
        &self.id
    }

    fn component(&self) -> &str {
        &self.component
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(self)
    }

    fn description(&self) -> String {
        let pins: Vec<String> = self
            .pins()
            .map(|(key, value)| format!("{} = {value}", key.join(".")))
            .collect();
        format!("pin {} in {}", pins.join(", "), self.path.display())
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let bytes = std::fs::read(&self.path)?;
            snapshot.put(ORIGINAL_FILE, &bytes)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let text = std::fs::read_to_string(&self.path)?;
            let file = self.path.display().to_string();
            let mut edited = text.clone();
            for (key, value) in self.pins() {
                edited = pin_in(&edited, &key, value, &file)?.text;
            }
            if edited != text {
                self.write(edited.as_bytes())?;
            }
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let text = std::fs::read_to_string(&self.path)?;
            for (key, value) in self.pins() {
                let now = read(&text, &key)?;
                if now != value {
                    return Err(format!(
                        "{} holds {} = {now}, not {value}",
                        self.path.display(),
                        key.join("."),
                    )
                    .into());
                }
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let original = snapshot.get(ORIGINAL_FILE)?;
            if std::fs::read(&self.path).ok().as_deref() != Some(original.as_slice()) {
                self.write(&original)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: &str = "# Shaped like the platform's values file.\ncontroller:\n  image:\n    repository: public.ecr.aws/karpenter/controller\n    tag: \"1.5.0\"   # pinned\n  resources: {}\n# image of the webhook, not the controller\nwebhook:\n  image:\n    tag: 1.5.0\nsettings:\n  clusterName: mlops-platform-dev\n";

    #[test]
    fn pins_only_the_value_and_keeps_quotes_and_comments() {
        let pinned = pin(VALUES, &["controller", "image", "tag"], "1.6.0").unwrap();
        assert_eq!(
            pinned.text,
            VALUES.replace("tag: \"1.5.0\"   # pinned", "tag: \"1.6.0\"   # pinned")
        );
        assert_eq!(pinned.previous, "1.5.0");
        let webhook = pin(VALUES, &["webhook", "image", "tag"], "v1.6.0").unwrap();
        assert_eq!(
            webhook.text,
            VALUES.replace("    tag: 1.5.0\n", "    tag: v1.6.0\n")
        );
    }

    #[test]
    fn quotes_values_yaml_would_misread() {
        let text = "image:\n  tag: latest\n";
        assert_eq!(
            pin(text, &["image", "tag"], "1.30").unwrap().text,
            "image:\n  tag: \"1.30\"\n"
        );
    }

    #[test]
    fn names_the_missing_key_the_bad_file_and_non_scalars() {
        assert_eq!(
            pin(VALUES, &["controller", "image", "digest"], "x").unwrap_err(),
            PinError::KeyNotFound {
                file: "<text>".into(),
                key: "controller.image.digest".into()
            }
        );
        assert!(matches!(
            pin("controller: [unclosed", &["controller"], "x").unwrap_err(),
            PinError::Malformed { .. }
        ));
        assert!(matches!(
            pin(VALUES, &["controller", "image"], "x").unwrap_err(),
            PinError::KeyNotFound { .. }
        ));
        let flow = "controller: {image: {tag: 1.5.0}}\n";
        assert!(matches!(
            pin(flow, &["controller", "image", "tag"], "1.6.0").unwrap_err(),
            PinError::NotScalar { .. } | PinError::KeyNotFound { .. }
        ));
    }

    #[tokio::test]
    async fn the_step_restores_the_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("karpenter-values.yaml");
        std::fs::write(&path, VALUES).unwrap();
        let step = ValuesPinStep {
            id: "karpenter/pin-image-tag".into(),
            component: "karpenter".into(),
            path: path.clone(),
            key: vec!["controller".into(), "image".into(), "tag".into()],
            value: "1.6.0".into(),
            also: Vec::new(),
        };
        let store = upgrade_core::snapshot::SnapshotStore::open(dir.path().join("s")).unwrap();
        let mut writer = store
            .begin(upgrade_core::snapshot::SnapshotKey {
                run_id: "run".into(),
                seq: 0,
                component: "karpenter".into(),
                step: "pin-image-tag".into(),
            })
            .unwrap();
        step.capture(&mut writer).await.unwrap();
        let snapshot = writer.commit().unwrap();
        step.apply().await.unwrap();
        step.apply().await.unwrap();
        step.verify().await.unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("tag: \"1.6.0\"")
        );
        step.rollback(&snapshot).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), VALUES);
    }

    #[test]
    fn every_pin_of_a_version_is_found_and_respelled_as_written() {
        let text = "controller:\n  image:\n    tag: v3.7.4\n    digest: sha256:abc\nserver:\n  image:\n    tag: \"v3.7.4\"\nexecutor: quay.io/argoproj/argoexec:3.7.4\nregistry: \"registry:5000/x\"\nother: v3.7.40\nsidecars:\n- image: quay.io/argoproj/argocli:v3.7.4\n";
        let old = semver::Version::new(3, 7, 4);
        let pins = version_pins(&parse(text, "<text>").unwrap(), &old);
        let found: Vec<(String, &str, bool)> = pins
            .iter()
            .map(|p| (p.dotted(), p.value.as_str(), p.editable))
            .collect();
        assert_eq!(
            found,
            [
                ("controller.image.digest".to_string(), "sha256:abc", true),
                ("controller.image.tag".to_string(), "v3.7.4", true),
                (
                    "executor".to_string(),
                    "quay.io/argoproj/argoexec:3.7.4",
                    true
                ),
                ("server.image.tag".to_string(), "v3.7.4", true),
                (
                    "sidecars.[0].image".to_string(),
                    "quay.io/argoproj/argocli:v3.7.4",
                    false
                ),
            ]
        );
        let new = semver::Version::new(3, 7, 11);
        assert_eq!(pins[1].respelled(&new), "v3.7.11");
        assert_eq!(pins[2].respelled(&new), "quay.io/argoproj/argoexec:3.7.11");
    }

    #[tokio::test]
    async fn a_step_pins_every_key_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.yaml");
        std::fs::write(
            &path,
            "controller:\n  image:\n    tag: v3.7.4\nserver:\n  image:\n    tag: v3.7.4 # keep\n",
        )
        .unwrap();
        let step = ValuesPinStep {
            id: "argo-workflows/pin-image-tag".into(),
            component: "argo-workflows".into(),
            path: path.clone(),
            key: vec!["controller".into(), "image".into(), "tag".into()],
            value: "v3.7.11".into(),
            also: vec![(
                vec!["server".into(), "image".into(), "tag".into()],
                "v3.7.11".into(),
            )],
        };
        step.apply().await.unwrap();
        step.verify().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "controller:\n  image:\n    tag: v3.7.11\nserver:\n  image:\n    tag: v3.7.11 # keep\n"
        );
        assert!(step.description().contains("server.image.tag = v3.7.11"));
    }
}
