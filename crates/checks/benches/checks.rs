//! How long the checks and reports take on a large synthetic cluster.
//!
//! `cargo bench -p upgrade-checks --bench checks` prints the figures; nothing here asserts a
//! time (timings belong in benchmarks, not tests). Under `cargo test --all-targets` (no
//! `--bench` argument) it runs once on a cluster a hundred times smaller, as a smoke test.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use upgrade_checks::checks::run;
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::{
    ContainerFacts, Facts, HelmReleaseFacts, NodeFacts, NodeProvisioner, OwnerFacts, PodFacts,
    WorkloadFacts, WorkloadKind,
};
use upgrade_checks::report;

const NODES: usize = 1_000;
const PODS: usize = 20_000;
const WORKLOADS: usize = 2_000;
const RELEASES: usize = 200;
const DOCUMENTS_PER_RELEASE: usize = 100;

/// Sizes divided by `scale` (1 for the benchmark, 100 for the smoke run).
fn synthetic(scale: usize) -> Facts {
    let (nodes, pods, workloads, releases) = (
        NODES / scale,
        PODS / scale,
        WORKLOADS / scale,
        RELEASES / scale,
    );
    let mut facts = Facts::from_yaml("cluster: {name: bench, server_version: v1.30.4-eks-1}")
        .expect("static facts parse");
    facts.nodes = (0..nodes)
        .map(|i| NodeFacts {
            name: format!("node-{i}"),
            kubelet_version: if i % 10 == 0 { "1.29.8" } else { "1.30.4" }
                .parse()
                .expect("version"),
            kube_proxy_version: None,
            os_image: Some("Amazon Linux 2023".into()),
            container_runtime: Some("containerd://1.7.27".into()),
            provisioner: NodeProvisioner::ManagedNodeGroup,
            group: Some(format!("group-{}", i % 20)),
            ready: true,
            unschedulable: false,
            pressure: Vec::new(),
            taints: Vec::new(),
        })
        .collect();
    facts.workloads = (0..workloads)
        .map(|i| WorkloadFacts {
            kind: WorkloadKind::Deployment,
            namespace: format!("ns-{}", i % 50),
            name: format!("app-{i}"),
            replicas: Some(1 + (i % 3) as i32),
            ready_replicas: None,
            min_ready_seconds: None,
            pod_labels: BTreeMap::from([("app".to_owned(), format!("app-{i}"))]),
            containers: vec![ContainerFacts {
                name: "main".into(),
                image: None,
                readiness_probe: i % 4 != 0,
            }],
            pod_anti_affinity: false,
            topology_spread: i % 2 == 0,
        })
        .collect();
    facts.pods = (0..pods)
        .map(|i| PodFacts {
            namespace: format!("ns-{}", i % 50),
            name: format!("pod-{i}"),
            node: Some(format!("node-{}", i % nodes)),
            phase: "Running".into(),
            controller: (i % 100 != 0).then(|| OwnerFacts {
                kind: "ReplicaSet".into(),
                name: format!("rs-{i}"),
            }),
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            local_storage: i % 7 == 0,
            running_seconds: Some(60),
            termination_grace_period_seconds: None,
            git_repo_volumes: Vec::new(),
        })
        .collect();
    facts.helm_releases = (0..releases)
        .map(|i| {
            let mut manifest = String::new();
            for d in 0..DOCUMENTS_PER_RELEASE {
                let api = if d % 25 == 0 { "policy/v1beta1" } else { "apps/v1" };
                let kind = if d % 25 == 0 { "PodDisruptionBudget" } else { "Deployment" };
                let _ = write!(
                    manifest,
                    "---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: obj-{d}\n  namespace: ns\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: c\n          image: example/c:1\n"
                );
            }
            HelmReleaseFacts {
                name: format!("release-{i}"),
                namespace: "ns".into(),
                chart: "chart".into(),
                chart_version: "1.0.0".into(),
                app_version: None,
                status: "deployed".into(),
                kube_version: Some(">=1.25.0-0 <1.40.0-0".into()),
                manifest,
                chart_ref: None,
                values_file: None,
            }
        })
        .collect();
    facts
}

fn time<T>(label: &str, rounds: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(f());
    }
    let per_round = start.elapsed() / rounds;
    println!("{label:<28} {per_round:>12.2?} per run ({rounds} runs)");
    per_round
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (scale, rounds) = if full { (1, 5) } else { (100, 1) };
    let facts = synthetic(scale);
    let data = Data::embedded();
    let config = Config::default();
    let target = "1.33".parse().expect("target");
    println!(
        "synthetic cluster: {} nodes, {} pods, {} workloads, {} releases x {DOCUMENTS_PER_RELEASE} documents{}",
        facts.nodes.len(),
        facts.pods.len(),
        facts.workloads.len(),
        facts.helm_releases.len(),
        if full {
            ""
        } else {
            " (smoke run; `cargo bench` for figures)"
        }
    );
    let checks = time("checks::run (1.30 -> 1.33)", rounds, || {
        run(&facts, target, &config, data)
    });
    let report = run(&facts, target, &config, data).expect("plan");
    println!("findings: {}", report.findings.len());
    let text = time("report::text", rounds, || report::text(&report));
    let json = time("report::json", rounds, || report::json(&report));
    time("report::playbook", rounds, || {
        report::playbook(&report, &facts)
    });
    time("report::junit", rounds, || report::junit(&report));
    let documents = (facts.helm_releases.len() * DOCUMENTS_PER_RELEASE) as f64;
    println!(
        "manifest documents per second through the checks: {:.0}",
        documents / checks.as_secs_f64()
    );
    println!(
        "ratio checks/text render: {:.1}, checks/json render: {:.1}",
        checks.as_secs_f64() / text.as_secs_f64(),
        checks.as_secs_f64() / json.as_secs_f64()
    );
}
