//! Seed 002's MLflow checks, run from where MLflow runs: a Job built from the MLflow
//! Deployment's pod template (its image, environment, secrets, volumes and service account,
//! so IRSA gives it the same AWS identity) connects to the backend store the server's
//! command names and writes, lists and deletes a probe object under its S3 artifact
//! location. What each found comes back through the Job's log; the Job is deleted after.
//!
//! The server's flags are read the way `mlflow server` reads them (`--backend-store-uri`,
//! `--artifacts-destination`, `--default-artifact-root`, or their `MLFLOW_*` variables), from
//! the container's command as the kubelet expands it, a shell form included.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PropagationPolicy};
use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_kube::job::{TemplateJobSpec, TemplateJobStep};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::{Format, xml_escape};

/// The check's program, run by the image's `python` with the server's command after `--`.
/// One JSON line per check: `{"check", "ok" (true, false or null when skipped), "detail"}`.
pub const CHECK_SCRIPT: &str = r#"
import json, os, shlex, sys
from urllib.parse import urlsplit, urlunsplit

def emit(check, ok, detail):
    print(json.dumps({"check": check, "ok": ok, "detail": detail}), flush=True)

tokens = []
for arg in sys.argv[1:]:
    arg = os.path.expandvars(arg)
    tokens += shlex.split(arg) if any(c.isspace() for c in arg) else [arg]

def flag(names, variables):
    for i, token in enumerate(tokens):
        for name in names:
            if token == name and i + 1 < len(tokens):
                return tokens[i + 1]
            if token.startswith(name + "="):
                return token[len(name) + 1:]
    for variable in variables:
        if os.environ.get(variable):
            return os.environ[variable]
    return None

def shown(uri):
    parts = urlsplit(uri)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(":" + parts.password + "@", ":***@")))
    return uri

def first_line(error):
    text = str(error).strip()
    return type(error).__name__ + (": " + text.splitlines()[0] if text else "")

failed = False
store = flag(["--backend-store-uri"], ["MLFLOW_BACKEND_STORE_URI"])
if not store:
    emit("database", None, "the server names no --backend-store-uri (nor MLFLOW_BACKEND_STORE_URI): a local file store, no database")
elif "://" not in store or store.startswith("file:"):
    emit("database", None, "file store " + store + ": no database")
else:
    try:
        import sqlalchemy
        with sqlalchemy.create_engine(store).connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            try:
                revision = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:
                revision = None
        emit("database", True, "connected to " + shown(store) + (": MLflow schema revision " + revision if revision else ": no MLflow schema yet"))
    except Exception as error:
        emit("database", False, shown(store) + ": " + first_line(error))
        failed = True

artifacts = flag(["--artifacts-destination", "--default-artifact-root"], ["MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_DEFAULT_ARTIFACT_ROOT"])
if not artifacts or not artifacts.startswith("s3://"):
    emit("s3", None, "artifacts at " + (artifacts or "the default location") + ": not S3")
else:
    bucket, _, prefix = artifacts[len("s3://"):].partition("/")
    key = (prefix.rstrip("/") + "/" if prefix else "") + ".upgrade-access-check"
    identity = os.environ.get("AWS_ROLE_ARN")
    who = " as " + identity if identity else ""
    try:
        import boto3
    except ImportError:
        emit("s3", False, "boto3 is not in this image: run the check with an image that has it (--check-image)")
        failed = True
    else:
        try:
            s3 = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)
            s3.put_object(Bucket=bucket, Key=key, Body=b"upgrade-emergency check-mlflow\n")
            s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            s3.delete_object(Bucket=bucket, Key=key)
            emit("s3", True, "wrote, listed and deleted s3://" + bucket + "/" + key + who)
        except Exception as error:
            emit("s3", False, "s3://" + bucket + "/" + key + who + ": " + first_line(error))
            failed = True
sys.exit(1 if failed else 0)
"#;

