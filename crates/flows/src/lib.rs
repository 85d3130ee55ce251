//! The upgrade flows as a library: every procedure the toolkit automates (an EKS hop, a node
//! rollout, a Helm component upgrade, MLflow, Terraform providers, a KServe canary, a
//! rollback, the lockfile, the preflight, verification) as a typed spec, a plan and a
//! recorded, reversible run. The `upgrade-*` commands are thin layers over these functions;
//! your own tools and tests call them the same way.
//!
//! - [`context::FlowContext`]: the cluster (behind the interlock), Helm and Terraform, where
//!   runs keep their journal, snapshots and records, the stop signal, and an
//!   [`events::EventSink`] for progress. The library never prints, reads stdin or exits.
//! - Each changing flow's `plan(ctx, spec)` checks the spec before anything changes (errors
//!   name the field and the fix) and returns a [`run::Planned`]: the [`report::Plan`] to show
//!   (changes, findings, blockers, steps with what cannot be undone), then
//!   [`run::Planned::apply`] runs the steps under the cluster's upgrade lock, journaled and
//!   snapshotted, rolled back by themselves on failure.
//! - Every run writes a [`record::RunRecord`] with each step as data, so
//!   [`flows::rollback`] (and `upgrade-rollback`) undo it later from the record alone.
//! - [`error::FlowError`]: one variant per documented exit code.
//!
//! # Example
//!
//! Upgrading Karpenter from a Rust program, then undoing the run:
//!
//! ```no_run
//! use upgrade_flows::context::FlowContext;
//! use upgrade_flows::flows::helm_component::{self, ComponentUpgradeSpec};
//! use upgrade_flows::flows::rollback::{self, RollbackSpec};
//! use upgrade_kube::connect::ConnectOptions;
//!
//! # async fn example() -> Result<(), upgrade_flows::error::FlowError> {
//! let ctx = FlowContext::connect(ConnectOptions {
//!     context: Some("prod-eks".into()),
//!     expect_cluster: Some("mlops-platform-prod".into()), // the interlock
//!     ..ConnectOptions::default()
//! })
//! .await?
//! .state_dir("/var/lib/upgrades/prod")
//! .build();
//!
//! let spec = ComponentUpgradeSpec {
//!     values: "infrastructure/helm/aws/karpenter-values.yaml".into(),
//!     image_tag: Some("1.6.0".into()),
//!     ..ComponentUpgradeSpec::karpenter("1.6.0")
//! };
//! let planned = helm_component::plan(&ctx, &spec).await?;
//! println!("{:#?}", planned.plan()); // changes, findings, blockers, steps
//! let report = planned.apply(&ctx).await?; // Err(FlowError::RolledBack(report)) on failure
//! println!("{}", report.outcome);
//!
//! // Later, from any process: undo it from its record.
//! let undo = rollback::plan(&ctx, &RollbackSpec { run_id: Some(report.run_id.clone()), component: None }).await?;
//! undo.apply(&ctx).await?;
//! # Ok(())
//! # }
//! ```

pub mod context;
pub mod error;
pub mod events;
pub mod flows;
pub mod record;
pub mod report;
pub mod run;
mod status_board;

pub use context::{FlowContext, StateDir};
pub use error::{FlowError, Result};
pub use report::{Format, Plan, RunReport};
pub use run::Planned;
