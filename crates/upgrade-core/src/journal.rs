//! The journal: an append-only JSON-lines record of every step event of every run.
//!
//! Each line is fsynced before the step goes on, so after a crash the journal says exactly
//! how far a run got: which steps were planned, started, snapshotted, applied, verified,
//! failed or rolled back. A line torn by a crash at the very end is ignored on read (its
//! event never happened as far as anyone was told); damage anywhere else is an error.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A journal problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal could not be read or written.
    #[error("journal {}: could not {action}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The journal file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not the last one does not parse: the file was edited or damaged.
    #[error("journal {} is damaged at line {line}: {message}\nhint: keep a copy of the file for the record, then remove or fix that line", path.display())]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The parser's message.
        message: String,
    },
}

/// One step as planned at the start of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// The step's id, unique in the run and stable across resumes.
    pub id: String,
    /// The component it changes.
    pub component: String,
    /// What it does, for people.
    pub description: String,
    /// Why it cannot be undone, when it cannot (e.g. the EKS control plane's minor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A run was planned with these steps, in order.
    Planned {
        /// The steps.
        steps: Vec<PlannedStep>,
    },
    /// A step began (its snapshot comes next).
    Started {
        /// The step id.
        step: String,
    },
    /// A step's snapshot is committed; from here on it can be rolled back.
    SnapshotTaken {
        /// The step id.
        step: String,
        /// The snapshot folder.
        dir: PathBuf,
    },
    /// A step's change is applied.
    Applied {
        /// The step id.
        step: String,
    },
    /// A step's change is verified.
    Verified {
        /// The step id.
        step: String,
    },
    /// A step failed.
    Failed {
        /// The step id.
        step: String,
        /// The error, redacted.
        error: String,
    },
    /// A rollback began.
    RollbackStarted {
        /// Why: a failed step, or a person's request.
        reason: String,
    },
    /// A step was rolled back from its snapshot.
    RolledBack {
        /// The step id.
        step: String,
    },
    /// A step could not be rolled back; the rollback stopped there.
    RollbackBlocked {
        /// The step id.
        step: String,
        /// Why, with what a person must do.
        reason: String,
    },
    /// The run ended.
    Finished {
        /// How.
        outcome: Outcome,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every step applied and verified.
    Completed,
    /// The steps that had been applied were undone.
    RolledBack,
    /// Stopped at a failure, left for a person (a rollback was blocked or not wanted).
    Stopped,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was written.
    pub at: jiff::Timestamp,
    /// The run it belongs to.
    pub run_id: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// A step's furthest point, as the journal tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Not begun.
    Pending,
    /// Begun, no snapshot yet (nothing changed).
    Started,
    /// Snapshot taken; the change may have been partly applied.
    SnapshotTaken,
    /// Applied, not yet verified.
    Applied,
    /// Applied and verified.
    Verified,
    /// Undone from its snapshot.
    RolledBack,
}

/// The state of one run, rebuilt from the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunState {
    /// The run id.
    pub run_id: String,
    /// The planned steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Each step's furthest point.
    pub status: BTreeMap<String, StepStatus>,
    /// Each step's snapshot folder, once taken.
    pub snapshots: BTreeMap<String, PathBuf>,
    /// The last failure, if any: (step, error).
    pub last_failure: Option<(String, String)>,
    /// How it ended; `None` while unfinished.
    pub outcome: Option<Outcome>,
}

impl RunState {
    /// A step's status (`Pending` when the journal never mentions it).
    pub fn status_of(&self, step: &str) -> StepStatus {
        self.status
            .get(step)
            .copied()
            .unwrap_or(StepStatus::Pending)
    }

    /// Whether the run has not ended (it can be resumed or rolled back).
    pub fn is_unfinished(&self) -> bool {
        self.outcome.is_none()
    }

    fn set(&mut self, step: &str, status: StepStatus) {
        self.status.insert(step.to_string(), status);
    }

    fn apply(&mut self, event: &Event) {
        match event {
            // Re-planning a run (a resume) keeps what the journal already knows.
            Event::Planned { steps } => self.steps = steps.clone(),
            Event::Started { step } => {
                // A restarted step (after a rollback or a crash before its snapshot) begins
                // again; one further along keeps what it reached.
                let current = self.status_of(step);
                if current < StepStatus::Started || current == StepStatus::RolledBack {
                    self.set(step, StepStatus::Started);
                }
            }
            Event::SnapshotTaken { step, dir } => {
                self.set(step, StepStatus::SnapshotTaken);
                self.snapshots.insert(step.clone(), dir.clone());
            }
            Event::Applied { step } => self.set(step, StepStatus::Applied),
            Event::Verified { step } => self.set(step, StepStatus::Verified),
            Event::Failed { step, error } => {
                self.last_failure = Some((step.clone(), error.clone()));
            }
            Event::RolledBack { step } => self.set(step, StepStatus::RolledBack),
            Event::RollbackStarted { .. } | Event::RollbackBlocked { .. } => {}
            Event::Finished { outcome } => self.outcome = Some(*outcome),
        }
    }
}

