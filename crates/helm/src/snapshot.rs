//! Release snapshots taken before any change, and the plan that restores one.
//!
//! A snapshot records everything needed to go back: the revision and its status, the chart
//! name and version, the user-supplied and computed values, the manifest and hooks, and the
//! history at that time. It holds secrets (values, rendered Secrets), so it is written with
//! `0600` permissions in a `0700` folder, and its `Debug` and [`ReleaseSnapshot::summary`]
//! never show values.
//!
//! Restoring prefers `helm rollback` to the recorded revision while it is still in history
//! (Helm re-applies the stored manifest and values byte for byte); once history pruning has
//! removed it, it rolls *forward* to the recorded chart version with the recorded user values
//! and `--reset-values`. A release stuck in `pending-*` is never touched unless the caller
//! picks a [`PendingPolicy`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{HistoryEntry, Hook, ReleaseRef, ReleaseStatus, Values};

/// The snapshot file format version.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Everything about one release revision needed to restore it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSnapshot {
    /// [`SNAPSHOT_FORMAT`] at write time.
    pub format: u32,
    /// When it was taken (seconds since the Unix epoch).
    pub taken_at_unix: u64,
    /// The Helm that took it (`v3.17.3`).
    pub helm_version: String,
    /// The release.
    pub release: ReleaseRef,
    /// The revision current at snapshot time.
    pub revision: u32,
    /// Its status.
    pub status: ReleaseStatus,
    /// The chart's name.
    pub chart_name: String,
    /// The chart's version.
    pub chart_version: String,
    /// The chart's appVersion.
    pub app_version: String,
    /// `ssa`/`csa` (Helm 4), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_method: Option<String>,
    /// The newest revision that ran successfully (`deployed` or `superseded`) at snapshot time:
    /// the revision a restore returns to. `None` when there was none.
    pub restore_revision: Option<u32>,
    /// The history at snapshot time, ascending.
    pub history: Vec<HistoryEntry>,
    /// The user-supplied values of the revision.
    pub user_values: Values,
    /// The computed values (chart defaults coalesced with the user values).
    pub all_values: Values,
    /// The rendered manifests.
    pub manifest: String,
    /// The hooks with their manifests.
    pub hooks: Vec<Hook>,
}

impl fmt::Debug for ReleaseSnapshot {
    /// Values and manifests hold secrets: only their sizes are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseSnapshot")
            .field("release", &self.release)
            .field("revision", &self.revision)
            .field("status", &self.status)
            .field(
                "chart",
                &format!("{}-{}", self.chart_name, self.chart_version),
            )
            .field("restore_revision", &self.restore_revision)
            .field("history_len", &self.history.len())
            .field("user_values_keys", &self.user_values.len())
            .field("all_values_keys", &self.all_values.len())
            .field("manifest_bytes", &self.manifest.len())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl ReleaseSnapshot {
    /// The newest revision in `history` that ran successfully.
    pub fn newest_deployed(history: &[HistoryEntry]) -> Option<u32> {
        history
            .iter()
            .filter(|h| h.status.was_deployed())
            .map(|h| h.revision)
            .max()
    }

    /// The file name this snapshot is written under.
    pub fn file_name(&self) -> String {
        format!(
            "{}__{}__r{}__{}.json",
            self.release.namespace, self.release.name, self.revision, self.taken_at_unix
        )
    }

    /// Writes the snapshot into `dir` (created `0700` if missing) as a new `0600` file,
    /// atomically, and returns its path. An existing file is never overwritten.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::SnapshotIo {
                action: "create the folder for",
                path: dir.to_path_buf(),
                source,
            })?;
        let path = dir.join(self.file_name());
        let json = serde_json::to_vec_pretty(self).expect("a snapshot serializes");
        upgrade_core::atomic_file::create_private(&path, &json).map_err(|source| {
            Error::SnapshotIo {
                action: "write",
                path: path.clone(),
                source,
            }
        })?;
        Ok(path)
    }

    /// Reads a snapshot written by [`write`](Self::write).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::SnapshotIo {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let snapshot: ReleaseSnapshot =
            serde_json::from_slice(&bytes).map_err(|source| Error::SnapshotFormat {
                path: path.to_path_buf(),
                source,
            })?;
        if snapshot.format > SNAPSHOT_FORMAT {
            return Err(Error::Restore {
                release: snapshot.release.clone(),
                reason: format!(
                    "snapshot {} has format {}, newer than this toolkit's {SNAPSHOT_FORMAT}; use a newer toolkit",
                    path.display(),
                    snapshot.format
                ),
            });
        }
        Ok(snapshot)
    }

    /// A one-paragraph description for reports: never values or manifests.
    pub fn summary(&self) -> String {
        let way_back = match self.restore_revision {
            Some(rev) => format!("restore returns to revision {rev}"),
            None => "no successful revision to return to".to_string(),
        };
        format!(
            "{} revision {} ({}), chart {}-{} (app {}), {} revision(s) in history; {}",
            self.release,
            self.revision,
            self.status,
            self.chart_name,
            self.chart_version,
            if self.app_version.is_empty() {
                "-"
            } else {
                &self.app_version
            },
            self.history.len(),
            way_back
        )
    }
}

