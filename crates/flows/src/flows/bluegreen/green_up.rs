//! Seed 001's step 4: the green cluster from the green environment's Terraform (its
//! variables written by [`super::inputs`]), planned and reviewed before anything changes,
//! applied, then the wait until green's API server answers at green's version. Reversible:
//! the rollback destroys what the apply created (what green's state held before stays).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::KubeMinor;
use upgrade_tf::options::PlanOptions;
use upgrade_tf::review::ReviewRules;
use upgrade_tf::step::ApplyPolicy;

use super::retire::managed_addresses;
use super::transfer::GreenCluster;
use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const GREEN_UP_FLOW: &str = "bluegreen-green-up";

/// The green cluster's deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenUpSpec {
    /// The green environment's Terraform folder (with `bluegreen.auto.tfvars.json`).
    pub green_terraform_dir: PathBuf,
    /// How to reach green once it is up.
    pub green: GreenCluster,
    /// How long green's API server may take to answer after the apply (minutes).
    #[serde(default = "default_wait_minutes")]
    pub wait_minutes: u64,
}

fn default_wait_minutes() -> u64 {
    30
}

/// What [`GreenTerraformStep`] applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenTerraformSpec {
    /// Step id.
    pub id: String,
    /// Green's Terraform folder.
    pub green_terraform_dir: PathBuf,
}

impl StepSpec for GreenTerraformSpec {
    const KIND: &'static str = "bluegreen-green-terraform";
}

/// `terraform init` and a reviewed apply of green; the rollback destroys what it created.
pub struct GreenTerraformStep {
    spec: GreenTerraformSpec,
    tf: upgrade_tf::AsyncTerraform,
}

impl GreenTerraformStep {
    /// The step of `spec`, running `tf` in green's folder.
    pub fn new(spec: GreenTerraformSpec, tf: upgrade_tf::AsyncTerraform) -> GreenTerraformStep {
        GreenTerraformStep { spec, tf }
    }

    async fn addresses(&self) -> std::result::Result<BTreeSet<String>, upgrade_tf::Error> {
        Ok(self
            .tf
            .state()
            .await?
            .map(|s| managed_addresses(&s).into_iter().map(|(a, _)| a).collect())
            .unwrap_or_default())
    }
}

const BEFORE_FILE: &str = "green-state-before.json";

impl Step for GreenTerraformStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "terraform init and apply (reviewed) of green in {}",
            self.spec.green_terraform_dir.display()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            self.tf.init(Default::default()).await?;
            snapshot.put_json(BEFORE_FILE, &self.addresses().await?)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let policy = ApplyPolicy {
                plan: PlanOptions::default(),
                rules: ReviewRules::default(),
                apply: Default::default(),
            };
            upgrade_tf::step::plan_review_apply(&self.tf, &policy).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let run = self.tf.plan(PlanOptions::default()).await?;
            if run.has_changes {
                return Err("terraform still plans changes for green after the apply".into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: BTreeSet<String> = snapshot.get_json(BEFORE_FILE)?;
            let created: Vec<String> = self
                .addresses()
                .await?
                .into_iter()
                .filter(|a| !before.contains(a))
                .collect();
            if created.is_empty() {
                return Ok(());
            }
            let mut plan = PlanOptions::default().destroy(true);
            let mut rules = ReviewRules::default();
            for address in &created {
                plan = plan.target(address);
                rules = rules.allow_destroy(address.clone());
            }
            let policy = ApplyPolicy {
                plan,
                rules,
                apply: Default::default(),
            };
            upgrade_tf::step::plan_review_apply(&self.tf, &policy).await?;
            Ok(())
        })
    }
}

/// What [`GreenApiStep`] waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenApiSpec {
    /// Step id.
    pub id: String,
    /// Green.
    pub green: GreenCluster,
    /// The minor green's API server must report.
    pub minor: Option<String>,
    /// The wait limit (minutes).
    pub wait_minutes: u64,
}

impl StepSpec for GreenApiSpec {
    const KIND: &'static str = "bluegreen-green-api";
}

/// Waits until green's API server answers at green's version; changes nothing.
pub struct GreenApiStep {
    spec: GreenApiSpec,
    stop: StopSignal,
}

impl GreenApiStep {
    /// The step of `spec`.
    pub fn new(spec: GreenApiSpec, stop: StopSignal) -> GreenApiStep {
        GreenApiStep { spec, stop }
    }

