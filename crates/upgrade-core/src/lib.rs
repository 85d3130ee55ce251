//! Shared core of the MLOps platform upgrade toolkit.
//!
//! This crate holds what every other crate stands on:
//! - [`process`]: the one runner for every subprocess (argv only, secrets redacted, both
//!   pipes drained, timeouts with a graceful stop, an async entry point);
//! - [`tool`]: finding `terraform`, `helm` and `kubectl` as absolute paths, with install hints;
//! - [`redact`]: the redaction rules the runner applies;
//! - [`env_vars`]: every environment variable the toolkit reads.
//!
//! # Example
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

pub mod checks;
pub mod config;
pub mod constraint;
pub mod data;
pub mod env_vars;
pub mod facts;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod redact;
pub mod report;
pub mod skew;
pub mod tool;
pub mod version;

pub use process::{ProcessBuilder, ProcessError, ProcessOutput};
