//! A custom-resource backup as a step of an upgrade run (`upgrade_core::executor::Step`):
//! the seeds' "back up InferenceServices (or Workflows) before the upgrade; re-apply the
//! backup to roll back", made recorded and reversible.
//!
//! The capture is the backup (YAML with server fields stripped, in the step's snapshot);
//! apply changes nothing; rollback restores every backed-up object with server-side apply.

use upgrade_core::executor::{Step, StepFuture};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::backup::{Backup, BackupKind, backup, restore};
use crate::connect::Cluster;

const BACKUP_FILE: &str = "backup.yaml";

/// Backs up custom resources before the steps that may change them.
#[derive(Debug, Clone)]
pub struct CrBackupStep {
    /// Step id, e.g. `kserve/backup-inferenceservices`.
    pub id: String,
    /// Component, e.g. `kserve`.
    pub component: String,
    /// The cluster.
    pub cluster: Cluster,
    /// The kinds to back up (see [`crate::backup::platform_kinds`]).
    pub kinds: Vec<BackupKind>,
    /// One namespace, or all.
    pub namespace: Option<String>,
}

impl Step for CrBackupStep {
    fn id(&self) -> &str {
        &self.id
    }

    fn component(&self) -> &str {
        &self.component
    }

    fn description(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.kind.as_str()).collect();
        format!(
            "back up {} in {}",
            kinds.join(", "),
            self.namespace.as_deref().unwrap_or("all namespaces")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let taken = backup(&self.cluster, &self.kinds, self.namespace.as_deref()).await?;
            snapshot.put(BACKUP_FILE, taken.to_yaml().as_bytes())?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let text = String::from_utf8(snapshot.get(BACKUP_FILE)?)?;
            let saved = Backup::from_yaml(&text)?;
            restore(&self.cluster, &saved, &self.kinds).await?;
            Ok(())
        })
    }
}
