//! The Kubernetes side of the upgrade toolkit, on kube-rs.
//!
//! - [`connect`]: connect from a kubeconfig with an explicit context, behind a safety
//!   interlock: every change refuses a cluster other than the one the caller named;
//! - [`cordon`]: cordon and uncordon that never lift an admin's cordon;
//! - [`drain`]: PDB-aware parallel drain that names every pod and budget that blocks it;
//! - [`lock`]: one upgrade at a time, through a Lease with a TTL, renewal and safe takeover;
//! - [`status`]: the `upgrade-status` ConfigMap kept current at every step;
//! - [`backup`]: custom-resource backup (server fields stripped) and server-side-apply restore;
//! - [`facts`]: preflight facts for upgrade-core's checks, paginated, concurrent and retried,
//!   with a per-node drain prediction (which pods will not evict, and why);
//! - [`helm_storage`]: Helm releases with their rendered manifests, from Helm's own Secrets;
//! - [`health`]: the runbook's health checks in one call;
//! - [`rollout`]: node replacement in batches behind a canary, with surge, validation after
//!   each batch (twice), and a recorded, explained stop at the first failure.
//!
//! Reads retry what a busy API server answers for now (429, 500, 502, 503, 504, dropped
//! connections); every change first passes [`connect::Cluster::guard`].
//!
//! # Examples
//!
//! Drain a node:
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
//!
//! Gather facts, predict drains and run the checks before touching anything:
//!
//! ```no_run
//! use upgrade_kube::connect::{Cluster, ConnectOptions};
//! use upgrade_kube::facts::{gather, GatherOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::connect(&ConnectOptions {
//!     context: Some("mlops-dev".into()),
//!     ..Default::default()
//! })
//! .await?;
//! let gathered = gather(&cluster, &GatherOptions::default()).await?;
//! for node in gathered.drains.iter().filter(|d| !d.drains()) {
//!     println!("{}: {} pod(s) would block the drain", node.node, node.blocked.len());
//! }
//! let report = upgrade_checks::checks::run(
//!     &gathered.facts,
//!     "1.31".parse()?,
//!     &upgrade_checks::config::Config::default(),
//!     upgrade_checks::data::Data::embedded(),
//! )?;
//! println!("exit code {}", report.exit_code());
//! # Ok(())
//! # }
//! ```

pub mod ack;
pub mod backup;
pub mod certificate;
mod client_retry;
pub mod connect;
pub mod cordon;
pub mod crd;
pub mod drain;
mod error;
pub mod facts;
pub mod health;
pub mod helm_storage;
pub mod job;
pub mod lock;
pub mod mitigate;
pub mod preview;
pub mod provisioner;
pub mod release_apis;
pub mod replace;
mod retry;
pub mod rollout;
pub mod selector;
pub mod status;
pub mod step;
pub mod transfer;

pub use error::{Error, Result};
