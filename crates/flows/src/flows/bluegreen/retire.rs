//! Seed 001's last step: the old (blue) cluster is deleted once traffic has moved to green
//! and the soak period is over, keeping what the guide keeps (the backup vault, the RDS
//! security group, the VPC) and what green still uses (blue's database, buckets and file
//! systems). A targeted `terraform destroy` of everything else in blue's Terraform state,
//! reviewed first: a kept resource the destroy would take with it blocks. Irreversible, and
//! marked so: it needs the blue cluster's name typed as confirmation.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_tf::options::PlanOptions;
use upgrade_tf::review::ReviewRules;
use upgrade_tf::step::ApplyPolicy;

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const RETIRE_FLOW: &str = "bluegreen-retire";

/// Resource types retire keeps by default: seed 001's backup vault, security groups and VPC
/// (with its network), and the stores and identity green may still use.
pub const KEPT_TYPES: &[&str] = &[
    "aws_backup_vault",
    "aws_backup_plan",
    "aws_backup_selection",
    "aws_vpc",
    "aws_subnet",
    "aws_route_table",
    "aws_route_table_association",
    "aws_route",
    "aws_internet_gateway",
    "aws_nat_gateway",
    "aws_eip",
    "aws_security_group",
    "aws_security_group_rule",
    "aws_db_instance",
    "aws_db_subnet_group",
    "aws_rds_cluster",
    "aws_s3_bucket",
    "aws_efs_file_system",
    "aws_efs_mount_target",
    "aws_efs_access_point",
    "aws_fsx_lustre_file_system",
    "aws_secretsmanager_secret",
    "aws_secretsmanager_secret_version",
    "aws_cognito_user_pool",
    "aws_acm_certificate",
    "aws_route53_record",
    "aws_route53_zone",
];

/// What retire deletes and keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireSpec {
    /// Blue's Terraform folder.
    pub blue_terraform_dir: PathBuf,
    /// Blue's cluster name, typed to confirm (the run's EKS cluster, kubeconfig cluster or
    /// API server URL).
    pub confirm_cluster: String,
    /// How long traffic must have been on green (since the latest switch) before blue goes.
    #[serde(default = "default_soak_minutes")]
    pub soak_minutes: u64,
    /// Resource types or addresses kept besides [`KEPT_TYPES`].
    #[serde(default)]
    pub keep: Vec<String>,
}

fn default_soak_minutes() -> u64 {
    24 * 60
}

/// What [`RetireStep`] destroys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireStepSpec {
    /// Step id.
    pub id: String,
    /// Blue's Terraform folder.
    pub blue_terraform_dir: PathBuf,
    /// The destroy's targets.
    pub targets: Vec<String>,
    /// The kept types and addresses (the review blocks a destroy that reaches one).
    pub kept: Vec<String>,
}

impl StepSpec for RetireStepSpec {
    const KIND: &'static str = "bluegreen-retire";
}

/// Destroys blue's targeted resources; cannot be undone.
pub struct RetireStep {
    spec: RetireStepSpec,
    tf: upgrade_tf::AsyncTerraform,
}

impl RetireStep {
    /// The step of `spec`, running `tf` in blue's folder.
    pub fn new(spec: RetireStepSpec, tf: upgrade_tf::AsyncTerraform) -> RetireStep {
        RetireStep { spec, tf }
    }

    fn policy(&self) -> ApplyPolicy {
        policy(&self.spec.targets, &self.spec.kept)
    }
}

fn policy(targets: &[String], kept: &[String]) -> ApplyPolicy {
    let mut plan = PlanOptions::default().destroy(true);
    for target in targets {
        plan = plan.target(target);
    }
    let mut rules = ReviewRules::default();
    for item in kept {
        if item.contains('.') {
            rules.protected_addresses.insert(item.clone());
        } else {
            rules.protected_types.insert(item.clone());
        }
    }
    for target in targets {
        rules = rules.allow_destroy(target.clone());
    }
    ApplyPolicy {
        plan,
        rules,
        apply: Default::default(),
    }
}

