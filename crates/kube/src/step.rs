//! A custom-resource backup as a step of an upgrade run (`upgrade_core::executor::Step`):
//! the seeds' "back up InferenceServices (or Workflows) before the upgrade; re-apply the
//! backup to roll back", made recorded and reversible.
//!
//! The capture is the backup (YAML with server fields stripped, in the step's snapshot);
//! apply changes nothing; rollback restores every backed-up object with server-side apply.
//!
//! Every step here is its spec (serde data, recorded in the run record) plus the
//! [`Cluster`] it acts on, which the caller binds when it builds or rebuilds the step.

use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::backup::{Backup, BackupKind, backup, restore};
use crate::connect::Cluster;
use crate::cordon::uncordon;
use crate::provisioner::Provisioner;
use crate::replace::{ManagedNodeGroups, ReplacerSpec};
use crate::rollout::{RolloutOptions, nodes_below, rollout};
use crate::status::UpgradeStatus;

const BACKUP_FILE: &str = "backup.yaml";

/// What [`CrBackupStep`] backs up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrBackupSpec {
    /// Step id, e.g. `kserve/backup-inferenceservices`.
    pub id: String,
    /// Component, e.g. `kserve`.
    pub component: String,
    /// The kinds to back up (see [`crate::backup::platform_kinds`]).
    pub kinds: Vec<BackupKind>,
    /// One namespace, or all.
    pub namespace: Option<String>,
}

impl StepSpec for CrBackupSpec {
    const KIND: &'static str = "kube-cr-backup";
}

/// Backs up custom resources before the steps that may change them.
#[derive(Debug, Clone)]
pub struct CrBackupStep {
    /// What it backs up.
    pub spec: CrBackupSpec,
    /// The cluster.
    pub cluster: Cluster,
}

impl Step for CrBackupStep {
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
        let kinds: Vec<&str> = self.spec.kinds.iter().map(|k| k.kind.as_str()).collect();
        format!(
            "back up {} in {}",
            kinds.join(", "),
            self.spec.namespace.as_deref().unwrap_or("all namespaces")
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let taken = backup(
                &self.cluster,
                &self.spec.kinds,
                self.spec.namespace.as_deref(),
            )
            .await?;
            snapshot.put(BACKUP_FILE, taken.to_yaml().as_bytes())?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let text = String::from_utf8(snapshot.get(BACKUP_FILE)?)?;
            let saved = Backup::from_yaml(&text)?;
            restore(&self.cluster, &saved, &self.spec.kinds).await?;
            Ok(())
        })
    }
}

/// What [`DeploymentImageStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentImageSpec {
    /// Step id, e.g. `mlflow/image`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// The container whose image changes.
    pub container: String,
    /// The new image, `repository:tag`.
    pub image: String,
    /// How long to wait for the rollout.
    pub timeout: std::time::Duration,
}

impl StepSpec for DeploymentImageSpec {
    const KIND: &'static str = "kube-deployment-image";
}

/// Sets one container's image in a Deployment (seed 000's `kubectl set image deployment/mlflow
/// mlflow=...`), waits for the rollout, and rolls back like `kubectl rollout undo`: the pod
/// template captured before the change is put back.
#[derive(Debug, Clone)]
pub struct DeploymentImageStep {
    /// What it changes.
    pub spec: DeploymentImageSpec,
    /// The cluster.
    pub cluster: Cluster,
}

const TEMPLATE_FILE: &str = "pod-template.json";

impl DeploymentImageStep {
    fn api(&self) -> kube::Api<k8s_openapi::api::apps::v1::Deployment> {
        kube::Api::namespaced(self.cluster.client().clone(), &self.spec.namespace)
    }

