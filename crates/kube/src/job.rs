//! A one-off command run in the cluster as a Job built from a Deployment's pod template, as
//! a step of an upgrade run: seed 000's `mlflow db upgrade` with the new image, the same
//! environment (the database URI, its secrets) and the same service account as the server.
//!
//! The Job is named by the caller (derived from the run, so a resumed run finds it again),
//! gets a label of its own (never the Deployment's, so no Service sends it traffic), no
//! probes or ports, `restartPolicy: Never` and `backoffLimit: 0` (a schema migration is not
//! retried blindly).
//!
//! Its rollback does something only if the Job was started (it exists): a Job still running
//! is suspended (its pods go, the Job stays as the record that it started) and its pods
//! awaited, so nothing is restored under a migration in progress; then the `undo` command,
//! when given, undoes what the command did (e.g. restores the database snapshot taken before
//! it). A Job that never started has nothing to undo, so `undo` does not run: a restore is
//! never made needlessly (it would lose what was written since the snapshot).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use upgrade_core::command_step::CommandSpec;
use upgrade_core::executor::{Step, StepError, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::connect::Cluster;

/// The label every Job of this step carries, valued with the Deployment's name.
pub const JOB_LABEL: &str = "upgrade.mlops/job-for";

const JOB_FILE: &str = "job.json";

/// What [`TemplateJobStep`] runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateJobSpec {
    /// Step id, e.g. `mlflow/db-upgrade`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// The Deployment's namespace (the Job runs there too).
    pub namespace: String,
    /// The Deployment whose pod template the Job copies.
    pub deployment: String,
    /// The container that runs the command (the others are left out).
    pub container: String,
    /// The image to run, `repository:tag` (the new one, for a migration).
    pub image: String,
    /// The command, e.g. `["mlflow", "db", "upgrade", "$(BACKEND_STORE_URI)"]`; Kubernetes
    /// expands `$(VAR)` from the container's environment.
    pub command: Vec<String>,
    /// The Job's name (at most 63 characters, stable across a resume).
    pub job_name: String,
    /// How long the Job may run.
    pub timeout: Duration,
    /// Why it cannot be undone, when nothing else in the run can undo it.
    pub irreversible: Option<String>,
    /// Undoes what the command did, run on rollback only if the Job was started (e.g.
    /// restore the database from the snapshot taken before the migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<CommandSpec>,
}

impl StepSpec for TemplateJobSpec {
    const KIND: &'static str = "kube-template-job";
}

/// Runs `command` to completion in a Job made from a Deployment's pod template.
#[derive(Debug, Clone)]
pub struct TemplateJobStep {
    /// What it runs.
    pub spec: TemplateJobSpec,
    /// The cluster.
    pub cluster: Cluster,
}

impl TemplateJobStep {
    fn jobs(&self) -> kube::Api<Job> {
        kube::Api::namespaced(self.cluster.client().clone(), &self.spec.namespace)
    }

    /// The Job this step creates, from the Deployment as it is now.
    pub async fn job(&self) -> Result<Job, StepError> {
        let deployments: kube::Api<Deployment> =
            kube::Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
        let deployment = deployments.get(&self.spec.deployment).await.map_err(|e| {
            crate::Error::api(
                format!(
                    "read deployment {}/{}",
                    self.spec.namespace, self.spec.deployment
                ),
                e,
            )
        })?;
        let template =
            serde_json::to_value(deployment.spec.map(|s| s.template)).expect("templates serialise");
        Ok(serde_json::from_value(self.job_from_template(template)?)?)
    }

