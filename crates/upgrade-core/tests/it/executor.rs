//! Kill a sample multi-component run at every step boundary, then resume or roll back, and
//! check that it either finishes or returns exactly to where it started.
//!
//! The steps act on files that stand in for the platform (a Terraform lockfile, two Helm
//! releases and InferenceService objects), so this tests the executor, journal and snapshot
//! store; the real Terraform, Helm and Kubernetes adapters are tested in their own crates.
//! The kill is real: the test binary re-executes itself as the run and aborts at the boundary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use upgrade_core::ProcessBuilder;
use upgrade_core::executor::{
    Boundary, Executor, ExecutorOptions, RunOutcome, Step, StepFuture, StepRecord,
};
use upgrade_core::journal::{Journal, Outcome};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

const CHILD_DIR_VAR: &str = "EXECUTOR_TEST_CHILD_DIR";
/// `<step>:<boundary>` where the child run kills itself (read by the test, not the executor).
const KILL_AT_VAR: &str = "EXECUTOR_TEST_KILL_AT";

/// A step that changes some files of the stand-in platform.
struct FileStep {
    id: &'static str,
    component: &'static str,
    dir: PathBuf,
    /// file → content after the change.
    writes: Vec<(&'static str, &'static str)>,
    /// files captured (a superset of `writes` when the step backs up something else too).
    captures: Vec<&'static str>,
    fail_verify: bool,
}

impl FileStep {
    fn log_apply(&self) {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("applies.log"))
            .unwrap();
        writeln!(log, "{}", self.id).unwrap();
    }
}

impl Step for FileStep {
    fn id(&self) -> &str {
        self.id
    }
    fn component(&self) -> &str {
        self.component
    }
    fn description(&self) -> String {
        format!(
            "change {:?}",
            self.writes.iter().map(|w| w.0).collect::<Vec<_>>()
        )
    }
    fn record(&self) -> StepRecord {
        StepRecord {
            kind: "test-file".into(),
            spec: serde_json::json!({ "id": self.id, "writes": self.writes }),
        }
    }
    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            for name in &self.captures {
                snapshot.put(name, &std::fs::read(self.dir.join(name))?)?;
            }
            Ok(())
        })
    }
    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.log_apply();
            for (name, content) in &self.writes {
                std::fs::write(self.dir.join(name), content)?;
            }
            Ok(())
        })
    }
    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if self.fail_verify {
                return Err("the new version does not become ready".into());
            }
            for (name, content) in &self.writes {
                if std::fs::read_to_string(self.dir.join(name))? != *content {
                    return Err(format!("{name} does not hold the new content").into());
                }
            }
            Ok(())
        })
    }
    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            for name in &self.captures {
                std::fs::write(self.dir.join(name), snapshot.get(name)?)?;
            }
            Ok(())
        })
    }
}

