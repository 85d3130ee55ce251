//! `upgrade-mlflow` end to end: the real binary against an MLflow Deployment on an in-process
//! kube-sim, the database snapshot and restore as real commands (`cp` of a real SQLite store
//! made by MLflow 2.9.2), and the real MLflow of the verification venv: behind
//! `--health-url`, and, for the new image, as the containers themselves (kube-sim's
//! container runtime runs the migration Job's `mlflow db upgrade` and the new server's
//! start-up schema check for real).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::Value;
use upgrade_core::process::StopSignal;
use upgrade_core::{ProcessBuilder, ProcessError, ProcessOutput};
use upgrade_test::{TestContext, require_venv_tool};
use upgrade_verify::{Check, ProbeSpec, Prober, Retry, Status};

const OLD: &str = "ghcr.io/mlflow/mlflow:v2.9.2";
const NEW: &str = "ghcr.io/mlflow/mlflow:v2.16.0";

/// The tracking server's objects; `ANNOTATIONS` and `@STORE@` are replaced per test.
const PLATFORM: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mlops}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mlflow, namespace: mlops}
spec:
  replicas: 1
  selector: {matchLabels: {app: mlflow}}
  template:
    metadata:
      labels: {app: mlflow}
      annotations: ANNOTATIONS
    spec:
      containers:
        - name: mlflow
          image: ghcr.io/mlflow/mlflow:v2.9.2
          env:
            - {name: BACKEND_STORE_URI, value: "@STORE@"}
          ports: [{containerPort: 5000}]
"#;

struct World {
    ctx: TestContext,
    sim: SimCluster,
    /// The SQLite store the snapshot and restore commands work on.
    store: PathBuf,
}

/// The new image's containers, run by the real MLflow of the verification venv: the
/// migration Job runs `mlflow db upgrade` on the store, and a server starts only if MLflow's
/// own schema check (`_verify_schema`, what the tracking server runs when it starts) passes.
/// (MLflow also creates tables missing from a store that predates them when it starts,
/// which would migrate from every replica at once; the check alone is the server that
/// refuses an out-of-date schema.)
struct RealMlflow {
    python: PathBuf,
}

const SCHEMA_CHECK: &str = "import sys, sqlalchemy\n\
from mlflow.store.db.utils import _verify_schema\n\
_verify_schema(sqlalchemy.create_engine(sys.argv[1]))\n";

impl kube_sim::ContainerRuntime for RealMlflow {
    fn runs(&self, image: &str) -> bool {
        image == NEW
    }

    fn run(&self, container: &kube_sim::ContainerStart) -> i32 {
        let uri = &container.env["BACKEND_STORE_URI"];
        let mut cmd = ProcessBuilder::new(&self.python);
        if container.restarts {
            cmd.args(["-c", SCHEMA_CHECK, uri]);
        } else {
            assert_eq!(container.argv, ["mlflow", "db", "upgrade", uri.as_str()]);
            cmd.args(["-m", "mlflow", "db", "upgrade", uri]);
        }
        cmd.timeout(Duration::from_secs(120));
        match cmd.output() {
            Ok(out) => out.status.code().unwrap_or(137),
            Err(_) => 127,
        }
    }
}

/// Whether MLflow's schema check passes on `store` (the store is at the venv MLflow's head).
fn schema_is_current(store: &Path) -> bool {
    let mut cmd = ProcessBuilder::new(require_venv_tool("python"));
    cmd.args(["-c", SCHEMA_CHECK])
        .arg(format!("sqlite:///{}", store.display()))
        .timeout(Duration::from_secs(120));
    cmd.output().unwrap().status.success()
}

impl World {
    /// The cluster with the MLflow Deployment (its pod template annotated with
    /// `annotations`, a YAML map) rolled out, and a store.
    async fn new(annotations: &str) -> World {
        World::start(annotations, None).await
    }

    /// The same, with the new image's containers run by the real MLflow.
    async fn with_real_mlflow() -> World {
        let runtime = RealMlflow {
            python: require_venv_tool("python"),
        };
        World::start("{}", Some(std::sync::Arc::new(runtime))).await
    }

