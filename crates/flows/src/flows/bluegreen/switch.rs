//! Seed 001's step 10: the switch, and the fail-back as its rollback.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

use super::AwsSettings;

/// The flow name of the switch in run records (its rollback is the fail-back).
pub const SWITCH_FLOW: &str = "bluegreen-switch";

/// A maintenance window, `START/END` in RFC 3339 (`2026-12-05T22:00:00Z/2026-12-06T02:00:00Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When it opens.
    pub start: jiff::Timestamp,
    /// When it closes.
    pub end: jiff::Timestamp,
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Window, String> {
        let (start, end) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not START/END"))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<jiff::Timestamp>()
                .map_err(|e| format!("`{t}` is not an RFC 3339 time: {e}"))
        };
        let window = Window {
            start: parse(start)?,
            end: parse(end)?,
        };
        if window.end <= window.start {
            return Err(format!("`{text}` ends before it starts"));
        }
        Ok(window)
    }
}

/// The switch of seed 001's step 10, inside the maintenance window: the ALB listener rule that
/// redirects users, and/or a DNS record (the platform's, or a model-serving CNAME), move from
/// blue to green; its rollback (`failback`) points them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchSpec {
    /// The ALB listener rule that redirects users to the active cluster.
    #[serde(default)]
    pub listener_rule_arn: Option<String>,
    /// Green's host for that rule's redirect (e.g. `kubeflow.green.platform.example.com`).
    #[serde(default)]
    pub green_host: Option<String>,
    /// The Route 53 hosted zone of the record.
    #[serde(default)]
    pub zone_id: Option<String>,
    /// The record to move, e.g. `kubeflow.platform.example.com` or a model-serving CNAME.
    #[serde(default)]
    pub record_name: Option<String>,
    /// Its type (`CNAME` by default).
    #[serde(default = "default_record_type")]
    pub record_type: String,
    /// The record's green value (green's load balancer or ingress DNS name).
    #[serde(default)]
    pub green_target: Option<String>,
    /// Model-serving CNAMEs in the same zone, each moved to green's ingress with the
    /// platform's record (seed 001's "update the CNAME record ... to the ingress for the new
    /// cluster").
    #[serde(default)]
    pub serving_records: Vec<ServingRecord>,
    /// The maintenance window the switch must happen in.
    #[serde(default)]
    pub window: Option<Window>,
    /// Switch outside the window anyway (recorded).
    #[serde(default)]
    pub force_window: bool,
    /// How to reach Route 53.
    #[serde(default)]
    pub aws: AwsSettings,
}

fn default_record_type() -> String {
    "CNAME".into()
}

/// A model-serving CNAME and its green value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingRecord {
    /// The record, e.g. `*.kubeflow-user-example-com.platform.example.com`.
    pub name: String,
    /// Green's ingress DNS name.
    pub green_target: String,
}

/// What [`SwitchStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStepSpec {
    /// Step id.
    pub id: String,
    /// The zone.
    pub zone_id: String,
    /// The record set pointing at green (name, type, TTL, value).
    pub green_record: Value,
    /// How to reach Route 53.
    pub aws: AwsSettings,
}

impl StepSpec for SwitchStepSpec {
    const KIND: &'static str = "bluegreen-switch-dns";
}

/// Points the record at green; the rollback points it back at what it was (blue).
pub struct SwitchStep {
    spec: SwitchStepSpec,
}

impl SwitchStep {
    /// The step of `spec`.
    pub fn new(spec: SwitchStepSpec) -> SwitchStep {
        SwitchStep { spec }
    }