const INITIAL: &[(&str, &str)] = &[
    (".terraform.lock.hcl", "provider aws 5.99.0 h1:old\n"),
    ("karpenter.json", r#"{"chart":"1.5.0","revision":1}"#),
    ("kserve.json", r#"{"chart":"0.14.0","revision":1}"#),
    ("isvc.yaml", "kind: InferenceService\nspec: v1beta1-old\n"),
];

fn steps(dir: &Path, fail_last_verify: bool) -> Vec<FileStep> {
    let dir = dir.to_path_buf();
    vec![
        FileStep {
            id: "terraform/providers",
            component: "terraform",
            dir: dir.clone(),
            writes: vec![(".terraform.lock.hcl", "provider aws 6.0.0 h1:new\n")],
            captures: vec![".terraform.lock.hcl"],
            fail_verify: false,
        },
        FileStep {
            id: "kserve/backup-inferenceservices",
            component: "kserve",
            dir: dir.clone(),
            writes: vec![],
            captures: vec!["isvc.yaml"],
            fail_verify: false,
        },
        FileStep {
            id: "karpenter/helm-upgrade",
            component: "karpenter",
            dir: dir.clone(),
            writes: vec![("karpenter.json", r#"{"chart":"1.6.0","revision":2}"#)],
            captures: vec!["karpenter.json"],
            fail_verify: false,
        },
        FileStep {
            id: "kserve/helm-upgrade",
            component: "kserve",
            dir,
            writes: vec![
                ("kserve.json", r#"{"chart":"0.15.0","revision":2}"#),
                (
                    "isvc.yaml",
                    "kind: InferenceService\nspec: v1beta1-converted\n",
                ),
            ],
            captures: vec!["kserve.json"],
            fail_verify: fail_last_verify,
        },
    ]
}

fn platform(dir: &Path) -> BTreeMap<String, String> {
    INITIAL
        .iter()
        .map(|(name, _)| {
            (
                name.to_string(),
                std::fs::read_to_string(dir.join(name)).unwrap(),
            )
        })
        .collect()
}

fn target(dir: &Path) -> BTreeMap<String, String> {
    let mut want: BTreeMap<String, String> = INITIAL
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    for step in steps(dir, false) {
        for (name, content) in step.writes {
            want.insert(name.to_string(), content.to_string());
        }
    }
    want
}

fn initial() -> BTreeMap<String, String> {
    INITIAL
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in INITIAL {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn executor(dir: &Path) -> Executor {
    Executor::open(
        &dir.join("state/journal.jsonl"),
        &dir.join("state/snapshots"),
    )
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The run as a separate process: the test binary re-executed with `CHILD_DIR_VAR` set.
#[test]
fn child_run_entry() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return; // an ordinary test run: nothing to do
    };
    let dir = PathBuf::from(dir);
    let steps = steps(&dir, false);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
    let kill_at = std::env::var(KILL_AT_VAR).ok().and_then(|spec| {
        let (step, boundary) = spec.rsplit_once(':')?;
        Some((step.to_string(), Boundary::from_name(boundary)?))
    });
    let mut executor = executor(&dir).options(ExecutorOptions { kill_at });
    let outcome = block_on(executor.start("run-1", &refs)).unwrap();
    assert_eq!(outcome, RunOutcome::Completed);
}

fn run_child_killed_at(dir: &Path, step: &str, boundary: Boundary) {
    let mut child = ProcessBuilder::new(std::env::current_exe().unwrap());
    child
        .args([
            "executor::child_run_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir)
        .env(KILL_AT_VAR, format!("{step}:{}", boundary.name()));
    let err = child
        .exec()
        .expect_err("the child must be killed at the boundary");
    match err {
        upgrade_core::ProcessError::Exited {
            signal: Some(6), ..
        } => {}
        other => panic!(
            "expected SIGABRT at {step}:{}, got {other}",
            boundary.name()
        ),
    }
}

#[test]
fn every_step_boundary_survives_a_kill_by_resume_and_by_rollback() {
    let step_ids: Vec<&str> = steps(Path::new("."), false).iter().map(|s| s.id).collect();
    let mut boundaries = 0;
    let mut survived = 0;
    let mut failures = Vec::new();
    for step in &step_ids {
        for boundary in Boundary::FORWARD {
            for resume in [true, false] {
                boundaries += 1;
                let dir = setup();
                run_child_killed_at(dir.path(), step, boundary);
                let mut ex = executor(dir.path());
                let run = ex
                    .unfinished()
                    .unwrap()
                    .expect("the killed run is unfinished");
                assert_eq!(run.run_id, "run-1");
                let steps = steps(dir.path(), false);
                let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
                let (want, got) = if resume {
                    let outcome = block_on(ex.resume(&refs)).unwrap();
                    assert_eq!(outcome, RunOutcome::Completed);
                    // Nothing already done is repeated: each step applied exactly once.
                    let log = std::fs::read_to_string(dir.path().join("applies.log")).unwrap();
                    let applies: Vec<&str> = log.lines().collect();
                    let expected: Vec<&str> = step_ids.clone();
                    if applies != expected {
                        failures.push(format!(
                            "{step}:{} resume re-applied: {applies:?}",
                            boundary.name()
                        ));
                        continue;
                    }
                    (target(dir.path()), platform(dir.path()))
                } else {
                    let report = block_on(ex.rollback(None, None, &refs, "test")).unwrap();
                    assert!(report.blocked.is_none(), "{report:?}");
                    (initial(), platform(dir.path()))
                };
                if want == got {
                    survived += 1;
                } else {
                    failures.push(format!(
                        "{step}:{} {}: want {want:?} got {got:?}",
                        boundary.name(),
                        if resume { "resume" } else { "rollback" }
                    ));
                }
                let finished =
                    Journal::unfinished(&dir.path().join("state/journal.jsonl")).unwrap();
                assert!(
                    finished.is_none(),
                    "the run is resolved after resume or rollback"
                );
            }
        }
    }
    println!(
        "survived {survived} of {boundaries} kill points (resume and rollback at each boundary)"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(survived, boundaries);
}

#[test]
fn a_failed_step_rolls_every_applied_step_back() {
    let dir = setup();
    let steps = steps(dir.path(), true);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
    let outcome = block_on(executor(dir.path()).start("run-2", &refs)).unwrap();
    match outcome {
        RunOutcome::RolledBack {
            failed_step,
            rollback,
            ..
        } => {
            assert_eq!(failed_step, "kserve/helm-upgrade");
            assert_eq!(
                rollback.rolled_back,
                [
                    "kserve/helm-upgrade",
                    "karpenter/helm-upgrade",
                    "kserve/backup-inferenceservices",
                    "terraform/providers"
                ]
            );
        }
        other => panic!("expected RolledBack, got {other:?}"),
    }
    assert_eq!(platform(dir.path()), initial());
    let run = Journal::run(&dir.path().join("state/journal.jsonl"), "run-2")
        .unwrap()
        .unwrap();
    assert_eq!(run.outcome, Some(Outcome::RolledBack));
}

#[test]
fn a_new_run_is_refused_while_one_is_unfinished() {
    let dir = setup();
    run_child_killed_at(dir.path(), "karpenter/helm-upgrade", Boundary::AfterApply);
    let steps = steps(dir.path(), false);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
    let err = block_on(executor(dir.path()).start("run-3", &refs)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("run `run-1` did not finish"), "{text}");
    assert!(text.contains("hint: resume it"), "{text}");
}

#[test]
fn one_component_can_be_rolled_back_after_a_completed_run() {
    let dir = setup();
    let steps = steps(dir.path(), false);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
    let mut ex = executor(dir.path());
    assert_eq!(
        block_on(ex.start("run-4", &refs)).unwrap(),
        RunOutcome::Completed
    );
    let report = block_on(ex.rollback(
        Some("run-4"),
        Some("karpenter"),
        &refs,
        "karpenter regressed",
    ))
    .unwrap();
    assert_eq!(report.rolled_back, ["karpenter/helm-upgrade"]);
    let mut want = target(dir.path());
    want.insert(
        "karpenter.json".into(),
        r#"{"chart":"1.5.0","revision":1}"#.into(),
    );
    assert_eq!(platform(dir.path()), want);
}

#[test]
fn rollback_stops_at_an_irreversible_step_and_says_so() {
    struct ControlPlane(FileStep);
    impl Step for ControlPlane {
        fn id(&self) -> &str {
            self.0.id()
        }
        fn component(&self) -> &str {
            self.0.component()
        }
        fn description(&self) -> String {
            self.0.description()
        }
        fn irreversible(&self) -> Option<String> {
            Some("the EKS control plane's minor cannot go down".into())
        }
        fn record(&self) -> StepRecord {
            self.0.record()
        }
        fn capture<'a>(&'a self, s: &'a mut SnapshotWriter) -> StepFuture<'a> {
            self.0.capture(s)
        }
        fn apply(&self) -> StepFuture<'_> {
            self.0.apply()
        }
        fn verify(&self) -> StepFuture<'_> {
            self.0.verify()
        }
        fn rollback<'a>(&'a self, s: &'a Snapshot) -> StepFuture<'a> {
            self.0.rollback(s)
        }
    }
    let dir = setup();
    let mut all = steps(dir.path(), true);
    let last = all.pop().unwrap();
    let cp = ControlPlane(all.remove(0));
    let refs: Vec<&dyn Step> = vec![&cp, &all[0], &all[1], &last];
    let plan = Executor::plan_of(&refs);
    assert!(
        plan[0].irreversible.is_some(),
        "the plan says so before the step runs"
    );
    let outcome = block_on(executor(dir.path()).start("run-5", &refs)).unwrap();
    let RunOutcome::RolledBack { rollback, .. } = outcome else {
        panic!("expected a rollback");
    };
    assert_eq!(
        rollback.rolled_back,
        [
            "kserve/helm-upgrade",
            "karpenter/helm-upgrade",
            "kserve/backup-inferenceservices"
        ]
    );
    let (step, reason) = rollback.blocked.unwrap();
    assert_eq!(step, "terraform/providers");
    assert!(reason.contains("cannot be undone"), "{reason}");
    let run = Journal::run(&dir.path().join("state/journal.jsonl"), "run-5")
        .unwrap()
        .unwrap();
    assert_eq!(run.outcome, Some(Outcome::Stopped));
}

#[test]
fn a_corrupted_snapshot_blocks_the_rollback_and_is_named() {
    let dir = setup();
    run_child_killed_at(dir.path(), "kserve/helm-upgrade", Boundary::AfterApply);
    let snap = dir
        .path()
        .join("state/snapshots/run-1/003-karpenter-karpenter_helm-upgrade/karpenter.json");
    std::fs::write(&snap, "tampered").unwrap();
    let steps = steps(dir.path(), false);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s as &dyn Step).collect();
    let report = block_on(executor(dir.path()).rollback(None, None, &refs, "test")).unwrap();
    assert_eq!(report.rolled_back, ["kserve/helm-upgrade"]);
    let (step, reason) = report.blocked.unwrap();
    assert_eq!(step, "karpenter/helm-upgrade");
    assert!(reason.contains("karpenter.json is corrupted"), "{reason}");
}

#[test]
fn a_command_step_restores_data_through_its_rollback_command() {
    use upgrade_core::command_step::{CommandSpec, CommandStep};
    let dir = setup();
    let db = dir.path().join("mlflow.db");
    std::fs::write(&db, "schema 1\n").unwrap();
    let sh = |script: &str| Some(CommandSpec::new("/bin/sh", ["-c", script]).cwd(dir.path()));
    // The stand-in for `aws rds create-db-snapshot` / `restore-db-instance-from-db-snapshot`.
    let snapshot_db = CommandStep {
        id: "mlflow/db-snapshot".into(),
        component: "mlflow".into(),
        description: "snapshot the MLflow database".into(),
        capture: sh("cp mlflow.db mlflow.db.snapshot && echo snapshot-id=mlops-pre-upgrade"),
        apply: None,
        verify: sh("test -f mlflow.db.snapshot"),
        rollback: sh("cp mlflow.db.snapshot mlflow.db"),
        irreversible: None,
    };
    let migrate = CommandStep {
        id: "mlflow/db-upgrade".into(),
        component: "mlflow".into(),
        description: "mlflow db upgrade".into(),
        capture: None,
        apply: sh("echo 'schema 2' > mlflow.db"),
        verify: sh("echo 'the new server does not start' >&2; exit 1"),
        rollback: None,
        irreversible: None,
    };
    let refs: Vec<&dyn Step> = vec![&snapshot_db, &migrate];
    let outcome = block_on(executor(dir.path()).start("run-db", &refs)).unwrap();
    assert!(
        matches!(outcome, RunOutcome::RolledBack { ref failed_step, .. } if failed_step == "mlflow/db-upgrade"),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "schema 1\n",
        "the data restore ran"
    );
    let snap = dir
        .path()
        .join("state/snapshots/run-db/001-mlflow-mlflow_db-snapshot/capture-output.txt");
    assert_eq!(
        std::fs::read_to_string(snap).unwrap(),
        "snapshot-id=mlops-pre-upgrade\n"
    );
}
