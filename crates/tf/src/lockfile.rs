//! `.terraform.lock.hcl`: read, diff, and snapshot/restore as raw bytes.
//!
//! Terraform owns this file's format (normalised, sorted, atomically rewritten), so this
//! module never serialises it: it parses it for reports and restores the exact bytes it
//! saved for rollbacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lock file's name in a working directory.
pub const LOCK_FILE_NAME: &str = ".terraform.lock.hcl";

/// The parsed lock file: one entry per provider source address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Providers by fully qualified source address, e.g. `registry.terraform.io/hashicorp/aws`.
    #[serde(default, rename = "provider")]
    pub providers: BTreeMap<String, ProviderLock>,
}

/// One `provider` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLock {
    /// The selected version.
    pub version: String,
    /// The constraints that were in effect (informational; Terraform does not select by it).
    #[serde(default)]
    pub constraints: Option<String>,
    /// Package checksums (`h1:` per platform, `zh:` from the registry).
    #[serde(default)]
    pub hashes: Vec<String>,
}

impl LockFile {
    /// Parses lock file text. `module` blocks (reserved by Terraform) are ignored.
    pub fn parse(text: &str) -> Result<LockFile> {
        Self::parse_at(text, None)
    }

    fn parse_at(text: &str, path: Option<&Path>) -> Result<LockFile> {
        // Only `provider` blocks matter; parse the body generically so that other block
        // types Terraform may add (it reserves `module`) cannot break reading.
        let body: hcl::Body = hcl::from_str(text).map_err(|e| Error::Hcl {
            path: path.map(Path::to_path_buf),
            problem: format!("not a valid lock file: {e}"),
            fix: Some("restore it from version control or re-run `terraform init`".into()),
        })?;
        let mut providers = BTreeMap::new();
        for block in body.blocks().filter(|b| b.identifier() == "provider") {
            let Some(label) = block.labels().first() else {
                continue;
            };
            let address = label.as_str().to_string();
            let entry: ProviderLock =
                hcl::from_body(block.body().clone()).map_err(|e| Error::Hcl {
                    path: path.map(Path::to_path_buf),
                    problem: format!("provider {address:?}: {e}"),
                    fix: Some("restore it from version control or re-run `terraform init`".into()),
                })?;
            providers.insert(address, entry);
        }
        Ok(LockFile { providers })
    }

    /// Reads and parses a lock file.
    pub fn read(path: &Path) -> Result<LockFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::parse_at(&text, Some(path))
    }

    /// Like [`read`](Self::read), `None` when the file does not exist.
    pub fn read_optional(path: &Path) -> Result<Option<LockFile>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_at(&text, Some(path)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// The selected version of a provider, by full address or by `namespace/type`
    /// (`hashicorp/aws` finds `registry.terraform.io/hashicorp/aws`).
    pub fn version_of(&self, provider: &str) -> Option<&str> {
        self.providers
            .iter()
            .find(|(addr, _)| *addr == provider || addr.ends_with(&format!("/{provider}")))
            .map(|(_, p)| p.version.as_str())
    }
}

/// The raw bytes of a lock file at one moment (or its absence), for an exact restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSnapshot {
    path: PathBuf,
    bytes: Option<Vec<u8>>,
}

impl LockSnapshot {
    /// Reads the file's bytes now; a missing file is recorded as missing.
    pub fn take(path: impl Into<PathBuf>) -> Result<LockSnapshot> {
        let path = path.into();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        Ok(LockSnapshot { path, bytes })
    }

    /// The file this snapshot is of.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved bytes (`None` if the file did not exist).
    pub fn bytes(&self) -> Option<&[u8]> {
        self.bytes.as_deref()
    }

    /// SHA-256 of the saved bytes, hex (`None` if the file did not exist).
    pub fn sha256(&self) -> Option<String> {
        use sha2::Digest;
        self.bytes
            .as_ref()
            .map(|b| crate::terraform::hex(&sha2::Sha256::digest(b)))
    }

    /// Parses the saved bytes.
    pub fn parse(&self) -> Result<Option<LockFile>> {
        self.bytes
            .as_ref()
            .map(|b| LockFile::parse_at(&String::from_utf8_lossy(b), Some(&self.path)))
            .transpose()
    }

    /// Puts the exact saved bytes back (atomically, fsynced), or removes the file if it did
    /// not exist. Run `init` with a read-only lock file afterwards to resync
    /// `.terraform/providers`.
    pub fn restore(&self) -> Result<()> {
        match &self.bytes {
            Some(bytes) => upgrade_core::atomic_file::write(&self.path, bytes)
                .map_err(|e| Error::io("write", &self.path, e)),
            None => upgrade_core::atomic_file::remove(&self.path)
                .map_err(|e| Error::io("remove", &self.path, e)),
        }
    }
}

/// How one provider's lock entry changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ProviderLockChange {
    /// A new entry.
    Added {
        /// Source address.
        provider: String,
        /// Its version.
        version: String,
    },
    /// An entry that disappeared.
    Removed {
        /// Source address.
        provider: String,
        /// The version it had.
        version: String,
    },
    /// An entry whose version, constraints or hashes changed.
    Changed {
        /// Source address.
        provider: String,
        /// Version before.
        from_version: String,
        /// Version after.
        to_version: String,
        /// Constraints before and after, when they changed.
        constraints: Option<(Option<String>, Option<String>)>,
        /// Hashes that appeared.
        hashes_added: Vec<String>,
        /// Hashes that disappeared.
        hashes_removed: Vec<String>,
    },
}

