//! The snapshot store: one folder per step, holding everything that step's rollback needs.
//!
//! Layout: `<root>/<run-id>/<seq>-<component>-<step>/` with the step's files (a Helm
//! release snapshot, custom-resource backups, lockfile and tfvars bytes, plan JSON, ...) and
//! a `manifest.json` of their sha256 sums. A snapshot is written into a hidden temp folder
//! and renamed into place only when complete, so a crash never leaves a half snapshot that
//! looks whole. Files are mode 0600 (they hold rendered Secrets and values), folders 0700.
//! Every read verifies the file against the manifest and names the file that does not match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_file;

/// The manifest's file name inside a snapshot folder.
pub const MANIFEST: &str = "manifest.json";

/// A snapshot store problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file or folder could not be read or written.
    #[error("snapshot store: could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file's bytes do not match the manifest: it was changed or damaged after the snapshot.
    #[error("snapshot file {} is corrupted: its sha256 is {actual}, the manifest recorded {expected}\nhint: do not restore from this snapshot; restore the file from a backup of the snapshot folder, or roll back by hand", path.display())]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// The sum the manifest recorded.
        expected: String,
        /// The sum of the bytes found.
        actual: String,
    },
    /// A file the manifest lists (or a caller asks for) is not there.
    #[error("snapshot file {} is missing{}", path.display(), if *.listed { " (the manifest lists it)" } else { "" })]
    Missing {
        /// The absent file.
        path: PathBuf,
        /// Whether the manifest lists it (otherwise the caller asked for a name never stored).
        listed: bool,
    },
    /// The manifest is absent or unreadable, so nothing in the folder can be trusted.
    #[error("snapshot {} has no valid manifest: {message}", dir.display())]
    BadManifest {
        /// The snapshot folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A name that would escape the snapshot folder or clash with the manifest.
    #[error("`{name}` is not a valid snapshot file name (a plain file name, not `{MANIFEST}`)")]
    BadName {
        /// The rejected name.
        name: String,
    },
}

/// Identifies one step's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotKey {
    /// The run it belongs to.
    pub run_id: String,
    /// The step's position in the run (orders the folders).
    pub seq: u32,
    /// The component, e.g. `kserve`.
    pub component: String,
    /// The step, e.g. `helm-upgrade`.
    pub step: String,
}

impl SnapshotKey {
    fn dir_name(&self) -> String {
        format!(
            "{:03}-{}-{}",
            self.seq,
            sanitize(&self.component),
            sanitize(&self.step)
        )
    }
}

/// The manifest: what a snapshot holds and the sums to verify it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Which step this snapshot is for.
    pub key: SnapshotKey,
    /// When it was taken.
    pub taken_at: jiff::Timestamp,
    /// File name → `sha256:<hex>`.
    pub files: BTreeMap<String, String>,
}

/// Where snapshots live.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    /// A store rooted at `root` (created with mode 0700 when absent).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let root = root.into();
        atomic_file::create_private_dir(&root).map_err(|source| SnapshotError::Io {
            action: "create",
            path: root.clone(),
            source,
        })?;
        Ok(SnapshotStore { root })
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder a step's snapshot has (or will have).
    pub fn dir_for(&self, key: &SnapshotKey) -> PathBuf {
        self.root.join(sanitize(&key.run_id)).join(key.dir_name())
    }

    /// Starts a snapshot for `key`. Nothing is visible until [`SnapshotWriter::commit`].
    pub fn begin(&self, key: SnapshotKey) -> Result<SnapshotWriter, SnapshotError> {
        let final_dir = self.dir_for(&key);
        let parent = final_dir
            .parent()
            .expect("snapshot dirs have a parent")
            .to_path_buf();
        let staging = parent.join(format!(
            ".{}.partial-{}",
            key.dir_name(),
            std::process::id()
        ));
        for dir in [&parent, &staging] {
            atomic_file::create_private_dir(dir).map_err(|source| SnapshotError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(SnapshotWriter {
            key,
            staging,
            final_dir,
            files: BTreeMap::new(),
        })
    }

    /// Opens a committed snapshot, checking that its manifest is valid and its files are there.
    pub fn open_snapshot(&self, key: &SnapshotKey) -> Result<Snapshot, SnapshotError> {
        Snapshot::open(&self.dir_for(key))
    }

    /// Whether a committed snapshot exists for `key`.
    pub fn exists(&self, key: &SnapshotKey) -> bool {
        self.dir_for(key).join(MANIFEST).is_file()
    }
}

/// A snapshot being written.
#[derive(Debug)]
pub struct SnapshotWriter {
    key: SnapshotKey,
    staging: PathBuf,
    final_dir: PathBuf,
    files: BTreeMap<String, String>,
}

impl SnapshotWriter {
    /// Adds a file with `bytes` (mode 0600).
    pub fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), SnapshotError> {
        check_name(name)?;
        let path = self.staging.join(name);
        atomic_file::write_private(&path, bytes).map_err(|source| SnapshotError::Io {
            action: "write",
            path,
            source,
        })?;
        self.files.insert(name.to_string(), sha256_hex(bytes));
        Ok(())
    }

    /// Adds a file holding `value` as pretty JSON.
    pub fn put_json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), SnapshotError> {
        let bytes = serde_json::to_vec_pretty(value).expect("snapshot values serialise to JSON");
        self.put(name, &bytes)
    }

    /// Writes the manifest and moves the snapshot into place atomically.
    pub fn commit(self) -> Result<Snapshot, SnapshotError> {
        let manifest = Manifest {
            key: self.key,
            taken_at: jiff::Timestamp::now(),
            files: self.files,
        };
        let manifest_path = self.staging.join(MANIFEST);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
        atomic_file::write_private(&manifest_path, &bytes).map_err(|source| SnapshotError::Io {
            action: "write",
            path: manifest_path,
            source,
        })?;
        // A previous attempt at the same step (a resumed run) is replaced whole.
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir).map_err(|source| SnapshotError::Io {
                action: "replace",
                path: self.final_dir.clone(),
                source,
            })?;
        }
        std::fs::rename(&self.staging, &self.final_dir).map_err(|source| SnapshotError::Io {
            action: "commit",
            path: self.final_dir.clone(),
            source,
        })?;
        let parent = self
            .final_dir
            .parent()
            .expect("snapshot dirs have a parent");
        atomic_file::sync_dir(parent).map_err(|source| SnapshotError::Io {
            action: "sync",
            path: parent.to_path_buf(),
            source,
        })?;
        Ok(Snapshot {
            dir: self.final_dir,
            manifest,
        })
    }
}

