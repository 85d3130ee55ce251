//! Seed 001's "set permissions for FSx" on green: a Job per FSx (or other shared file
//! system) claim that mounts it and gives the notebook user its root (by default
//! `chown 1000:100` and `chmod 2775`, Kubeflow's `jovyan` user and `users` group), awaited
//! until it completes.
//!
//! The ownership change on the file system is not undone (blue's pods already see the same
//! data with it, and the guide makes it once); the rollback deletes the Job, and the plan
//! says so.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use serde::{Deserialize, Serialize};
use serde_json::json;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use super::transfer::{GreenCluster, LazyGreen};

/// The command the Job runs by default: the notebook user's uid and group own the volume's
/// root, group-writable, new files inheriting the group.
pub const DEFAULT_PERMISSIONS_COMMAND: &str = "chown 1000:100 /data && chmod 2775 /data";

/// The image the Job runs by default.
pub const DEFAULT_PERMISSIONS_IMAGE: &str = "public.ecr.aws/docker/library/busybox:1.36";

/// What [`FsxPermissionsStep`] runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsxPermissionsSpec {
    /// Step id.
    pub id: String,
    /// The green cluster.
    pub green: GreenCluster,
    /// The claim, `namespace/name`.
    pub claim: String,
    /// The Job's name (stable across a resume).
    pub job_name: String,
    /// The image.
    pub image: String,
    /// The shell command run with the volume at `/data`.
    pub command: String,
    /// How long the Job may take (seconds).
    pub timeout_secs: u64,
}

impl StepSpec for FsxPermissionsSpec {
    const KIND: &'static str = "bluegreen-fsx-permissions";
}

/// Runs the permissions Job for one claim on green.
pub struct FsxPermissionsStep {
    spec: FsxPermissionsSpec,
    green: LazyGreen,
}

impl FsxPermissionsStep {
    /// The step of `spec`; green is connected on first use.
    pub fn new(spec: FsxPermissionsSpec, stop: StopSignal) -> FsxPermissionsStep {
        let green = LazyGreen::new(spec.green.clone(), stop);
        FsxPermissionsStep { spec, green }
    }

    fn namespace_and_claim(&self) -> (&str, &str) {
        self.spec
            .claim
            .split_once('/')
            .unwrap_or(("default", &self.spec.claim))
    }

    async fn jobs(&self) -> std::result::Result<Api<Job>, String> {
        let green = self.green.get().await.map_err(|e| e.to_string())?;
        green.guard().map_err(|e| e.to_string())?;
        Ok(Api::namespaced(
            green.client().clone(),
            self.namespace_and_claim().0,
        ))
    }

    /// `Some(true)` completed, `Some(false)` failed, `None` still running.
    fn finished(job: &Job) -> Option<bool> {
        let status = job.status.as_ref()?;
        let condition = |kind: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == kind && c.status == "True")
        };
        if condition("Complete") || status.succeeded.unwrap_or(0) > 0 {
            Some(true)
        } else if condition("Failed") || status.failed.unwrap_or(0) > 0 {
            Some(false)
        } else {
            None
        }
    }
}

impl Step for FsxPermissionsStep {
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
            "run Job {} on green with claim {} at /data: `{}` (the ownership change stays; a rollback deletes the Job)",
            self.spec.job_name, self.spec.claim, self.spec.command
        )
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let jobs = self.jobs().await?;
            let claim = self.namespace_and_claim().1;
            if jobs
                .get_opt(&self.spec.job_name)
                .await
                .map_err(|e| format!("read Job {}: {e}", self.spec.job_name))?
                .is_none()
            {
                let job: Job = serde_json::from_value(json!({
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        "name": self.spec.job_name,
                        "labels": {"app.kubernetes.io/managed-by": "upgrade-bluegreen"},
                    },
                    "spec": {
                        "backoffLimit": 2,
                        "template": {"spec": {
                            "restartPolicy": "Never",
                            "securityContext": {"runAsUser": 0},
                            "containers": [{
                                "name": "permissions",
                                "image": self.spec.image,
                                "command": ["sh", "-c", self.spec.command],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }],
                            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                        }},
                    },
                }))
                .map_err(|e| format!("the Job: {e}"))?;
                jobs.create(&PostParams::default(), &job)
                    .await
                    .map_err(|e| format!("create Job {}: {e}", self.spec.job_name))?;
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(self.spec.timeout_secs);
            loop {
                let job = jobs
                    .get(&self.spec.job_name)
                    .await
                    .map_err(|e| format!("read Job {}: {e}", self.spec.job_name))?;
                match Self::finished(&job) {
                    Some(true) => return Ok(()),
                    Some(false) => {
                        return Err(format!(
                            "Job {} failed: the command could not set the permissions of claim {} (kubectl logs job/{} -n {})",
                            self.spec.job_name,
                            self.spec.claim,
                            self.spec.job_name,
                            self.namespace_and_claim().0
                        )
                        .into());
                    }
                    None => {}
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "Job {} did not complete within {} s",
                        self.spec.job_name, self.spec.timeout_secs
                    )
                    .into());
                }
                if StopSignal::global().is_stopped() {
                    return Err(format!("stopped while Job {} ran", self.spec.job_name).into());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let jobs = self.jobs().await?;
            let job = jobs
                .get(&self.spec.job_name)
                .await
                .map_err(|e| format!("read Job {}: {e}", self.spec.job_name))?;
            match Self::finished(&job) {
                Some(true) => Ok(()),
                _ => Err(format!("Job {} has not completed", self.spec.job_name).into()),
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let jobs = self.jobs().await?;
            if jobs
                .get_opt(&self.spec.job_name)
                .await
                .map_err(|e| format!("read Job {}: {e}", self.spec.job_name))?
                .is_some()
            {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                jobs.delete(&self.spec.job_name, &params)
                    .await
                    .map_err(|e| format!("delete Job {}: {e}", self.spec.job_name))?;
            }
            Ok(())
        })
    }
}
