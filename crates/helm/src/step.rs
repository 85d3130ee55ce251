//! A Helm upgrade as a recorded, resumable, reversible step of an upgrade run
//! (`upgrade_core::executor::Step`).
//!
//! - capture: the [`ReleaseSnapshot`] of the current revision (values, manifest, history), or
//!   a note that the release did not exist;
//! - apply: `helm upgrade --install` with explicit values; a `pending-*` release left by a
//!   killed run of this same step is first rolled back to its last deployed revision (the
//!   journal proves no other Helm owns it);
//! - verify: the release is `deployed` at the wanted chart version;
//! - rollback: the snapshot restored (rollback to its revision while in history, otherwise a
//!   roll forward to the recorded chart and values), or an uninstall when there was none.

use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use crate::chart::ChartRef;
use crate::helm::Helm;
use crate::options::{RollbackOptions, UninstallOptions, UpgradeOptions};
use crate::snapshot::{PendingPolicy, ReleaseSnapshot};
use crate::types::ReleaseRef;

const RELEASE_FILE: &str = "release.json";
const ABSENT_FILE: &str = "release-absent.json";

/// What [`HelmUpgradeStep`] does: one `helm upgrade` of one release.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HelmUpgradeSpec {
    /// Step id, e.g. `kserve/helm-upgrade`.
    pub id: String,
    /// Component, e.g. `kserve`.
    pub component: String,
    /// The release.
    pub release: ReleaseRef,
    /// The chart to upgrade to (its version set; a local chart as an absolute path).
    pub chart: ChartRef,
    /// Upgrade options (values files as absolute paths, waits, ...).
    pub options: UpgradeOptions,
    /// Where to find the old chart if a rollback must roll forward (its version is replaced
    /// by the snapshot's); `None` = the same source as `chart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_source: Option<ChartRef>,
    /// Options of the rollback.
    pub rollback: RollbackOptions,
}

impl StepSpec for HelmUpgradeSpec {
    const KIND: &'static str = "helm-upgrade";
}

/// One `helm upgrade` of one release.
#[derive(Debug)]
pub struct HelmUpgradeStep {
    /// What it does.
    pub spec: HelmUpgradeSpec,
    /// The Helm to run (shared by the run's steps).
    pub helm: std::sync::Arc<Helm>,
}

impl HelmUpgradeStep {
    fn wanted_version(&self) -> Option<&str> {
        self.spec.chart.version.as_deref()
    }
}