    async fn patch_template(&self, template: serde_json::Value) -> Result<(), crate::Error> {
        self.cluster.guard()?;
        // A strategic-merge patch of the whole template merges containers by name, as
        // `kubectl rollout undo` does when it copies the old ReplicaSet's template back.
        let patch = serde_json::json!({ "spec": { "template": template } });
        self.api()
            .patch(
                &self.spec.deployment,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Strategic(patch),
            )
            .await
            .map_err(|e| {
                crate::Error::api(
                    format!(
                        "patch deployment {}/{}",
                        self.spec.namespace, self.spec.deployment
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    async fn wait_rolled_out(&self) -> Result<(), crate::Error> {
        wait_deployment_rolled_out(
            &self.cluster,
            &self.spec.namespace,
            &self.spec.deployment,
            self.spec.timeout,
        )
        .await
    }

    async fn current_image(&self) -> Result<Option<String>, crate::Error> {
        let d = self.api().get(&self.spec.deployment).await.map_err(|e| {
            crate::Error::api(
                format!(
                    "read deployment {}/{}",
                    self.spec.namespace, self.spec.deployment
                ),
                e,
            )
        })?;
        Ok(d.spec
            .and_then(|s| s.template.spec)
            .and_then(|p| {
                p.containers
                    .into_iter()
                    .find(|c| c.name == self.spec.container)
            })
            .and_then(|c| c.image))
    }
}

/// Waits until the Deployment's controller has seen its latest spec and every wanted replica
/// is updated and available (none left when it is scaled to zero).
pub async fn wait_deployment_rolled_out(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    timeout: std::time::Duration,
) -> Result<(), crate::Error> {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cluster.client().clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let d = api
            .get(name)
            .await
            .map_err(|e| crate::Error::api(format!("read deployment {namespace}/{name}"), e))?;
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let done = d.status.as_ref().is_some_and(|s| {
            s.observed_generation.unwrap_or(0) >= generation
                && s.updated_replicas.unwrap_or(0) == wanted
                && s.available_replicas.unwrap_or(0) == wanted
                && s.replicas.unwrap_or(0) == wanted
        });
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::Error::Timeout {
                what: format!("deployment {namespace}/{name} to roll out"),
                seconds: timeout.as_secs(),
            });
        }
        cluster.pause(std::time::Duration::from_millis(200)).await?;
    }
}

impl Step for DeploymentImageStep {
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
            "set image {}={} on deployment {}/{} and wait for the rollout",
            self.spec.container, self.spec.image, self.spec.namespace, self.spec.deployment
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let d = self.api().get(&self.spec.deployment).await.map_err(|e| {
                crate::Error::api(
                    format!(
                        "read deployment {}/{}",
                        self.spec.namespace, self.spec.deployment
                    ),
                    e,
                )
            })?;
            let template =
                serde_json::to_value(d.spec.map(|s| s.template)).expect("templates serialise");
            snapshot.put_json(TEMPLATE_FILE, &template)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if self.current_image().await?.as_deref() != Some(self.spec.image.as_str()) {
                let patch = serde_json::json!({
                    "spec": { "containers": [{ "name": self.spec.container, "image": self.spec.image }] }
                });
                self.patch_template(patch).await?;
            }
            self.wait_rolled_out().await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            match self.current_image().await? {
                Some(image) if image == self.spec.image => Ok(self.wait_rolled_out().await?),
                other => Err(format!(
                    "deployment {}/{} runs {other:?} in container {}, not {}",
                    self.spec.namespace, self.spec.deployment, self.spec.container, self.spec.image
                )
                .into()),
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let template: serde_json::Value = snapshot.get_json(TEMPLATE_FILE)?;
            self.patch_template(template).await?;
            self.wait_rolled_out().await?;
            Ok(())
        })
    }
}

const CORDONED_FILE: &str = "nodes-to-replace.json";

/// Replaces every node whose kubelet minor is below `target` (seed 004's node procedure:
/// surge, cordon, PDB-aware drain, retire, validate twice; a canary first), through
/// [`crate::rollout::rollout`], each node the way its [`Provisioner`] needs (see
/// [`crate::replace`]). Nodes nothing in the spec replaces are never drained.
///
/// Rollback cannot bring replaced nodes back (and need not: nodes one minor below the
/// control plane are within skew). It lifts the cordons this toolkit set on nodes that are
/// still there (an admin's cordon stays), then drains and retires the surge capacity added
/// for the batch that did not finish, so an interrupted rollout leaves neither capacity
/// fenced off nor extra nodes behind.
#[derive(Debug, Clone)]
pub struct NodeRolloutStep {
    /// What it rolls.
    pub spec: NodeRolloutSpec,
    /// The cluster.
    pub cluster: Cluster,
}

