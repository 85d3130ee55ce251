//! The simulated AWS Backup API, for the operations moto 5.2 lacks: on-demand backup jobs
//! (`StartBackupJob`, `DescribeBackupJob`). Served under `/backup`, so the real AWS CLI
//! reaches it with `aws backup ... --endpoint-url http://<kube-sim>/backup`; the AWS CLI takes
//! one endpoint per service, so the vaults the jobs write into live here too
//! (`CreateBackupVault`, `DescribeBackupVault`).
//!
//! A job runs for [`BackupState`]'s job time (one second by default) and then completes,
//! unless its resource was set to fail (`PUT /kube-sim/v1/backup` with `failResources`, or
//! [`crate::SimCluster::set_backup`]). AWS's checks are kept: the vault must exist, the role
//! and the resource must be ARNs of a type Backup supports, and a repeated idempotency token
//! answers with the job it started.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::eks::{aws_error, now, ok, reply};
use crate::server::AppState;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// What the simulated AWS Backup holds.
#[derive(Debug, Default)]
pub(crate) struct BackupState {
    inner: Mutex<BackupData>,
}

#[derive(Debug, Default)]
struct BackupData {
    /// Vaults by name, as `DescribeBackupVault` answers.
    vaults: BTreeMap<String, Value>,
    /// Jobs by id, with when each started.
    jobs: BTreeMap<String, (Value, Instant)>,
    /// Idempotency token → job id.
    tokens: BTreeMap<String, String>,
    /// Resources whose jobs fail.
    fail_resources: Vec<String>,
    /// How long a job runs (default one second).
    job_time: Option<Duration>,
}

impl BackupState {
    fn data(&self) -> std::sync::MutexGuard<'_, BackupData> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `PUT /kube-sim/v1/backup` (merge): `failResources` (ARNs whose jobs fail), `jobSeconds`.
/// `GET` returns the vaults and jobs.
pub(crate) fn admin(state: &AppState, method: &Method, body: &Bytes) -> Response {
    let mut data = state.backup.data();
    if *method == Method::PUT {
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return aws_error(
                    400,
                    "InvalidParameterValueException",
                    format!("not JSON: {e}"),
                );
            }
        };
        if let Some(list) = request["failResources"].as_array() {
            data.fail_resources = list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
        if let Some(seconds) = request["jobSeconds"].as_f64() {
            data.job_time = Some(Duration::from_secs_f64(seconds.max(0.0)));
        }
    }
    ok(json!({"vaults": data.vaults.values().collect::<Vec<_>>(), "jobs": jobs_of(&data)}))
}

/// Every job, as `DescribeBackupJob` answers now.
pub(crate) fn jobs(state: &AppState) -> Vec<Value> {
    jobs_of(&state.backup.data())
}

fn jobs_of(data: &BackupData) -> Vec<Value> {
    data.jobs.keys().map(|id| job_now(data, id)).collect()
}

/// The resource type Backup gives an ARN, or `None` for one it does not back up.
fn resource_type(arn: &str) -> Option<&'static str> {
    let service = arn.strip_prefix("arn:aws:")?.split(':').next()?;
    Some(match service {
        "s3" => "S3",
        "rds" => "RDS",
        "elasticfilesystem" => "EFS",
        "fsx" => "FSx",
        "dynamodb" => "DynamoDB",
        "ec2" => "EBS",
        _ => return None,
    })
}

/// The job as `DescribeBackupJob` answers now: `RUNNING` until its time is up, then
/// `COMPLETED` (or `FAILED` for a resource set to fail).
fn job_now(data: &BackupData, id: &str) -> Value {
    let Some((job, started)) = data.jobs.get(id) else {
        return Value::Null;
    };
    let mut job = job.clone();
    let takes = data.job_time.unwrap_or(Duration::from_secs(1));
    let resource = job["ResourceArn"].as_str().unwrap_or_default().to_string();
    if started.elapsed() < takes {
        job["State"] = json!("RUNNING");
        job["PercentDone"] = json!(format!(
            "{:.1}",
            100.0 * started.elapsed().as_secs_f64() / takes.as_secs_f64().max(0.001)
        ));
    } else if data.fail_resources.contains(&resource) {
        job["State"] = json!("FAILED");
        job["StatusMessage"] = json!(format!(
            "Backup job failed: {resource} could not be read (simulated)"
        ));
    } else {
        job["State"] = json!("COMPLETED");
        job["PercentDone"] = json!("100.0");
        job["CompletionDate"] = json!(now());
    }
    job
}

