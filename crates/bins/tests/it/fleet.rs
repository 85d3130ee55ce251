//! `upgrade-fleet` end to end: the generated Argo objects applied with the real kubectl
//! (strict field validation) to a kube-sim serving the real Argo Workflows CRDs of the
//! upstream chart; a rehearsal of the generated template on six kube-sim clusters running
//! the real `upgrade-emergency`, with a cluster that cannot finish (no capacity for its
//! surge pod): the canary first, the per-account semaphore and the parallelism honoured, the
//! gate stopping the rollout at the threshold, the stuck cluster rolled back by the failure
//! path's `upgrade-rollback`, and the fleet report from the outputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_test::TestContext;

const ARGO_CRDS: &str = "argo-workflows/0.47.5/argo-workflows/files/crds/full";

/// `upgrade-fleet ARGS` with the toolkit's binaries first on PATH.
fn fleet(ctx: &TestContext, args: &[&str]) -> (i32, String, String) {
    let exe = env!("CARGO_BIN_EXE_upgrade-fleet");
    let bin_dir = Path::new(exe).parent().unwrap().to_path_buf();
    let mut cmd = ProcessBuilder::new(exe);
    ctx.apply_env(&mut cmd);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", bin_dir.display()))
        .args(args)
        .timeout(Duration::from_secs(600));
    upgrade_test::CommandOutput::run(&cmd).parts()
}