/// What [`NodeRolloutStep`] rolls, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRolloutSpec {
    /// Step id, e.g. `eks/nodes-1.31`.
    pub id: String,
    /// Component, e.g. `eks`.
    pub component: String,
    /// Nodes below this minor are replaced.
    pub target: upgrade_core::version::KubeMinor,
    /// Only nodes with these labels (`key=value`; empty: every node).
    pub selector: Vec<(String, String)>,
    /// The nodes below the target when the run was planned (what the plan showed).
    #[serde(default)]
    pub planned_nodes: Vec<String>,
    /// Where new nodes come from and how drained ones go.
    pub replacer: ReplacerSpec,
    /// Batches, canary, drain, validation.
    pub options: RolloutOptions,
}

impl StepSpec for NodeRolloutSpec {
    const KIND: &'static str = "kube-node-rollout";
}

impl NodeRolloutStep {
    /// The nodes below the target minor matching the selector, each with its provisioner,
    /// in name order: what the plan classifies.
    pub async fn classify(&self) -> crate::Result<Vec<(String, Provisioner)>> {
        let below = nodes_below(&self.cluster, self.spec.target).await?;
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> =
            kube::Api::all(self.cluster.client().clone());
        let mut chosen = Vec::new();
        for name in below {
            let node = crate::retry::read(&format!("read node {name}"), nodes.get(&name)).await?;
            let provisioner = Provisioner::of(&node);
            let labels = node.metadata.labels.unwrap_or_default();
            if self
                .spec
                .selector
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
            {
                chosen.push((name, provisioner));
            }
        }
        Ok(chosen)
    }

    /// The nodes this step replaces now: below the target, matching the selector, and
    /// replaced by this rollout (Karpenter's, or your commands').
    pub async fn nodes(&self) -> crate::Result<Vec<String>> {
        Ok(self
            .rolled()
            .await?
            .into_iter()
            .map(|(node, _)| node)
            .collect())
    }

    async fn rolled(&self) -> crate::Result<Vec<(String, Provisioner)>> {
        Ok(self
            .classify()
            .await?
            .into_iter()
            .filter(|(_, p)| self.spec.replacer.replacement(p).by_rollout())
            .collect())
    }

    /// Drains and retires the surge capacity this run added for a batch that did not
    /// finish (recorded in the `upgrade-status` ConfigMap).
    async fn retire_surged(&self) -> Result<(), upgrade_core::executor::StepError> {
        let Some(mut status) = UpgradeStatus::read(&self.cluster)
            .await?
            .filter(|s| s.run_id == self.spec.options.run_id)
        else {
            return Ok(());
        };
        let replacer = self.spec.replacer.bind(&self.cluster, &[]);
        let present = crate::retry::list_all::<k8s_openapi::api::core::v1::Node, _>(
            self.cluster.client(),
            500,
            "list nodes",
            |n| n.metadata.name.clone(),
        )
        .await?;
        for node in status.surged.clone() {
            if present.contains(&node) {
                crate::drain::drain(&self.cluster, &node, &self.spec.options.drain).await?;
                replacer.retire_surged(&node).await?;
            }
            status.surged.retain(|n| n != &node);
            status.publish(&self.cluster).await?;
        }
        Ok(())
    }
}

