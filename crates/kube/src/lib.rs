//! The Kubernetes side of the upgrade toolkit, on kube-rs.
//!
//! - [`connect`]: connect from a kubeconfig with an explicit context, behind a safety
//!   interlock: every change refuses a cluster other than the one the caller named;
//! - [`cordon`]: cordon and uncordon that never lift an admin's cordon;
//! - [`drain`]: PDB-aware parallel drain that names every pod and budget that blocks it;
//! - [`lock`]: one upgrade at a time, through a Lease with a TTL, renewal and safe takeover;
//! - [`status`]: the `upgrade-status` ConfigMap kept current at every step;
//! - [`backup`]: custom-resource backup (server fields stripped) and server-side-apply restore.
//!
//! # Example
//!
//! ```no_run
//! use upgrade_kube::connect::{Cluster, ConnectOptions};
//! use upgrade_kube::drain::{drain, DrainOptions};
//!
//! # async fn run() -> upgrade_kube::Result<()> {
//! let cluster = Cluster::connect(&ConnectOptions {
//!     context: Some("mlops-dev".into()),
//!     expect_cluster: Some("mlops-platform-dev".into()),
//!     ..Default::default()
//! })
//! .await?;
//! let report = drain(&cluster, "ip-10-0-1-5.ec2.internal", &DrainOptions::default()).await?;
//! println!("evicted {} pods in {:?}", report.evicted.len(), report.elapsed);
//! # Ok(())
//! # }
//! ```

pub mod backup;
pub mod connect;
pub mod cordon;
pub mod drain;
mod error;
pub mod lock;
pub mod selector;
pub mod status;
pub mod step;

pub use error::{Error, Result};
