//! Fleet rollout (issue 20), with printed figures (nothing asserts a time).
//!
//! `cargo build --release -p upgrade-bins --bins && cargo bench -p upgrade-tests --bench
//! fleet` starts 50 kube-sim clusters (10 AWS accounts of 5), each running MLflow, and
//! restarts MLflow on every one with the real `upgrade-emergency restart --apply`:
//! - as the generated Argo `WorkflowTemplate` rehearsed (`upgrade_flows::flows::fleet`): a
//!   canary, then waves of 10%, 50% and 100%, 10 clusters at once, 2 per account;
//! - one after another, as a shell loop over the inventory would;
//! - and the rollout again with 3 clusters of the second wave failing (their Deployment is
//!   missing: the command refuses, exit 2) and at most 2 failures tolerated: how long until
//!   the gate stops it, and how many clusters were changed after the first failure.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it only says how to run it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, SimCluster};
use upgrade_core::ProcessBuilder;
use upgrade_flows::flows::fleet::{self, FleetSpec, Inventory, Threshold, WavesBy};
use upgrade_test::TestContext;

const CLUSTERS: usize = 50;
const PER_ACCOUNT: usize = 5;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "fleet benchmark: `cargo build --release -p upgrade-bins --bins && cargo bench -p upgrade-tests --bench fleet` runs it"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let ctx = TestContext::new();
        let mut sims = Vec::new();
        for i in 0..CLUSTERS {
            sims.push(cluster(&ctx, i).await);
        }
        let kubeconfig = kubeconfig(&ctx, &sims);
        let bin_dir = release_bin_dir();
        let env = vec![
            ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
            (
                "PATH".to_string(),
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
        ];
        let spec = spec(&sims, 2);
        println!(
            "fleet rollout, {CLUSTERS} kube-sim clusters in {} accounts, `upgrade-emergency restart --apply` on each:",
            CLUSTERS / PER_ACCOUNT
        );

        let (waves, took) = rehearse(&ctx, &spec, &kubeconfig, &env, "waves").await;
        println!(
            "  in waves (canary, 10%, 50%, 100%; 10 at once, 2 per account): {:.1}s, {} cluster(s) ok, peak {} at once",
            took.as_secs_f64(),
            waves.clusters.iter().filter(|c| !c.result.counts_as_failed()).count(),
            waves.peak_parallel
        );

        let started = Instant::now();
        let mut ok = 0;
        for (i, sim) in sims.iter().enumerate() {
            let mut cmd = ProcessBuilder::new(bin_dir.join("upgrade-emergency"));
            cmd.args([
                "restart",
                "--deployment",
                "mlops/mlflow",
                "--kube-context",
                &format!("c{i:02}"),
                "--expect-cluster",
                sim.url(),
                "--snapshot-dir",
            ])
            .arg(ctx.root().join("by-hand").join(format!("c{i:02}")))
            .args(["--apply", "--yes"])
            .env("KUBECONFIG", &kubeconfig)
            .timeout(Duration::from_secs(300));
            if cmd.output().is_ok_and(|o| o.status.success()) {
                ok += 1;
            }
        }
        let sequential = started.elapsed();
        println!(
            "  one after another: {:.1}s, {ok} cluster(s) ok; ratio (waves / one after another) {:.2}",
            sequential.as_secs_f64(),
            took.as_secs_f64() / sequential.as_secs_f64()
        );

        // Three clusters of the second wave fail; two failures are tolerated.
        let plan = fleet::plan(&spec).unwrap();
        let second_wave = &plan.waves[1].clusters;
        let broken: Vec<&String> = second_wave.iter().take(3).collect();
        for name in &broken {
            let i: usize = name[1..].parse().unwrap();
            sims[i]
                .store()
                .delete(
                    &sims[i].store().registry().lookup("apps", "v1", "deployments").unwrap(),
                    Some("mlops"),
                    "mlflow",
                    kube_sim::store::Propagation::Background,
                    &Default::default(),
                )
                .unwrap();
        }
        let (stopped, took) = rehearse(&ctx, &spec, &kubeconfig, &env, "threshold").await;
        let first_failure = stopped
            .tasks
            .iter()
            .filter(|t| t.task.starts_with("c-") && t.phase == fleet::rehearse::Phase::Failed)
            .map(|t| t.ended_ms)
            .min()
            .unwrap_or(0);
        let gate = stopped
            .tasks
            .iter()
            .find(|t| t.task.starts_with("gate-") && t.phase == fleet::rehearse::Phase::Failed);
        let changed_after = stopped
            .tasks
            .iter()
            .filter(|t| {
                t.task.starts_with("c-")
                    && t.started_ms > first_failure
                    && t.phase == fleet::rehearse::Phase::Succeeded
            })
            .count();
        println!(
            "  with {} failing clusters in the second wave and 2 tolerated: stopped after {:.1}s ({:.1}s after the first failure, at {}); {} cluster(s) run, {} omitted; {} started after the first failure (the rest of its wave)",
            broken.len(),
            took.as_secs_f64(),
            gate.map_or(0, |g| g.ended_ms.saturating_sub(first_failure)) as f64 / 1000.0,
            gate.map_or("no gate".to_string(), |g| g.task.clone()),
            stopped.clusters.len(),
            stopped
                .tasks
                .iter()
                .filter(|t| t.task.starts_with("c-") && t.phase == fleet::rehearse::Phase::Omitted)
                .count(),
            changed_after
        );
        for sim in sims {
            sim.shutdown().await;
        }
    });
}

