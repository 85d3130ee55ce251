//! EKS managed add-ons moved directly through EKS's API (besides add-ons whose version lives
//! in the tfvars): `UpdateAddon` with `--resolve-conflicts`, the wait until the add-on is
//! `ACTIVE` at the new version, and the previous version and configuration snapshotted and
//! put back by the rollback.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_aws::Addon;
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::events::{EventSink, wait_until};
use crate::flows::insights::EksApi;

/// What [`ManagedAddonStep`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedAddonSpec {
    /// Step id, e.g. `eks/addon-vpc-cni-1.31`.
    pub id: String,
    /// Component, e.g. `eks`.
    pub component: String,
    /// How to reach EKS (the cluster name resolved while planning).
    pub eks_api: EksApi,
    /// The add-on, e.g. `vpc-cni`.
    pub addon: String,
    /// The version chosen while planning.
    pub version: String,
    /// `OVERWRITE`, `PRESERVE` or `NONE`: what EKS does with fields changed by hand.
    pub resolve_conflicts: String,
    /// The limit of the wait for `ACTIVE`.
    pub timeout: Duration,
}

impl StepSpec for ManagedAddonSpec {
    const KIND: &'static str = "eks-managed-addon";
}

/// Moves one managed add-on to a version, keeping its configuration.
pub struct ManagedAddonStep {
    spec: ManagedAddonSpec,
    events: Arc<dyn EventSink>,
    stop: StopSignal,
}

const BEFORE_FILE: &str = "addon-before.json";

impl ManagedAddonStep {
    /// The step of `spec`.
    pub fn new(spec: ManagedAddonSpec, events: Arc<dyn EventSink>, stop: StopSignal) -> Self {
        ManagedAddonStep { spec, events, stop }
    }

    fn eks(&self) -> Result<upgrade_aws::Eks, String> {
        self.spec.eks_api.recorded_handle()
    }

    async fn describe(&self, eks: &upgrade_aws::Eks) -> Result<Addon, String> {
        eks.describe_addon(&self.spec.addon)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} is not installed as an EKS managed add-on of {}",
                    self.spec.addon,
                    eks.cluster()
                )
            })
    }

    /// Sets `version` (and `configuration`), then waits until the add-on is ACTIVE at it.
    async fn move_to(
        &self,
        version: &str,
        configuration: Option<&str>,
        resolve: &str,
    ) -> Result<(), String> {
        let eks = self.eks()?;
        eks.update_addon(&self.spec.addon, version, configuration, resolve)
            .await
            .map_err(|e| format!("update add-on {} to {version}: {e}", self.spec.addon))?;
        let what = format!("add-on {} ACTIVE at {version}", self.spec.addon);
        wait_until(
            self.events.as_ref(),
            &self.stop,
            &what,
            self.spec.timeout,
            Duration::from_secs(2),
            || async {
                let now = self.describe(&eks).await?;
                match (now.addon_version == version, now.status.as_str()) {
                    (true, "ACTIVE") => Ok(true),
                    (_, "DEGRADED" | "CREATE_FAILED" | "UPDATE_FAILED") => Err(format!(
                        "add-on {} is {} at {}",
                        self.spec.addon, now.status, now.addon_version
                    )),
                    _ => Ok(false),
                }
            },
        )
        .await
        .map_err(|e| e.to_string())
    }
}

impl Step for ManagedAddonStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: format!("EKS add-on {}", self.spec.addon),
            from: None,
            to: Some(self.spec.version.clone()),
        }
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "update EKS managed add-on {} to {} (resolve conflicts: {}), wait until ACTIVE",
            self.spec.addon, self.spec.version, self.spec.resolve_conflicts
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let eks = self.eks()?;
            let before = self.describe(&eks).await?;
            snapshot.put_json(BEFORE_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let eks = self.eks()?;
            let now = self.describe(&eks).await?;
            if now.addon_version == self.spec.version && now.status == "ACTIVE" {
                return Ok(());
            }
            // The configuration stays what it is: only the version moves.
            self.move_to(
                &self.spec.version,
                now.configuration_values.as_deref(),
                &self.spec.resolve_conflicts,
            )
            .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let eks = self.eks()?;
            let now = self.describe(&eks).await?;
            if now.addon_version != self.spec.version || now.status != "ACTIVE" {
                return Err(format!(
                    "add-on {} is {} at {}, not ACTIVE at {}",
                    self.spec.addon, now.status, now.addon_version, self.spec.version
                )
                .into());
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: Addon = snapshot.get_json(BEFORE_FILE)?;
            let eks = self.eks()?;
            let now = self.describe(&eks).await?;
            if now.addon_version == before.addon_version
                && now.configuration_values == before.configuration_values
            {
                return Ok(());
            }
            // Back exactly as it was: the previous configuration wins over anything since.
            self.move_to(
                &before.addon_version,
                before.configuration_values.as_deref(),
                "OVERWRITE",
            )
            .await?;
            Ok(())
        })
    }
}
