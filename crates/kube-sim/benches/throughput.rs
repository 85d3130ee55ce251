//! List and get throughput of the simulated API server at 1,000 nodes / 30,000 pods, over
//! HTTP with kube-rs (what every consumer of the simulator pays).
//!
//! Run with `cargo bench -p upgrade-kube-sim --bench throughput`. Prints figures and ratios;
//! it checks only that lists are complete, never timings, so a slow machine cannot fail it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube_sim::{ControllerConfig, ScaleSpec, SimCluster};

const NODES: usize = 1_000;
const PODS: usize = 30_000;

fn per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and the benchmark must not slow the test suite down.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "kube-sim throughput: skipped (run it with `cargo bench -p upgrade-kube-sim --bench throughput`)"
        );
        return Ok(());
    }
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await?;
    let started = Instant::now();
    sim.generate(&ScaleSpec {
        nodes: NODES,
        pods: PODS,
        pods_per_deployment: 30,
        pdbs: 500,
        helm_releases: 100,
        revisions_per_release: 5,
        namespaces: 20,
        ..ScaleSpec::default()
    })?;
    let generate = started.elapsed();
    println!(
        "kube-sim throughput: {NODES} nodes, {PODS} pods (generated in {:.2}s)",
        generate.as_secs_f64()
    );

    let client = sim.client()?;
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());

    // The server alone: one full list as raw bytes (no client-side decoding).
    let rounds = 3;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let request = axum::http::Request::get("/api/v1/pods").body(Vec::new())?;
        bytes = client.request_text(request).await?.len();
    }
    let raw = t.elapsed() / rounds;
    println!(
        "list all pods, raw HTTP:        {:>8.1} ms/list  {:>10.0} pods/s  ({:.1} MB)",
        raw.as_secs_f64() * 1e3,
        per_sec(PODS, raw),
        bytes as f64 / 1e6
    );

    // Full lists, no pagination, decoded into k8s-openapi Pods.
    let t = Instant::now();
    for _ in 0..rounds {
        let list = pods.list(&ListParams::default()).await?;
        assert_eq!(list.items.len(), PODS);
    }
    let full = t.elapsed() / rounds;
    println!(
        "list all pods (one response):   {:>8.1} ms/list  {:>10.0} pods/s",
        full.as_secs_f64() * 1e3,
        per_sec(PODS, full)
    );

    // Paginated, as informers and kubectl do.
    let t = Instant::now();
    let mut params = ListParams::default().limit(500);
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page = pods.list(&params).await?;
        seen += page.items.len();
        pages += 1;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    let paged = t.elapsed();
    assert_eq!(seen, PODS);
    println!(
        "list all pods (limit=500):      {:>8.1} ms/list  {:>10.0} pods/s  ({pages} pages)",
        paged.as_secs_f64() * 1e3,
        per_sec(PODS, paged)
    );

    let t = Instant::now();
    let list = nodes.list(&ListParams::default()).await?;
    let node_list = t.elapsed();
    println!(
        "list all nodes:                 {:>8.1} ms/list  {:>10.0} nodes/s",
        node_list.as_secs_f64() * 1e3,
        per_sec(list.items.len(), node_list)
    );

    // A selective list: one namespace, label selector, field selector.
    let team: Api<Pod> = Api::namespaced(client.clone(), "team-03");
    let t = Instant::now();
    let selective_rounds = 20;
    for _ in 0..selective_rounds {
        team.list(
            &ListParams::default()
                .labels("app=app-0003")
                .fields("status.phase=Running"),
        )
        .await?;
    }
    let selective = t.elapsed() / selective_rounds;
    println!(
        "selective list (ns+labels):     {:>8.2} ms/list",
        selective.as_secs_f64() * 1e3
    );

    // Gets: sequential and 16 in flight.
    let names: Vec<(String, String)> = sim
        .list("v1", "Pod", None)
        .iter()
        .step_by(PODS / 2_000)
        .map(|p| {
            (
                p["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let t = Instant::now();
    for (ns, name) in &names {
        Api::<Pod>::namespaced(client.clone(), ns).get(name).await?;
    }
    let sequential = t.elapsed();
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(names.iter().cloned())
        .map(|(ns, name)| {
            let client = client.clone();
            async move { Api::<Pod>::namespaced(client, &ns).get(&name).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let concurrent = t.elapsed();
    assert!(results.iter().all(Result::is_ok));
    let (seq_rate, conc_rate) = (
        per_sec(names.len(), sequential),
        per_sec(names.len(), concurrent),
    );
    println!(
        "get pod (sequential):           {:>8.3} ms/get   {:>10.0} gets/s",
        sequential.as_secs_f64() * 1e3 / names.len() as f64,
        seq_rate
    );
    println!(
        "get pod (16 concurrent):        {:>8.3} ms/get   {:>10.0} gets/s",
        concurrent.as_secs_f64() * 1e3 / names.len() as f64,
        conc_rate
    );
    println!(
        "ratios: typed/raw full list time {:.2}x, paginated/full list time {:.2}x, concurrent/sequential gets {:.2}x",
        full.as_secs_f64() / raw.as_secs_f64(),
        paged.as_secs_f64() / full.as_secs_f64(),
        conc_rate / seq_rate
    );
    sim.shutdown().await;

    // Controllers at scale: roll one Deployment of 30 pods in the 30,000-pod cluster.
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::fast())
        .start()
        .await?;
    sim.generate(&ScaleSpec {
        nodes: NODES,
        pods: PODS,
        pods_per_deployment: 30,
        pdbs: 500,
        helm_releases: 0,
        namespaces: 20,
        ..ScaleSpec::default()
    })?;
    // Let the first passes record status for the generated workloads.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(sim.client()?, "team-00");
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.example/app-0000:2.0.0"}]}}}});
    let t = Instant::now();
    deployments
        .patch(
            "app-0000",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await?;
    loop {
        let d = sim.get("apps/v1", "Deployment", Some("team-00"), "app-0000")?;
        let s = &d["status"];
        let done = s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"] == 30
            && s["availableReplicas"] == 30
            && s["replicas"] == 30;
        if done {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "the rollout did not finish in 120s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "rollout of 30 pods among {PODS}: {:>8.0} ms (pod start delay 50 ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    sim.shutdown().await;
    Ok(())
}