    fn name_and_type(&self) -> (String, String) {
        (
            self.spec.green_record["Name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            self.spec.green_record["Type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

const RECORD_FILE: &str = "record-before.json";

impl Step for SwitchStep {
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
        let (name, kind) = self.name_and_type();
        format!(
            "point {kind} {name} at green ({})",
            self.spec.green_record["ResourceRecords"][0]["Value"]
                .as_str()
                .unwrap_or_default()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let (name, kind) = self.name_and_type();
            let before = self
                .spec
                .aws
                .route53()?
                .record(&self.spec.zone_id, &name, &kind)
                .await?
                .ok_or_else(|| format!("{kind} {name} does not exist any more"))?;
            snapshot.put_json(RECORD_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.spec
                .aws
                .route53()?
                .upsert(&self.spec.zone_id, &self.spec.green_record)
                .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let (name, kind) = self.name_and_type();
            let now = self
                .spec
                .aws
                .route53()?
                .record(&self.spec.zone_id, &name, &kind)
                .await?;
            let points = |r: &Value| r["ResourceRecords"].clone();
            if now.as_ref().map(points) != Some(points(&self.spec.green_record)) {
                return Err(format!("{kind} {name} does not point at green: {now:?}").into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Value = snapshot.get_json(RECORD_FILE)?;
            self.spec
                .aws
                .route53()?
                .upsert(&self.spec.zone_id, &before)
                .await?;
            Ok(())
        })
    }
}

/// Plans the switch: green's passing verification required ([`super::require_verified_green`]),
/// the window checked (outside it is bad input unless forced), the record
/// read (it must exist: blue's), green's record built from it (same name, type and TTL).
pub async fn plan_switch(ctx: &FlowContext, spec: &SwitchSpec) -> Result<Planned> {
    let now = jiff::Timestamp::now();
    let mut findings = Vec::new();
    match (&spec.window, spec.force_window) {
        (Some(w), false) if now < w.start || now > w.end => {
            return Err(FlowError::invalid(
                "window",
                format!(
                    "it is {} now, outside the maintenance window {} to {}",
                    now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    w.start,
                    w.end
                ),
                format!(
                    "switch inside the window, or knowingly outside it with {}",
                    field("force_window")
                ),
            ));
        }
        (Some(w), true) if now < w.start || now > w.end => findings.push(format!(
            "switching outside the maintenance window {} to {} (forced; recorded in the run)",
            w.start, w.end
        )),
        (None, _) => findings.push("no maintenance window given".into()),
        _ => {}
    }
    // Traffic moves only to a green that passed its verification since it last changed.
    let verified = super::require_verified_green(ctx.state())?;
    findings.push(format!(
        "green {} verified at {} ({} checks{})",
        verified.green_cluster,
        verified.verified_at,
        verified.report.findings.len(),
        match verified.report.worst() {
            Some(upgrade_verify::Status::Warn) => ", with warnings",
            _ => ", all passed",
        }
    ));
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let mut changes = Vec::new();
    match (&spec.listener_rule_arn, &spec.green_host) {
        (Some(rule), Some(host)) => {
            let (step, change) = super::alb::plan_rule(rule, host, &spec.aws, ctx.resume()).await?;
            steps.push(Box::new(step));
            changes.push(change);
        }
        (None, None) => {}
        _ => {
            return Err(FlowError::invalid(
                "listener_rule_arn",
                "the listener rule and green's host go together",
                format!(
                    "give both {} and {}",
                    field("listener_rule_arn"),
                    field("green_host")
                ),
            ));
        }
    }
    match (&spec.zone_id, &spec.record_name, &spec.green_target) {
        (Some(zone_id), Some(record_name), Some(green_target)) => {
            let (step, change) = plan_record(
                spec,
                zone_id,
                (record_name, &spec.record_type, green_target),
                "bluegreen/switch".into(),
                ctx.resume(),
            )
            .await?;
            steps.push(Box::new(step));
            changes.push(change);
        }
        (None, None, None) => {}
        // The zone for the model-serving records alone.
        (Some(_), None, None) if !spec.serving_records.is_empty() => {}
        _ => {
            return Err(FlowError::invalid(
                "record_name",
                "the hosted zone, the record and its green value go together",
                format!(
                    "give {}, {} and {}",
                    field("zone_id"),
                    field("record_name"),
                    field("green_target")
                ),
            ));
        }
    }
    if !spec.serving_records.is_empty() {
        let zone_id = spec.zone_id.as_deref().ok_or_else(|| {
            FlowError::invalid(
                "serving_records",
                "the model-serving records need their hosted zone",
                format!("give {}", field("zone_id")),
            )
        })?;
        for record in &spec.serving_records {
            let (step, change) = plan_record(
                spec,
                zone_id,
                (&record.name, "CNAME", &record.green_target),
                format!(
                    "bluegreen/switch-serving/{}",
                    record.name.trim_end_matches('.')
                ),
                ctx.resume(),
            )
            .await?;
            steps.push(Box::new(step));
            changes.push(change);
        }
    }
    if steps.is_empty() {
        return Err(FlowError::invalid(
            "listener_rule_arn",
            "nothing to switch",
            format!(
                "give the ALB listener rule ({}, {}) and/or the DNS record ({}, {}, {})",
                field("listener_rule_arn"),
                field("green_host"),
                field("zone_id"),
                field("record_name"),
                field("green_target")
            ),
        ));
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-switch")?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    Ok(Planned::new(SWITCH_FLOW, spec, plan, steps))
}

/// Plans the DNS record's move: it must exist (blue's) and not point at green already.
async fn plan_record(
    spec: &SwitchSpec,
    zone_id: &str,
    (record_name, record_type, green_target): (&str, &str, &str),
    id: String,
    resuming: bool,
) -> Result<(SwitchStep, String)> {
    let route53 = spec.aws.route53().map_err(super::aws_unavailable)?;
    let blue = route53
        .record(zone_id, record_name, record_type)
        .await
        .map_err(|e| FlowError::failed(format!("read {record_type} {record_name}"), e))?
        .ok_or_else(|| {
            FlowError::invalid(
                "record_name",
                format!("hosted zone {zone_id} has no {record_type} record {record_name}"),
                "name the record users reach blue by",
            )
        })?;
    let blue_value = blue["ResourceRecords"][0]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // A resumed switch re-plans after its own change: the record points at green then.
    if blue_value == green_target && !resuming {
        return Err(FlowError::invalid(
            "green_target",
            format!("{} already points at {}", record_name, green_target),
            "nothing to switch; fail back with `upgrade-bluegreen failback`",
        ));
    }
    let mut green = blue.clone();
    green["ResourceRecords"] = json!([{ "Value": green_target }]);
    let step = SwitchStep::new(SwitchStepSpec {
        id,
        zone_id: zone_id.to_string(),
        green_record: green,
        aws: spec.aws.clone(),
    });
    let change = format!(
        "{record_type} {record_name}: {blue_value} (blue) -> {green_target} (green); `upgrade-bluegreen failback` points it back"
    );
    Ok((step, change))
}

/// The latest switch run recorded in `state` (what `failback` undoes).
pub fn latest_switch_run(state: &crate::context::StateDir) -> Result<String> {
    let dir = state.runs();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        FlowError::invalid(
            "snapshot_dir",
            format!("no run records in {}: {e}", dir.display()),
            "give the --snapshot-dir the switch ran with",
        )
    })?;
    let mut switches: Vec<(jiff::Timestamp, String)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = crate::record::RunRecord::parse(&text, &entry.path()) else {
            continue;
        };
        if record.flow == SWITCH_FLOW {
            switches.push((record.created, record.run_id));
        }
    }
    switches.sort();
    switches.pop().map(|(_, id)| id).ok_or_else(|| {
        FlowError::invalid(
            "snapshot_dir",
            format!("{} records no switch to fail back from", dir.display()),
            "run `upgrade-bluegreen switch` first, or give the --snapshot-dir it ran with",
        )
    })
}
