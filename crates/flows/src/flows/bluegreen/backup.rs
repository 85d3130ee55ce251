//! Seed 001's on-demand backup (the guide's `snapshot-state.sh`): AWS Backup jobs for blue's
//! S3 bucket, RDS instance and EFS file system into the backup vault, each awaited until it
//! completes, so the stores can go back to a known-good state if green goes wrong.
//!
//! The step adds recovery points and changes nothing else; its rollback keeps them (they
//! are the way back for the stores, not a change to undo). Each job is started with an
//! idempotency token of the run, so a resumed run waits for the jobs it started instead of
//! starting more.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use super::AwsSettings;
use crate::error::{FlowError, Result};

/// Which stores are backed up, where, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSpec {
    /// The backup vault (the deployment's; the guide keeps it across upgrades).
    pub vault: String,
    /// The role AWS Backup assumes (`arn:aws:iam::<account>:role/<name>`).
    pub role_arn: String,
    /// The ARNs of the stores: the artifact bucket, the database instance, the file system.
    pub resources: Vec<String>,
}

/// What [`BackupJobsStep`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupJobsSpec {
    /// Step id.
    pub id: String,
    /// The vault.
    pub vault: String,
    /// The role.
    pub role_arn: String,
    /// The stores' ARNs.
    pub resources: Vec<String>,
    /// Each job's idempotency token is this, a dash and the resource's index.
    pub token_prefix: String,
    /// The wait limit (minutes).
    pub wait_minutes: u64,
    /// How to reach AWS Backup.
    pub aws: AwsSettings,
}

impl StepSpec for BackupJobsSpec {
    const KIND: &'static str = "bluegreen-backup-jobs";
}

/// Starts one on-demand backup job per store and waits until every one has completed.
pub struct BackupJobsStep {
    spec: BackupJobsSpec,
}

impl BackupJobsStep {
    /// The step of `spec`.
    pub fn new(spec: BackupJobsSpec) -> BackupJobsStep {
        BackupJobsStep { spec }
    }

    /// Starts (or, with the same token, finds) each job: `(resource, job id)`.
    async fn jobs(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let backup = self.spec.aws.backup()?;
        let mut jobs = Vec::new();
        for (index, resource) in self.spec.resources.iter().enumerate() {
            let token = format!("{}-{index}", self.spec.token_prefix);
            let started = backup
                .start_job(&self.spec.vault, resource, &self.spec.role_arn, &token)
                .await
                .map_err(|e| format!("start the backup of {resource}: {e}"))?;
            let id = started["BackupJobId"]
                .as_str()
                .ok_or_else(|| format!("start-backup-job named no job for {resource}"))?;
            jobs.push((resource.clone(), id.to_string()));
        }
        Ok(jobs)
    }
}

