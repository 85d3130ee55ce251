//! A stop (Ctrl-C) during a run: the rollback that follows runs its own commands to the
//! end; a second stop ends that rollback, which says how to finish it, and finishing it
//! later works. The commands are real child processes watching the run's stop signal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{Executor, RunOutcome, Step, StepFuture, StepRecord};
use upgrade_core::journal::{Journal, Outcome};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

/// A step whose apply and rollback each run a shell command watching `stop`.
struct ShellStep {
    id: &'static str,
    apply: String,
    rollback: String,
    /// Asks for a stop as its apply begins (Ctrl-C while its command runs).
    stops: bool,
    stop: StopSignal,
}

impl ShellStep {
    fn sh(&self, script: &str) -> Result<(), upgrade_core::process::ProcessError> {
        let mut cmd = ProcessBuilder::new("/bin/sh");
        cmd.args(["-c", script])
            .stop_signal(self.stop.clone())
            .grace_period(Duration::from_secs(2))
            .timeout(Duration::from_secs(60));
        cmd.exec().map(drop)
    }
}

impl Step for ShellStep {
    fn id(&self) -> &str {
        self.id
    }
    fn component(&self) -> &str {
        "test"
    }
    fn description(&self) -> String {
        format!("run `{}`", self.apply)
    }
    fn record(&self) -> StepRecord {
        StepRecord {
            kind: "test-shell".into(),
            spec: serde_json::json!({ "id": self.id }),
        }
    }
    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if self.stops {
                self.stop.stop();
            }
            self.sh(&self.apply)?;
            Ok(())
        })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            self.sh(&self.rollback)?;
            Ok(())
        })
    }
}

fn executor(dir: &Path, stop: &StopSignal) -> Executor {
    Executor::open(
        &dir.join("state/journal.jsonl"),
        &dir.join("state/snapshots"),
    )
    .unwrap()
    .stop_signal(stop.clone())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn mark(dir: &Path, name: &str) -> String {
    format!("echo {name} >> '{}'", dir.join("log").display())
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_rollback_after_a_stop_runs_its_commands_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stop = StopSignal::new();
    let first = ShellStep {
        id: "first",
        apply: mark(d, "first-applied"),
        // Takes a moment, as `helm rollback --wait` does: a stopped signal would cut it.
        rollback: format!("sleep 0.3; {}", mark(d, "first-undone")),
        stops: false,
        stop: stop.clone(),
    };
    let second = ShellStep {
        id: "second",
        apply: format!("sleep 30; {}", mark(d, "second-applied")),
        rollback: mark(d, "second-undone"),
        stops: true,
        stop: stop.clone(),
    };
    let never = ShellStep {
        id: "never",
        apply: mark(d, "never-applied"),
        rollback: mark(d, "never-undone"),
        stops: false,
        stop: stop.clone(),
    };
    let steps: Vec<&dyn Step> = vec![&first, &second, &never];
    let outcome = block_on(executor(d, &stop).start("run-stop", &steps)).unwrap();
    let RunOutcome::RolledBack {
        failed_step,
        rollback,
        ..
    } = outcome
    else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(failed_step, "second");
    assert_eq!(rollback.blocked, None, "the rollback's commands were cut");
    assert_eq!(rollback.rolled_back, ["second", "first"]);
    assert_eq!(
        log(d),
        ["first-applied", "second-undone", "first-undone"],
        "the stopped command never finished, the next step never started, and both rollbacks ran"
    );
    assert!(stop.requests() == 1 && !stop.is_stopped(), "acknowledged");
}

#[test]
fn a_stop_between_steps_starts_no_further_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stop = StopSignal::new();
    // The stop arrives just as its command ends: the step itself completes.
    let first = ShellStep {
        id: "first",
        apply: mark(d, "first-applied"),
        rollback: mark(d, "first-undone"),
        stops: true,
        stop: StopSignal::new(),
    };
    let outer = stop.clone();
    struct StopsAfter<'a>(&'a ShellStep, StopSignal);
    impl Step for StopsAfter<'_> {
        fn id(&self) -> &str {
            self.0.id()
        }
        fn component(&self) -> &str {
            self.0.component()
        }
        fn description(&self) -> String {
            self.0.description()
        }
        fn record(&self) -> StepRecord {
            self.0.record()
        }
        fn capture<'a>(&'a self, s: &'a mut SnapshotWriter) -> StepFuture<'a> {
            self.0.capture(s)
        }
        fn apply(&self) -> StepFuture<'_> {
            Box::pin(async move {
                self.0.sh(&self.0.apply)?;
                self.1.stop();
                Ok(())
            })
        }
        fn verify(&self) -> StepFuture<'_> {
            self.0.verify()
        }
        fn rollback<'a>(&'a self, s: &'a Snapshot) -> StepFuture<'a> {
            self.0.rollback(s)
        }
    }
    let first = StopsAfter(&first, outer);
    let next = ShellStep {
        id: "next",
        apply: mark(d, "next-applied"),
        rollback: mark(d, "next-undone"),
        stops: false,
        stop: stop.clone(),
    };
    let steps: Vec<&dyn Step> = vec![&first, &next];
    let outcome = block_on(executor(d, &stop).start("run-between", &steps)).unwrap();
    let RunOutcome::RolledBack {
        failed_step,
        error,
        rollback,
    } = outcome
    else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(failed_step, "next");
    assert!(error.contains("stopped on request"), "{error}");
    assert_eq!(rollback.rolled_back, ["first"]);
    assert_eq!(log(d), ["first-applied", "first-undone"]);
}