/// An open journal file, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (or creates, mode 0600) the journal at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, JournalError> {
        let path = path.into();
        let io = |action, source| JournalError::Io {
            action,
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::atomic_file::create_private_dir(parent)
                .map_err(|e| io("create its folder", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("open", e))?;
        // A crash mid-write can leave a last line without its newline; end it so the next
        // entry starts on a line of its own (the torn line is ignored on read).
        let len = file.metadata().map_err(|e| io("inspect", e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .map_err(|e| io("read", e))?;
            file.read_exact(&mut last).map_err(|e| io("read", e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| io("repair", e))?;
                file.sync_all().map_err(|e| io("sync", e))?;
            }
        }
        Ok(Journal { path, file })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and fsyncs it before returning.
    pub fn append(&mut self, run_id: &str, event: Event) -> Result<Entry, JournalError> {
        let entry = Entry {
            at: jiff::Timestamp::now(),
            run_id: run_id.to_string(),
            event,
        };
        // Error texts can quote a command or URL: credentials never reach the disk.
        let mut line = crate::redact::scrub_credentials(
            &serde_json::to_string(&entry).expect("journal entries serialise"),
        )
        .into_bytes();
        line.push(b'\n');
        let io = |action, source| JournalError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(|e| io("append", e))?;
        self.file.sync_data().map_err(|e| io("sync", e))?;
        Ok(entry)
    }

    /// Every entry in the journal at `path` (none when the file does not exist).
    pub fn read_entries(path: &Path) -> Result<Vec<Entry>, JournalError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let mut entries = Vec::new();
        for (idx, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    // Torn by a crash: a final line, or one the next open terminated.
                    let torn = idx + 1 == lines.len()
                        || (idx + 2 == lines.len() && lines[idx + 1].is_empty())
                        || e.is_eof();
                    if torn {
                        tracing::warn!(path = %path.display(), line = idx + 1, "ignoring a journal line torn by a crash");
                        continue;
                    }
                    return Err(JournalError::Damaged {
                        path: path.to_path_buf(),
                        line: idx + 1,
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(entries)
    }

    /// The state of every run in the journal, oldest first.
    pub fn runs(path: &Path) -> Result<Vec<RunState>, JournalError> {
        let mut runs: Vec<RunState> = Vec::new();
        for entry in Self::read_entries(path)? {
            let run = match runs.iter_mut().position(|r| r.run_id == entry.run_id) {
                Some(i) => &mut runs[i],
                None => {
                    runs.push(RunState {
                        run_id: entry.run_id.clone(),
                        steps: Vec::new(),
                        status: BTreeMap::new(),
                        snapshots: BTreeMap::new(),
                        last_failure: None,
                        outcome: None,
                    });
                    runs.last_mut().expect("just pushed")
                }
            };
            run.apply(&entry.event);
        }
        Ok(runs)
    }

    /// The run that has not finished, if any (there is at most one: a new run is refused
    /// while one is unfinished).
    pub fn unfinished(path: &Path) -> Result<Option<RunState>, JournalError> {
        Ok(Self::runs(path)?
            .into_iter()
            .rev()
            .find(RunState::is_unfinished))
    }

    /// One run's state.
    pub fn run(path: &Path, run_id: &str) -> Result<Option<RunState>, JournalError> {
        Ok(Self::runs(path)?.into_iter().find(|r| r.run_id == run_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned() -> Event {
        Event::Planned {
            steps: vec![PlannedStep {
                id: "kserve-upgrade".into(),
                component: "kserve".into(),
                description: "helm upgrade kserve".into(),
                irreversible: None,
            }],
        }
    }

    #[test]
    fn state_is_rebuilt_from_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append("r1", planned()).unwrap();
        j.append(
            "r1",
            Event::Started {
                step: "kserve-upgrade".into(),
            },
        )
        .unwrap();
        j.append(
            "r1",
            Event::SnapshotTaken {
                step: "kserve-upgrade".into(),
                dir: "snap/001".into(),
            },
        )
        .unwrap();
        let run = Journal::unfinished(&path).unwrap().expect("unfinished");
        assert_eq!(run.status_of("kserve-upgrade"), StepStatus::SnapshotTaken);
        j.append(
            "r1",
            Event::Applied {
                step: "kserve-upgrade".into(),
            },
        )
        .unwrap();
        j.append(
            "r1",
            Event::Verified {
                step: "kserve-upgrade".into(),
            },
        )
        .unwrap();
        j.append(
            "r1",
            Event::Finished {
                outcome: Outcome::Completed,
            },
        )
        .unwrap();
        assert!(Journal::unfinished(&path).unwrap().is_none());
        let run = Journal::run(&path, "r1").unwrap().unwrap();
        assert_eq!(run.status_of("kserve-upgrade"), StepStatus::Verified);
        assert_eq!(run.outcome, Some(Outcome::Completed));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append("r1", planned()).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"at":"2026-01-01T00:00:00Z","run_id":"r1","event":"sta"#)
            .unwrap();
        drop(f);
        assert_eq!(Journal::read_entries(&path).unwrap().len(), 1);
        let mut j = Journal::open(&path).unwrap();
        j.append(
            "r1",
            Event::Started {
                step: "kserve-upgrade".into(),
            },
        )
        .unwrap();
        let run = Journal::unfinished(&path).unwrap().unwrap();
        assert_eq!(run.status_of("kserve-upgrade"), StepStatus::Started);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append("r1", planned()).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("not json\n");
        text.push_str(&std::fs::read_to_string(&path).unwrap());
        std::fs::write(&path, text).unwrap();
        let err = Journal::read_entries(&path).unwrap_err();
        assert!(
            matches!(err, JournalError::Damaged { line: 2, .. }),
            "{err:?}"
        );
    }
}