impl Step for BackupJobsStep {
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
            "back up {} into vault {} (AWS Backup on-demand jobs, awaited; the recovery points are kept)",
            self.spec.resources.join(", "),
            self.spec.vault
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let backup = self.spec.aws.backup()?;
            let jobs = self.jobs().await?;
            let deadline =
                std::time::Instant::now() + Duration::from_secs(self.spec.wait_minutes * 60);
            let mut waiting = jobs;
            while !waiting.is_empty() {
                let mut still = Vec::new();
                for (resource, id) in waiting {
                    let job = backup.job(&id).await.map_err(|e| e.to_string())?;
                    match job["State"].as_str().unwrap_or_default() {
                        "COMPLETED" => {}
                        state @ ("FAILED" | "ABORTED" | "EXPIRED" | "PARTIAL") => {
                            return Err(format!(
                                "the backup of {resource} (job {id}) ended {state}: {}",
                                job["StatusMessage"].as_str().unwrap_or("no message")
                            )
                            .into());
                        }
                        _ => still.push((resource, id)),
                    }
                }
                waiting = still;
                if waiting.is_empty() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "backup jobs not completed within {} minutes: {}",
                        self.spec.wait_minutes,
                        waiting
                            .iter()
                            .map(|(r, id)| format!("{r} (job {id})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                    .into());
                }
                if StopSignal::global().is_stopped() {
                    return Err("stopped while waiting for the backup jobs".into());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let backup = self.spec.aws.backup()?;
            for (resource, id) in self.jobs().await? {
                let job = backup.job(&id).await.map_err(|e| e.to_string())?;
                if job["State"] != "COMPLETED" {
                    return Err(
                        format!("the backup of {resource} (job {id}) is {}", job["State"]).into(),
                    );
                }
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        // The recovery points are the stores' way back; nothing else changed.
        Box::pin(async { Ok(()) })
    }
}

/// Checks the backup's inputs against AWS and plans its step: the vault and the role must
/// exist, each resource must be an ARN AWS Backup supports, and the S3, RDS and EFS stores
/// named must exist. Returns the step and the plan's change line.
pub(crate) async fn plan_backup(
    spec: &BackupSpec,
    run_id: &str,
    wait_minutes: u64,
    aws: &AwsSettings,
) -> Result<(BackupJobsStep, String)> {
    if spec.resources.is_empty() {
        return Err(FlowError::invalid(
            "backup_resources",
            "no store to back up",
            "name the artifact bucket's, the database's and the file system's ARNs (--backup-resource)",
        ));
    }
    let role_name = spec
        .role_arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":role/"))
        .map(|(_, path)| path.rsplit('/').next().unwrap_or(path).to_string())
        .ok_or_else(|| {
            FlowError::invalid(
                "backup_role_arn",
                format!("{} is not an IAM role ARN", spec.role_arn),
                "give the backup role's ARN (arn:aws:iam::<account>:role/<name>; the deployment's Terraform outputs it)",
            )
        })?;
    let backup = aws.backup().map_err(super::aws_unavailable)?;
    if backup
        .vault(&spec.vault)
        .await
        .map_err(|e| FlowError::failed(format!("read backup vault {}", spec.vault), e))?
        .is_none()
    {
        return Err(FlowError::invalid(
            "backup_vault",
            format!("there is no backup vault {}", spec.vault),
            "name the deployment's vault (aws backup list-backup-vaults) or create one as the AWS Backup guide says",
        ));
    }
    let iam = aws.iam().map_err(super::aws_unavailable)?;
    if let Err(e) = iam.trust_policy(&role_name).await {
        return Err(match e.aws_code() {
            Some("NoSuchEntity") => FlowError::invalid(
                "backup_role_arn",
                format!("there is no role {role_name}"),
                "give the backup role the deployment made (aws iam list-roles)",
            ),
            _ => FlowError::failed(format!("read role {role_name}"), e),
        });
    }
    for resource in &spec.resources {
        check_resource(resource, aws).await?;
    }
    let change = format!(
        "AWS Backup: on-demand jobs for {} into vault {}, awaited (recovery points kept)",
        spec.resources.join(", "),
        spec.vault
    );
    let step = BackupJobsStep::new(BackupJobsSpec {
        id: "bluegreen/backup".into(),
        vault: spec.vault.clone(),
        role_arn: spec.role_arn.clone(),
        resources: spec.resources.clone(),
        token_prefix: run_id.to_string(),
        wait_minutes,
        aws: aws.clone(),
    });
    Ok((step, change))
}

/// The store behind `arn` exists (S3, RDS and EFS are looked up; other types AWS Backup
/// supports are left to the job); an ARN of no supported type is refused.
async fn check_resource(arn: &str, aws: &AwsSettings) -> Result<()> {
    let missing = |what: String| {
        FlowError::invalid(
            "backup_resources",
            format!("{arn}: there is no {what}"),
            "give the ARN of an existing store (the deployment's Terraform outputs name them)",
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let (service, resource) = match parts.as_slice() {
        ["arn", "aws", service, _, _, resource] => (*service, *resource),
        _ => ("", ""),
    };
    match service {
        "s3" => {
            let s3 = aws.s3().map_err(super::aws_unavailable)?;
            if !s3
                .exists(resource)
                .await
                .map_err(|e| FlowError::failed(format!("read bucket {resource}"), e))?
            {
                return Err(missing(format!("bucket {resource}")));
            }
        }
        "rds" => {
            let name = resource.strip_prefix("db:").unwrap_or(resource);
            let rds = aws.rds().map_err(super::aws_unavailable)?;
            if rds
                .instance(name)
                .await
                .map_err(|e| FlowError::failed(format!("read RDS instance {name}"), e))?
                .is_none()
            {
                return Err(missing(format!("RDS instance {name}")));
            }
        }
        "elasticfilesystem" => {
            let id = resource.strip_prefix("file-system/").unwrap_or(resource);
            let efs = aws.efs().map_err(super::aws_unavailable)?;
            if efs
                .file_system(id)
                .await
                .map_err(|e| FlowError::failed(format!("read file system {id}"), e))?
                .is_none()
            {
                return Err(missing(format!("EFS file system {id}")));
            }
        }
        "fsx" | "dynamodb" | "ec2" => {}
        _ => {
            return Err(FlowError::invalid(
                "backup_resources",
                format!("{arn} is not the ARN of a store AWS Backup backs up"),
                "give the ARNs of the bucket (arn:aws:s3:::NAME), the database (arn:aws:rds:REGION:ACCOUNT:db:NAME) and the file system (arn:aws:elasticfilesystem:REGION:ACCOUNT:file-system/ID)",
            ));
        }
    }
    Ok(())
}