    fn job_from_template(&self, mut template: Value) -> Result<Value, StepError> {
        let spec = template
            .get_mut("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| {
                format!(
                    "deployment {}/{} has no pod template spec",
                    self.spec.namespace, self.spec.deployment
                )
            })?;
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        let mut container = containers
            .into_iter()
            .find(|c| c["name"] == self.spec.container.as_str())
            .ok_or_else(|| {
                format!(
                    "deployment {}/{} has no container `{}`; pass the container that runs the server",
                    self.spec.namespace, self.spec.deployment, self.spec.container
                )
            })?;
        let fields = container.as_object_mut().expect("a container is an object");
        for probe_or_port in [
            "readinessProbe",
            "livenessProbe",
            "startupProbe",
            "ports",
            "args",
        ] {
            fields.remove(probe_or_port);
        }
        fields.insert("image".into(), json!(self.spec.image));
        fields.insert("command".into(), json!(self.spec.command));
        spec["containers"] = json!([container]);
        spec["restartPolicy"] = json!("Never");
        let annotations = template["metadata"]["annotations"].clone();
        template["metadata"] = json!({
            "labels": { JOB_LABEL: self.spec.deployment },
            "annotations": if annotations.is_object() { annotations } else { json!({}) },
        });
        // A mesh sidecar would keep the pod running after the command ends.
        template["metadata"]["annotations"]["sidecar.istio.io/inject"] = json!("false");
        Ok(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.spec.job_name,
                "namespace": self.spec.namespace,
                "labels": { JOB_LABEL: self.spec.deployment },
            },
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 7 * 24 * 3600,
                "activeDeadlineSeconds": self.spec.timeout.as_secs().max(1),
                "template": template,
            },
        }))
    }

    /// Suspends the running Job and waits until none of its pods is active.
    async fn suspend(&self) -> Result<(), StepError> {
        self.cluster.guard()?;
        let what = format!("job {}/{}", self.spec.namespace, self.spec.job_name);
        self.jobs()
            .patch(
                &self.spec.job_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": true}})),
            )
            .await
            .map_err(|e| crate::Error::api(format!("suspend {what}"), e))?;
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        loop {
            let active = self
                .existing()
                .await?
                .and_then(|j| j.status)
                .and_then(|s| s.active)
                .unwrap_or(0);
            if active == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::Error::Timeout {
                    what: format!("the pods of the suspended {what} to stop"),
                    seconds: self.spec.timeout.as_secs(),
                }
                .into());
            }
            self.cluster.pause(Duration::from_millis(200)).await?;
        }
    }

    async fn existing(&self) -> Result<Option<Job>, StepError> {
        self.jobs().get_opt(&self.spec.job_name).await.map_err(|e| {
            crate::Error::api(
                format!("read job {}/{}", self.spec.namespace, self.spec.job_name),
                e,
            )
            .into()
        })
    }

    async fn wait_finished(&self) -> Result<(), StepError> {
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        loop {
            if let Some(job) = self.existing().await? {
                match finished(&job) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(why)) => {
                        return Err(format!(
                            "job {}/{} failed: {why}; see `kubectl logs -n {} job/{}`",
                            self.spec.namespace,
                            self.spec.job_name,
                            self.spec.namespace,
                            self.spec.job_name
                        )
                        .into());
                    }
                    None => {}
                }
            } else {
                return Err(format!(
                    "job {}/{} disappeared before it finished",
                    self.spec.namespace, self.spec.job_name
                )
                .into());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::Error::Timeout {
                    what: format!(
                        "job {}/{} to finish",
                        self.spec.namespace, self.spec.job_name
                    ),
                    seconds: self.spec.timeout.as_secs(),
                }
                .into());
            }
            self.cluster.pause(Duration::from_millis(200)).await?;
        }
    }
}

/// `Some(Ok)` when the Job completed, `Some(Err(reason))` when it failed, `None` while it runs.
fn finished(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return Some(Ok(())),
            "Failed" => {
                return Some(Err(format!(
                    "{}{}",
                    c.reason.as_deref().unwrap_or("Failed"),
                    c.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    None
}

impl Step for TemplateJobStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "run `{}` with {} in job {}/{} (from deployment {}'s pod template) and wait for it to complete{}",
            self.spec.command.join(" "),
            self.spec.image,
            self.spec.namespace,
            self.spec.job_name,
            self.spec.deployment,
            self.spec
                .undo
                .as_ref()
                .map(|undo| format!(" (rollback, only if the job started: {undo})"))
                .unwrap_or_default()
        )
    }

    fn irreversible(&self) -> Option<String> {
        self.spec.irreversible.clone()
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            // The Job as it will be created, for the record (and to fail early on a
            // Deployment without the container).
            let job = self.job().await?;
            snapshot.put_json(JOB_FILE, &job)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.cluster.guard()?;
            match self.existing().await? {
                // A resumed run: the Job of this run exists; wait for its outcome.
                Some(_) => {}
                None => {
                    let job = self.job().await?;
                    self.jobs()
                        .create(&PostParams::default(), &job)
                        .await
                        .map_err(|e| {
                            crate::Error::api(
                                format!(
                                    "create job {}/{}",
                                    self.spec.namespace, self.spec.job_name
                                ),
                                e,
                            )
                        })?;
                }
            }
            self.wait_finished().await
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            match self.existing().await?.as_ref().and_then(finished) {
                Some(Ok(())) => Ok(()),
                Some(Err(why)) => Err(format!("job {} failed: {why}", self.spec.job_name).into()),
                None => Err(format!("job {} has not completed", self.spec.job_name).into()),
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            // Never started: nothing ran, so nothing is undone.
            let Some(job) = self.existing().await? else {
                return Ok(());
            };
            if finished(&job).is_none() {
                self.suspend().await?;
            }
            // The Job stays (kept for its logs; it expires by itself), so a rollback retried
            // after a failed undo still knows the command started.
            if let Some(undo) = &self.spec.undo {
                undo.builder()
                    .stop_signal(self.cluster.stop_signal().clone())
                    .resolve_env_refs()?
                    .exec_async()
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_with(conditions: Value) -> Option<Result<(), String>> {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": conditions},
        }))
        .unwrap();
        finished(&job)
    }

    #[test]
    fn a_job_is_finished_by_its_true_conditions() {
        assert_eq!(finished_with(json!([])), None);
        assert_eq!(
            finished_with(json!([{"type": "Complete", "status": "True"}])),
            Some(Ok(()))
        );
        assert_eq!(
            finished_with(json!([{"type": "Failed", "status": "False"}])),
            None
        );
        assert_eq!(
            finished_with(
                json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}])
            ),
            Some(Err(
                "BackoffLimitExceeded (Job has reached the specified backoff limit)".into()
            ))
        );
    }
}
