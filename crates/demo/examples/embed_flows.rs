//! Embedding the upgrade flows in your own Rust program: a Karpenter upgrade and an EKS hop
//! through library calls only (the real terraform and helm underneath, kube-sim and the
//! simulated AWS provider as the cluster), then `upgrade-rollback` (the command, as another
//! process, from another working folder) undoes the Karpenter run from its record alone.
//!
//! Run it with `./dev example` (it builds the commands first), or:
//!
//! ```text
//! cargo build --workspace --bins && cargo run -p upgrade-demo --example embed_flows
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use upgrade_core::ProcessBuilder;
use upgrade_demo::sample::{EksEnvironment, SamplePlatform, Tools};
use upgrade_flows::context::FlowContext;
use upgrade_flows::flows::eks::{self, AddonVar, AddonVersions, EksHopSpec};
use upgrade_flows::flows::helm_component::{self, ComponentUpgradeSpec};
use upgrade_flows::flows::nodes::RolloutSpec;
use upgrade_helm::{ReleaseRef, UpgradeOptions};
use upgrade_kube::connect::ConnectOptions;

/// What the example did, for the test that runs it.
#[derive(Debug)]
pub struct Embedded {
    /// The Karpenter run (undone by `upgrade-rollback` at the end).
    pub karpenter_run: String,
    /// The EKS hop's run.
    pub eks_run: String,
    /// Where the runs' journal, snapshots and records are.
    pub state: PathBuf,
    /// The EKS environment's tfvars.
    pub tfvars: PathBuf,
    /// The add-on versions file the hop chose from (deleting it does not stop a rollback).
    pub addon_versions: PathBuf,
    /// The simulated cluster (kept running for the caller to look at).
    pub sim: kube_sim::SimCluster,
    /// The sample platform's files.
    pub platform: SamplePlatform,
}

/// Everything the example needs from its environment.
pub struct Setup {
    /// The repository (for `fixtures/`).
    pub repo_root: PathBuf,
    /// Where the `upgrade-*` commands and the simulated provider are built.
    pub bin_dir: PathBuf,
    /// terraform and helm.
    pub tools: Tools,
    /// A scratch folder, kept afterwards.
    pub work: PathBuf,
}