impl Step for HelmUpgradeStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        &self.spec.component
    }

    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        upgrade_core::executor::StatusPart {
            name: format!("{} (release {})", self.spec.component, self.spec.release),
            from: None,
            to: self.spec.chart.version.clone(),
        }
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "helm upgrade {} -n {} {}{}",
            self.spec.release.name,
            self.spec.release.namespace,
            self.spec.chart,
            self.wanted_version()
                .map(|v| format!(" --version {v}"))
                .unwrap_or_default()
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            // Refuses a release someone else left pending: its owner may still be running.
            let history = self.helm.preflight(&self.spec.release).await?;
            if history.is_empty() {
                snapshot.put_json(ABSENT_FILE, &self.spec.release)?;
            } else {
                let release = self.helm.snapshot(&self.spec.release).await?;
                snapshot.put_json(RELEASE_FILE, &release)?;
            }
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            if let Err(err) = self.helm.preflight(&self.spec.release).await {
                if !matches!(err, crate::Error::PendingOperation { .. }) {
                    return Err(err.into());
                }
                // Only this step touches the release between its snapshot and `applied`
                // (the run holds the upgrade lock), so a pending revision is our own killed
                // upgrade: clear it, then upgrade again.
                let history = self.helm.history(&self.spec.release).await?;
                let Some(to) = ReleaseSnapshot::newest_deployed(&history) else {
                    return Err(format!(
                        "{} is pending with no deployed revision to return to; uninstall it by hand (`helm uninstall {} -n {}`) and resume",
                        self.spec.release, self.spec.release.name, self.spec.release.namespace
                    )
                    .into());
                };
                tracing::warn!(release = %self.spec.release, to, "clearing our own interrupted upgrade");
                self.helm
                    .rollback(&self.spec.release, to, &self.spec.rollback)
                    .await?;
            }
            self.helm
                .upgrade(&self.spec.release, &self.spec.chart, &self.spec.options)
                .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let status = self.helm.status(&self.spec.release, None).await?;
            if !status.info.status.was_deployed() {
                return Err(format!(
                    "{} is `{}` after the upgrade, not deployed",
                    self.spec.release, status.info.status
                )
                .into());
            }
            if let Some(wanted) = self.wanted_version() {
                let meta = self.helm.metadata(&self.spec.release, None).await?;
                if meta.version != wanted {
                    return Err(format!(
                        "{} runs chart version {}, not {wanted}",
                        self.spec.release, meta.version
                    )
                    .into());
                }
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            if snapshot.contains(ABSENT_FILE) {
                let history = self
                    .helm
                    .preflight(&self.spec.release)
                    .await
                    .unwrap_or_default();
                if !history.is_empty() {
                    self.helm
                        .uninstall(&self.spec.release, &UninstallOptions::default())
                        .await?;
                }
                return Ok(());
            }
            let recorded: ReleaseSnapshot = snapshot.get_json(RELEASE_FILE)?;
            let source = self
                .spec
                .restore_source
                .as_ref()
                .unwrap_or(&self.spec.chart);
            self.helm
                .restore(
                    &recorded,
                    Some(source),
                    PendingPolicy::RollbackToLastDeployed,
                    &self.spec.rollback,
                )
                .await?;
            Ok(())
        })
    }
}

/// What [`HelmRollbackStep`] does: `helm rollback` of one release to one revision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HelmRollbackSpec {
    /// Step id.
    pub id: String,
    /// Component.
    pub component: String,
    /// The release.
    pub release: ReleaseRef,
    /// The revision rolled back to.
    pub revision: u32,
    /// Its chart (`name-version`, as history shows it), checked after the rollback.
    pub chart: String,
    /// Options of the rollback (and of its undo).
    pub options: RollbackOptions,
}

impl StepSpec for HelmRollbackSpec {
    const KIND: &'static str = "helm-rollback";
}

/// `helm rollback` to an earlier revision (seed 000's emergency rollback); undone by
/// restoring the revision captured before it.
#[derive(Debug)]
pub struct HelmRollbackStep {
    /// What it does.
    pub spec: HelmRollbackSpec,
    /// The Helm to run.
    pub helm: std::sync::Arc<Helm>,
}

impl Step for HelmRollbackStep {
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
            "helm rollback {} {} -n {} ({})",
            self.spec.release.name,
            self.spec.revision,
            self.spec.release.namespace,
            self.spec.chart
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            self.helm.preflight(&self.spec.release).await?;
            let release = self.helm.snapshot(&self.spec.release).await?;
            snapshot.put_json(RELEASE_FILE, &release)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.helm
                .rollback(&self.spec.release, self.spec.revision, &self.spec.options)
                .await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let history = self.helm.history(&self.spec.release).await?;
            match history.last() {
                Some(last) if last.status.was_deployed() && last.chart == self.spec.chart => Ok(()),
                Some(last) => Err(format!(
                    "{} is at revision {} ({}, {}), not a deployed {}",
                    self.spec.release, last.revision, last.chart, last.status, self.spec.chart
                )
                .into()),
                None => Err(format!("{} has no history", self.spec.release).into()),
            }
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let recorded: ReleaseSnapshot = snapshot.get_json(RELEASE_FILE)?;
            self.helm
                .restore(
                    &recorded,
                    None,
                    PendingPolicy::RollbackToLastDeployed,
                    &self.spec.options,
                )
                .await?;
            Ok(())
        })
    }
}
