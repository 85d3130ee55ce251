//! The EKS API as typed calls over the real AWS CLI (`aws eks ... --output json`), run by the
//! toolkit's one process runner: argv only, a timeout on every call, both pipes drained, the
//! blocking call off the async runtime.
//!
//! The CLI is the transport on purpose: it brings the user's credentials chain, profiles,
//! SSO and regions as they already use them, and `--endpoint-url` (or `AWS_ENDPOINT_URL_EKS`)
//! points it at a local simulation in tests. Errors keep AWS's error code apart
//! ([`Error::Aws`]: `InvalidStateException`, `ResourceNotFoundException`, …) from a CLI that
//! never ran, timed out, was stopped, or printed something that is not the expected JSON.
//!
//! ```no_run
//! use upgrade_aws::{Eks, InsightFilter};
//!
//! # async fn example() -> Result<(), upgrade_aws::Error> {
//! let eks = Eks::builder("mlops-platform-dev").region("eu-west-1").build()?;
//! let cluster = eks.describe_cluster().await?;
//! for insight in eks.list_insights(&InsightFilter::for_version("1.32")).await? {
//!     println!("{} {}: {}", insight.status(), insight.name, insight.kubernetes_version.as_deref().unwrap_or_default());
//! }
//! match eks.update_cluster_version("1.32", false).await {
//!     Err(e) if e.aws_code() == Some("InvalidStateException") => println!("readiness insights block it"),
//!     other => println!("{other:?} from {}", cluster.version),
//! }
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::ProcessBuilder;
use upgrade_core::process::{ProcessError, StopSignal, ToolError};