/// What to do with a release whose last revision is `pending-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PendingPolicy {
    /// Refuse and explain (the default): another Helm may still be running.
    #[default]
    Refuse,
    /// The caller knows no other Helm is running: roll a pending-upgrade/pending-rollback
    /// back to the newest successful revision first. (A pending-install is still refused:
    /// uninstalling is the caller's explicit decision.)
    RollbackToLastDeployed,
}

/// Clearing a stuck `pending-*` revision before restoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecovery {
    /// The pending revision.
    pub revision: u32,
    /// Its status.
    pub status: ReleaseStatus,
    /// The revision to roll back to first.
    pub rollback_to: u32,
}

/// How a snapshot is restored.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreAction {
    /// The release already runs the snapshot's revision.
    NothingToDo {
        /// The current revision.
        revision: u32,
    },
    /// `helm rollback NAME REV`: the revision is still in history.
    Rollback {
        /// The revision to roll back to.
        to_revision: u32,
    },
    /// The revision was pruned (or the release is gone): upgrade (install) the recorded chart
    /// version with the recorded user values and `--reset-values`.
    RollForward {
        /// The chart name.
        chart_name: String,
        /// The chart version.
        chart_version: String,
    },
}

/// The full restore plan.
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePlan {
    /// The release.
    pub release: ReleaseRef,
    /// A pending revision to clear first (only under [`PendingPolicy::RollbackToLastDeployed`]).
    pub recover_pending: Option<PendingRecovery>,
    /// The restore itself.
    pub action: RestoreAction,
}

/// The error for a release stuck in `pending-*`, with the exact commands that recover it.
pub fn pending_error(release: &ReleaseRef, history: &[HistoryEntry]) -> Option<Error> {
    let last = history.iter().max_by_key(|h| h.revision)?;
    if !last.status.is_pending() {
        return None;
    }
    let target = ReleaseSnapshot::newest_deployed(history);
    let hint = match (last.status, target) {
        (ReleaseStatus::PendingInstall, _) | (_, None) => format!(
            "make sure no other Helm is working on it, then remove the half-installed release with \
             `helm uninstall {} -n {}` and install again (or restore with PendingPolicy::RollbackToLastDeployed \
             when a deployed revision exists)",
            release.name, release.namespace
        ),
        (_, Some(rev)) => format!(
            "make sure no other Helm is working on it (a killed `helm upgrade` leaves this behind), then \
             roll back explicitly to the last deployed revision: `helm rollback {} {rev} -n {} --wait`, \
             or restore with PendingPolicy::RollbackToLastDeployed",
            release.name, release.namespace
        ),
    };
    Some(Error::PendingOperation {
        release: release.clone(),
        status: last.status,
        revision: last.revision,
        hint,
    })
}

