//! Benchmark: reading every release and revision through Helm's storage (kube-rs list calls)
//! versus one `helm history` + one `helm get manifest` process per release.
//!
//! `cargo bench -p upgrade-helm --bench storage_scan` (needs `./dev tools` for helm). Sizes:
//! `BENCH_RELEASES` (default 500), `BENCH_REVISIONS` (default 10), `BENCH_HELM_RELEASES`
//! (how many releases the Helm CLI side reads, default all; fewer are extrapolated).

use std::time::{Duration, Instant};

use kube_sim::{ControllerConfig, SimCluster};
use serde_json::{Value, json};
use upgrade_helm::storage::{StorageReader, encode_release, object_name};
use upgrade_helm::{Helm, ReleaseRef, StorageDriver};
use upgrade_test::TestContext;

const NAMESPACES: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do nothing there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("storage_scan: run with `cargo bench -p upgrade-helm --bench storage_scan`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

/// A real release record from Helm 4 (`install --dry-run=client -o json` needs no cluster).
fn template_record(ctx: &TestContext) -> Value {
    let mut install = ctx.command("helm4");
    install
        .args(["install", "karpenter"])
        .arg(TestContext::fixtures_dir().join("charts/karpenter/1.6.0"))
        .args([
            "--namespace",
            "karpenter",
            "--dry-run=client",
            "--output",
            "json",
        ]);
    serde_json::from_slice(&install.exec().expect("helm4 dry-run install").stdout)
        .expect("release JSON")
}

async fn run() {
    let releases = env_usize("BENCH_RELEASES", 500);
    let revisions = env_usize("BENCH_REVISIONS", 10) as u32;
    let helm_releases = env_usize("BENCH_HELM_RELEASES", releases).min(releases);
    let ctx = TestContext::new();
    let sim = SimCluster::builder()
        .controllers(ControllerConfig::none())
        .start()
        .await
        .expect("kube-sim starts");

    // Write the storage Secrets straight into the simulator's store.
    let record = template_record(&ctx);
    let store = sim.store();
    let registry = store.registry();
    let secrets = registry.lookup("", "v1", "secrets").expect("secrets");
    let namespaces = registry.lookup("", "v1", "namespaces").expect("namespaces");
    let write = kube_sim::store::WriteOptions::default();
    for n in 0..NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{n}")}});
        let _ = store.create(&namespaces, None, ns, &write);
    }
    let started = Instant::now();
    let mut bytes = 0usize;
    for r in 0..releases {
        let name = format!("app-{r:04}");
        let ns = format!("team-{}", r % NAMESPACES);
        for v in 1..=revisions {
            let status = if v == revisions {
                "deployed"
            } else {
                "superseded"
            };
            let mut rec = record.clone();
            rec["name"] = json!(name);
            rec["namespace"] = json!(ns);
            rec["version"] = json!(v);
            rec["info"]["status"] = json!(status);
            rec["info"]["description"] = json!(if v == 1 {
                "Install complete"
            } else {
                "Upgrade complete"
            });
            let payload = encode_release(&serde_json::to_vec(&rec).unwrap());
            bytes += payload.len();
            let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, payload);
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                "metadata": {"name": object_name(&name, v), "namespace": ns,
                    "labels": {"name": name, "owner": "helm", "status": status, "version": v.to_string()}},
                "data": {"release": data},
            });
            store
                .create(&secrets, Some(&ns), secret, &write)
                .expect("store a release secret");
        }
    }
    println!(
        "wrote {releases} releases x {revisions} revisions = {} Secrets ({:.1} MiB of payload) in {:?}",
        releases * revisions as usize,
        bytes as f64 / 1_048_576.0,
        started.elapsed()
    );

    // Storage reader: every revision of every release, decoded.
    let reader = StorageReader::new(sim.client().expect("client"), StorageDriver::Secret);
    let started = Instant::now();
    let all = reader.all_revisions(None).await.expect("storage scan");
    let storage_time = started.elapsed();
    assert_eq!(all.len(), releases * revisions as usize);
    let manifests: usize = all.iter().map(|r| r.manifest.len()).sum();
    println!(
        "storage reader: {} revisions ({:.1} MiB of manifests) in {storage_time:?} ({:?} per release)",
        all.len(),
        manifests as f64 / 1_048_576.0,
        storage_time / releases as u32
    );

    // Helm CLI: `helm history` + `helm get manifest` per release.
    for tool in ["helm4", "helm3"] {
        let home = ctx.home();
        let helm = Helm::builder()
            .program(ctx.require_tool(tool))
            .kubeconfig(sim.kubeconfig_path())
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .build()
            .expect("helm");
        helm.version().await.expect("helm version");
        let started = Instant::now();
        for r in 0..helm_releases {
            let release =
                ReleaseRef::new(format!("app-{r:04}"), format!("team-{}", r % NAMESPACES));
            let history = helm.history(&release).await.expect("helm history");
            assert_eq!(history.len(), revisions as usize);
            helm.manifest(&release, None)
                .await
                .expect("helm get manifest");
        }
        let sampled = started.elapsed();
        let per_release = sampled / helm_releases.max(1) as u32;
        let estimated: Duration = per_release * releases as u32;
        println!(
            "{tool} CLI: {helm_releases} releases in {sampled:?} ({per_release:?} per release; {estimated:?} for {releases})"
        );
        println!(
            "ratio {tool} CLI / storage reader: {:.1}x",
            estimated.as_secs_f64() / storage_time.as_secs_f64()
        );
    }
    sim.shutdown().await;
}