impl Step for RetireStep {
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
            "terraform destroy of blue's {} ({} kept)",
            self.spec.targets.join(", "),
            self.spec.kept.len()
        )
    }

    fn irreversible(&self) -> Option<String> {
        Some("a destroyed cluster cannot be brought back; blue's kept resources stay".into())
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            upgrade_tf::step::plan_review_apply(&self.tf, &self.policy()).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let Some(state) = self.tf.state().await? else {
                return Ok(());
            };
            let left: Vec<String> = managed_addresses(&state)
                .into_iter()
                .filter(|(address, _)| {
                    self.spec
                        .targets
                        .iter()
                        .any(|t| address == t || address.starts_with(&format!("{t}[")))
                })
                .map(|(address, _)| address)
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still in blue's state: {}", left.join(", ")).into())
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async { Err("retire cannot be undone".into()) })
    }
}

/// Every managed resource of `state` as (address without index, type).
pub(crate) fn managed_addresses(state: &upgrade_tf::terraform::State) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state
        .resources
        .iter()
        .filter(|r| r.mode == "managed")
        .map(|r| {
            let prefix = r
                .module
                .as_deref()
                .map(|m| format!("{m}."))
                .unwrap_or_default();
            (
                format!("{prefix}{}.{}", r.resource_type, r.name),
                r.resource_type.clone(),
            )
        })
        .collect();
    out.dedup();
    out
}

/// The retire step of the unfinished run a resume continues, if that is one.
fn resumed_retirement(ctx: &FlowContext) -> Result<Option<RetireStepSpec>> {
    if !ctx.resume() {
        return Ok(None);
    }
    let Some(run) = upgrade_core::journal::Journal::unfinished(&ctx.state().journal())
        .map_err(|e| FlowError::failed("read the journal", e))?
    else {
        return Ok(None);
    };
    let Ok(record) = crate::record::RunRecord::read(&ctx.state().runs(), &run.run_id) else {
        return Ok(None);
    };
    Ok(record
        .steps
        .iter()
        .find(|s| s.record.kind == <RetireStepSpec as StepSpec>::KIND)
        .and_then(|s| serde_json::from_value(s.record.spec.clone()).ok()))
}