/// The `/backup/...` operations.
pub(crate) fn route(state: &AppState, method: &Method, segs: &[&str], body: &Bytes) -> Response {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return aws_error(
                    400,
                    "InvalidParameterValueException",
                    format!("body is not JSON: {e}"),
                );
            }
        }
    };
    let mut data = state.backup.data();
    match (method.clone(), segs) {
        (Method::PUT, ["backup-vaults", name]) => {
            if data.vaults.contains_key(*name) {
                return aws_error(
                    400,
                    "AlreadyExistsException",
                    format!("Backup vault with the same name {name} already exists"),
                );
            }
            let vault = json!({
                "BackupVaultName": name,
                "BackupVaultArn": format!("arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:{name}"),
                "CreationDate": now(),
                "NumberOfRecoveryPoints": 0,
                "VaultType": "BACKUP_VAULT",
            });
            data.vaults.insert(name.to_string(), vault.clone());
            ok(
                json!({"BackupVaultName": name, "BackupVaultArn": vault["BackupVaultArn"], "CreationDate": vault["CreationDate"]}),
            )
        }
        (Method::GET, ["backup-vaults", name]) => match data.vaults.get(*name) {
            Some(vault) => ok(vault.clone()),
            None => aws_error(
                404,
                "ResourceNotFoundException",
                format!("Backup vault {name} does not exist"),
            ),
        },
        (Method::PUT, ["backup-jobs"]) => start_job(&mut data, &request),
        (Method::GET, ["backup-jobs", id]) => {
            if data.jobs.contains_key(*id) {
                ok(job_now(&data, id))
            } else {
                aws_error(
                    404,
                    "ResourceNotFoundException",
                    format!("Backup job {id} does not exist"),
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("the simulated AWS Backup has no operation at {method} /{}", segs.join("/"))}),
        ),
    }
}

fn start_job(data: &mut BackupData, request: &Value) -> Response {
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_string();
    let (vault, resource, role) = (
        text("BackupVaultName"),
        text("ResourceArn"),
        text("IamRoleArn"),
    );
    if let Some(id) = request["IdempotencyToken"]
        .as_str()
        .and_then(|t| data.tokens.get(t))
    {
        let job = &data.jobs[id].0;
        return ok(
            json!({"BackupJobId": id, "RecoveryPointArn": job["RecoveryPointArn"], "CreationDate": job["CreationDate"]}),
        );
    }
    let Some(vault_value) = data.vaults.get(&vault) else {
        return aws_error(
            404,
            "ResourceNotFoundException",
            format!("Backup vault {vault} does not exist"),
        );
    };
    if !role.starts_with("arn:aws:iam::") || !role.contains(":role/") {
        return aws_error(
            400,
            "InvalidParameterValueException",
            format!("Invalid IAM role ARN: {role}"),
        );
    }
    let Some(kind) = resource_type(&resource) else {
        return aws_error(
            400,
            "InvalidParameterValueException",
            format!("Invalid ARN {resource}. Specified resource is not supported by AWS Backup"),
        );
    };
    let id = format!("{:032X}", crate::eks::now_nanos());
    let point = format!(
        "arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:{}",
        id.to_ascii_lowercase()
    );
    let job = json!({
        "AccountId": ACCOUNT,
        "BackupJobId": id,
        "BackupVaultName": vault,
        "BackupVaultArn": vault_value["BackupVaultArn"],
        "RecoveryPointArn": point,
        "ResourceArn": resource,
        "ResourceType": kind,
        "IamRoleArn": role,
        "CreationDate": now(),
        "State": "CREATED",
    });
    if let Some(vault) = data.vaults.get_mut(&vault) {
        let points = vault["NumberOfRecoveryPoints"].as_u64().unwrap_or(0);
        vault["NumberOfRecoveryPoints"] = json!(points + 1);
    }
    if let Some(token) = request["IdempotencyToken"].as_str() {
        data.tokens.insert(token.to_string(), id.clone());
    }
    data.jobs.insert(id.clone(), (job.clone(), Instant::now()));
    ok(json!({"BackupJobId": id, "RecoveryPointArn": point, "CreationDate": job["CreationDate"]}))
}