/// Which MLflow to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlflowAccessSpec {
    /// The MLflow Deployment's namespace.
    pub namespace: String,
    /// The MLflow Deployment.
    pub deployment: String,
    /// Its container that runs the server (default: the one whose image is MLflow's, else
    /// the first).
    #[serde(default)]
    pub container: Option<String>,
    /// The image to run the check in (default: the server's own, which has Python, MLflow's
    /// database drivers and, when it serves S3 artifacts, boto3).
    #[serde(default)]
    pub image: Option<String>,
    /// How long the Job may take (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    120
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCheck {
    /// `database` or `s3`.
    pub check: String,
    /// Passed, failed, or `None` when there was nothing to check.
    pub ok: Option<bool>,
    /// What it found.
    pub detail: String,
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReport {
    /// `namespace/deployment`.
    pub deployment: String,
    /// The container whose environment the Job had.
    pub container: String,
    /// The image the Job ran.
    pub image: String,
    /// The service account it ran as.
    pub service_account: String,
    /// The Job (deleted after).
    pub job: String,
    /// Each check.
    pub checks: Vec<AccessCheck>,
}

impl AccessReport {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.ok == Some(false))
    }

    /// 4 (blocked) when a check failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.failed() {
            upgrade_core::exit::BLOCKED
        } else {
            upgrade_core::exit::OK
        }
    }

    /// Renders in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("serialises") + "\n",
            Format::Text => self.text(),
            Format::Markdown => {
                let mut s = format!(
                    "## MLflow {} access\n\nJob `{}`, image `{}`, service account `{}`.\n\n| Check | Result | Detail |\n|---|---|---|\n",
                    self.deployment, self.job, self.image, self.service_account
                );
                for c in &self.checks {
                    s.push_str(&format!(
                        "| {} | {} | {} |\n",
                        c.check,
                        Self::mark(c),
                        c.detail.replace('|', "\\|")
                    ));
                }
                s
            }
            Format::Junit => {
                let failures = self.checks.iter().filter(|c| c.ok == Some(false)).count();
                let mut s = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"MLflow {} access\" tests=\"{}\" failures=\"{failures}\">\n",
                    xml_escape(&self.deployment),
                    self.checks.len()
                );
                for c in &self.checks {
                    s.push_str(&format!(
                        "  <testcase classname=\"mlflow-access\" name=\"{}\">",
                        xml_escape(&c.check)
                    ));
                    match c.ok {
                        Some(false) => s.push_str(&format!(
                            "<failure message=\"FAIL\">{}</failure>",
                            xml_escape(&c.detail)
                        )),
                        None => {
                            s.push_str(&format!("<skipped message=\"{}\"/>", xml_escape(&c.detail)))
                        }
                        Some(true) => {}
                    }
                    s.push_str("</testcase>\n");
                }
                s.push_str("</testsuite>\n");
                s
            }
        }
    }

    fn mark(check: &AccessCheck) -> &'static str {
        match check.ok {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "SKIP",
        }
    }

    fn text(&self) -> String {
        let mut out = format!(
            "MLflow {} (container {}, service account {}), checked by Job {} with image {}:\n",
            self.deployment, self.container, self.service_account, self.job, self.image
        );
        for check in &self.checks {
            out.push_str(&format!(
                "  {} {}: {}\n",
                Self::mark(check),
                check.check,
                check.detail
            ));
        }
        out
    }
}