    async fn start(
        annotations: &str,
        runtime: Option<std::sync::Arc<dyn kube_sim::ContainerRuntime>>,
    ) -> World {
        let ctx = TestContext::new();
        let mut builder = SimCluster::builder()
            .controllers(ControllerConfig::fast())
            .kubeconfig_path(ctx.root().join("kubeconfig.yaml"));
        if let Some(runtime) = runtime {
            builder = builder.container_runtime(runtime);
        }
        let sim = builder.start().await.expect("kube-sim starts");
        sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
        let store = ctx.copy_fixture("mlflow/store-mlflow-2.9.2.db");
        sim.load_yaml(
            &PLATFORM
                .replace("ANNOTATIONS", annotations)
                .replace("@STORE@", &format!("sqlite:///{}", store.display())),
        )
        .expect("the platform loads");
        std::fs::create_dir_all(ctx.root().join("db-snapshots")).unwrap();
        let world = World { ctx, sim, store };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while world.deployment()["status"]["availableReplicas"] != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "mlflow never became available"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        world
    }

    fn deployment(&self) -> Value {
        self.sim
            .get("apps/v1", "Deployment", Some("mlops"), "mlflow")
            .expect("the deployment exists")
    }

    fn image(&self) -> String {
        self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// What a failed or refused run must leave as it was: the pod template and the store.
    fn state(&self) -> (Value, Vec<u8>) {
        (
            self.deployment()["spec"]["template"].clone(),
            std::fs::read(&self.store).unwrap(),
        )
    }

    fn jobs(&self) -> Vec<Value> {
        self.sim.list("batch/v1", "Job", Some("mlops"))
    }

    fn snapshots(&self) -> PathBuf {
        self.ctx.root().join("db-snapshots")
    }

    fn journal(&self) -> PathBuf {
        self.ctx.root().join("state/journal.jsonl")
    }

    /// `--db-snapshot-command` and `--db-restore-command` copying the store.
    fn db_commands(&self) -> Vec<String> {
        let snapshot = self.snapshots().join("mlops-pre-upgrade-{run_id}.db");
        vec![
            "--db-snapshot-command".into(),
            format!("cp '{}' '{}'", self.store.display(), snapshot.display()),
            "--db-restore-command".into(),
            format!("cp '{}' '{}'", snapshot.display(), self.store.display()),
        ]
    }

    fn apply(&self) -> Vec<String> {
        vec![
            "--apply".into(),
            "--yes".into(),
            "--expect-cluster".into(),
            self.sim.url().to_string(),
        ]
    }

    async fn run(&self, args: &[String]) -> (i32, String, String) {
        self.run_with_env(args, &[]).await
    }

    async fn run_with_env(&self, args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-mlflow"));
        self.ctx.apply_env(&mut cmd);
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.arg("--kubeconfig")
            .arg(self.ctx.root().join("kubeconfig.yaml"))
            .args(["--kube-context", kube_sim::CONTEXT_NAME])
            .arg("--snapshot-dir")
            .arg(self.ctx.root().join("state"))
            .args(args)
            .timeout(Duration::from_secs(120));
        upgrade_test::CommandOutput::run_async(&cmd).await.parts()
    }

    fn settings(&self) -> insta::Settings {
        let mut settings = self.ctx.insta_settings();
        settings.add_filter(r"\d{8}T\d{6}Z", "[TIME]");
        settings.add_filter(r"\d{8}t\d{6}z", "[time]");
        settings.add_filter(r"https?://127\.0\.0\.1:\d+", "[URL]");
        settings
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The real MLflow tracking server on its own store, stopped when dropped.
struct MlflowServer {
    url: String,
    stop: StopSignal,
    thread: Option<JoinHandle<Result<ProcessOutput, ProcessError>>>,
}

impl MlflowServer {
    async fn start(ctx: &TestContext) -> MlflowServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // `python -m mlflow`: the venv's entry-point scripts name the interpreter by the path
        // the venv was created at, which breaks when the tools folder is shared or moved.
        let mut cmd = ProcessBuilder::new(require_venv_tool("python"));
        ctx.apply_env(&mut cmd);
        let stop = StopSignal::new();
        cmd.args(["-m", "mlflow", "server"])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                ctx.work().join("server-store.db").display()
            ))
            .arg("--default-artifact-root")
            .arg(ctx.work().join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            .stop_signal(stop.clone())
            .timeout(Duration::from_secs(600))
            .grace_period(Duration::from_secs(5));
        let thread = std::thread::spawn(move || cmd.output());
        let server = MlflowServer {
            url: format!("http://127.0.0.1:{port}"),
            stop,
            thread: Some(thread),
        };
        let ready = Prober::new()
            .unwrap()
            .run(
                &ProbeSpec::new("ready", Check::mlflow_health(&server.url)).with_retry(Retry {
                    attempts: 120,
                    backoff: Duration::from_millis(500),
                    max_backoff: Duration::from_secs(1),
                }),
            )
            .await;
        assert_eq!(ready.status, Status::Pass, "mlflow server: {ready:?}");
        server
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn help_is_stable() {
    let ctx = TestContext::new();
    let mut cmd = ProcessBuilder::new(env!("CARGO_BIN_EXE_upgrade-mlflow"));
    ctx.apply_env(&mut cmd);
    cmd.arg("--help");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(out.stdout_lossy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_reads_the_live_image_and_changes_nothing() {
    let world = World::new("{}").await;
    let before = world.state();
    let mut args = strings(&["--image", NEW]);
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains(&format!("{OLD} -> {NEW}")), "{stdout}");
    assert_eq!(world.state(), before);
    assert!(world.jobs().is_empty());
    assert_eq!(std::fs::read_dir(world.snapshots()).unwrap().count(), 0);
    assert!(!world.journal().exists());
    world.settings().bind(|| insta::assert_snapshot!(stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_snapshots_updates_migrates_and_checks_health() {
    let world = World::new("{}").await;
    let server = MlflowServer::start(&world.ctx).await;
    let store_before = std::fs::read(&world.store).unwrap();
    let mut args = world.apply();
    args.extend(strings(&["--image", NEW, "--health-url", &server.url]));
    args.extend(strings(&["--experiment", "Default"]));
    args.extend(world.db_commands());
    // The snapshot must exist and be non-empty before anything changes.
    let snapshot = world.snapshots().join("mlops-pre-upgrade-{run_id}.db");
    args.extend(strings(&[
        "--db-snapshot-wait-command",
        &format!("test -s '{}'", snapshot.display()),
    ]));
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(world.image(), NEW);
    let jobs = world.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], NEW);
    assert_eq!(
        container["command"],
        serde_json::json!(["mlflow", "db", "upgrade", "$(BACKEND_STORE_URI)"])
    );
    assert_eq!(
        container["env"][0]["name"], "BACKEND_STORE_URI",
        "the server's environment"
    );
    assert!(container["readinessProbe"].is_null() && container["ports"].is_null());
    assert!(
        job["spec"]["template"]["metadata"]["labels"]["app"].is_null(),
        "no Service selects the migration pod"
    );
    assert!(
        job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        "{job}"
    );
    let snapshots: Vec<PathBuf> = std::fs::read_dir(world.snapshots())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(std::fs::read(&snapshots[0]).unwrap(), store_before);
    let name = snapshots[0].file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("mlops-pre-upgrade-mlflow-") && name.ends_with("Z.db"),
        "{{run_id}} was filled in: {name}"
    );
    world.settings().bind(|| insta::assert_snapshot!(stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_restores_the_database_and_never_touches_the_image() {
    // kube-sim finishes this Deployment's Job pods with exit code 1: the migration fails.
    let world = World::new(r#"{"kube-sim.dev/exit-code": "1"}"#).await;
    let (template, store) = world.state();
    let written = mtime(&world.store);
    std::thread::sleep(Duration::from_millis(20));
    let mut args = world.apply();
    args.extend(strings(&["--image", NEW]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("failed at mlflow/db-upgrade"), "{stdout}");
    assert!(
        stdout.contains("[rolled-back] mlflow/db-upgrade"),
        "{stdout}"
    );
    assert!(stdout.contains("[planned] mlflow/image"), "{stdout}");
    assert_eq!(world.image(), OLD);
    assert_eq!(world.deployment()["spec"]["template"], template);
    assert_eq!(std::fs::read(&world.store).unwrap(), store);
    assert!(
        mtime(&world.store) > written,
        "the restore command wrote the store back"
    );
    world.settings().bind(|| insta::assert_snapshot!(stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_rolls_back() {
    let world = World::new("{}").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = world.apply();
    let url = format!("http://127.0.0.1:{closed}");
    args.extend(strings(&["--image", NEW, "--health-url", &url]));
    args.extend(strings(&["--health-attempts", "2"]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("failed at mlflow/health"), "{stdout}");
    assert!(stdout.contains("rolled back 4 step(s)"), "{stdout}");
    assert_eq!(world.image(), OLD);
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_given_secrets_writes_and_prints_none_of_them() {
    const DB_PASSWORD: &str = "db-S3cret-8c41f";
    const MLFLOW_PASSWORD: &str = "mlflow-S3cret-77ad2";
    let world = World::new("{}").await;
    let (template, store) = world.state();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let snapshot = world.snapshots().join("mlops-pre-upgrade-{run_id}.db");
    let mut args = world.apply();
    args.extend(strings(&[
        "--image",
        NEW,
        // The health check fails (nothing listens), so the rollback runs the restore too.
        "--health-url",
        &format!("http://admin:${{env:MLFLOW_PASSWORD}}@127.0.0.1:{closed}"),
        "--health-attempts",
        "1",
        "--db-snapshot-command",
        &format!(
            "env PGPASSWORD=${{env:DB_PASSWORD}} cp '{}' '{}'",
            world.store.display(),
            snapshot.display()
        ),
        // Passes only if both references were resolved to the same secret.
        "--db-snapshot-wait-command",
        "test ${env:DB_PASSWORD} = ${env:DB_PASSWORD_AGAIN}",
        "--db-restore-command",
        &format!(
            "env PGPASSWORD=${{env:DB_PASSWORD}} cp '{}' '{}'",
            snapshot.display(),
            world.store.display()
        ),
        "-vv",
        "--log-format",
        "json",
    ]));
    let env = [
        ("DB_PASSWORD", DB_PASSWORD),
        ("DB_PASSWORD_AGAIN", DB_PASSWORD),
        ("MLFLOW_PASSWORD", MLFLOW_PASSWORD),
    ];
    let (code, stdout, stderr) = world.run_with_env(&args, &env).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("failed at mlflow/health"), "{stdout}");
    assert!(
        stdout.contains("[rolled-back] mlflow/db-snapshot"),
        "the restore command ran with its secret: {stdout}"
    );
    assert_eq!(world.state(), (template, store));
    // The references are what the plan, report and record show.
    assert!(
        stdout.contains("http://admin:${env:MLFLOW_PASSWORD}@127.0.0.1"),
        "{stdout}"
    );
    for secret in [DB_PASSWORD, MLFLOW_PASSWORD] {
        assert!(!stdout.contains(secret), "stdout has {secret}: {stdout}");
        assert!(!stderr.contains(secret), "the log has {secret}: {stderr}");
        assert_eq!(
            files_containing(world.ctx.root(), secret),
            Vec::<PathBuf>::new(),
            "the journal, run record, snapshots and work files never hold {secret}"
        );
        assert!(
            !world.sim.dump_yaml().contains(secret),
            "nor does the cluster"
        );
    }

    // A credential written out is refused before anything changes, and not echoed.
    let mut args = world.apply();
    args.extend(strings(&[
        "--image",
        NEW,
        "--health-url",
        &format!("http://admin:{MLFLOW_PASSWORD}@127.0.0.1:{closed}"),
    ]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 2, "{stderr}\n{stdout}");
    assert!(
        stderr.contains("--health-url: holds a password in the URL")
            && stderr.contains("${env:NAME}"),
        "{stderr}"
    );
    assert!(!stderr.contains(MLFLOW_PASSWORD) && !stdout.contains(MLFLOW_PASSWORD));
    assert_eq!(world.image(), OLD);

    // A reference to a variable that is not set is bad input too.
    let mut args = world.apply();
    args.extend(strings(&[
        "--image",
        NEW,
        "--health-url",
        "http://admin:${env:UNSET_MLFLOW_PASSWORD}@127.0.0.1:1",
    ]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 2, "{stderr}\n{stdout}");
    assert!(stderr.contains("export UNSET_MLFLOW_PASSWORD"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_db_snapshot_must_be_explicit_and_marks_the_migration_as_not_undoable() {
    let world = World::new("{}").await;
    let mut args = world.apply();
    args.extend(strings(&["--image", NEW, "--no-db-snapshot"]));
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(world.image(), NEW);
    assert!(
        stdout.contains("no database snapshot, as asked"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "cannot be undone: a schema migration cannot be reversed, and no database snapshot was taken"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("mlflow/db-snapshot"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_is_blocked_with_exit_4() {
    let world = World::new("{}").await;
    let before = world.state();
    let mut args = world.apply();
    args.extend(strings(&["--image", "ghcr.io/mlflow/mlflow:v2.8.0"]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 4, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("BLOCKER: 2.9.2 -> 2.8.0 is a downgrade"),
        "{stdout}"
    );
    assert_eq!(world.state(), before);
    assert!(world.jobs().is_empty());
    assert!(!world.journal().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_one_line_naming_the_fix_and_changes_nothing() {
    let world = World::new("{}").await;
    let before = world.state();
    let db = world.db_commands();
    let url = world.sim.url().to_string();
    let with_db = |args: &[&str]| {
        let mut all = strings(args);
        all.extend(db.iter().cloned());
        all
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            with_db(&[
                "--apply",
                "--yes",
                "--expect-cluster",
                "prod",
                "--image",
                NEW,
            ]),
            "prod",
        ),
        (
            strings(&["--apply", "--yes", "--expect-cluster", &url, "--image", NEW]),
            "--no-db-snapshot to accept that",
        ),
        (
            with_db(&["--image", "ghcr.io/mlflow/mlflow"]),
            "pin the version",
        ),
        (
            strings(&[
                "--image",
                NEW,
                "--db-snapshot-command",
                "cp 'unbalanced",
                "--db-restore-command",
                "cp a b",
            ]),
            "quote its arguments",
        ),
        (
            strings(&[
                "--image",
                NEW,
                "--db-snapshot-command",
                "cp a snap-{runid}",
                "--db-restore-command",
                "cp b a",
            ]),
            "use {run_id} or {date}",
        ),
        (
            strings(&[
                "--image",
                NEW,
                "--db-snapshot-command",
                "aws-not-installed rds create-db-snapshot",
                "--db-restore-command",
                "cp b a",
            ]),
            "install it or give its full path",
        ),
        (
            strings(&["--image", NEW, "--db-snapshot-command", "cp a b"]),
            "needs --db-restore-command",
        ),
        (
            with_db(&["--image", NEW, "--deployment", "tracking"]),
            "set --namespace and --deployment",
        ),
        (
            with_db(&["--image", NEW, "--container", "server"]),
            "it has: mlflow",
        ),
        (
            with_db(&["--image", NEW, "--db-uri-env", "MLFLOW_DB"]),
            "--db-uri-env: container `mlflow`",
        ),
        (with_db(&["--image", OLD]), "nothing to upgrade"),
        (
            with_db(&["--image", NEW, "--health-url", "mlflow:5000"]),
            "not an http(s) URL",
        ),
        (
            with_db(&["--apply", "--expect-cluster", &url, "--image", NEW]),
            "add --yes",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = world.run(&args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}\n{stdout}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(world.state(), before, "{args:?} changed something");
        assert!(world.jobs().is_empty(), "{args:?} started a Job");
        assert_eq!(std::fs::read_dir(world.snapshots()).unwrap().count(), 0);
        assert!(!world.journal().exists(), "{args:?} started a run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_changing_upgrade_migrates_before_the_new_server_starts() {
    let world = World::with_real_mlflow().await;
    assert!(
        !schema_is_current(&world.store),
        "the 2.9.2 store is behind the venv's MLflow"
    );
    let mut args = world.apply();
    args.extend(strings(&["--image", NEW, "--timeout", "90s"]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("pods serve on the migrated schema") && stdout.contains("--scale-down"),
        "the plan says what runs on the new schema meanwhile: {stdout}"
    );
    assert_eq!(world.image(), NEW);
    assert!(
        schema_is_current(&world.store),
        "the real `mlflow db upgrade` migrated the store"
    );
    let order: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split("] ").nth(1))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        order,
        ["mlflow/db-snapshot", "mlflow/db-upgrade", "mlflow/image"],
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_real_migration_restores_the_database() {
    let world = World::with_real_mlflow().await;
    let store_before = std::fs::read(&world.store).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed}");
    let mut args = world.apply();
    args.extend(strings(&[
        "--image",
        NEW,
        "--timeout",
        "90s",
        "--scale-down",
    ]));
    args.extend(strings(&["--health-url", &url, "--health-attempts", "1"]));
    args.extend(world.db_commands());
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("failed at mlflow/health"), "{stdout}");
    assert!(
        stdout.contains("rolled back 6 step(s)"),
        "snapshot, scale-down, migration, image, scale-up, health: {stdout}"
    );
    assert_eq!(world.image(), OLD);
    assert_eq!(
        std::fs::read(&world.store).unwrap(),
        store_before,
        "the restore command put the 2.9.2 store back"
    );
    assert!(!schema_is_current(&world.store));
    assert_eq!(world.deployment()["spec"]["replicas"], 1, "scaled back up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_not_restored_when_the_migration_never_started() {
    let world = World::new("{}").await;
    let (template, store) = world.state();
    let written = mtime(&world.store);
    std::thread::sleep(Duration::from_millis(20));
    let mut args = world.apply();
    args.extend(strings(&["--image", NEW]));
    args.extend(world.db_commands());
    // The snapshot is taken but never becomes usable.
    args.extend(strings(&["--db-snapshot-wait-command", "false"]));
    let (code, stdout, stderr) = world.run(&args).await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("failed at mlflow/db-snapshot"), "{stdout}");
    assert!(world.jobs().is_empty(), "the migration never started");
    assert_eq!(world.deployment()["spec"]["template"], template);
    assert_eq!(std::fs::read(&world.store).unwrap(), store);
    assert_eq!(
        mtime(&world.store),
        written,
        "the restore command never ran: a restore from a snapshot that is not usable, or when nothing was migrated, would lose data"
    );
}