/// Decides how to bring `snapshot`'s release back, given its current history.
pub fn plan_restore(
    snapshot: &ReleaseSnapshot,
    current_history: &[HistoryEntry],
    policy: PendingPolicy,
) -> Result<RestorePlan> {
    let release = snapshot.release.clone();
    let target = if snapshot.status.was_deployed() {
        snapshot.revision
    } else {
        snapshot.restore_revision.ok_or_else(|| Error::Restore {
            release: release.clone(),
            reason: format!(
                "the snapshot recorded revision {} in status {} and no earlier successful revision; \
                 there is no known-good state to return to",
                snapshot.revision, snapshot.status
            ),
        })?
    };
    let roll_forward = || RestoreAction::RollForward {
        chart_name: snapshot.chart_name.clone(),
        chart_version: snapshot.chart_version.clone(),
    };
    let Some(last) = current_history.iter().max_by_key(|h| h.revision) else {
        // The release is gone: install the recorded chart version again.
        return Ok(RestorePlan {
            release,
            recover_pending: None,
            action: roll_forward(),
        });
    };
    let mut recover_pending = None;
    if last.status.is_pending() {
        let deployed = ReleaseSnapshot::newest_deployed(current_history);
        match (policy, last.status, deployed) {
            (PendingPolicy::RollbackToLastDeployed, status, Some(rollback_to))
                if status != ReleaseStatus::PendingInstall =>
            {
                recover_pending = Some(PendingRecovery {
                    revision: last.revision,
                    status,
                    rollback_to,
                });
            }
            _ => {
                return Err(
                    pending_error(&release, current_history).expect("the last revision is pending")
                );
            }
        }
    }
    let in_history = current_history.iter().any(|h| h.revision == target);
    let action = if last.revision == target && last.status == ReleaseStatus::Deployed {
        RestoreAction::NothingToDo { revision: target }
    } else if in_history {
        match recover_pending {
            // The recovery rollback already lands on the target.
            Some(ref rec) if rec.rollback_to == target => {
                let plan = RestorePlan {
                    release,
                    recover_pending: None,
                    action: RestoreAction::Rollback {
                        to_revision: target,
                    },
                };
                return Ok(plan);
            }
            _ => RestoreAction::Rollback {
                to_revision: target,
            },
        }
    } else {
        roll_forward()
    };
    Ok(RestorePlan {
        release,
        recover_pending,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u32, status: ReleaseStatus) -> HistoryEntry {
        HistoryEntry {
            revision,
            updated: None,
            status,
            chart: "kserve-0.15.0".into(),
            app_version: "v0.15.0".into(),
            description: String::new(),
            rollback_revision: None,
        }
    }

    fn snapshot(revision: u32, status: ReleaseStatus) -> ReleaseSnapshot {
        let mut user_values = Values::new();
        user_values.insert("db".into(), serde_json::json!({"password": "s3cr3t-pw"}));
        ReleaseSnapshot {
            format: SNAPSHOT_FORMAT,
            taken_at_unix: 1_790_000_000,
            helm_version: "v3.17.3".into(),
            release: ReleaseRef::new("kserve", "kserve"),
            revision,
            status,
            chart_name: "kserve".into(),
            chart_version: "0.15.0".into(),
            app_version: "v0.15.0".into(),
            apply_method: None,
            restore_revision: Some(revision),
            history: vec![entry(revision, status)],
            user_values: user_values.clone(),
            all_values: user_values,
            manifest: "kind: Secret\ndata:\n  password: czNjcjN0LXB3\n".into(),
            hooks: Vec::new(),
        }
    }

    use ReleaseStatus::*;

    #[test]
    fn rolls_back_while_the_revision_is_in_history() {
        let snap = snapshot(3, Deployed);
        let history = [entry(3, Superseded), entry(4, Failed), entry(5, Deployed)];
        let plan = plan_restore(&snap, &history, PendingPolicy::Refuse).unwrap();
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 3 });
        assert_eq!(plan.recover_pending, None);
    }

    #[test]
    fn nothing_to_do_when_still_current() {
        let snap = snapshot(3, Deployed);
        let plan = plan_restore(
            &snap,
            &[entry(2, Superseded), entry(3, Deployed)],
            PendingPolicy::Refuse,
        )
        .unwrap();
        assert_eq!(plan.action, RestoreAction::NothingToDo { revision: 3 });
    }

    #[test]
    fn rolls_forward_when_pruned_or_gone() {
        let snap = snapshot(3, Deployed);
        let pruned = [entry(14, Superseded), entry(15, Deployed)];
        let expected = RestoreAction::RollForward {
            chart_name: "kserve".into(),
            chart_version: "0.15.0".into(),
        };
        assert_eq!(
            plan_restore(&snap, &pruned, PendingPolicy::Refuse)
                .unwrap()
                .action,
            expected
        );
        assert_eq!(
            plan_restore(&snap, &[], PendingPolicy::Refuse)
                .unwrap()
                .action,
            expected
        );
    }

    #[test]
    fn a_failed_snapshot_restores_its_last_good_revision() {
        let mut snap = snapshot(4, Failed);
        snap.restore_revision = Some(3);
        let plan = plan_restore(
            &snap,
            &[entry(3, Superseded), entry(4, Failed), entry(5, Deployed)],
            PendingPolicy::Refuse,
        )
        .unwrap();
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 3 });
        snap.restore_revision = None;
        let err = plan_restore(&snap, &[], PendingPolicy::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no known-good state"), "{err}");
    }

    #[test]
    fn pending_is_refused_with_the_exact_command() {
        let snap = snapshot(3, Deployed);
        let history = [entry(3, Deployed), entry(4, PendingUpgrade)];
        let err = plan_restore(&snap, &history, PendingPolicy::Refuse).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("stuck in pending-upgrade at revision 4"),
            "{text}"
        );
        assert!(
            text.contains("helm rollback kserve 3 -n kserve --wait"),
            "{text}"
        );
        assert!(matches!(err, Error::PendingOperation { revision: 4, .. }));

        let install = [entry(1, PendingInstall)];
        let text = plan_restore(&snap, &install, PendingPolicy::RollbackToLastDeployed)
            .unwrap_err()
            .to_string();
        assert!(text.contains("helm uninstall kserve -n kserve"), "{text}");
    }

    #[test]
    fn pending_is_recovered_under_the_explicit_policy() {
        let snap = snapshot(2, Deployed);
        let history = [
            entry(2, Superseded),
            entry(3, Deployed),
            entry(4, PendingUpgrade),
        ];
        let plan = plan_restore(&snap, &history, PendingPolicy::RollbackToLastDeployed).unwrap();
        assert_eq!(
            plan.recover_pending,
            Some(PendingRecovery {
                revision: 4,
                status: PendingUpgrade,
                rollback_to: 3
            })
        );
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 2 });

        // When the recovery lands on the target, one rollback does both.
        let history = [entry(2, Deployed), entry(3, PendingUpgrade)];
        let plan = plan_restore(&snap, &history, PendingPolicy::RollbackToLastDeployed).unwrap();
        assert_eq!(plan.recover_pending, None);
        assert_eq!(plan.action, RestoreAction::Rollback { to_revision: 2 });
    }

    #[test]
    fn written_0600_read_back_and_never_printed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot(3, Deployed);
        let folder = dir.path().join("snapshots");
        let path = snap.write(&folder).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(ReleaseSnapshot::read(&path).unwrap(), snap);
        // Never overwritten.
        assert!(matches!(snap.write(&folder), Err(Error::SnapshotIo { .. })));
        for shown in [format!("{snap:?}"), snap.summary()] {
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(!shown.contains("czNjcjN0LXB3"), "{shown}");
        }
        assert_eq!(
            snap.summary(),
            "kserve/kserve revision 3 (deployed), chart kserve-0.15.0 (app v0.15.0), 1 revision(s) in history; restore returns to revision 3"
        );
    }

    #[test]
    fn unreadable_snapshots_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{}").unwrap();
        let err = ReleaseSnapshot::read(&path).unwrap_err().to_string();
        assert!(err.contains("bad.json is not valid"), "{err}");
        let err = ReleaseSnapshot::read(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("could not read snapshot"), "{err}");
    }
}
