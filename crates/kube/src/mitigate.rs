//! The runbook's emergency mitigations for a Deployment (seeds 000 and 002), each a
//! reversible step: scale it (to zero and back), restart its pods (`kubectl rollout
//! restart`), or put its previous revision back (`kubectl rollout undo`). The replicas and
//! the pod template are captured first; the rollback puts both back exactly (a JSON patch
//! that replaces them, so an annotation the change added goes too) and waits for the rollout.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::connect::Cluster;
use crate::step::wait_deployment_rolled_out;

/// What a mitigation does to the Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Mitigation {
    /// Set the replicas (zero takes it out of service).
    Scale {
        /// The replicas.
        replicas: i32,
    },
    /// Restart every pod (a new `kubectl.kubernetes.io/restartedAt` on the template).
    Restart {
        /// The annotation's value (the plan's time, so a resumed run sets the same).
        at: String,
    },
    /// Put the pod template of revision `revision` back.
    Undo {
        /// The revision put back.
        revision: i64,
        /// Its pod template (the ReplicaSet's, without `pod-template-hash`).
        template: Value,
    },
}

/// What [`MitigationStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MitigationSpec {
    /// Step id.
    pub id: String,
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// What is done.
    pub mitigation: Mitigation,
    /// How long the rollout may take.
    pub timeout: std::time::Duration,
}

impl StepSpec for MitigationSpec {
    const KIND: &'static str = "kube-mitigation";
}

const BEFORE_FILE: &str = "deployment-before.json";

/// One mitigation of one Deployment.
#[derive(Debug, Clone)]
pub struct MitigationStep {
    /// What it changes.
    pub spec: MitigationSpec,
    /// The cluster.
    pub cluster: Cluster,
}

impl MitigationStep {
    fn api(&self) -> Api<Deployment> {
        Api::namespaced(self.cluster.client().clone(), &self.spec.namespace)
    }

    fn name(&self) -> String {
        format!(
            "deployment {}/{}",
            self.spec.namespace, self.spec.deployment
        )
    }

    async fn get(&self) -> Result<Deployment, crate::Error> {
        self.api()
            .get(&self.spec.deployment)
            .await
            .map_err(|e| crate::Error::api(format!("read {}", self.name()), e))
    }

    async fn patch(&self, patch: Patch<Value>) -> Result<(), crate::Error> {
        self.cluster.guard()?;
        self.api()
            .patch(&self.spec.deployment, &PatchParams::default(), &patch)
            .await
            .map_err(|e| crate::Error::api(format!("patch {}", self.name()), e))?;
        Ok(())
    }

    async fn rolled_out(&self) -> Result<(), crate::Error> {
        wait_deployment_rolled_out(
            &self.cluster,
            &self.spec.namespace,
            &self.spec.deployment,
            self.spec.timeout,
        )
        .await
    }
}

/// The revision before the Deployment's current one and its pod template, from the
/// ReplicaSets it owns (what `kubectl rollout undo` puts back); `None` when it has none.
pub async fn previous_revision(
    cluster: &Cluster,
    namespace: &str,
    deployment: &Deployment,
) -> Result<Option<(i64, Value)>, crate::Error> {
    let revision = |annotations: Option<&std::collections::BTreeMap<String, String>>| {
        annotations
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .and_then(|r| r.parse::<i64>().ok())
    };
    let current = revision(deployment.metadata.annotations.as_ref()).unwrap_or(0);
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client().clone(), namespace);
    let listed = sets
        .list(&ListParams::default())
        .await
        .map_err(|e| crate::Error::api(format!("list the ReplicaSets in {namespace}"), e))?;
    let previous = listed
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .filter_map(|rs| Some((revision(rs.metadata.annotations.as_ref())?, rs)))
        .filter(|(r, _)| *r < current)
        .max_by_key(|(r, _)| *r);
    Ok(previous.map(|(r, rs)| {
        let mut template = serde_json::to_value(rs.spec.map(|s| s.template)).unwrap_or_default();
        if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
            labels.remove("pod-template-hash");
        }
        (r, template)
    }))
}

impl Step for MitigationStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "emergency"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        match &self.spec.mitigation {
            Mitigation::Scale { replicas } => {
                format!("scale {} to {replicas} replicas and wait", self.name())
            }
            Mitigation::Restart { .. } => {
                format!(
                    "restart the pods of {} (rollout restart) and wait",
                    self.name()
                )
            }
            Mitigation::Undo { revision, .. } => format!(
                "put revision {revision} of {} back (rollout undo) and wait",
                self.name()
            ),
        }
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let d = self.get().await?;
            let spec = d.spec.unwrap_or_default();
            snapshot.put_json(
                BEFORE_FILE,
                &json!({"replicas": spec.replicas.unwrap_or(1), "template": spec.template}),
            )?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            match &self.spec.mitigation {
                Mitigation::Scale { replicas } => {
                    self.patch(Patch::Merge(json!({"spec": {"replicas": replicas}})))
                        .await?;
                }
                Mitigation::Restart { at } => {
                    self.patch(Patch::Merge(json!({"spec": {"template": {"metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})))
                        .await?;
                }
                Mitigation::Undo { template, .. } => {
                    self.patch(Patch::Json(
                        serde_json::from_value(
                            json!([{"op": "replace", "path": "/spec/template", "value": template}]),
                        )
                        .map_err(|e| format!("the template patch: {e}"))?,
                    ))
                    .await?;
                }
            }
            self.rolled_out().await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let d = self.get().await?;
            let spec = d.spec.unwrap_or_default();
            let ok = match &self.spec.mitigation {
                Mitigation::Scale { replicas } => spec.replicas.unwrap_or(1) == *replicas,
                Mitigation::Restart { at } => {
                    spec.template
                        .metadata
                        .and_then(|m| m.annotations)
                        .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt").cloned())
                        .as_deref()
                        == Some(at.as_str())
                }
                Mitigation::Undo { template, .. } => {
                    serde_json::to_value(&spec.template).unwrap_or_default()["spec"]["containers"]
                        == template["spec"]["containers"]
                }
            };
            if !ok {
                return Err(format!("{} does not show the change", self.name()).into());
            }
            Ok(self.rolled_out().await?)
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Value = snapshot.get_json(BEFORE_FILE)?;
            let patch = json!([
                {"op": "replace", "path": "/spec/replicas", "value": before["replicas"]},
                {"op": "replace", "path": "/spec/template", "value": before["template"]},
            ]);
            self.patch(Patch::Json(
                serde_json::from_value(patch).map_err(|e| format!("the restore patch: {e}"))?,
            ))
            .await?;
            self.rolled_out().await?;
            Ok(())
        })
    }
}