/// The per-provider difference between two lock files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockDiff {
    /// Changes, by provider address.
    pub changes: Vec<ProviderLockChange>,
}

impl LockDiff {
    /// The difference from `before` to `after` (a missing file counts as empty).
    pub fn between(before: Option<&LockFile>, after: Option<&LockFile>) -> LockDiff {
        let empty = LockFile::default();
        let before = before.unwrap_or(&empty);
        let after = after.unwrap_or(&empty);
        let addresses: BTreeSet<&String> = before
            .providers
            .keys()
            .chain(after.providers.keys())
            .collect();
        let mut changes = Vec::new();
        for address in addresses {
            match (before.providers.get(address), after.providers.get(address)) {
                (None, Some(a)) => changes.push(ProviderLockChange::Added {
                    provider: address.clone(),
                    version: a.version.clone(),
                }),
                (Some(b), None) => changes.push(ProviderLockChange::Removed {
                    provider: address.clone(),
                    version: b.version.clone(),
                }),
                (Some(b), Some(a)) if b != a => {
                    let old: BTreeSet<&String> = b.hashes.iter().collect();
                    let new: BTreeSet<&String> = a.hashes.iter().collect();
                    changes.push(ProviderLockChange::Changed {
                        provider: address.clone(),
                        from_version: b.version.clone(),
                        to_version: a.version.clone(),
                        constraints: (b.constraints != a.constraints)
                            .then(|| (b.constraints.clone(), a.constraints.clone())),
                        hashes_added: new.difference(&old).map(|s| s.to_string()).collect(),
                        hashes_removed: old.difference(&new).map(|s| s.to_string()).collect(),
                    })
                }
                _ => {}
            }
        }
        LockDiff { changes }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Providers whose selected version moved to a new major (e.g. AWS 5.x -> 6.x): the
    /// upgrades whose breaking changes deserve a human's approval. `(provider, from, to)`.
    pub fn major_upgrades(&self) -> Vec<(&str, &str, &str)> {
        let major = |v: &str| semver::Version::parse(v).ok().map(|v| v.major);
        self.changes
            .iter()
            .filter_map(|c| match c {
                ProviderLockChange::Changed {
                    provider,
                    from_version,
                    to_version,
                    ..
                } if major(to_version) > major(from_version) => Some((
                    provider.as_str(),
                    from_version.as_str(),
                    to_version.as_str(),
                )),
                _ => None,
            })
            .collect()
    }

    /// `(from, to)` versions of a provider whose version changed (address or `namespace/type`).
    pub fn version_change(&self, provider: &str) -> Option<(&str, &str)> {
        self.changes.iter().find_map(|c| match c {
            ProviderLockChange::Changed {
                provider: p,
                from_version,
                to_version,
                ..
            } if (p == provider || p.ends_with(&format!("/{provider}")))
                && from_version != to_version =>
            {
                Some((from_version.as_str(), to_version.as_str()))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.99.0"
  constraints = "~> 5.0"
  hashes = [
    "h1:aaa=",
    "zh:0123",
  ]
}

provider "registry.terraform.io/hashicorp/random" {
  version = "3.6.0"
  hashes = [
    "h1:rrr=",
  ]
}

module "reserved" {
  anything = true
}
"#;

    const AFTER: &str = r#"provider "registry.terraform.io/hashicorp/aws" {
  version     = "6.0.0"
  constraints = "~> 6.0"
  hashes = [
    "h1:bbb=",
    "zh:0123",
  ]
}

provider "registry.terraform.io/hashicorp/tls" {
  version = "4.0.5"
}
"#;

    #[test]
    fn parses_providers_and_ignores_module_blocks() {
        let lock = LockFile::parse(BEFORE).unwrap();
        assert_eq!(lock.providers.len(), 2);
        let aws = &lock.providers["registry.terraform.io/hashicorp/aws"];
        assert_eq!(aws.version, "5.99.0");
        assert_eq!(aws.constraints.as_deref(), Some("~> 5.0"));
        assert_eq!(aws.hashes, ["h1:aaa=", "zh:0123"]);
        assert_eq!(lock.version_of("hashicorp/random"), Some("3.6.0"));
    }

    #[test]
    fn diff_reports_added_removed_and_changed() {
        let diff = LockDiff::between(
            Some(&LockFile::parse(BEFORE).unwrap()),
            Some(&LockFile::parse(AFTER).unwrap()),
        );
        insta::assert_json_snapshot!(diff);
        assert_eq!(
            diff.version_change("hashicorp/aws"),
            Some(("5.99.0", "6.0.0"))
        );
        assert_eq!(
            diff.major_upgrades(),
            [("registry.terraform.io/hashicorp/aws", "5.99.0", "6.0.0")]
        );
        let minor = LockDiff::between(
            Some(&LockFile::parse(AFTER).unwrap()),
            Some(&LockFile::parse(&AFTER.replace("6.0.0", "6.1.0")).unwrap()),
        );
        assert!(minor.major_upgrades().is_empty());
    }

    #[test]
    fn a_broken_lock_file_names_the_fix() {
        let err = LockFile::parse("provider \"x\" {\n  version = \n}").unwrap_err();
        assert!(err.to_string().contains("re-run `terraform init`"), "{err}");
    }

    #[test]
    fn snapshot_restores_exact_bytes_or_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        let missing = LockSnapshot::take(&path).unwrap();
        std::fs::write(&path, BEFORE).unwrap();
        let snap = LockSnapshot::take(&path).unwrap();
        std::fs::write(&path, AFTER).unwrap();
        snap.restore().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), BEFORE.as_bytes());
        missing.restore().unwrap();
        assert!(!path.exists());
    }
}