fn spec(sims: &[SimCluster], per_account: u32) -> FleetSpec {
    let clusters = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| fleet::FleetCluster {
            name: format!("c{i:02}"),
            account: format!("{:012}", 100_000_000_000u64 + (i / PER_ACCOUNT) as u64),
            region: "us-east-1".into(),
            context: Some(format!("c{i:02}")),
            endpoint: Some(sim.url().to_string()),
            terraform_dir: None,
            labels: if i == 0 {
                [("canary".to_string(), "true".to_string())].into()
            } else {
                Default::default()
            },
        })
        .collect();
    FleetSpec {
        inventory: Inventory { clusters },
        command: "upgrade-emergency restart --deployment mlops/mlflow --kube-context {context} --expect-cluster {endpoint} --snapshot-dir {state_dir} --apply --yes"
            .split(' ')
            .map(str::to_string)
            .collect(),
        image: "ghcr.io/example/mlops-upgrade:bench".into(),
        canary: Some(("canary".into(), "true".into())),
        waves: WavesBy::Percent(vec![10, 50, 100]),
        concurrency_per_account: per_account,
        parallelism: 10,
        soak: Duration::ZERO,
        failure_threshold: Threshold::Count(2),
        approval_before: Vec::new(),
    }
}

async fn rehearse(
    ctx: &TestContext,
    spec: &FleetSpec,
    kubeconfig: &Path,
    env: &[(String, String)],
    name: &str,
) -> (fleet::rehearse::Rehearsal, Duration) {
    let plan = fleet::plan(spec).unwrap();
    let template = fleet::workflow::workflow_template(&plan, "bench");
    let semaphores = fleet::workflow::semaphore_config_map(&plan, "bench");
    let started = Instant::now();
    let rehearsal = fleet::rehearse::rehearse(
        &template,
        &semaphores,
        &fleet::rehearse::RehearsalOptions {
            out_dir: ctx.root().join(name),
            kubeconfig: Some(kubeconfig.to_path_buf()),
            soak_scale: 0.0,
            timeout: Duration::from_secs(300),
            env: env.to_vec(),
            stop: upgrade_core::process::StopSignal::new(),
        },
    )
    .await
    .unwrap();
    (rehearsal, started.elapsed())
}

async fn cluster(ctx: &TestContext, i: usize) -> SimCluster {
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .kubeconfig_path(ctx.root().join(format!("c{i:02}.kubeconfig")))
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mlops}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mlflow, namespace: mlops}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: mlflow}}\n  template:\n    metadata: {labels: {app: mlflow}}\n    spec: {containers: [{name: mlflow, image: 'ghcr.io/mlflow/mlflow:2.21.0'}]}\n",
    )
    .unwrap();
    sim
}

fn kubeconfig(ctx: &TestContext, sims: &[SimCluster]) -> PathBuf {
    let names: Vec<String> = (0..sims.len()).map(|i| format!("c{i:02}")).collect();
    let entries: Vec<(&str, &str)> = names
        .iter()
        .zip(sims)
        .map(|(n, s)| (n.as_str(), s.url()))
        .collect();
    let path = ctx.root().join("fleet.kubeconfig");
    std::fs::write(&path, kube_sim::kubeconfig_for(&entries).to_string()).unwrap();
    path
}

/// The release profile's binaries `cargo bench` builds beside.
fn release_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    assert!(
        dir.join("upgrade-emergency").is_file(),
        "upgrade-emergency is not built in {}; run `cargo build --release -p upgrade-bins --bins` first",
        dir.display()
    );
    dir
}