#[test]
fn a_second_stop_ends_the_rollback_which_can_be_finished_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let stop = StopSignal::new();
    let started = d.join("undo-started");
    // The rollback of `first` is slow until the `fast` file exists.
    let slow_undo = format!(
        "[ -f '{fast}' ] || {{ touch '{started}'; sleep 30; }}; {mark}",
        fast = d.join("fast").display(),
        started = started.display(),
        mark = mark(&d, "first-undone"),
    );
    let build = |stop: &StopSignal| {
        (
            ShellStep {
                id: "first",
                apply: mark(&d, "first-applied"),
                rollback: slow_undo.clone(),
                stops: false,
                stop: stop.clone(),
            },
            ShellStep {
                id: "second",
                apply: "sleep 30".into(),
                rollback: mark(&d, "second-undone"),
                stops: true,
                stop: stop.clone(),
            },
        )
    };
    let (first, second) = build(&stop);
    let second_ctrl_c = {
        let stop = stop.clone();
        let started: PathBuf = started.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if started.exists() {
                    stop.stop();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    };
    let steps: Vec<&dyn Step> = vec![&first, &second];
    let outcome = block_on(executor(&d, &stop).start("run-twice", &steps)).unwrap();
    assert!(
        second_ctrl_c.join().unwrap(),
        "the rollback of `first` never started"
    );
    let RunOutcome::RolledBack { rollback, .. } = outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(rollback.rolled_back, ["second"]);
    let (step, reason) = rollback.blocked.expect("the second stop ends the rollback");
    assert_eq!(step, "first");
    assert!(
        reason.contains("stopped on request during the rollback")
            && reason.contains("upgrade-rollback --run run-twice"),
        "{reason}"
    );
    let journal = d.join("state/journal.jsonl");
    let run = Journal::run(&journal, "run-twice").unwrap().unwrap();
    assert_eq!(run.outcome, Some(Outcome::Stopped));
    assert_eq!(log(&d), ["first-applied", "second-undone"]);

    // Later, another process finishes the rollback; nothing already undone is repeated.
    std::fs::write(d.join("fast"), "").unwrap();
    let later = StopSignal::new();
    let (first, second) = build(&later);
    let steps: Vec<&dyn Step> = vec![&first, &second];
    let report =
        block_on(executor(&d, &later).rollback(Some("run-twice"), None, &steps, "finish")).unwrap();
    assert_eq!(report.blocked, None);
    assert_eq!(report.rolled_back, ["first"]);
    assert_eq!(log(&d), ["first-applied", "second-undone", "first-undone"]);
}