    async fn answer(&self) -> std::result::Result<String, String> {
        let green = self.spec.green.connect().await.map_err(|e| e.to_string())?;
        let version = green
            .client()
            .apiserver_version()
            .await
            .map_err(|e| format!("green's API server: {e}"))?;
        let minor = format!("{}.{}", version.major, version.minor.trim_end_matches('+'));
        match &self.spec.minor {
            Some(want) if *want != minor => {
                Err(format!("green's API server runs {minor}, not {want}"))
            }
            _ => Ok(minor),
        }
    }
}

impl Step for GreenApiStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "wait until green's API server ({}) answers{}",
            self.spec.green.expect_cluster,
            self.spec
                .minor
                .as_ref()
                .map(|m| format!(" at {m}"))
                .unwrap_or_default()
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let deadline =
                std::time::Instant::now() + Duration::from_secs(self.spec.wait_minutes * 60);
            loop {
                match self.answer().await {
                    Ok(_) => return Ok(()),
                    Err(why) if std::time::Instant::now() > deadline => {
                        return Err(format!(
                            "green did not answer within {} minutes: {why}",
                            self.spec.wait_minutes
                        )
                        .into());
                    }
                    Err(_) if self.stop.is_stopped() => {
                        return Err("stopped while waiting for green".into());
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(5)).await,
                }
            }
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.answer().await?;
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        // A wait changes nothing.
        Box::pin(async { Ok(()) })
    }
}

/// Plans green's deployment: the variables file from `inputs` must be there; Terraform's
/// plan of green, reviewed on a scratch copy, is shown (its blockers block).
pub async fn plan_green_up(ctx: &FlowContext, spec: &GreenUpSpec) -> Result<Planned> {
    let dir = std::path::absolute(&spec.green_terraform_dir)
        .unwrap_or_else(|_| spec.green_terraform_dir.clone());
    let vars_file = dir.join("bluegreen.auto.tfvars.json");
    let vars: serde_json::Value = std::fs::read(&vars_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            FlowError::invalid(
                "green_terraform_dir",
                format!("{} is missing or not JSON", vars_file.display()),
                "write it first with `upgrade-bluegreen inputs`",
            )
        })?;
    let minor = vars["eks_version"]
        .as_str()
        .and_then(|v| v.parse::<KubeMinor>().ok())
        .map(|m| m.to_string());
    let mut green = spec.green.clone();
    if let Some(path) = &green.kubeconfig {
        green.kubeconfig = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    // The plan on a scratch copy: nothing of green's folder or state changes.
    let scratch = tempfile::Builder::new()
        .prefix("upgrade-bluegreen-green-")
        .tempdir()
        .map_err(|e| FlowError::failed("create a temporary folder", e))?;
    let copy = scratch.path().join("env");
    crate::flows::tf_providers::copy_for_preview(&dir, &copy)
        .map_err(|e| FlowError::failed(format!("copy {} for the plan", dir.display()), e))?;
    let preview = ctx.terraform("green_terraform_dir", &copy)?;
    preview
        .init(Default::default())
        .await
        .map_err(|e| FlowError::failed("terraform init of green (plan preview)", e))?;
    let run = preview
        .plan(PlanOptions::default())
        .await
        .map_err(|e| FlowError::failed("terraform plan of green", e))?;
    let reviewed = preview
        .review(run.plan, ReviewRules::default())
        .await
        .map_err(|e| FlowError::failed("review green's plan", e))?;
    let rendered = crate::flows::tf_providers::render_review(reviewed.review(), "of green");
    let tf = ctx.terraform("green_terraform_dir", &dir)?;
    let apply = GreenTerraformStep::new(
        GreenTerraformSpec {
            id: "bluegreen/green-terraform".into(),
            green_terraform_dir: dir.clone(),
        },
        tf,
    );
    let wait = GreenApiStep::new(
        GreenApiSpec {
            id: "bluegreen/green-api".into(),
            green: green.clone(),
            minor: minor.clone(),
            wait_minutes: spec.wait_minutes,
        },
        ctx.stop_signal().clone(),
    );
    let refs: [&dyn Step; 2] = [&apply, &wait];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-green-up")?,
        &refs,
    );
    plan.changes = std::iter::once(rendered.summary)
        .chain(rendered.changes)
        .collect();
    plan.blockers = rendered.blockers;
    if minor.is_none() {
        plan.findings.push(format!(
            "{} names no eks_version: green's API server is awaited at any version",
            vars_file.display()
        ));
    }
    let mut recorded = spec.clone();
    recorded.green_terraform_dir = dir;
    recorded.green = green;
    Ok(Planned::new(
        GREEN_UP_FLOW,
        &recorded,
        plan,
        vec![Box::new(apply), Box::new(wait)],
    ))
}
