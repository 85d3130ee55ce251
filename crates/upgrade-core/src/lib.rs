//! The core of the upgrade toolkit: the one subprocess runner and the run machinery.
//!
//! - [`process`]: the one runner for every subprocess (argv only, secrets redacted, both
//!   pipes drained, timeouts with a graceful stop, an async entry point);
//! - [`tool`]: finding `terraform`, `helm` and `kubectl` as absolute paths, with install hints;
//! - [`redact`]: the redaction rules the runner applies;
//! - [`env_vars`]: every environment variable the toolkit reads;
//! - [`exit`]: the exit codes every command and report maps to;
//! - [`atomic_file`]: the one way every file the toolkit writes or restores reaches disk;
//! - [`lockfile`], [`snapshot`], [`journal`], [`executor`]: the platform lockfile, the
//!   snapshot store, the step journal and the executor that makes every step recorded,
//!   resumable and reversible;
//! - [`version`]: Kubernetes versions (`1.30`, `v1.30.2-eks-a5d2b1c`) and minor arithmetic;
//! - [`constraint`]: Helm's (Masterminds) version constraints, for chart `kubeVersion`.
//!
//! The knowledge base (version data, skew, checks and reports) is `upgrade-checks`, which
//! depends on this crate and not the other way round: the Terraform and Helm wrappers use
//! the runner and the executor without compiling it.
//!
//! Running a subprocess:
//!
//! ```no_run
//! use std::time::Duration;
//! use upgrade_core::tool::HELM;
//!
//! # fn main() -> Result<(), upgrade_core::process::ProcessError> {
//! let mut helm = HELM.command()?; // resolved once: HELM_BIN or PATH
//! helm.args(["upgrade", "mlflow", "charts/mlflow", "--set", "db.password=hunter2"])
//!     .timeout(Duration::from_secs(600));
//! // Display never shows the password: `/usr/bin/helm upgrade mlflow charts/mlflow --set db.password=***`
//! println!("{helm}");
//! let output = helm.exec()?; // Err(ProcessError::Exited { stderr, .. }) on a non-zero exit
//! println!("{}", output.stdout_lossy());
//! # Ok(())
//! # }
//! ```

pub mod atomic_file;
pub mod command_step;
pub mod constraint;
pub mod env_vars;
pub mod executor;
pub mod exit;
pub mod journal;
pub mod lockfile;
pub mod process;
pub mod redact;
pub mod snapshot;
pub mod tool;
pub mod version;

pub use process::{ProcessBuilder, ProcessError, ProcessOutput};
