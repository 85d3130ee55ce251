//! `TemplateJobStep` through the executor on kube-sim: a Job made from a Deployment's pod
//! template runs to completion; a failing Job fails the run; a Job still running when the
//! step gives up is suspended by the rollback before its undo runs; a Job that never started
//! has nothing undone.

use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::{Value, json};
use upgrade_core::executor::{Executor, RunOutcome, Step};
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_kube::job::{JOB_LABEL, TemplateJobSpec, TemplateJobStep};

const APP: &str = r#"
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
      serviceAccountName: mlflow
      containers:
        - name: mlflow
          image: ghcr.io/mlflow/mlflow:v2.9.2
          args: ["server", "--host", "0.0.0.0"]
          env: [{name: BACKEND_STORE_URI, value: "postgresql://mlflow@db/mlflow"}]
          ports: [{containerPort: 5000}]
          readinessProbe: {httpGet: {path: /health, port: 5000}}
        - name: proxy
          image: cloud-sql-proxy:2
"#;

async fn world(config: ControllerConfig, annotations: &str) -> (SimCluster, Cluster) {
    let sim = SimCluster::builder()
        .controllers(config)
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(&APP.replace("ANNOTATIONS", annotations))
        .unwrap();
    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: Some(sim.kubeconfig_path().to_path_buf()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(sim.url().to_string()),
    })
    .await
    .expect("connects");
    (sim, cluster)
}

fn step(cluster: &Cluster, timeout: Duration) -> TemplateJobStep {
    step_undone_by(cluster, timeout, None)
}

fn step_undone_by(
    cluster: &Cluster,
    timeout: Duration,
    undo: Option<upgrade_core::command_step::CommandSpec>,
) -> TemplateJobStep {
    TemplateJobStep {
        spec: TemplateJobSpec {
            id: "mlflow/db-upgrade".into(),
            component: "mlflow".into(),
            namespace: "mlops".into(),
            deployment: "mlflow".into(),
            container: "mlflow".into(),
            image: "ghcr.io/mlflow/mlflow:v2.16.0".into(),
            command: ["mlflow", "db", "upgrade", "$(BACKEND_STORE_URI)"]
                .map(String::from)
                .to_vec(),
            job_name: "mlflow-db-upgrade-run-1".into(),
            timeout,
            irreversible: None,
            undo,
        },
        cluster: cluster.clone(),
    }
}

async fn run(step: &TemplateJobStep) -> RunOutcome {
    let dir = tempfile::tempdir().unwrap();
    let mut executor =
        Executor::open(&dir.path().join("journal.jsonl"), &dir.path().join("snap")).unwrap();
    let steps: [&dyn Step; 1] = [step];
    executor.start("run-1", &steps).await.unwrap()
}

fn job(sim: &SimCluster) -> Option<Value> {
    sim.get("batch/v1", "Job", Some("mlops"), "mlflow-db-upgrade-run-1")
        .ok()
}

#[tokio::test]
async fn the_job_runs_the_command_with_the_new_image_and_the_servers_environment() {
    let (sim, cluster) = world(ControllerConfig::fast(), "{}").await;
    let outcome = run(&step(&cluster, Duration::from_secs(30))).await;
    assert_eq!(outcome, RunOutcome::Completed);
    let job = job(&sim).expect("the job exists");
    let pod = &job["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels[JOB_LABEL], "mlflow");
    assert!(labels["app"].is_null(), "no Service selects it: {labels}");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["serviceAccountName"], "mlflow");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(
        containers.len(),
        1,
        "only the named container: {containers:?}"
    );
    let c = &containers[0];
    assert_eq!(c["image"], "ghcr.io/mlflow/mlflow:v2.16.0");
    assert_eq!(
        c["command"],
        json!(["mlflow", "db", "upgrade", "$(BACKEND_STORE_URI)"])
    );
    assert_eq!(c["env"][0]["name"], "BACKEND_STORE_URI");
    for dropped in ["args", "ports", "readinessProbe"] {
        assert!(c[dropped].is_null(), "{dropped} left in {c}");
    }
}

#[tokio::test]
async fn a_failing_job_fails_the_step_and_is_kept_for_its_logs() {
    let (sim, cluster) = world(
        ControllerConfig::fast(),
        r#"{"kube-sim.dev/exit-code": "3"}"#,
    )
    .await;
    match run(&step(&cluster, Duration::from_secs(30))).await {
        RunOutcome::RolledBack {
            failed_step, error, ..
        } => {
            assert_eq!(failed_step, "mlflow/db-upgrade");
            assert!(error.contains("failed: BackoffLimitExceeded"), "{error}");
            assert!(
                error.contains("kubectl logs -n mlops job/mlflow-db-upgrade-run-1"),
                "{error}"
            );
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(job(&sim).is_some(), "a finished job is kept");
}

/// An undo that leaves a marker file, so a test can tell whether it ran.
fn marker_undo(marker: &std::path::Path) -> upgrade_core::command_step::CommandSpec {
    upgrade_core::command_step::CommandSpec::new("/usr/bin/touch", [marker.display().to_string()])
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn a_job_still_running_at_the_timeout_is_suspended_then_undone() {
    let config = ControllerConfig {
        job_run_time: Duration::from_secs(600),
        ..ControllerConfig::fast()
    };
    let (sim, cluster) = world(config, "{}").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("restored");
    let step = step_undone_by(&cluster, Duration::from_secs(1), Some(marker_undo(&marker)));
    match run(&step).await {
        RunOutcome::RolledBack {
            error, rollback, ..
        } => {
            assert!(error.contains("timed out"), "{error}");
            assert_eq!(rollback.blocked, None);
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    let job = job(&sim).expect("the job is kept as the record that it started");
    assert_eq!(job["spec"]["suspend"], true, "{job}");
    let running: Vec<Value> = sim
        .list("v1", "Pod", Some("mlops"))
        .into_iter()
        .filter(|p| {
            p["metadata"]["labels"][JOB_LABEL] == "mlflow"
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    assert!(running.is_empty(), "its pods are gone: {running:?}");
    assert!(marker.exists(), "the undo ran after the job stopped");
}

#[tokio::test]
async fn a_job_that_never_started_has_nothing_undone() {
    let (sim, cluster) = world(ControllerConfig::fast(), "{}").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("restored");
    let step = step_undone_by(
        &cluster,
        Duration::from_secs(30),
        Some(marker_undo(&marker)),
    );
    let store = upgrade_core::snapshot::SnapshotStore::open(dir.path().join("snap")).unwrap();
    let snapshot = store
        .begin(upgrade_core::snapshot::SnapshotKey {
            run_id: "run-1".into(),
            seq: 1,
            component: "mlflow".into(),
            step: "mlflow/db-upgrade".into(),
        })
        .unwrap()
        .commit()
        .unwrap();
    step.rollback(&snapshot).await.unwrap();
    assert!(job(&sim).is_none());
    assert!(
        !marker.exists(),
        "no restore when the migration never started"
    );
}
