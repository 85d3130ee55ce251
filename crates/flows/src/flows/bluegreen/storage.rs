//! Seed 001's optional storage clones, so green can run against copies while blue keeps its
//! own: an RDS snapshot restored into a new instance configured like blue's, and a copy of
//! the S3 bucket. Each is a reversible step: the rollback deletes what the step made (the
//! plan refuses names that exist already, so nothing of blue's is ever deleted).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use super::AwsSettings;
use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const STORAGE_FLOW: &str = "bluegreen-storage";

/// Which stores green gets copies of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// Blue's RDS instance, cloned through a snapshot.
    #[serde(default)]
    pub rds_instance: Option<String>,
    /// The clone's instance identifier.
    #[serde(default)]
    pub rds_clone: Option<String>,
    /// Blue's S3 bucket, copied.
    #[serde(default)]
    pub s3_bucket: Option<String>,
    /// The copy's bucket name.
    #[serde(default)]
    pub s3_clone: Option<String>,
    /// An on-demand AWS Backup of blue's stores into the vault, first.
    #[serde(default)]
    pub backup: Option<super::BackupSpec>,
    /// How long a snapshot, an instance or a backup job may take (minutes).
    #[serde(default = "default_wait_minutes")]
    pub wait_minutes: u64,
    /// How to reach AWS.
    #[serde(default)]
    pub aws: AwsSettings,
}

fn default_wait_minutes() -> u64 {
    120
}

/// What [`RdsCloneStep`] makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdsCloneSpec {
    /// Step id.
    pub id: String,
    /// Blue's instance.
    pub instance: String,
    /// The snapshot taken of it.
    pub snapshot: String,
    /// The new instance.
    pub clone: String,
    /// The wait limit (minutes).
    pub wait_minutes: u64,
    /// How to reach RDS.
    pub aws: AwsSettings,
}

impl StepSpec for RdsCloneSpec {
    const KIND: &'static str = "bluegreen-rds-clone";
}

/// Snapshots blue's instance and restores the snapshot into a new instance configured like
/// it; the rollback deletes the new instance and the snapshot.
pub struct RdsCloneStep {
    spec: RdsCloneSpec,
}

impl RdsCloneStep {
    /// The step of `spec`.
    pub fn new(spec: RdsCloneSpec) -> RdsCloneStep {
        RdsCloneStep { spec }
    }

    fn rds(&self) -> std::result::Result<upgrade_aws::Rds, String> {
        self.spec.aws.rds()
    }
}