/// What went wrong calling the EKS API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// AWS answered with an error (the CLI printed `An error occurred (CODE) when calling
    /// the OPERATION operation: MESSAGE`).
    #[error("EKS {operation}: {code}: {message}")]
    Aws {
        /// The operation, e.g. `UpdateClusterVersion`.
        operation: String,
        /// AWS's error code, e.g. `InvalidStateException`.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The CLI failed without an AWS error (credentials, configuration, a bad argument).
    #[error("the AWS CLI failed: {0}")]
    Failed(#[source] ProcessError),
    /// The CLI did not answer within its timeout.
    #[error("the AWS CLI timed out: {0}")]
    TimedOut(#[source] ProcessError),
    /// Stopped on request (Ctrl-C, a lost lease).
    #[error("the AWS CLI was stopped: {0}")]
    Stopped(#[source] ProcessError),
    /// The CLI could not be found or started.
    #[error("the AWS CLI did not run: {0}")]
    NotRun(#[source] ProcessError),
    /// The CLI's output is not what the operation returns.
    #[error("EKS {operation}: unexpected output: {detail}")]
    Unparseable {
        /// The operation.
        operation: String,
        /// What did not parse.
        detail: String,
    },
}

impl Error {
    /// AWS's error code, when AWS answered with one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl ToolError for Error {
    fn exited(error: ProcessError) -> Self {
        let stderr = error.stderr().unwrap_or_default().to_string();
        match parse_aws_error(&stderr) {
            Some((code, operation, message)) => Error::Aws {
                operation,
                code,
                message,
            },
            None => Error::Failed(error),
        }
    }
    fn timed_out(error: ProcessError) -> Self {
        Error::TimedOut(error)
    }
    fn stopped(error: ProcessError) -> Self {
        Error::Stopped(error)
    }
    fn not_run(error: ProcessError) -> Self {
        Error::NotRun(error)
    }
    fn unparseable(error: ProcessError) -> Self {
        Error::Unparseable {
            operation: String::new(),
            detail: error.to_string(),
        }
    }
}

/// `An error occurred (CODE) when calling the OPERATION operation: MESSAGE` → its parts.
fn parse_aws_error(stderr: &str) -> Option<(String, String, String)> {
    let line = stderr.lines().find(|l| l.contains("An error occurred ("))?;
    let rest = &line[line.find("An error occurred (")? + "An error occurred (".len()..];
    let (code, rest) = rest.split_once(')')?;
    let rest = rest.trim_start().strip_prefix("when calling the ")?;
    let (operation, message) = rest.split_once(" operation")?;
    let message = message.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
    Some((code.to_string(), operation.to_string(), message.to_string()))
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Eks`] handle.
#[derive(Debug, Clone)]
pub struct EksBuilder {
    cluster: String,
    program: Option<PathBuf>,
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    service_endpoints: std::collections::BTreeMap<String, String>,
    timeout: Duration,
    stop: Option<StopSignal>,
    env: Vec<(String, String)>,
}

impl EksBuilder {
    /// The `aws` binary (default: `AWS_BIN`, else `aws` on `PATH`).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// `--region` (default: the CLI's own configuration).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// `--profile` (default: the CLI's own configuration).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// `--endpoint-url`: another EKS endpoint (a simulation in tests).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// `--endpoint-url` for one service's calls only (`backup`, `s3api`, …), before
    /// [`endpoint_url`](Self::endpoint_url): a VPC endpoint per service, or a simulation of a
    /// service the local AWS stand-in lacks.
    pub fn service_endpoint(mut self, service: impl Into<String>, url: impl Into<String>) -> Self {
        self.service_endpoints.insert(service.into(), url.into());
        self
    }

    /// `--region`, `--profile` and `--endpoint-url` where given (a caller's optional
    /// settings, applied in one place).
    pub fn settings(
        mut self,
        region: Option<&str>,
        profile: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Self {
        if let Some(region) = region {
            self = self.region(region);
        }
        if let Some(profile) = profile {
            self = self.profile(profile);
        }
        if let Some(url) = endpoint_url {
            self = self.endpoint_url(url);
        }
        self
    }

    /// The limit of each call (default 2 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Stops running calls when it fires (Ctrl-C, a lost lease).
    pub fn stop_signal(mut self, stop: StopSignal) -> Self {
        self.stop = Some(stop);
        self
    }

    /// An environment variable for every call (credentials in tests).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A Route 53 handle with these settings (see [`Route53::builder`]).
    pub fn build_route53(self) -> Result<Route53> {
        Ok(Route53 {
            inner: self.build()?.inner,
        })
    }

    /// An ELBv2 handle with these settings (see [`Elbv2::builder`]).
    pub fn build_elbv2(self) -> Result<Elbv2> {
        Ok(Elbv2 {
            inner: self.build()?.inner,
        })
    }

    /// An RDS handle with these settings.
    pub fn build_rds(self) -> Result<Rds> {
        Ok(Rds {
            inner: self.build()?.inner,
        })
    }

    /// An S3 handle with these settings.
    pub fn build_s3(self) -> Result<S3> {
        Ok(S3 {
            inner: self.build()?.inner,
        })
    }

    /// An AWS Backup handle with these settings.
    pub fn build_backup(self) -> Result<Backup> {
        Ok(Backup {
            inner: self.build()?.inner,
        })
    }

    /// An Auto Scaling handle with these settings.
    pub fn build_autoscaling(self) -> Result<AutoScaling> {
        Ok(AutoScaling {
            inner: self.build()?.inner,
        })
    }

    /// An EFS handle with these settings.
    pub fn build_efs(self) -> Result<Efs> {
        Ok(Efs {
            inner: self.build()?.inner,
        })
    }

    /// An IAM handle with these settings (see [`Iam::builder`]).
    pub fn build_iam(self) -> Result<Iam> {
        Ok(Iam {
            inner: self.build()?.inner,
        })
    }

    /// The handle; the `aws` binary is resolved now, so a missing one fails here.
    pub fn build(self) -> Result<Eks> {
        let program = upgrade_core::tool::AWS
            .resolve_with(self.program.as_deref())
            .map_err(Error::NotRun)?;
        Ok(Eks {
            inner: Arc::new(Inner {
                program,
                cluster: self.cluster,
                region: self.region,
                profile: self.profile,
                endpoint_url: self.endpoint_url,
                service_endpoints: self.service_endpoints,
                timeout: self.timeout,
                stop: self.stop,
                env: self.env,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    program: PathBuf,
    cluster: String,
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    service_endpoints: std::collections::BTreeMap<String, String>,
    timeout: Duration,
    stop: Option<StopSignal>,
    env: Vec<(String, String)>,
}

/// IAM through the AWS CLI (the trust policies of IRSA roles). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Iam {
    inner: Arc<Inner>,
}

impl Iam {
    /// A builder with the same settings as [`Eks::builder`] (no cluster).
    pub fn builder() -> EksBuilder {
        Eks::builder("")
    }

    /// The role's trust policy (`get-role`'s `AssumeRolePolicyDocument`), as JSON.
    pub async fn trust_policy(&self, role: &str) -> Result<Value> {
        let answer: Value = call_service(
            &self.inner,
            "iam",
            "get-role",
            vec!["--role-name".into(), role.into()],
        )
        .await?;
        let document = &answer["Role"]["AssumeRolePolicyDocument"];
        // The CLI decodes the URL-encoded document into JSON; some versions leave it text.
        match document {
            Value::String(text) => serde_json::from_str(text).map_err(|e| Error::Unparseable {
                operation: "get-role".into(),
                detail: format!("the trust policy is not JSON: {e}"),
            }),
            Value::Object(_) => Ok(document.clone()),
            _ => Err(Error::Unparseable {
                operation: "get-role".into(),
                detail: "no AssumeRolePolicyDocument".into(),
            }),
        }
    }

    /// Replaces the role's trust policy (`update-assume-role-policy`).
    pub async fn set_trust_policy(&self, role: &str, document: &Value) -> Result<()> {
        let _: Value = call_service(
            &self.inner,
            "iam",
            "update-assume-role-policy",
            vec![
                "--role-name".into(),
                role.into(),
                "--policy-document".into(),
                document.to_string(),
            ],
        )
        .await
        .or_else(|e| match e {
            // The command prints nothing on success, which is not JSON.
            Error::Unparseable { .. } => Ok(Value::Null),
            other => Err(other),
        })?;
        Ok(())
    }
}

/// Route 53 through the AWS CLI (the DNS record a blue/green switch moves). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Route53 {
    inner: Arc<Inner>,
}

impl Route53 {
    /// A builder with the same settings as [`Eks::builder`] (no cluster).
    pub fn builder() -> EksBuilder {
        Eks::builder("")
    }

    /// The record set `name` of `kind` (`CNAME`, `A`, …) in hosted zone `zone`, as Route 53
    /// returns it (`Name`, `Type`, `TTL`, `ResourceRecords` or `AliasTarget`), when it exists.
    pub async fn record(&self, zone: &str, name: &str, kind: &str) -> Result<Option<Value>> {
        let answer: Value = call_service(
            &self.inner,
            "route53",
            "list-resource-record-sets",
            vec![
                "--hosted-zone-id".into(),
                zone.into(),
                "--start-record-name".into(),
                name.into(),
                "--start-record-type".into(),
                kind.into(),
                "--max-items".into(),
                "1".into(),
            ],
        )
        .await?;
        let wanted = name.trim_end_matches('.');
        Ok(answer["ResourceRecordSets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["Name"].as_str().map(|n| n.trim_end_matches('.')) == Some(wanted)
                    && r["Type"] == kind
            })
            .cloned())
    }

    /// `UPSERT`s `record` (a record set as [`record`](Self::record) returns it).
    pub async fn upsert(&self, zone: &str, record: &Value) -> Result<()> {
        let batch = json!({"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]});
        let _: Value = call_service(
            &self.inner,
            "route53",
            "change-resource-record-sets",
            vec![
                "--hosted-zone-id".into(),
                zone.into(),
                "--change-batch".into(),
                batch.to_string(),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Elastic Load Balancing v2 through the AWS CLI (the ALB listener rule a blue/green switch
/// moves). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Elbv2 {
    inner: Arc<Inner>,
}

impl Elbv2 {
    /// A builder with the same settings as [`Eks::builder`] (no cluster).
    pub fn builder() -> EksBuilder {
        Eks::builder("")
    }

    /// The listener rule `arn` as `describe-rules` returns it (`Conditions`, `Actions`, …).
    pub async fn rule(&self, arn: &str) -> Result<Value> {
        let answer: Value = call_service(
            &self.inner,
            "elbv2",
            "describe-rules",
            vec!["--rule-arns".into(), arn.into()],
        )
        .await?;
        answer["Rules"]
            .as_array()
            .and_then(|rules| rules.first())
            .cloned()
            .ok_or_else(|| Error::Unparseable {
                operation: "describe-rules".into(),
                detail: format!("no rule {arn} in the answer"),
            })
    }

    /// Replaces the actions of rule `arn` (`modify-rule --actions`).
    pub async fn set_rule_actions(&self, arn: &str, actions: &Value) -> Result<()> {
        let _: Value = call_service(
            &self.inner,
            "elbv2",
            "modify-rule",
            vec![
                "--rule-arn".into(),
                arn.into(),
                "--actions".into(),
                actions.to_string(),
            ],
        )
        .await?;
        Ok(())
    }
}

/// RDS through the AWS CLI (a blue/green clone of the platform's database). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rds {
    inner: Arc<Inner>,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl Rds {
    /// The instance as `describe-db-instances` returns it, when it exists.
    pub async fn instance(&self, id: &str) -> Result<Option<Value>> {
        match call_service::<Value>(
            &self.inner,
            "rds",
            "describe-db-instances",
            strings(&["--db-instance-identifier", id]),
        )
        .await
        {
            Ok(answer) => Ok(answer["DBInstances"].get(0).cloned()),
            Err(e) if e.aws_code() == Some("DBInstanceNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The snapshot as `describe-db-snapshots` returns it, when it exists.
    pub async fn snapshot(&self, id: &str) -> Result<Option<Value>> {
        match call_service::<Value>(
            &self.inner,
            "rds",
            "describe-db-snapshots",
            strings(&["--db-snapshot-identifier", id]),
        )
        .await
        {
            Ok(answer) => Ok(answer["DBSnapshots"].get(0).cloned()),
            Err(e) if e.aws_code() == Some("DBSnapshotNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts a manual snapshot of `instance`.
    pub async fn create_snapshot(&self, instance: &str, snapshot: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "rds",
            "create-db-snapshot",
            strings(&[
                "--db-instance-identifier",
                instance,
                "--db-snapshot-identifier",
                snapshot,
            ]),
        )
        .await
    }

    /// Restores `snapshot` into a new instance `id` configured like `like` (class, subnet
    /// group, security groups, parameter group, Multi-AZ, public access).
    pub async fn restore(&self, snapshot: &str, id: &str, like: &Value) -> Result<()> {
        let mut args = strings(&[
            "--db-instance-identifier",
            id,
            "--db-snapshot-identifier",
            snapshot,
        ]);
        let text = |v: &Value| v.as_str().map(str::to_string);
        if let Some(class) = text(&like["DBInstanceClass"]) {
            args.extend(["--db-instance-class".into(), class]);
        }
        if let Some(group) = text(&like["DBSubnetGroup"]["DBSubnetGroupName"]) {
            args.extend(["--db-subnet-group-name".into(), group]);
        }
        let groups: Vec<String> = like["VpcSecurityGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| text(&g["VpcSecurityGroupId"]))
            .collect();
        if !groups.is_empty() {
            args.push("--vpc-security-group-ids".into());
            args.extend(groups);
        }
        if let Some(group) = like["DBParameterGroups"][0]["DBParameterGroupName"].as_str() {
            args.extend(["--db-parameter-group-name".into(), group.into()]);
        }
        args.push(
            if like["MultiAZ"] == true {
                "--multi-az"
            } else {
                "--no-multi-az"
            }
            .into(),
        );
        args.push(
            if like["PubliclyAccessible"] == true {
                "--publicly-accessible"
            } else {
                "--no-publicly-accessible"
            }
            .into(),
        );
        call_quiet(
            &self.inner,
            "rds",
            "restore-db-instance-from-db-snapshot",
            args,
        )
        .await
    }

    /// Deletes instance `id` without a final snapshot (a clone this tool made).
    pub async fn delete_instance(&self, id: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "rds",
            "delete-db-instance",
            strings(&["--db-instance-identifier", id, "--skip-final-snapshot"]),
        )
        .await
    }

    /// Deletes snapshot `id` (one this tool made).
    pub async fn delete_snapshot(&self, id: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "rds",
            "delete-db-snapshot",
            strings(&["--db-snapshot-identifier", id]),
        )
        .await
    }
}

/// S3 through the AWS CLI (a blue/green copy of the platform's bucket). Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3 {
    inner: Arc<Inner>,
}

impl S3 {
    /// Whether `bucket` exists (and is reachable).
    pub async fn exists(&self, bucket: &str) -> Result<bool> {
        match call_quiet(
            &self.inner,
            "s3api",
            "head-bucket",
            strings(&["--bucket", bucket]),
        )
        .await
        {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.aws_code(), Some("404" | "NoSuchBucket" | "NotFound")) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Every object key of `bucket` with its ETag, sorted by key.
    pub async fn objects(&self, bucket: &str) -> Result<Vec<(String, String)>> {
        let answer: Value = call_service(
            &self.inner,
            "s3api",
            "list-objects-v2",
            strings(&["--bucket", bucket]),
        )
        .await
        .or_else(|e| match e {
            // An empty bucket's answer is empty.
            Error::Unparseable { .. } => Ok(Value::Null),
            other => Err(other),
        })?;
        let mut out: Vec<(String, String)> = answer["Contents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                (
                    o["Key"].as_str().unwrap_or_default().to_string(),
                    o["ETag"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Creates `bucket` (in the handle's region).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let mut args = strings(&["--bucket", bucket]);
        if let Some(region) = self.inner.region.as_deref().filter(|r| *r != "us-east-1") {
            args.extend([
                "--create-bucket-configuration".into(),
                format!("LocationConstraint={region}"),
            ]);
        }
        call_quiet(&self.inner, "s3api", "create-bucket", args).await
    }

    /// Copies every object of `from` into `to` (`aws s3 sync`, server-side copies).
    pub async fn sync(&self, from: &str, to: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "s3",
            "sync",
            vec![
                format!("s3://{from}"),
                format!("s3://{to}"),
                "--only-show-errors".into(),
            ],
        )
        .await
    }

    /// Empties and deletes `bucket` (one this tool made).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "s3",
            "rb",
            vec![format!("s3://{bucket}"), "--force".into()],
        )
        .await
    }
}

/// AWS Backup through the AWS CLI: on-demand backup jobs into a vault (seed 001's
/// `snapshot-state.sh`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backup {
    inner: Arc<Inner>,
}

impl Backup {
    /// The vault (`describe-backup-vault`), or `None` when there is none of that name.
    pub async fn vault(&self, name: &str) -> Result<Option<Value>> {
        not_found_is_none(
            call_service(
                &self.inner,
                "backup",
                "describe-backup-vault",
                strings(&["--backup-vault-name", name]),
            )
            .await,
        )
    }

    /// Starts an on-demand backup of `resource_arn` into `vault` as `role_arn`; the same
    /// `idempotency_token` answers with the job it started before (a resumed run starts no
    /// second job). Returns `start-backup-job`'s answer (`BackupJobId`, `RecoveryPointArn`).
    pub async fn start_job(
        &self,
        vault: &str,
        resource_arn: &str,
        role_arn: &str,
        idempotency_token: &str,
    ) -> Result<Value> {
        call_service(
            &self.inner,
            "backup",
            "start-backup-job",
            strings(&[
                "--backup-vault-name",
                vault,
                "--resource-arn",
                resource_arn,
                "--iam-role-arn",
                role_arn,
                "--idempotency-token",
                idempotency_token,
            ]),
        )
        .await
    }

    /// The job (`describe-backup-job`: `State`, `StatusMessage`, `RecoveryPointArn`, …).
    pub async fn job(&self, id: &str) -> Result<Value> {
        call_service(
            &self.inner,
            "backup",
            "describe-backup-job",
            strings(&["--backup-job-id", id]),
        )
        .await
    }
}

/// EC2 Auto Scaling through the AWS CLI: which group an instance belongs to, and replacing
/// one in its group (an EKS managed node group's, or a self-managed group's). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    inner: Arc<Inner>,
}

/// An instance of an Auto Scaling group (`DescribeAutoScalingInstances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupInstance {
    /// The instance, `i-...`.
    pub instance_id: String,
    /// Its group.
    pub auto_scaling_group_name: String,
    /// `InService`, `Terminating`, …
    pub lifecycle_state: String,
}

impl AutoScaling {
    /// The group instance `instance_id` belongs to, or `None` when it is in none (or gone).
    pub async fn instance(&self, instance_id: &str) -> Result<Option<GroupInstance>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            #[serde(default)]
            auto_scaling_instances: Vec<GroupInstance>,
        }
        let answer: Answer = call_service(
            &self.inner,
            "autoscaling",
            "describe-auto-scaling-instances",
            strings(&["--instance-ids", instance_id]),
        )
        .await?;
        Ok(answer.auto_scaling_instances.into_iter().next())
    }

    /// The instances of group `group` (`DescribeAutoScalingGroups`), in service or not.
    pub async fn group_instances(&self, group: &str) -> Result<Vec<GroupInstance>> {
        let answer: Value = call_service(
            &self.inner,
            "autoscaling",
            "describe-auto-scaling-groups",
            strings(&["--auto-scaling-group-names", group]),
        )
        .await?;
        let instances = answer["AutoScalingGroups"][0]["Instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(instances
            .into_iter()
            .filter_map(|i| {
                Some(GroupInstance {
                    instance_id: i["InstanceId"].as_str()?.to_string(),
                    auto_scaling_group_name: group.to_string(),
                    lifecycle_state: i["LifecycleState"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// Terminates `instance_id` and lets its group launch a replacement (the desired
    /// capacity stays): `terminate-instance-in-auto-scaling-group
    /// --no-should-decrement-desired-capacity`.
    pub async fn replace_instance(&self, instance_id: &str) -> Result<()> {
        call_quiet(
            &self.inner,
            "autoscaling",
            "terminate-instance-in-auto-scaling-group",
            strings(&[
                "--instance-id",
                instance_id,
                "--no-should-decrement-desired-capacity",
            ]),
        )
        .await
    }
}

/// EFS through the AWS CLI (whether a file system exists). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Efs {
    inner: Arc<Inner>,
}

impl Efs {
    /// The file system, or `None` when there is none with that id.
    pub async fn file_system(&self, id: &str) -> Result<Option<Value>> {
        let answer = not_found_is_none(
            call_service::<Value>(
                &self.inner,
                "efs",
                "describe-file-systems",
                strings(&["--file-system-id", id]),
            )
            .await,
        )?;
        Ok(answer.and_then(|a| a["FileSystems"].get(0).cloned()))
    }
}

/// An AWS "not found" error as `None`.
fn not_found_is_none(answer: Result<Value>) -> Result<Option<Value>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        // ResourceNotFoundException, FileSystemNotFound, …
        Err(e) if e.aws_code().is_some_and(|code| code.contains("NotFound")) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One EKS cluster's API, through the AWS CLI. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Eks {
    inner: Arc<Inner>,
}

/// `DescribeCluster`'s cluster, the parts the toolkit reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The name.
    pub name: String,
    /// The Kubernetes minor, e.g. `1.31`.
    pub version: String,
    /// `ACTIVE`, `UPDATING`, …
    pub status: String,
    /// The platform version, e.g. `eks.12`.
    #[serde(default)]
    pub platform_version: Option<String>,
}

/// One parameter of an update (`Version`, `AddonVersion`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateParam {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its value.
    #[serde(default)]
    pub value: Option<String>,
}

/// An EKS update (`UpdateClusterVersion`, `UpdateAddon`, `DescribeUpdate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Its id.
    pub id: String,
    /// `InProgress`, `Successful`, `Failed`, `Cancelled`.
    pub status: String,
    /// `VersionUpdate`, `VersionRollback`, `AddonUpdate`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Vec<UpdateParam>,
    /// Errors of a failed update.
    #[serde(default)]
    pub errors: Vec<Value>,
}

/// The status of an insight or of one resource it checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightStatus {
    /// `PASSING`, `WARNING`, `ERROR` or `UNKNOWN`.
    pub status: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A client still calling a deprecated API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientStat {
    /// Its user agent.
    #[serde(default)]
    pub user_agent: String,
    /// Its requests in the last 30 days.
    #[serde(default)]
    pub number_of_requests_last30_days: u64,
    /// Its last request (epoch seconds, as the CLI prints it).
    #[serde(default)]
    pub last_request_time: Option<Value>,
}

/// A deprecated API an insight found in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeprecationDetail {
    /// The deprecated API path, e.g. `/apis/flowcontrol.apiserver.k8s.io/v1beta3/flowschemas`.
    #[serde(default)]
    pub usage: String,
    /// Its replacement.
    #[serde(default)]
    pub replaced_with: Option<String>,
    /// The minor that stops serving it.
    #[serde(default)]
    pub stop_serving_version: Option<String>,
    /// Who still calls it.
    #[serde(default)]
    pub client_stats: Vec<ClientStat>,
}

/// An EKS insight (`ListInsights` gives the summary fields, `DescribeInsight` all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Insight {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `UPGRADE_READINESS`, `ROLLBACK_READINESS` or `MISCONFIGURATION`.
    pub category: String,
    /// The minor it is about.
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    /// Its status.
    pub insight_status: InsightStatus,
    /// When EKS last refreshed it (epoch seconds).
    #[serde(default)]
    pub last_refresh_time: Option<Value>,
    /// What it checks.
    #[serde(default)]
    pub description: Option<String>,
    /// What to do (`DescribeInsight` only).
    #[serde(default)]
    pub recommendation: Option<String>,
    /// Deprecated APIs in use, with who calls them (`DescribeInsight` only).
    #[serde(default)]
    pub category_specific_summary: Option<CategorySummary>,
}

/// The category-specific part of an insight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategorySummary {
    /// Deprecated APIs in use.
    #[serde(default)]
    pub deprecation_details: Vec<DeprecationDetail>,
}

impl Insight {
    /// `ERROR`, `WARNING`, `PASSING` or `UNKNOWN`.
    pub fn status(&self) -> &str {
        &self.insight_status.status
    }
}

/// Which insights to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightFilter {
    /// Categories (empty: all).
    pub categories: Vec<String>,
    /// Minors (empty: all).
    pub kubernetes_versions: Vec<String>,
}

impl InsightFilter {
    /// The upgrade-readiness insights for a move to `version`.
    pub fn for_version(version: &str) -> InsightFilter {
        InsightFilter {
            categories: vec!["UPGRADE_READINESS".into()],
            kubernetes_versions: vec![version.into()],
        }
    }

    /// The rollback-readiness insights for a move back to `version`.
    pub fn for_rollback(version: &str) -> InsightFilter {
        InsightFilter {
            categories: vec!["ROLLBACK_READINESS".into()],
            kubernetes_versions: vec![version.into()],
        }
    }
}

/// `DescribeInsightsRefresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightsRefresh {
    /// `IN_PROGRESS`, `FAILED` or `COMPLETED`.
    pub status: String,
    /// Its message.
    #[serde(default)]
    pub message: Option<String>,
    /// When it ended (epoch seconds).
    #[serde(default)]
    pub ended_at: Option<Value>,
}

