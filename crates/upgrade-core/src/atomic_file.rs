//! The one way the toolkit puts a file on disk: every file it writes or restores (snapshots,
//! the journal's folder, run records, the lockfile, edited tfvars and values files, restored
//! Terraform lock files) goes through here, so a crash leaves either the old bytes or the new
//! ones, never a mix, and a completed write survives a power cut.
//!
//! Each write goes to a temporary file beside the target, is fsynced, renamed over the target
//! and the folder is fsynced, so the rename itself is durable.
//!
//! - [`write`]: a user's file (tfvars, values, `versions.tf`, the platform lockfile): keeps
//!   the permissions the file has; a new file gets `0644`.
//! - [`write_private`]: the toolkit's own records (snapshots, run records): `0600`.
//! - [`create_private`]: like `write_private`, but refuses to replace an existing file.
//! - [`remove`]: deletes a file and makes the deletion durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, keeping the permissions of the file it replaces
/// (`0644` for a new file).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0o644,
        Err(e) => return Err(e),
    };
    replace(path, bytes, mode)
}

/// Writes `bytes` to `path` atomically with mode `0600`.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, 0o600)
}

/// Writes `bytes` to a new file `path` (mode `0600`) atomically; fails with
/// [`io::ErrorKind::AlreadyExists`] when `path` exists, leaving it untouched.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_beside(path)?;
    write_synced(&tmp, bytes, 0o600)?;
    // A hard link never replaces an existing file: the no-clobber rename std lacks.
    let linked = fs::hard_link(&tmp, path);
    let removed = fs::remove_file(&tmp);
    linked?;
    removed?;
    sync_dir(parent(path))
}

/// Removes `path` (a missing file is not an error) and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// fsyncs a folder, so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_beside(path)?;
    if let Err(e) = write_synced(&tmp, bytes, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

fn write_synced(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    // The mode above only applies at creation (and through the umask); set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn temp_beside(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok(parent(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<std::ffi::OsString> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect()
    }

    #[test]
    fn private_writes_replace_whole_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn user_files_keep_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("terraform.tfvars");
        write(&path, b"cluster_version = \"1.30\"\n").unwrap();
        assert_eq!(mode(&path), 0o644, "a new file is 0644");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write(&path, b"cluster_version = \"1.31\"\n").unwrap();
        assert_eq!(mode(&path), 0o640, "the old mode is kept");
        assert_eq!(fs::read(&path).unwrap(), b"cluster_version = \"1.31\"\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn create_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.json");
        create_private(&path, b"first").unwrap();
        let err = create_private(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn removal_of_a_missing_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.hcl");
        remove(&path).unwrap();
        write(&path, b"x").unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_relative_path_in_the_current_folder_works() {
        // `Path::parent` of "file" is "", which cannot be opened to fsync.
        assert_eq!(parent(Path::new("file")), Path::new("."));
    }
}