/// A committed snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    dir: PathBuf,
    manifest: Manifest,
}

impl Snapshot {
    /// Opens the snapshot in `dir`, checking its manifest and that every listed file is there.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        let manifest_path = dir.join(MANIFEST);
        let bytes = std::fs::read(&manifest_path).map_err(|e| SnapshotError::BadManifest {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| SnapshotError::BadManifest {
                dir: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        for name in manifest.files.keys() {
            check_name(name)?;
            if !dir.join(name).is_file() {
                return Err(SnapshotError::Missing {
                    path: dir.join(name),
                    listed: true,
                });
            }
        }
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The snapshot's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether the snapshot holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.manifest.files.contains_key(name)
    }

    /// A file's bytes, verified against the manifest.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, SnapshotError> {
        let path = self.dir.join(name);
        let expected = self
            .manifest
            .files
            .get(name)
            .ok_or_else(|| SnapshotError::Missing {
                path: path.clone(),
                listed: false,
            })?;
        let bytes = std::fs::read(&path).map_err(|source| SnapshotError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(SnapshotError::Corrupted {
                path,
                expected: expected.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A JSON file, verified and parsed.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, SnapshotError> {
        let bytes = self.get(name)?;
        serde_json::from_slice(&bytes).map_err(|e| SnapshotError::BadManifest {
            dir: self.dir.clone(),
            message: format!("{name} is not the JSON expected: {e}"),
        })
    }

    /// Verifies every file; the first mismatch is the error.
    pub fn verify(&self) -> Result<(), SnapshotError> {
        for name in self.manifest.files.keys() {
            self.get(name)?;
        }
        Ok(())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name != MANIFEST
        && name != "."
        && name != ".."
        && !name.contains(".tmp-")
        && !name.contains('/')
        && !name.contains('\\');
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadName {
            name: name.to_string(),
        })
    }
}

fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(seq: u32) -> SnapshotKey {
        SnapshotKey {
            run_id: "run-1".into(),
            seq,
            component: "kserve".into(),
            step: "helm-upgrade".into(),
        }
    }

    #[test]
    fn written_snapshot_reads_back_verified_and_private() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(root.path().join("snapshots")).unwrap();
        let mut w = store.begin(key(1)).unwrap();
        w.put("lockfile.hcl", b"provider \"aws\" {}\n").unwrap();
        w.put_json("release.json", &serde_json::json!({"revision": 3}))
            .unwrap();
        assert!(!store.exists(&key(1)), "invisible until committed");
        let snap = w.commit().unwrap();
        assert!(store.exists(&key(1)));
        assert!(snap.dir().ends_with("run-1/001-kserve-helm-upgrade"));
        let again = store.open_snapshot(&key(1)).unwrap();
        assert_eq!(again.get("lockfile.hcl").unwrap(), b"provider \"aws\" {}\n");
        let rel: serde_json::Value = again.get_json("release.json").unwrap();
        assert_eq!(rel["revision"], 3);
        again.verify().unwrap();
        for name in ["lockfile.hcl", "release.json", MANIFEST] {
            let mode = std::fs::metadata(snap.dir().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = std::fs::metadata(snap.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn corrupted_file_is_detected_and_named() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(root.path()).unwrap();
        let mut w = store.begin(key(2)).unwrap();
        w.put("values.yaml", b"replicas: 2\n").unwrap();
        let snap = w.commit().unwrap();
        std::fs::write(snap.dir().join("values.yaml"), b"replicas: 9\n").unwrap();
        let err = store
            .open_snapshot(&key(2))
            .unwrap()
            .get("values.yaml")
            .unwrap_err();
        match &err {
            SnapshotError::Corrupted { path, .. } => assert!(path.ends_with("values.yaml")),
            other => panic!("expected Corrupted, got {other:?}"),
        }
        assert!(
            err.to_string().contains("values.yaml is corrupted"),
            "{err}"
        );
        std::fs::remove_file(snap.dir().join("values.yaml")).unwrap();
        let err = store.open_snapshot(&key(2)).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Missing { listed: true, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn names_that_escape_the_folder_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(root.path()).unwrap();
        let mut w = store.begin(key(3)).unwrap();
        for bad in ["../x", "a/b", MANIFEST, "..", ".x.tmp-1", ""] {
            assert!(
                matches!(w.put(bad, b"x"), Err(SnapshotError::BadName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn recommitting_a_step_replaces_the_old_snapshot_whole() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(root.path()).unwrap();
        let mut w = store.begin(key(4)).unwrap();
        w.put("a", b"1").unwrap();
        w.put("b", b"2").unwrap();
        w.commit().unwrap();
        let mut w = store.begin(key(4)).unwrap();
        w.put("a", b"3").unwrap();
        let snap = w.commit().unwrap();
        assert!(!snap.dir().join("b").exists());
        assert_eq!(snap.get("a").unwrap(), b"3");
    }
}
