//! `kube-sim`: run the simulated Kubernetes API server from the command line.
//!
//! `kube-sim serve [--fixtures DIR] [--port N] [--kubeconfig FILE] [--server-version V]
//! [--faults SPEC]` prints the kubeconfig path and serves until interrupted.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube_sim::{ControllerConfig, ScaleSpec, SimCluster};

#[derive(Parser)]
#[command(
    name = "kube-sim",
    version,
    about = "A simulated Kubernetes API server that kubectl and helm accept"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until interrupted (Ctrl-C).
    Serve {
        /// Load every YAML/JSON file under this folder first.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Port on 127.0.0.1 (default: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the kubeconfig (default: a temp file, printed).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The version `/version` reports.
        #[arg(long, default_value = kube_sim::DEFAULT_SERVER_VERSION)]
        server_version: String,
        /// Nodes to add when no fixtures are given.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Milliseconds from pod binding to Running and Ready.
        #[arg(long, default_value_t = 500)]
        pod_start_ms: u64,
        /// Generate a large cluster instead: this many pods (with --nodes nodes).
        #[arg(long)]
        generate_pods: Option<usize>,
        /// Inject API faults, seeded: comma-separated VERB:RESOURCE:KIND=RATE rules (KIND
        /// 429, 500, 503, drop or drop-response), plus seed=N and latency=MS, e.g.
        /// `seed=7,*:*:429=4%,*:*:503=3%,*:*:drop=3%`.
        #[arg(long, value_name = "SPEC")]
        faults: Option<kube_sim::FaultConfig>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kube_sim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Command::Serve {
        fixtures,
        port,
        kubeconfig,
        server_version,
        nodes,
        pod_start_ms,
        generate_pods,
        faults,
    } = cli.command;
    let controllers = ControllerConfig {
        pod_start_delay: Duration::from_millis(pod_start_ms),
        job_run_time: Duration::from_millis(pod_start_ms),
        ..ControllerConfig::default()
    };
    let mut builder = SimCluster::builder()
        .server_version(&server_version)
        .controllers(controllers)
        .port(port);
    if let Some(path) = kubeconfig {
        builder = builder.kubeconfig_path(path);
    }
    if let Some(faults) = faults {
        eprintln!(
            "injecting faults: {} rule(s), seed {}",
            faults.rules.len(),
            faults.seed
        );
        builder = builder.faults(faults);
    }
    let sim = builder.start().await.context("starting kube-sim")?;
    if let Some(dir) = &fixtures {
        let n = sim
            .load_fixtures(dir)
            .with_context(|| format!("loading fixtures from {}", dir.display()))?;
        eprintln!("loaded {n} objects from {}", dir.display());
    } else if let Some(pods) = generate_pods {
        sim.generate(&ScaleSpec {
            nodes,
            pods,
            kubelet_version: server_version.clone(),
            ..ScaleSpec::default()
        })
        .context("generating a cluster")?;
    } else {
        for i in 0..nodes {
            sim.add_node(&format!("node-{i}"), &server_version)
                .context("adding a node")?;
        }
    }
    println!("{}", sim.kubeconfig_path().display());
    eprintln!(
        "kube-sim {server_version} serving {}; export KUBECONFIG={}",
        sim.url(),
        sim.kubeconfig_path().display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}
