//! The demo (`./dev demo`): a sample MLOps platform on the simulated cluster, upgraded for
//! real with the real terraform and helm: locked, journaled, snapshotted, and one failing
//! upgrade that rolls itself back.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use upgrade_core::executor::Step;
use upgrade_core::journal::{Event, Journal};
use upgrade_core::tool::{HELM, TERRAFORM};

use crate::platform::{material_drift, read_live};
use crate::run::{Finished, OnUnfinished, RunSettings, run_locked};
use crate::sample::{SamplePlatform, Tools};

/// Runs the demo in `work` (kept afterwards), writing what happens to `out`.
pub async fn run(repo_root: &Path, work: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let tools = Tools {
        terraform: TERRAFORM.resolve()?,
        helm: HELM.resolve()?,
    };
    let platform = SamplePlatform {
        root: work.to_path_buf(),
        fixtures: repo_root.join("fixtures"),
        tools,
    };
    writeln!(
        out,
        "MLOps platform upgrade demo (everything runs locally; nothing touches a real cloud)\n"
    )?;

    let sim = kube_sim::SimCluster::builder()
        .server_version("v1.30.4-eks-a737599")
        .controllers(kube_sim::ControllerConfig::fast())
        .kubeconfig_path(platform.kubeconfig())
        .start()
        .await?;
    for node in ["ip-10-0-1-10", "ip-10-0-2-20", "ip-10-0-3-30"] {
        sim.add_node(node, "v1.30.4-eks-a737599")?;
    }
    writeln!(
        out,
        "1. Simulated EKS cluster {} (v1.30.4), 3 nodes",
        sim.url()
    )?;
    writeln!(
        out,
        "   kubeconfig: {} (try: kubectl --kubeconfig {} get pods -A)",
        platform.kubeconfig().display(),
        platform.kubeconfig().display()
    )?;

    platform.build(&sim).await?;
    writeln!(
        out,
        "2. Platform deployed with the real tools: terraform apply (node group 1.30), helm install karpenter 1.5.0 and kserve 0.14.1, one InferenceService"
    )?;

    let helm = platform.helm()?;
    let locked = read_live(&helm, &platform.spec()).await?;
    locked.write(&platform.lockfile())?;
    writeln!(
        out,
        "3. Platform lockfile written: {}",
        platform.lockfile().display()
    )?;

    let cluster = platform.cluster().await?;
    let settings = RunSettings {
        journal: platform.journal(),
        snapshots: platform.snapshots(),
        holder: format!("demo/{}", std::process::id()),
        lock_ttl: std::time::Duration::from_secs(30),
    };
    let steps = platform.upgrade_steps(&[]).await?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    writeln!(
        out,
        "4. Upgrade run `run-1` under the cluster's upgrade lock:"
    )?;
    for step in &refs {
        writeln!(out, "   - {}: {}", step.id(), step.description())?;
    }
    let finished = run_locked(&cluster, &settings, "run-1", &refs, OnUnfinished::Refuse).await?;
    print_journal(out, &platform.journal(), "run-1")?;
    writeln!(out, "   outcome: {finished:?}")?;

    let broken = work.join("kserve-broken-values.yaml");
    std::fs::write(
        &broken,
        "# Pods that never become Ready: the rollout fails.\npodAnnotations:\n  kube-sim.dev/never-ready: \"true\"\n",
    )?;
    let mut failing = platform.upgrade_steps(&[broken]).await?;
    let kserve = failing.pop().context("the kserve step")?;
    writeln!(
        out,
        "5. A deliberately failing KServe upgrade (`run-2`, pods never become Ready):"
    )?;
    let finished = run_locked(
        &cluster,
        &settings,
        "run-2",
        &[kserve.as_ref()],
        OnUnfinished::Refuse,
    )
    .await?;
    print_journal(out, &platform.journal(), "run-2")?;
    match &finished {
        Finished::Ran(upgrade_core::executor::RunOutcome::RolledBack { failed_step, .. }) => {
            writeln!(out, "   rolled back by itself after `{failed_step}` failed")?;
        }
        other => writeln!(out, "   outcome: {other:?}")?,
    }

    let live = read_live(&helm, &platform.spec()).await?;
    writeln!(
        out,
        "6. Drift of the live platform from the lockfile taken before the upgrade:"
    )?;
    for drift in material_drift(&locked, &live) {
        writeln!(out, "   - {drift}")?;
    }
    live.write(&platform.lockfile())?;
    writeln!(out, "   lockfile updated to the live platform.\n")?;
    writeln!(out, "Lockfile:  {}", platform.lockfile().display())?;
    writeln!(out, "Journal:   {}", platform.journal().display())?;
    writeln!(out, "Snapshots: {}", platform.snapshots().display())?;
    writeln!(
        out,
        "\nNot in this demo yet: preflight on live facts, the control-plane and node rollout, and the per-component binaries (see README, Status)."
    )?;
    sim.shutdown().await;
    Ok(())
}

fn print_journal(out: &mut dyn Write, journal: &Path, run_id: &str) -> anyhow::Result<()> {
    for entry in Journal::read_entries(journal)?
        .iter()
        .filter(|e| e.run_id == run_id)
    {
        let line = match &entry.event {
            Event::Planned { steps } => format!("planned {} steps", steps.len()),
            Event::Started { step } => format!("{step}: started"),
            Event::SnapshotTaken { step, .. } => format!("{step}: snapshot taken"),
            Event::Applied { step } => format!("{step}: applied"),
            Event::Verified { step } => format!("{step}: verified"),
            Event::Failed { step, error } => {
                let first = error.lines().next().unwrap_or_default();
                format!("{step}: FAILED: {first}")
            }
            Event::RollbackStarted { .. } => "rollback started".to_string(),
            Event::RolledBack { step } => format!("{step}: rolled back"),
            Event::RollbackBlocked { step, reason } => {
                format!("{step}: rollback blocked: {reason}")
            }
            Event::Finished { outcome } => format!("finished: {outcome:?}"),
        };
        writeln!(out, "     journal: {line}")?;
    }
    Ok(())
}