/// Runs the example, telling `out` what happens.
pub async fn run(setup: &Setup, out: &mut dyn Write) -> anyhow::Result<Embedded> {
    let platform = SamplePlatform {
        root: setup.work.join("platform"),
        fixtures: setup.repo_root.join("fixtures"),
        tools: setup.tools.clone(),
    };
    std::fs::create_dir_all(platform.home().join(".config"))?;

    // The cluster: kube-sim at 1.30 with two Karpenter nodes, Karpenter 1.5.0 installed.
    let sim = kube_sim::SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(kube_sim::ControllerConfig {
            karpenter: true,
            ..kube_sim::ControllerConfig::fast()
        })
        .kubeconfig_path(platform.kubeconfig())
        .start()
        .await?;
    for node in ["node-a", "node-b"] {
        sim.add_node(node, "v1.30.4-eks-a737599")?;
        sim.make_karpenter_node(node, "default")?;
    }
    let values = platform.values_dir().join("karpenter-values.yaml");
    std::fs::create_dir_all(platform.values_dir())?;
    std::fs::copy(
        platform.fixtures.join("helm-values/karpenter-values.yaml"),
        &values,
    )?;
    platform
        .helm()?
        .upgrade(
            &ReleaseRef::new("karpenter", "karpenter"),
            &platform.chart("karpenter", "1.5.0")?,
            &UpgradeOptions {
                values_files: vec![values.clone()],
                ..platform.upgrade_options("karpenter-values.yaml", &[])
            },
        )
        .await
        .context("install karpenter 1.5.0")?;
    let env = EksEnvironment::create(&platform, &sim, &setup.bin_dir).await?;
    writeln!(
        out,
        "kube-sim at {} with karpenter 1.5.0 and the EKS environment at 1.30",
        sim.url()
    )?;

    // The flows' context: the interlock names the cluster; Terraform gets the simulated
    // provider's CLI configuration; runs are recorded under `state`.
    let state = setup.work.join("state");
    let ctx = FlowContext::connect(ConnectOptions {
        kubeconfig: Some(platform.kubeconfig()),
        context: Some(kube_sim::CONTEXT_NAME.into()),
        expect_cluster: Some(sim.url().to_string()),
    })
    .await?
    .state_dir(&state)
    .helm(platform.helm()?)
    .terraform_program(&setup.tools.terraform)
    .terraform_env("TF_CLI_CONFIG_FILE", env.cli_config.display().to_string())
    .terraform_env(upgrade_tf_sim_provider::SIM_KUBE_URL_VAR, sim.url())
    .build();

    // 1. Karpenter 1.5.0 -> 1.6.0, its image tag pinned in the values file.
    let karpenter = ComponentUpgradeSpec {
        chart: platform
            .fixtures
            .join("charts/karpenter/1.6.0")
            .display()
            .to_string(),
        values: values.clone(),
        image_tag: Some("1.6.0".into()),
        timeout: Duration::from_secs(60),
        ..ComponentUpgradeSpec::karpenter("1.6.0")
    };
    let planned = helm_component::plan(&ctx, &karpenter).await?;
    writeln!(out, "karpenter plan: {}", planned.plan().changes.join("; "))?;
    let report = planned.apply(&ctx).await?;
    writeln!(out, "karpenter run {}: {}", report.run_id, report.outcome)?;
    let karpenter_run = report.run_id;

    // 2. The EKS hop 1.30 -> 1.31: control plane through Terraform, the Karpenter nodes
    // replaced, CoreDNS moved to the 1.31 default. The add-on versions come from a file here
    // (`aws eks describe-addon-versions` output); the run records the version it chose.
    let addon_versions = setup.work.join("addon-versions.json");
    std::fs::copy(
        platform.fixtures.join("eks/addon-versions.json"),
        &addon_versions,
    )?;
    let hop = EksHopSpec {
        addons: vec![AddonVar::parse("coredns=coredns_version")?],
        addon_versions: AddonVersions::File(addon_versions.clone()),
        rollout: RolloutSpec {
            pause: Duration::ZERO,
            validation_interval: Duration::from_millis(500),
            ..RolloutSpec::default()
        },
        timeout: Duration::from_secs(180),
        ..EksHopSpec::new("1.31", &env.dir)
    };
    let planned = eks::plan(&ctx, &hop).await?;
    writeln!(out, "eks plan: {}", planned.plan().changes.join("; "))?;
    let report = planned.apply(&ctx).await?;
    writeln!(out, "eks run {}: {}", report.run_id, report.outcome)?;
    let eks_run = report.run_id;

    // 3. Later, another process in another folder undoes the Karpenter run from its record.
    let rollback = setup.bin_dir.join("upgrade-rollback");
    anyhow::ensure!(
        rollback.is_file(),
        "{} is not built; build the commands first: cargo build --workspace --bins",
        rollback.display()
    );
    let mut cmd = ProcessBuilder::new(&rollback);
    cmd.cwd("/")
        .env("HELM_BIN", &setup.tools.helm)
        .env("HOME", platform.home())
        .arg("--kubeconfig")
        .arg(platform.kubeconfig())
        .args([
            "--kube-context",
            kube_sim::CONTEXT_NAME,
            "--expect-cluster",
            sim.url(),
        ])
        .arg("--snapshot-dir")
        .arg(&state)
        .args(["--run", &karpenter_run, "--apply", "--yes"])
        .timeout(Duration::from_secs(180));
    let output = cmd.output()?;
    writeln!(
        out,
        "$ upgrade-rollback --run {karpenter_run} --apply --yes  (from /)"
    )?;
    for line in output.stdout_lossy().lines() {
        writeln!(out, "  | {line}")?;
    }
    anyhow::ensure!(
        output.status.success(),
        "upgrade-rollback exited {}: {}",
        output.status,
        output.stderr_lossy()
    );
    Ok(Embedded {
        karpenter_run,
        eks_run,
        state,
        tfvars: env.dir.join("terraform.tfvars"),
        addon_versions,
        sim,
        platform,
    })
}

/// Where `cargo run --example` put this binary's siblings: `target/<profile>/`.
fn commands_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .context("the example runs from target/<profile>/examples")?
        .to_path_buf())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let setup = Setup {
        tools: Tools {
            terraform: upgrade_core::tool::TERRAFORM.resolve()?,
            helm: upgrade_core::tool::HELM.resolve()?,
        },
        bin_dir: commands_dir()?,
        work: std::env::temp_dir().join(format!("mlops-upgrade-embed-{}", std::process::id())),
        repo_root,
    };
    let done = run(&setup, &mut std::io::stdout()).await?;
    println!("records: {}", done.state.join("runs").display());
    done.sim.shutdown().await;
    Ok(())
}