/// Plans retire: the confirmation matches blue, the latest switch is in effect and its soak
/// is over, and the destroy, planned and reviewed now, reaches nothing kept.
pub async fn plan_retire(ctx: &FlowContext, spec: &RetireSpec) -> Result<Planned> {
    if !ctx.cluster().identity().matches(&spec.confirm_cluster) {
        return Err(FlowError::invalid(
            "confirm_cluster",
            format!(
                "`{}` does not name the connected (blue) cluster {}",
                spec.confirm_cluster,
                ctx.cluster().identity().display_name()
            ),
            "type blue's cluster name to confirm that it is the one to delete",
        ));
    }
    let switch_id = super::latest_switch_run(ctx.state()).map_err(|_| {
        FlowError::invalid(
            "soak_minutes",
            "no switch to green is recorded: blue still serves the platform",
            "switch to green first (upgrade-bluegreen switch), then retire blue after the soak",
        )
    })?;
    let runs = upgrade_core::journal::Journal::runs(&ctx.state().journal())
        .map_err(|e| FlowError::failed("read the journal", e))?;
    let switch = runs.iter().find(|r| r.run_id == switch_id);
    let in_effect = switch.is_some_and(|r| {
        !r.steps.is_empty()
            && r.steps.iter().all(|s| {
                matches!(
                    r.status_of(&s.id),
                    upgrade_core::journal::StepStatus::Verified
                )
            })
    });
    if !in_effect {
        return Err(FlowError::invalid(
            "soak_minutes",
            format!("the latest switch ({switch_id}) is not in effect (failed or failed back)"),
            "switch to green again and let it soak before retiring blue",
        ));
    }
    let switched_at = crate::record::RunRecord::read(&ctx.state().runs(), &switch_id)
        .map(|r| r.created)
        .map_err(|e| FlowError::failed(format!("read run {switch_id}"), e))?;
    let soak_ends = switched_at + jiff::SignedDuration::from_secs(spec.soak_minutes as i64 * 60);
    if jiff::Timestamp::now() < soak_ends {
        return Err(FlowError::invalid(
            "soak_minutes",
            format!("green has served since {switched_at}; the soak ends at {soak_ends}"),
            format!(
                "retire after {soak_ends}, or knowingly shorten the soak ({})",
                field("soak_minutes")
            ),
        ));
    }

    // The soak's checks: green passed `verify-green` again since traffic moved to it.
    let verified_since_switch = super::require_verified_green(ctx.state())
        .ok()
        .filter(|v| v.verified_at > switched_at);
    if verified_since_switch.is_none() {
        return Err(FlowError::invalid(
            "green",
            format!("green has not passed verify-green since the switch at {switched_at}"),
            "run `upgrade-bluegreen verify-green` now (the soak's checks) and retire once it passes",
        ));
    }

    let dir = std::path::absolute(&spec.blue_terraform_dir)
        .unwrap_or_else(|_| spec.blue_terraform_dir.clone());
    let tf = ctx.terraform("blue_terraform_dir", &dir)?;
    let state = crate::flows::terraform_state(&tf, &dir)
        .await?
        .ok_or_else(|| {
            FlowError::invalid(
                "blue_terraform_dir",
                format!("{} has no Terraform state", dir.display()),
                "give blue's deployment folder",
            )
        })?;
    let mut kept: Vec<String> = KEPT_TYPES.iter().map(|t| t.to_string()).collect();
    kept.extend(spec.keep.iter().cloned());
    let kept_set: BTreeSet<&str> = kept.iter().map(String::as_str).collect();
    let (mut targets, mut keeping) = (Vec::new(), Vec::new());
    for (address, resource_type) in managed_addresses(&state) {
        if kept_set.contains(resource_type.as_str()) || kept_set.contains(address.as_str()) {
            keeping.push(address);
        } else {
            targets.push(address);
        }
    }
    // A resumed retirement destroys what it set out to: its recorded targets (part or all of
    // them may be gone already, which Terraform's targeted destroy takes as done).
    if let Some(recorded) = resumed_retirement(ctx)? {
        targets = recorded.targets;
        kept = recorded.kept;
    }
    if targets.is_empty() {
        return Err(FlowError::invalid(
            "keep",
            "every resource of blue's state is kept: nothing to retire",
            "check the kept types and addresses",
        ));
    }
    // The destroy as Terraform will do it, reviewed now (it changes nothing).
    let scratch =
        tempfile::tempdir().map_err(|e| FlowError::failed("make a folder for the plan", e))?;
    let mut preview = policy(&targets, &kept);
    preview.plan = preview.plan.out(scratch.path().join("retire.tfplan"));
    let run = tf
        .plan(preview.plan.clone())
        .await
        .map_err(|e| FlowError::failed("terraform plan -destroy of blue", e))?;
    let reviewed = tf
        .review(run.plan, preview.rules.clone())
        .await
        .map_err(|e| FlowError::failed("review the destroy plan", e))?;
    let rendered =
        crate::flows::tf_providers::render_review(reviewed.review(), "of blue's retirement");
    let mut changes = vec![rendered.summary];
    changes.extend(rendered.changes);
    changes.push(format!(
        "kept in blue's state and in AWS: {}",
        keeping.join(", ")
    ));
    let step = RetireStep::new(
        RetireStepSpec {
            id: "bluegreen/retire".into(),
            blue_terraform_dir: dir.clone(),
            targets,
            kept,
        },
        tf,
    );
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-retire")?,
        &refs,
    );
    plan.changes = changes;
    plan.blockers = rendered
        .blockers
        .into_iter()
        .map(|b| format!("{b} (the destroy would take a kept resource with it; keep what depends on it too, or remove the dependency)"))
        .collect();
    plan.findings = vec![format!(
        "irreversible: blue's cluster is deleted; green has served since {switched_at} (switch {switch_id})"
    )];
    let mut recorded = spec.clone();
    recorded.blue_terraform_dir = dir;
    Ok(Planned::new(
        RETIRE_FLOW,
        &recorded,
        plan,
        vec![Box::new(step)],
    ))
}