/// Runs the checks (see the module docs): creates the Job, waits for it, reads what it
/// found, deletes it. A Job that finds nothing to report (it could not start, or the image
/// has no Python) is an error naming the Job's outcome.
pub async fn check_mlflow_access(
    ctx: &FlowContext,
    spec: &MlflowAccessSpec,
) -> Result<AccessReport> {
    let cluster = ctx.cluster();
    // It creates a Job: the interlock (--expect-cluster) first, as for any change.
    cluster.guard()?;
    let name = format!("{}/{}", spec.namespace, spec.deployment);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client().clone(), &spec.namespace);
    let deployment = deployments
        .get_opt(&spec.deployment)
        .await
        .map_err(|e| FlowError::failed(format!("read deployment {name}"), e))?
        .ok_or_else(|| {
            FlowError::invalid(
                "deployment",
                format!("there is no deployment {name}"),
                "name MLflow's Deployment as NAMESPACE/NAME (kubectl get deployments -A)",
            )
        })?;
    let pod_spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let container = match &spec.container {
        Some(wanted) => pod_spec.containers.iter().find(|c| &c.name == wanted),
        None => pod_spec
            .containers
            .iter()
            .find(|c| c.image.as_deref().is_some_and(|i| i.contains("mlflow")))
            .or(pod_spec.containers.first()),
    }
    .ok_or_else(|| {
        FlowError::invalid(
            "container",
            format!(
                "deployment {name} has no container {}",
                spec.container.as_deref().unwrap_or("")
            ),
            format!(
                "name one of {}",
                pod_spec
                    .containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let image = spec
        .image
        .clone()
        .or_else(|| container.image.clone())
        .unwrap_or_default();
    let mut command = vec![
        "python".to_string(),
        "-c".to_string(),
        CHECK_SCRIPT.to_string(),
    ];
    command.extend(container.command.iter().flatten().cloned());
    command.extend(container.args.iter().flatten().cloned());
    let job_name = format!(
        "mlflow-access-check-{}",
        jiff::Timestamp::now().strftime("%Y%m%dt%H%M%S")
    );
    let step = TemplateJobStep {
        spec: TemplateJobSpec {
            id: "emergency/check-mlflow".into(),
            component: "emergency".into(),
            namespace: spec.namespace.clone(),
            deployment: spec.deployment.clone(),
            container: container.name.clone(),
            image: image.clone(),
            command,
            job_name: job_name.clone(),
            timeout: Duration::from_secs(spec.timeout_secs),
            irreversible: None,
            undo: None,
        },
        cluster: cluster.clone(),
    };
    let outcome = step.apply().await;
    let log = job_log(ctx, &spec.namespace, &job_name).await;
    delete_job(ctx, &spec.namespace, &job_name).await;
    let checks: Vec<AccessCheck> = log
        .as_deref()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .map(|mut check: AccessCheck| {
            check.detail = upgrade_core::redact::scrub_credentials(&check.detail);
            check
        })
        .collect();
    if checks.is_empty() {
        let why = match (outcome, log) {
            (Err(e), _) => e.to_string(),
            (Ok(()), Err(e)) => format!("its log could not be read: {e}"),
            (Ok(()), Ok(_)) => "it printed no result".into(),
        };
        return Err(FlowError::failed(
            format!("the check Job {}/{job_name}", spec.namespace),
            format!("{why} (does image {image} have Python? give --check-image)"),
        ));
    }
    Ok(AccessReport {
        deployment: name,
        container: container.name.clone(),
        image,
        service_account: pod_spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        job: job_name,
        checks,
    })
}

/// The log of the Job's pod.
async fn job_log(
    ctx: &FlowContext,
    namespace: &str,
    job: &str,
) -> std::result::Result<String, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.cluster().client().clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let Some(pod) = listed.items.first().and_then(|p| p.metadata.name.clone()) else {
        return Ok(String::new());
    };
    pods.logs(&pod, &LogParams::default()).await
}

/// Deletes the Job and its pods; a failure only warns (the Job expires by its TTL).
async fn delete_job(ctx: &FlowContext, namespace: &str, job: &str) {
    let jobs: Api<Job> = Api::namespaced(ctx.cluster().client().clone(), namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    if let Err(e) = jobs.delete(job, &params).await {
        tracing::warn!(job, error = %e, "could not delete the check Job; it expires by its TTL");
    }
}