/// Polls `status` until it says `available`, within `minutes`.
async fn wait_available<F, Fut>(
    what: &str,
    minutes: u64,
    mut status: F,
) -> std::result::Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Option<String>, upgrade_aws::Error>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(minutes * 60);
    loop {
        let now = status().await.map_err(|e| e.to_string())?;
        match now.as_deref() {
            Some("available") => return Ok(()),
            Some("failed" | "incompatible-restore" | "incompatible-parameters") => {
                return Err(format!("{what} is {}", now.unwrap_or_default()));
            }
            _ => {}
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{what} did not become available within {minutes} minutes (now {})",
                now.unwrap_or_else(|| "missing".into())
            ));
        }
        if StopSignal::global().is_stopped() {
            return Err(format!("stopped while waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

impl Step for RdsCloneStep {
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
            "snapshot RDS instance {} as {} and restore it into a new instance {} configured like it",
            self.spec.instance, self.spec.snapshot, self.spec.clone
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        // Nothing of blue's changes: the rollback deletes only what this step names.
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let rds = self.rds()?;
            let blue = rds
                .instance(&self.spec.instance)
                .await?
                .ok_or_else(|| format!("RDS instance {} is gone", self.spec.instance))?;
            if rds.snapshot(&self.spec.snapshot).await?.is_none() {
                rds.create_snapshot(&self.spec.instance, &self.spec.snapshot)
                    .await?;
            }
            wait_available(
                &format!("snapshot {}", self.spec.snapshot),
                self.spec.wait_minutes,
                || async {
                    Ok(rds
                        .snapshot(&self.spec.snapshot)
                        .await?
                        .and_then(|s| s["Status"].as_str().map(str::to_string)))
                },
            )
            .await?;
            if rds.instance(&self.spec.clone).await?.is_none() {
                rds.restore(&self.spec.snapshot, &self.spec.clone, &blue)
                    .await?;
            }
            wait_available(
                &format!("instance {}", self.spec.clone),
                self.spec.wait_minutes,
                || async {
                    Ok(rds
                        .instance(&self.spec.clone)
                        .await?
                        .and_then(|i| i["DBInstanceStatus"].as_str().map(str::to_string)))
                },
            )
            .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let rds = self.rds()?;
            let (blue, clone) = (
                rds.instance(&self.spec.instance).await?,
                rds.instance(&self.spec.clone).await?,
            );
            let clone = clone.ok_or_else(|| format!("no instance {}", self.spec.clone))?;
            let blue = blue.unwrap_or_default();
            for key in ["Engine", "DBInstanceClass"] {
                if clone[key] != blue[key] {
                    return Err(format!(
                        "clone {} has {key} {} where blue has {}",
                        self.spec.clone, clone[key], blue[key]
                    )
                    .into());
                }
            }
            if clone["Endpoint"]["Address"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                return Err(format!("clone {} has no endpoint", self.spec.clone).into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let rds = self.rds()?;
            if rds.instance(&self.spec.clone).await?.is_some() {
                rds.delete_instance(&self.spec.clone).await?;
            }
            if rds.snapshot(&self.spec.snapshot).await?.is_some() {
                rds.delete_snapshot(&self.spec.snapshot).await?;
            }
            Ok(())
        })
    }
}

/// What [`S3CopyStep`] makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3CopySpec {
    /// Step id.
    pub id: String,
    /// Blue's bucket.
    pub bucket: String,
    /// The copy.
    pub clone: String,
    /// How to reach S3.
    pub aws: AwsSettings,
}

impl StepSpec for S3CopySpec {
    const KIND: &'static str = "bluegreen-s3-copy";
}

/// Creates the copy's bucket and copies every object into it; the rollback deletes it.
pub struct S3CopyStep {
    spec: S3CopySpec,
}

impl S3CopyStep {
    /// The step of `spec`.
    pub fn new(spec: S3CopySpec) -> S3CopyStep {
        S3CopyStep { spec }
    }
}

impl Step for S3CopyStep {
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
            "create bucket {} and copy every object of {} into it",
            self.spec.clone, self.spec.bucket
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let s3 = self.spec.aws.s3()?;
            if !s3.exists(&self.spec.clone).await? {
                s3.create_bucket(&self.spec.clone).await?;
            }
            s3.sync(&self.spec.bucket, &self.spec.clone).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let s3 = self.spec.aws.s3()?;
            let (blue, copy) = (
                s3.objects(&self.spec.bucket).await?,
                s3.objects(&self.spec.clone).await?,
            );
            let missing: Vec<&str> = blue
                .iter()
                .filter(|o| !copy.contains(o))
                .map(|(key, _)| key.as_str())
                .take(20)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "not (or not the same) in {}: {}",
                    self.spec.clone,
                    missing.join(", ")
                )
                .into())
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let s3 = self.spec.aws.s3()?;
            if s3.exists(&self.spec.clone).await? {
                s3.delete_bucket(&self.spec.clone).await?;
            }
            Ok(())
        })
    }
}

