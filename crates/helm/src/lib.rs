//! Typed Helm 3 and Helm 4 API: reads, upgrade, rollback, release snapshots and restore,
//! chart compatibility, and a reader of Helm's release storage.
//!
//! - [`Helm`]: one Helm binary (through `upgrade-core`'s runner), its major version detected,
//!   bound to a kubeconfig and context, with the environment variables that would silently
//!   redirect it removed.
//! - [`options`]: version-neutral option structs rendered to Helm 3 or Helm 4 flags
//!   (`--atomic` vs `--rollback-on-failure`, `--wait` vs `--wait=watcher`, `--force` vs
//!   `--force-replace`, server-side apply on 4 only). Values are always explicit: no silent
//!   reuse of the previous revision's values.
//! - [`types`]: Helm's JSON output, tolerant of both majors' quirks.
//! - [`Error`] with a [`FailureKind`] and a hint read from Helm's stderr.
//! - [`ReleaseSnapshot`] (written `0600`) and [`snapshot::plan_restore`]: rollback to the
//!   recorded revision while it is in history, otherwise roll forward; `pending-*` releases are
//!   detected and only recovered under an explicit [`PendingPolicy`].
//! - [`chart`]: references (repo/name, OCI, path), Chart.yaml, CRDs under `crds/` and the
//!   kubeVersion check (`upgrade_core::constraint`, the toolkit's one evaluator of Helm's
//!   constraint syntax, with the pre-release rule of each Helm major);
//!   [`Helm::chart_compatibility`] combines them for an upgrade target.
//! - [`storage`]: `sh.helm.release.v1.NAME.vN` Secrets/ConfigMaps decoded, and (feature
//!   `kube`) [`storage::StorageReader`] for fast scans of every release and revision.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use upgrade_helm::{ChartRef, Helm, ReleaseRef, UpgradeOptions};
//!
//! # async fn run() -> upgrade_helm::Result<()> {
//! let helm = Helm::builder().context("prod-eks").build()?;
//! let karpenter = ReleaseRef::new("karpenter", "karpenter");
//! let chart = ChartRef::parse("oci://public.ecr.aws/karpenter/karpenter")?.with_version("1.6.0");
//! let options = UpgradeOptions {
//!     values_files: vec!["infrastructure/helm/aws/karpenter-values.yaml".into()],
//!     ..UpgradeOptions::default() // wait until ready, roll back on failure, --reset-values
//! };
//! let outcome = helm
//!     .safe_upgrade(&karpenter, &chart, &options, Path::new("snapshots"))
//!     .await?;
//! match outcome.result {
//!     Ok(release) => println!("karpenter is at revision {}", release.version),
//!     Err(err) => eprintln!("upgrade failed: {err}\nsnapshot: {:?}", outcome.snapshot),
//! }
//! # Ok(())
//! # }
//! ```

pub mod chart;
mod error;
mod helm;
pub mod options;
pub mod snapshot;
pub mod step;
pub mod storage;
pub mod types;
pub mod values_pin;
mod version;

pub use chart::{
    ChartCompatibility, ChartMetadata, ChartRef, ChartSource, CrdInfo, CrdUpgradeNotice,
    LocalChart, OciReference,
};
pub use error::{Error, FailureKind, HelmFailure, Result};
pub use helm::{
    DEFAULT_READ_TIMEOUT, Helm, HelmBuilder, REDIRECTING_ENV, RESTORE_ATTEMPTS, TRANSIENT_ATTEMPTS,
    UpgradeOutcome, ValuesScope,
};
pub use options::{
    DryRun, ForceMode, ListOptions, OnFailure, RollbackOptions, ServerSide, SetKind, SetValue,
    TemplateOptions, UninstallOptions, UpgradeOptions, ValuesStrategy, WaitMode,
};
pub use snapshot::{PendingPolicy, ReleaseSnapshot, RestoreAction, RestorePlan};
pub use storage::StorageDriver;
pub use types::{
    ChartVersionEntry, HistoryEntry, ListEntry, Release, ReleaseMetadata, ReleaseRef,
    ReleaseStatus, Values,
};
pub use version::{HelmMajor, HelmVersion, MIN_HELM3};