impl Step for NodeRolloutStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: format!("Nodes ({} planned)", self.spec.planned_nodes.len()),
            from: (!self.spec.options.from_version.is_empty())
                .then(|| self.spec.options.from_version.clone()),
            to: Some(self.spec.target.to_string()),
        }
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        let mut how = vec!["Karpenter's nodes: Karpenter replaces them"];
        if self.spec.replacer.commands.is_some() {
            how.push(match self.spec.replacer.managed_node_groups {
                ManagedNodeGroups::Commands => {
                    "self-managed and managed node groups' nodes: your surge/retire commands"
                }
                ManagedNodeGroups::OwnUpdate => "self-managed nodes: your surge/retire commands",
            });
        }
        if self.spec.replacer.managed_node_groups == ManagedNodeGroups::OwnUpdate {
            how.push("managed node groups: left to their own update");
        }
        let how = how.join("; ");
        let which = if self.spec.selector.is_empty() {
            String::new()
        } else {
            let labels: Vec<String> = self
                .spec
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(" with {}", labels.join(","))
        };
        format!(
            "replace nodes{which} below {}: canary first, {} per batch, PDB-aware drain, validated twice ({how})",
            self.spec.target,
            self.spec.options.batch_size.max(1)
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let nodes = self.nodes().await?;
            snapshot.put(CORDONED_FILE, &serde_json::to_vec(&nodes)?)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let rolled = self.rolled().await?;
            if rolled.is_empty() {
                return Ok(());
            }
            let nodes: Vec<String> = rolled.iter().map(|(node, _)| node.clone()).collect();
            let report = rollout(
                &self.cluster,
                &self.spec.replacer.bind(&self.cluster, &rolled),
                &nodes,
                &self.spec.options,
                None,
            )
            .await?;
            tracing::info!(report = %report.render(), "node rollout finished");
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let left = self.nodes().await?;
            if !left.is_empty() {
                return Err(format!(
                    "nodes still below {}: {}",
                    self.spec.target,
                    left.join(", ")
                )
                .into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let nodes: Vec<String> = serde_json::from_slice(&snapshot.get(CORDONED_FILE)?)?;
            let present = nodes_below(&self.cluster, self.spec.target).await?;
            // Old nodes first, so the pods of the surge capacity have somewhere to go back to.
            for node in nodes.iter().filter(|n| present.contains(n)) {
                uncordon(&self.cluster, node).await?;
            }
            self.retire_surged().await
        })
    }
}

/// What [`DeploymentScaleStep`] changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentScaleSpec {
    /// Step id, e.g. `mlflow/scale-down`.
    pub id: String,
    /// Component, e.g. `mlflow`.
    pub component: String,
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// The replicas to scale to (0 stops every pod).
    pub replicas: i32,
    /// How long to wait until exactly that many pods are available.
    pub timeout: std::time::Duration,
}

impl StepSpec for DeploymentScaleSpec {
    const KIND: &'static str = "kube-deployment-scale";
}

/// Scales a Deployment (`kubectl scale`) and waits until exactly that many pods run and are
/// available (none left for 0); rollback scales it back to the replicas captured before.
#[derive(Debug, Clone)]
pub struct DeploymentScaleStep {
    /// What it changes.
    pub spec: DeploymentScaleSpec,
    /// The cluster.
    pub cluster: Cluster,
}

const REPLICAS_FILE: &str = "replicas.json";

impl DeploymentScaleStep {
    fn api(&self) -> kube::Api<k8s_openapi::api::apps::v1::Deployment> {
        kube::Api::namespaced(self.cluster.client().clone(), &self.spec.namespace)
    }

    fn what(&self) -> String {
        format!(
            "deployment {}/{}",
            self.spec.namespace, self.spec.deployment
        )
    }

    async fn read(&self) -> Result<k8s_openapi::api::apps::v1::Deployment, crate::Error> {
        self.api()
            .get(&self.spec.deployment)
            .await
            .map_err(|e| crate::Error::api(format!("read {}", self.what()), e))
    }

    async fn scale(&self, replicas: i32) -> Result<(), crate::Error> {
        self.cluster.guard()?;
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.api()
            .patch(
                &self.spec.deployment,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .map_err(|e| crate::Error::api(format!("scale {}", self.what()), e))?;
        self.wait_scaled(replicas).await
    }

    async fn wait_scaled(&self, replicas: i32) -> Result<(), crate::Error> {
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        loop {
            let d = self.read().await?;
            let generation = d.metadata.generation.unwrap_or(0);
            let done = d.status.as_ref().is_some_and(|s| {
                s.observed_generation.unwrap_or(0) >= generation
                    && s.replicas.unwrap_or(0) == replicas
                    && s.available_replicas.unwrap_or(0) == replicas
            });
            if done {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::Error::Timeout {
                    what: format!("{} to run {replicas} pod(s)", self.what()),
                    seconds: self.spec.timeout.as_secs(),
                });
            }
            self.cluster
                .pause(std::time::Duration::from_millis(200))
                .await?;
        }
    }
}