/// A managed add-on (`DescribeAddon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addon {
    /// Its name, e.g. `vpc-cni`.
    pub addon_name: String,
    /// Its version.
    pub addon_version: String,
    /// `ACTIVE`, `UPDATING`, `DEGRADED`, …
    pub status: String,
    /// Its configuration values (JSON or YAML text), when set.
    #[serde(default)]
    pub configuration_values: Option<String>,
    /// The IAM role of its service account, when set.
    #[serde(default)]
    pub service_account_role_arn: Option<String>,
}

impl Eks {
    /// A builder for cluster `cluster`.
    pub fn builder(cluster: impl Into<String>) -> EksBuilder {
        EksBuilder {
            cluster: cluster.into(),
            program: None,
            region: None,
            profile: None,
            endpoint_url: None,
            service_endpoints: Default::default(),
            timeout: Duration::from_secs(120),
            stop: None,
            env: Vec::new(),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// Runs `aws eks <operation> <args> --output json` and parses its answer.
    async fn call<T: DeserializeOwned + Send + 'static>(
        &self,
        operation: &'static str,
        args: Vec<String>,
    ) -> Result<T> {
        call_service(&self.inner, "eks", operation, args).await
    }

    fn cluster_arg(&self, flag: &str) -> Vec<String> {
        vec![flag.to_string(), self.inner.cluster.clone()]
    }

    /// `DescribeCluster`.
    pub async fn describe_cluster(&self) -> Result<Cluster> {
        let answer: Value = self
            .call("describe-cluster", self.cluster_arg("--name"))
            .await?;
        field(answer, "cluster", "describe-cluster")
    }

    /// `UpdateClusterVersion` to `version` (the next minor, or the previous one for a
    /// rollback within EKS's window); `force` overrides readiness insights.
    pub async fn update_cluster_version(&self, version: &str, force: bool) -> Result<Update> {
        let mut args = self.cluster_arg("--name");
        args.extend(["--kubernetes-version".into(), version.into()]);
        if force {
            args.push("--force".into());
        }
        let answer: Value = self.call("update-cluster-version", args).await?;
        field(answer, "update", "update-cluster-version")
    }

    /// `DescribeUpdate` (of the cluster, or of add-on `addon`'s update).
    pub async fn describe_update(&self, id: &str, addon: Option<&str>) -> Result<Update> {
        let mut args = self.cluster_arg("--name");
        args.extend(["--update-id".into(), id.into()]);
        if let Some(addon) = addon {
            args.extend(["--addon-name".into(), addon.into()]);
        }
        let answer: Value = self.call("describe-update", args).await?;
        field(answer, "update", "describe-update")
    }

    /// `ListInsights` with `filter` (every page).
    pub async fn list_insights(&self, filter: &InsightFilter) -> Result<Vec<Insight>> {
        let mut args = self.cluster_arg("--cluster-name");
        let mut parts = Vec::new();
        if !filter.categories.is_empty() {
            parts.push(format!("categories={}", filter.categories.join(",")));
        }
        if !filter.kubernetes_versions.is_empty() {
            parts.push(format!(
                "kubernetesVersions={}",
                filter.kubernetes_versions.join(",")
            ));
        }
        if !parts.is_empty() {
            args.extend(["--filter".into(), parts.join(",")]);
        }
        let answer: Value = self.call("list-insights", args).await?;
        field(answer, "insights", "list-insights")
    }

    /// `DescribeInsight`.
    pub async fn describe_insight(&self, id: &str) -> Result<Insight> {
        let mut args = self.cluster_arg("--cluster-name");
        args.extend(["--id".into(), id.into()]);
        let answer: Value = self.call("describe-insight", args).await?;
        field(answer, "insight", "describe-insight")
    }

    /// `StartInsightsRefresh`.
    pub async fn start_insights_refresh(&self) -> Result<()> {
        let _: Value = self
            .call("start-insights-refresh", self.cluster_arg("--cluster-name"))
            .await?;
        Ok(())
    }

    /// `DescribeInsightsRefresh`.
    pub async fn describe_insights_refresh(&self) -> Result<InsightsRefresh> {
        self.call(
            "describe-insights-refresh",
            self.cluster_arg("--cluster-name"),
        )
        .await
    }

    /// `DescribeAddon` (`None` when the add-on is not installed as a managed add-on).
    pub async fn describe_addon(&self, addon: &str) -> Result<Option<Addon>> {
        let mut args = self.cluster_arg("--cluster-name");
        args.extend(["--addon-name".into(), addon.into()]);
        match self.call::<Value>("describe-addon", args).await {
            Ok(answer) => field(answer, "addon", "describe-addon").map(Some),
            Err(e) if e.aws_code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `UpdateAddon` to `version` with `configuration` (when given), resolving conflicts with
    /// `resolve_conflicts` (`OVERWRITE`, `PRESERVE` or `NONE`).
    pub async fn update_addon(
        &self,
        addon: &str,
        version: &str,
        configuration: Option<&str>,
        resolve_conflicts: &str,
    ) -> Result<Update> {
        let mut args = self.cluster_arg("--cluster-name");
        args.extend([
            "--addon-name".into(),
            addon.into(),
            "--addon-version".into(),
            version.into(),
            "--resolve-conflicts".into(),
            resolve_conflicts.into(),
        ]);
        if let Some(config) = configuration {
            args.extend(["--configuration-values".into(), config.into()]);
        }
        let answer: Value = self.call("update-addon", args).await?;
        field(answer, "update", "update-addon")
    }

    /// `DescribeAddonVersions` for `kubernetes_version` (of `addon`, or every add-on): the
    /// CLI's JSON, which `upgrade_checks::addons::AddonCatalog::from_json` reads.
    pub async fn describe_addon_versions(
        &self,
        kubernetes_version: &str,
        addon: Option<&str>,
    ) -> Result<Value> {
        let mut args = vec![
            "--kubernetes-version".to_string(),
            kubernetes_version.into(),
        ];
        if let Some(addon) = addon {
            args.extend(["--addon-name".into(), addon.into()]);
        }
        self.call("describe-addon-versions", args).await
    }

    /// `UpdateNodegroupVersion` of managed node group `group` to `version`.
    pub async fn update_nodegroup_version(&self, group: &str, version: &str) -> Result<Update> {
        let mut args = self.cluster_arg("--cluster-name");
        args.extend([
            "--nodegroup-name".into(),
            group.into(),
            "--kubernetes-version".into(),
            version.into(),
        ]);
        let answer: Value = self.call("update-nodegroup-version", args).await?;
        field(answer, "update", "update-nodegroup-version")
    }

    /// The managed node groups and their versions (`ListNodegroups`, `DescribeNodegroup`).
    pub async fn nodegroup_versions(&self) -> Result<Vec<(String, String)>> {
        let answer: Value = self
            .call("list-nodegroups", self.cluster_arg("--cluster-name"))
            .await?;
        let names: Vec<String> = field(answer, "nodegroups", "list-nodegroups")?;
        let mut out = Vec::new();
        for name in names {
            let mut args = self.cluster_arg("--cluster-name");
            args.extend(["--nodegroup-name".into(), name.clone()]);
            let answer: Value = self.call("describe-nodegroup", args).await?;
            let version = answer["nodegroup"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push((name, version));
        }
        Ok(out)
    }
}

/// Runs `aws <service> <operation> <args> --output json` with the handle's settings and
/// parses its answer; the one way this crate runs the CLI.
async fn call_service<T: DeserializeOwned + Send + 'static>(
    inner: &Arc<Inner>,
    service: &'static str,
    operation: &'static str,
    args: Vec<String>,
) -> Result<T> {
    let output = run_cli(inner, service, operation, args).await?;
    serde_json::from_slice(&output.stdout).map_err(|e| Error::Unparseable {
        operation: operation.into(),
        detail: format!(
            "{e}: {}",
            output.stdout_lossy().chars().take(200).collect::<String>()
        ),
    })
}

/// [`call_service`] for an operation that answers with nothing (or text) on success.
async fn call_quiet(
    inner: &Arc<Inner>,
    service: &'static str,
    operation: &'static str,
    args: Vec<String>,
) -> Result<()> {
    run_cli(inner, service, operation, args).await.map(drop)
}

/// Runs the CLI; a failure is told apart (not run, AWS error, timeout, stopped).
async fn run_cli(
    inner: &Arc<Inner>,
    service: &'static str,
    operation: &'static str,
    args: Vec<String>,
) -> Result<upgrade_core::ProcessOutput> {
    let inner = Arc::clone(inner);
    let joined = tokio::task::spawn_blocking(move || {
        let mut cmd = ProcessBuilder::new(&inner.program);
        cmd.arg(service).arg(operation).args(&args);

        cmd.args(["--output", "json"]);
        if let Some(region) = &inner.region {
            cmd.args(["--region", region]);
        }
        if let Some(profile) = &inner.profile {
            cmd.args(["--profile", profile]);
        }
        if let Some(url) = inner
            .service_endpoints
            .get(service)
            .or(inner.endpoint_url.as_ref())
        {
            cmd.args(["--endpoint-url", url]);
        }
        for (key, value) in &inner.env {
            cmd.env(key, value);
        }
        // The pager would wait for a terminal.
        cmd.env("AWS_PAGER", "").timeout(inner.timeout);
        if let Some(stop) = &inner.stop {
            cmd.stop_signal(stop.clone());
        }
        cmd.exec()
    })
    .await;
    match joined {
        Ok(result) => result.map_err(ProcessError::into_tool_error::<Error>),
        Err(join) => Err(Error::Unparseable {
            operation: operation.into(),
            detail: format!("the call's task failed: {join}"),
        }),
    }
}

/// `answer[key]` as `T`.
fn field<T: DeserializeOwned>(mut answer: Value, key: &str, operation: &str) -> Result<T> {
    let value = answer.get_mut(key).map(Value::take).unwrap_or(json!(null));
    serde_json::from_value(value).map_err(|e| Error::Unparseable {
        operation: operation.into(),
        detail: format!("`{key}`: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_are_read_from_the_cli_message() {
        let stderr = "\nAn error occurred (InvalidStateException) when calling the UpdateClusterVersion operation: Amazon EKS detected upgrade readiness issues: x.\n";
        assert_eq!(
            parse_aws_error(stderr),
            Some((
                "InvalidStateException".into(),
                "UpdateClusterVersion".into(),
                "Amazon EKS detected upgrade readiness issues: x.".into()
            ))
        );
        assert_eq!(parse_aws_error("Unable to locate credentials."), None);
    }
}