/// Plans the clones: blue's stores must exist, the clones' names must be free (the rollback
/// deletes them), and each clone's name differs from its source.
pub async fn plan_storage(ctx: &FlowContext, spec: &StorageSpec) -> Result<Planned> {
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let (mut changes, mut blockers) = (Vec::new(), Vec::new());
    let run_id = ctx.new_run_id("bluegreen-storage")?;
    if let Some(backup) = &spec.backup {
        let (step, change) =
            super::backup::plan_backup(backup, &run_id, spec.wait_minutes, &spec.aws).await?;
        changes.push(change);
        steps.push(Box::new(step));
    }
    match (&spec.rds_instance, &spec.rds_clone) {
        (Some(instance), Some(clone)) => {
            if instance == clone {
                return Err(FlowError::invalid(
                    "rds_clone",
                    "is blue's own instance",
                    "name the clone differently",
                ));
            }
            let rds = spec.aws.rds().map_err(super::aws_unavailable)?;
            let blue = rds
                .instance(instance)
                .await
                .map_err(|e| FlowError::failed(format!("read RDS instance {instance}"), e))?
                .ok_or_else(|| {
                    FlowError::invalid(
                        "rds_instance",
                        format!("there is no RDS instance {instance}"),
                        "name blue's instance (aws rds describe-db-instances)",
                    )
                })?;
            // A resumed run re-plans after its own clone was (partly) made: that one is ours.
            if !ctx.resume()
                && rds
                    .instance(clone)
                    .await
                    .map_err(|e| FlowError::failed(format!("read RDS instance {clone}"), e))?
                    .is_some()
            {
                blockers.push(format!("RDS instance {clone} exists already: name a new one (the rollback deletes the clone)"));
            }
            let snapshot = format!(
                "{clone}-bluegreen-{}",
                run_id
                    .rsplit('-')
                    .next()
                    .unwrap_or("0")
                    .to_ascii_lowercase()
            );
            changes.push(format!(
                "RDS: snapshot {instance} ({} {}, {}) as {snapshot}, restore it as {clone} with the same class, subnet group, security groups and parameter group",
                blue["Engine"].as_str().unwrap_or_default(),
                blue["EngineVersion"].as_str().unwrap_or_default(),
                blue["DBInstanceClass"].as_str().unwrap_or_default()
            ));
            steps.push(Box::new(RdsCloneStep::new(RdsCloneSpec {
                id: "bluegreen/rds-clone".into(),
                instance: instance.clone(),
                snapshot,
                clone: clone.clone(),
                wait_minutes: spec.wait_minutes,
                aws: spec.aws.clone(),
            })));
        }
        (None, None) => {}
        _ => {
            return Err(FlowError::invalid(
                "rds_clone",
                "blue's instance and the clone's name go together",
                format!(
                    "give both {} and {}",
                    field("rds_instance"),
                    field("rds_clone")
                ),
            ));
        }
    }
    match (&spec.s3_bucket, &spec.s3_clone) {
        (Some(bucket), Some(clone)) => {
            if bucket == clone {
                return Err(FlowError::invalid(
                    "s3_clone",
                    "is blue's own bucket",
                    "name the copy differently",
                ));
            }
            let s3 = spec.aws.s3().map_err(super::aws_unavailable)?;
            let exists = |name: String| {
                let s3 = s3.clone();
                async move {
                    s3.exists(&name)
                        .await
                        .map_err(|e| FlowError::failed(format!("read bucket {name}"), e))
                }
            };
            if !exists(bucket.clone()).await? {
                return Err(FlowError::invalid(
                    "s3_bucket",
                    format!("there is no bucket {bucket}"),
                    "name blue's bucket",
                ));
            }
            if !ctx.resume() && exists(clone.clone()).await? {
                blockers.push(format!(
                    "bucket {clone} exists already: name a new one (the rollback deletes the copy)"
                ));
            }
            let objects = s3
                .objects(bucket)
                .await
                .map_err(|e| FlowError::failed(format!("list bucket {bucket}"), e))?;
            changes.push(format!(
                "S3: create {clone}, copy the {} objects of {bucket} into it",
                objects.len()
            ));
            steps.push(Box::new(S3CopyStep::new(S3CopySpec {
                id: "bluegreen/s3-copy".into(),
                bucket: bucket.clone(),
                clone: clone.clone(),
                aws: spec.aws.clone(),
            })));
        }
        (None, None) => {}
        _ => {
            return Err(FlowError::invalid(
                "s3_clone",
                "blue's bucket and the copy's name go together",
                format!("give both {} and {}", field("s3_bucket"), field("s3_clone")),
            ));
        }
    }
    if steps.is_empty() {
        return Err(FlowError::invalid(
            "rds_instance",
            "nothing to back up or clone",
            format!(
                "give {}, and/or {} and {}, and/or {} and {}",
                field("backup"),
                field("rds_instance"),
                field("rds_clone"),
                field("s3_bucket"),
                field("s3_clone")
            ),
        ));
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new("upgrade-bluegreen", ctx.cluster_name(), run_id, &refs);
    plan.changes = changes;
    plan.blockers = blockers;
    plan.findings = vec!["blue keeps its own stores; point green's variables at the clones (src_rds_endpoint, src_s3_bucket_name) or share blue's".into()];
    Ok(Planned::new(STORAGE_FLOW, spec, plan, steps))
}
