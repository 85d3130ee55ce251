//! The EKS control-plane step of a hop: the cluster version in the tfvars, planned, reviewed
//! and applied by Terraform, and undone with EKS's version rollback while it is allowed.
//!
//! EKS rolls a control plane back one minor within 7 days of an in-place upgrade
//! (`UpdateClusterVersion` to the previous minor, update type `VersionRollback`); not a
//! cluster created at that version or upgraded by EKS itself; managed node groups must be back
//! first, and add-ons are not rolled back by EKS. So the rollback, which `upgrade-rollback`
//! runs after the later steps (nodes, add-ons) are undone: refuses past the window, names the
//! self-managed or Karpenter nodes still newer than the previous minor, moves each managed node
//! group back (`UpdateNodegroupVersion`), rolls the control plane back, waits for the API
//! server, then puts the tfvars back and converges Terraform on it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_core::version::KubeMinor;
use upgrade_kube::connect::Cluster;
use upgrade_tf::AsyncTerraform;
use upgrade_tf::step::{TfvarsChangeSpec, TfvarsChangeStep};

use crate::events::{EventSink, wait_until};
use crate::flows::insights::EksApi;

/// How long after the upgrade EKS still rolls the control plane back.
pub const ROLLBACK_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// What [`ControlPlaneStep`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneSpec {
    /// The tfvars edit, applied by Terraform.
    pub change: TfvarsChangeSpec,
    /// The minor before the hop.
    pub previous: KubeMinor,
    /// The minor after it.
    pub target: KubeMinor,
    /// How to reach EKS's API for the rollback (the cluster name resolved while planning).
    pub eks_api: EksApi,
}

impl StepSpec for ControlPlaneSpec {
    const KIND: &'static str = "eks-control-plane";
}

/// The control-plane step.
pub struct ControlPlaneStep {
    inner: TfvarsChangeStep,
    spec: ControlPlaneSpec,
    cluster: Cluster,
    events: Arc<dyn EventSink>,
}

const WINDOW_FILE: &str = "control-plane-window.json";

#[derive(Serialize, Deserialize)]
struct Window {
    /// When the step started (seconds since the epoch): the window is counted from here,
    /// which is before EKS finished, so it closes no later than EKS's.
    started: i64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl ControlPlaneStep {
    /// The step of `spec`, with Terraform in its folder and the context's cluster.
    pub fn new(
        spec: ControlPlaneSpec,
        tf: AsyncTerraform,
        cluster: Cluster,
        events: Arc<dyn EventSink>,
    ) -> ControlPlaneStep {
        ControlPlaneStep {
            inner: TfvarsChangeStep {
                spec: spec.change.clone(),
                tf,
            },
            spec,
            cluster,
            events,
        }
    }

    /// Nodes that are not in a managed node group and run a kubelet newer than `previous`:
    /// EKS does not roll them back, and a kubelet newer than the API server breaks the skew
    /// policy.
    async fn unmanaged_newer_nodes(&self) -> Result<Vec<String>, String> {
        use k8s_openapi::api::core::v1::Node;
        let api: kube::Api<Node> = kube::Api::all(self.cluster.client().clone());
        let nodes = api
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|e| format!("list nodes: {e}"))?;
        Ok(nodes
            .items
            .iter()
            .filter(|n| {
                !n.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("eks.amazonaws.com/nodegroup"))
            })
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.node_info.as_ref())
                    .and_then(|i| i.kubelet_version.parse::<KubeMinor>().ok())
                    .is_some_and(|m| m > self.spec.previous)
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect())
    }

    async fn api_server_minor(&self) -> Result<KubeMinor, String> {
        let info = self
            .cluster
            .client()
            .apiserver_version()
            .await
            .map_err(|e| format!("read the API server version: {e}"))?;
        info.git_version
            .parse::<KubeMinor>()
            .map_err(|e| format!("API server version {}: {e}", info.git_version))
    }

    /// EKS's version rollback: node groups first, then the control plane, then the wait.
    async fn eks_rollback(&self, snapshot: &Snapshot) -> Result<(), String> {
        let (previous, target) = (self.spec.previous, self.spec.target);
        let window: Window = snapshot
            .get_json(WINDOW_FILE)
            .map_err(|e| format!("the step's window record is unreadable: {e}"))?;
        let closes = window.started + ROLLBACK_WINDOW.as_secs() as i64;
        if now() > closes {
            return Err(format!(
                "EKS's version rollback window closed on {} (7 days after the update to {target}); the control plane cannot go back to {previous} any more: recover with a new cluster at {previous} restored from backups (blue/green)",
                day(closes)
            ));
        }
        let eks = self.spec.eks_api.recorded_handle()?;
        let live = eks.describe_cluster().await.map_err(|e| e.to_string())?;
        if live.version == previous.to_string() {
            return Ok(());
        }
        let newer = self.unmanaged_newer_nodes().await?;
        if !newer.is_empty() {
            return Err(format!(
                "EKS does not roll back nodes outside managed node groups, and these run a kubelet newer than {previous}: {}; replace them at {previous} first (upgrade-nodes), then run upgrade-rollback again",
                newer.join(", ")
            ));
        }
        for (group, version) in eks.nodegroup_versions().await.map_err(|e| e.to_string())? {
            if version != previous.to_string() {
                eks.update_nodegroup_version(&group, &previous.to_string())
                    .await
                    .map_err(|e| {
                        format!("move managed node group {group} back to {previous}: {e}")
                    })?;
            }
        }
        eks.update_cluster_version(&previous.to_string(), false)
            .await
            .map_err(|e| match e.aws_code() {
                Some("InvalidStateException") => format!(
                    "EKS's rollback-readiness insights refuse the rollback to {previous} ({e}); read them with `aws eks list-insights --cluster-name {} --filter categories=ROLLBACK_READINESS`",
                    eks.cluster()
                ),
                _ => format!("roll the control plane back to {previous}: {e}"),
            })?;
        wait_until(
            self.events.as_ref(),
            self.cluster.stop_signal(),
            &format!("control plane back at {previous}"),
            Duration::from_secs(60 * 60),
            Duration::from_millis(500),
            || async {
                let minor = self.api_server_minor().await?;
                if minor == previous {
                    Ok(true)
                } else {
                    Err(format!("the API server reports {minor}"))
                }
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn day(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| epoch.to_string())
}

impl Step for ControlPlaneStep {
    fn id(&self) -> &str {
        &self.spec.change.id
    }

    fn component(&self) -> &str {
        &self.spec.change.component
    }

    fn irreversible(&self) -> Option<String> {
        self.spec.change.irreversible.clone()
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: "Control Plane".into(),
            from: Some(self.spec.previous.to_string()),
            to: Some(self.spec.target.to_string()),
        }
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        self.inner.description()
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            self.inner.capture(snapshot).await?;
            snapshot.put_json(WINDOW_FILE, &Window { started: now() })?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        self.inner.apply()
    }

    fn verify(&self) -> StepFuture<'_> {
        self.inner.verify()
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            // A control plane still at the previous minor (the apply was refused, or never
            // reached EKS) needs only its file back.
            let live = self.api_server_minor().await?;
            if live > self.spec.previous {
                self.eks_rollback(snapshot).await?;
            }
            self.inner.rollback(snapshot).await
        })
    }
}