impl Step for DeploymentScaleStep {
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
            "scale {} to {} replica(s) and wait for it",
            self.what(),
            self.spec.replicas
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let replicas = self
                .read()
                .await?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            snapshot.put_json(REPLICAS_FILE, &replicas)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move { Ok(self.scale(self.spec.replicas).await?) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move { Ok(self.wait_scaled(self.spec.replicas).await?) })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let replicas: i32 = snapshot.get_json(REPLICAS_FILE)?;
            Ok(self.scale(replicas).await?)
        })
    }
}

/// What [`WorkloadsReadyStep`] verifies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadsReadySpec {
    /// Step id, e.g. `kserve/verify`.
    pub id: String,
    /// Component, e.g. `kserve`.
    pub component: String,
    /// The namespace whose Deployments must be available.
    pub namespace: String,
    /// Custom resources (in every namespace) that must be ready, each by its kind's
    /// [`Readiness`](crate::health::Readiness) contract.
    pub kinds: Vec<BackupKind>,
    /// How long to wait for everything to be ready.
    pub timeout: std::time::Duration,
    /// The version the component ran before the upgrade (e.g. `0.14.1`): a container of a
    /// Deployment, StatefulSet or DaemonSet in the namespace still on an image tagged with it
    /// (`v0.14.1` or `0.14.1`) fails the verification, as a part left behind.
    #[serde(default)]
    pub replaced_version: Option<String>,
    /// The definitions the chart ships (under `crds/`, in its templates, or in its CRD
    /// chart): each must be in the cluster as the chart has it, or the upgrade left the
    /// component's API behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crds: Vec<crate::crd::CrdFingerprint>,
}

impl StepSpec for WorkloadsReadySpec {
    const KIND: &'static str = "kube-workloads-ready";
}

/// Verifies a component after its upgrade (seed 000's "verify Karpenter" and "verify
/// InferenceServices"): every Deployment in the component's namespace has its replicas
/// available, and every object of `kinds` is ready by its kind's
/// [`Readiness`](crate::health::Readiness) contract (an InferenceService without a `Ready`
/// condition yet is not ready; the step waits up to the timeout). It changes nothing, so its rollback does nothing; a failed verification makes
/// the run roll back the steps before it.
#[derive(Debug, Clone)]
pub struct WorkloadsReadyStep {
    /// What it verifies.
    pub spec: WorkloadsReadySpec,
    /// The cluster.
    pub cluster: Cluster,
}