/// An inventory of `clusters` (name, account, endpoint, env label) written into the test.
fn inventory(ctx: &TestContext, clusters: &[(&str, &str, &str, &str)]) -> PathBuf {
    let mut text = String::from("clusters:\n");
    for (name, account, endpoint, env) in clusters {
        text.push_str(&format!(
            "  - name: {name}\n    account: \"{account}\"\n    region: us-east-1\n    context: {name}\n    endpoint: {endpoint}\n    terraformDir: envs/{name}\n    labels: {{env: {env}}}\n"
        ));
    }
    let path = ctx.root().join("inventory.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const PLAN_FLAGS: &[&str] = &[
    "--command",
    "upgrade-emergency restart --deployment mlops/mlflow --rollout-timeout 120 --kube-context {context} --expect-cluster {endpoint} --snapshot-dir {state_dir} --apply --yes",
    "--image",
    "ghcr.io/example/mlops-upgrade:0.1.0",
    "--canary",
    "env=canary",
    "--waves-by-label",
    "env=staging,prod",
    "--concurrency-per-account",
    "1",
    "--parallelism",
    "2",
    "--soak",
    "30m",
    "--approval-before",
    "2",
];

/// The plan's WorkflowTemplate, ConfigMap and Workflow pass the API server's strict field
/// validation against the real Argo Workflows 3.7 CRDs (and a template with a misspelt field
/// does not: the check is real).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_workflow_validates_against_the_argo_crds() {
    let ctx = TestContext::new();
    let inv = inventory(
        &ctx,
        &[
            ("dev-1", "111111111111", "https://dev-1.example", "canary"),
            ("stg-1", "111111111111", "https://stg-1.example", "staging"),
            ("prd-1", "222222222222", "https://prd-1.example", "prod"),
            ("prd-2", "222222222222", "https://prd-2.example", "prod"),
        ],
    );
    let out = ctx.root().join("argo");
    let mut args = vec!["plan", "--inventory", inv.to_str().unwrap()];
    args.extend(PLAN_FLAGS);
    args.extend(["--max-failures", "1", "--out-dir", out.to_str().unwrap()]);
    let (code, stdout, stderr) = fleet(&ctx, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("canary: dev-1 (the rollout stops past 0 failed); then soak 1800s")
            && stdout.contains("env-staging: stg-1 (the rollout stops past 1 failed)")
            && stdout.contains("env-prod [approval first]: prd-1, prd-2"),
        "{stdout}"
    );

    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .kubeconfig_path(ctx.root().join("kubeconfig.yaml"))
        .start()
        .await
        .unwrap();
    let crds = TestContext::upstream_charts_dir().join(ARGO_CRDS);
    for crd in [
        "argoproj.io_workflowtemplates.yaml",
        "argoproj.io_workflows.yaml",
    ] {
        sim.load_yaml(&std::fs::read_to_string(crds.join(crd)).unwrap())
            .unwrap();
    }
    let kubectl = |args: &[&str]| {
        let mut cmd = ctx.command("kubectl");
        cmd.arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(args)
            .timeout(Duration::from_secs(60));
        upgrade_test::CommandOutput::run(&cmd).parts()
    };
    for file in ["workflowtemplate.yaml", "semaphores.yaml"] {
        let path = out.join(file);
        let (code, stdout, stderr) = kubectl(&[
            "apply",
            "--validate=strict",
            "-n",
            "default",
            "-f",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{file}: {stdout}{stderr}");
    }
    let path = out.join("workflow.yaml");
    let (code, stdout, stderr) = kubectl(&[
        "create",
        "--validate=strict",
        "-n",
        "default",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let stored = sim.list("argoproj.io/v1alpha1", "WorkflowTemplate", Some("default"));
    let tasks = stored[0]["spec"]["templates"][0]["dag"]["tasks"]
        .as_array()
        .unwrap();
    // 4 clusters with their rollback tasks, 3 gates, 2 soaks, 1 approval.
    assert_eq!(tasks.len(), 4 * 2 + 3 + 2 + 1, "{tasks:?}");

    // The same template with a misspelt field is refused.
    let text = std::fs::read_to_string(out.join("workflowtemplate.yaml"))
        .unwrap()
        .replace("retryPolicy: OnError", "retryPolicyy: OnError");
    let bad = ctx.root().join("bad.yaml");
    std::fs::write(&bad, text).unwrap();
    let (code, stdout, stderr) = kubectl(&[
        "apply",
        "--validate=strict",
        "-n",
        "default",
        "-f",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("retryPolicyy"), "{stderr}");

    // Bad input changes nothing and names the fix.
    let (code, _, stderr) = fleet(
        &ctx,
        &[
            "plan",
            "--inventory",
            inv.to_str().unwrap(),
            "--command",
            "upgrade-eks --target 1.31 --kube-context {kontext}",
            "--image",
            "x",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("{kontext} is not a placeholder"),
        "{stderr}"
    );
    sim.shutdown().await;
}

/// A cluster for the rehearsal: MLflow's two pods asking 4 CPUs each; with one node (8 CPUs)
/// a restart's surge pod never fits, so the restart cannot finish.
async fn cluster(ctx: &TestContext, name: &str, nodes: usize) -> SimCluster {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(ctx.root().join(format!("{name}.kubeconfig")))
        .start()
        .await
        .unwrap();
    for i in 0..nodes {
        sim.add_node(&format!("node-{i}"), kube_sim::DEFAULT_SERVER_VERSION)
            .unwrap();
    }
    sim.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mlflow, namespace: mlops}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: mlflow}}\n  template:\n    metadata: {labels: {app: mlflow}}\n    spec: {containers: [{name: mlflow, image: 'ghcr.io/mlflow/mlflow:2.21.0', resources: {requests: {cpu: '4'}}}]}\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim
        .get("apps/v1", "Deployment", Some("mlops"), "mlflow")
        .unwrap()["status"]["availableReplicas"]
        != 2
    {
        assert!(std::time::Instant::now() < deadline, "{name} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim
}

/// One kubeconfig with a context per cluster, named after it.
fn kubeconfig(ctx: &TestContext, sims: &[(&str, &SimCluster)]) -> PathBuf {
    let entries: Vec<(&str, &str)> = sims.iter().map(|(n, s)| (*n, s.url())).collect();
    let path = ctx.root().join("fleet.kubeconfig");
    std::fs::write(&path, kube_sim::kubeconfig_for(&entries).to_string()).unwrap();
    path
}

fn restarted(sim: &SimCluster) -> bool {
    sim.get("apps/v1", "Deployment", Some("mlops"), "mlflow")
        .unwrap()["spec"]["template"]["metadata"]["annotations"]
        .get("kubectl.kubernetes.io/restartedAt")
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_stops_at_the_threshold_and_rolls_the_stuck_cluster_back() {
    let ctx = TestContext::new();
    // c3 (staging) has one node: its restart never finishes.
    let layout = [
        ("c1", "111111111111", "canary", 2),
        ("c2", "111111111111", "staging", 2),
        ("c3", "111111111111", "staging", 1),
        ("c4", "222222222222", "prod", 2),
        ("c5", "222222222222", "prod", 2),
        ("c6", "222222222222", "prod", 2),
    ];
    let mut sims = Vec::new();
    for (name, _, _, nodes) in layout {
        sims.push(cluster(&ctx, name, nodes).await);
    }
    let named: Vec<(&str, &SimCluster)> = layout.iter().map(|l| l.0).zip(sims.iter()).collect();
    let kubeconfig = kubeconfig(&ctx, &named);
    let urls: Vec<String> = sims.iter().map(|s| s.url().to_string()).collect();
    let entries: Vec<(&str, &str, &str, &str)> = layout
        .iter()
        .zip(&urls)
        .map(|((name, account, env, _), url)| (*name, *account, url.as_str(), *env))
        .collect();
    let inv = inventory(&ctx, &entries);
    let rehearse = |max_failures: &str, out: &Path| {
        let mut args = vec![
            "rehearse",
            "--inventory",
            inv.to_str().unwrap(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--step-timeout",
            "20s",
            "--max-failures",
            max_failures,
            "--output",
            "json",
        ];
        args.extend(PLAN_FLAGS);
        fleet(&ctx, &args)
    };

    let out = ctx.root().join("rehearsal-1");
    let (code, stdout, stderr) = rehearse("0", &out);
    assert_eq!(code, 1, "the gate stopped the rollout: {stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let phase = |task: &str| {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == task)
            .map(|t| t["phase"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no task {task}: {report}"))
    };
    assert_eq!(phase("c-c1"), "Succeeded", "{report:#}");
    assert_eq!(phase("rb-c1"), "Omitted");
    assert_eq!(phase("gate-0"), "Succeeded");
    assert_eq!(phase("soak-0"), "Succeeded");
    assert_eq!(phase("c-c2"), "Succeeded");
    assert_eq!(phase("c-c3"), "Failed");
    assert_eq!(
        phase("rb-c3"),
        "Succeeded",
        "the failure path ran: {report}"
    );
    assert_eq!(phase("gate-1"), "Failed");
    for task in ["soak-1", "approve-2", "c-c4", "c-c5", "c-c6", "gate-2"] {
        assert_eq!(phase(task), "Omitted", "{task}");
    }
    assert!(
        report["stopped"].as_str().unwrap().contains(
            "after env-staging: 1 of 3 cluster(s) failed; the rollout stops past 0: stopped"
        ),
        "{report}"
    );
    assert_eq!(report["rolled_back"], serde_json::json!(["c3"]));
    assert!(restarted(&sims[0]) && restarted(&sims[1]));
    assert!(!restarted(&sims[2]), "c3 was rolled back");
    assert!(sims[3..].iter().all(|s| !restarted(s)), "prod untouched");
    // One account, one at a time: c2 and c3 never overlapped.
    let span = |task: &str| {
        let t = report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == task)
            .unwrap();
        (
            t["started_ms"].as_u64().unwrap(),
            t["ended_ms"].as_u64().unwrap(),
        )
    };
    let (c2, c3) = (span("c-c2"), span("c-c3"));
    assert!(c2.1 <= c3.0 || c3.1 <= c2.0, "{c2:?} {c3:?}");

    // The fleet report from the outputs: from and to, the result, the stuck cluster.
    let (code, stdout, stderr) = fleet(&ctx, &["report", "--artifacts", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("c1 ") && stdout.contains(" ok ") && stdout.contains(" stopped "),
        "{stdout}"
    );
    assert!(stdout.contains("3 cluster(s): 2 ok, 1 stopped"), "{stdout}");
    assert!(
        stdout.contains("stopped on request") && stdout.contains("rolled back 1 step(s)"),
        "the stuck run was stopped at the step timeout and undone: {stdout}"
    );

    // With one failure allowed the rollout goes on: prod runs, two per... one per account
    // at once, at most two clusters at once.
    let out = ctx.root().join("rehearsal-2");
    let (code, stdout, stderr) = rehearse("1", &out);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["stopped"].is_null(), "{report}");
    assert!(report["peak_parallel"].as_u64().unwrap() <= 2, "{report}");
    assert!(sims[3..].iter().all(restarted), "prod upgraded");
    for s in sims {
        s.shutdown().await;
    }
}