impl WorkloadsReadyStep {
    /// What is not ready now, one line per object; empty when everything is.
    pub async fn problems(&self) -> Result<Vec<String>, crate::Error> {
        use k8s_openapi::api::apps::v1::Deployment;
        use kube::api::{Api, DynamicObject, ListParams};
        let deployments: Api<Deployment> =
            Api::namespaced(self.cluster.client().clone(), &self.spec.namespace);
        let params = ListParams::default();
        let list = crate::retry::read(
            &format!("list deployments in {}", self.spec.namespace),
            deployments.list(&params),
        )
        .await?;
        let mut problems: Vec<String> = list
            .items
            .iter()
            .filter_map(|d| {
                crate::health::deployment_available(d).err().map(|why| {
                    format!(
                        "Deployment {}/{}: {why}",
                        self.spec.namespace,
                        d.metadata.name.as_deref().unwrap_or_default()
                    )
                })
            })
            .collect();
        if let Some(replaced) = self
            .spec
            .replaced_version
            .as_deref()
            .and_then(upgrade_core::version::parse_loose_semver)
        {
            problems.extend(self.images_left_at(&replaced, &list.items).await?);
        }
        problems.extend(crate::crd::not_current(&self.cluster, &self.spec.crds).await?);
        for kind in &self.spec.kinds {
            let api: Api<DynamicObject> =
                Api::all_with(self.cluster.client().clone(), &kind.api_resource());
            let list = match crate::retry::read(&format!("list {}", kind.plural), api.list(&params))
                .await
            {
                Ok(list) => list,
                // A kind the cluster does not serve has nothing to verify.
                Err(crate::Error::Api { source, .. })
                    if crate::error::api_code(&source) == Some(404) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let readiness = crate::health::Readiness::of(&kind.group, &kind.kind);
            for object in &list.items {
                if let Some(why) = readiness.problem(object) {
                    problems.push(format!(
                        "{} {}/{}: {why}",
                        kind.kind,
                        object.metadata.namespace.as_deref().unwrap_or_default(),
                        object.metadata.name.as_deref().unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(problems)
    }

    /// The containers of the namespace's workloads whose image is tagged `replaced`.
    async fn images_left_at(
        &self,
        replaced: &semver::Version,
        deployments: &[k8s_openapi::api::apps::v1::Deployment],
    ) -> Result<Vec<String>, crate::Error> {
        use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
        use k8s_openapi::api::core::v1::PodTemplateSpec;
        use kube::api::{Api, ListParams};
        let ns = &self.spec.namespace;
        let params = ListParams::default();
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.cluster.client().clone(), ns);
        let statefulsets = crate::retry::read(
            &format!("list statefulsets in {ns}"),
            statefulsets.list(&params),
        )
        .await?;
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.cluster.client().clone(), ns);
        let daemonsets = crate::retry::read(
            &format!("list daemonsets in {ns}"),
            daemonsets.list(&params),
        )
        .await?;
        let name = |meta: &kube::api::ObjectMeta| meta.name.clone().unwrap_or_default();
        let workloads: Vec<(&str, String, Option<&PodTemplateSpec>)> = deployments
            .iter()
            .map(|d| {
                (
                    "Deployment",
                    name(&d.metadata),
                    d.spec.as_ref().map(|s| &s.template),
                )
            })
            .chain(statefulsets.items.iter().map(|s| {
                (
                    "StatefulSet",
                    name(&s.metadata),
                    s.spec.as_ref().map(|s| &s.template),
                )
            }))
            .chain(daemonsets.items.iter().map(|d| {
                (
                    "DaemonSet",
                    name(&d.metadata),
                    d.spec.as_ref().map(|s| &s.template),
                )
            }))
            .collect();
        let mut problems = Vec::new();
        for (kind, name, template) in workloads {
            let Some(pod) = template.and_then(|t| t.spec.as_ref()) else {
                continue;
            };
            let containers = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten());
            for container in containers {
                let image = container.image.as_deref().unwrap_or_default();
                let without_digest = image.split('@').next().unwrap_or_default();
                let tag = upgrade_core::version::split_image_tag(without_digest).map(|(_, t)| t);
                if tag
                    .and_then(upgrade_core::version::parse_loose_semver)
                    .is_some_and(|v| v == *replaced)
                {
                    problems.push(format!(
                        "{kind} {ns}/{name}: container {} still runs {image}, the version before the upgrade",
                        container.name
                    ));
                }
            }
        }
        Ok(problems)
    }
}

impl Step for WorkloadsReadyStep {
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
        let mut what = format!(
            "verify the Deployments in {} are available",
            self.spec.namespace
        );
        if !self.spec.kinds.is_empty() {
            let kinds: Vec<&str> = self.spec.kinds.iter().map(|k| k.kind.as_str()).collect();
            what.push_str(&format!(" and every {} is Ready", kinds.join(", ")));
        }
        if !self.spec.crds.is_empty() {
            what.push_str(&format!(
                ", and the chart's {} CRD(s) are served as it ships them",
                self.spec.crds.len()
            ));
        }
        what
    }

    fn capture<'a>(&'a self, _snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.spec.timeout;
            loop {
                let problems = self.problems().await?;
                if problems.is_empty() {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "{} is not ready after {:?}: {}",
                        self.spec.component,
                        self.spec.timeout,
                        problems.join("; ")
                    )
                    .into());
                }
                self.cluster
                    .pause(std::time::Duration::from_millis(250))
                    .await?;
            }
        })
    }

    fn rollback<'a>(&'a self, _snapshot: &'a Snapshot) -> StepFuture<'a> {
        // Nothing was changed.
        Box::pin(async { Ok(()) })
    }
}
