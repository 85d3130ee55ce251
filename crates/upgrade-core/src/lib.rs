//! Shared core of the MLOps platform upgrade toolkit.
//!
//! This crate holds what every other crate stands on:
//! - [`process`]: the one runner for every subprocess (argv only, secrets redacted, both
//!   pipes drained, timeouts with a graceful stop, an async entry point);
//! - [`tool`]: finding `terraform`, `helm` and `kubectl` as absolute paths, with install hints;
//! - [`redact`]: the redaction rules the runner applies;
//! - [`env_vars`]: every environment variable the toolkit reads;
//! - [`lockfile`], [`snapshot`], [`journal`], [`executor`]: the platform lockfile, the
//!   snapshot store, the step journal and the executor that makes every step recorded,
//!   resumable and reversible.
//!
//! and the pure logic that decides whether and how to upgrade:
//! - [`version`]: Kubernetes versions (`1.30`, `v1.30.2-eks-a5d2b1c`) and minor arithmetic;
//! - [`constraint`]: Helm's (Masterminds) version constraints, for chart `kubeVersion`;
//! - [`skew`]: the version skew policy as rules with their source;
//! - [`plan`]: the one-minor-at-a-time upgrade path and what each hop needs first;
//! - [`data`]: the embedded version data (removed APIs, EKS calendar and add-ons, component
//!   compatibility), every row with its source and the day it was checked;
//! - [`facts`]: the plain input structs a live cluster or a YAML dump fills;
//! - [`manifest`]: reading rendered multi-document manifests;
//! - [`checks`] and [`config`]: the check registry with stable codes, and its configuration;
//! - [`report`]: text, JSON, the Markdown upgrade playbook and JUnit XML.
//!
//! Checking a saved cluster dump against a target:
//!
//! ```no_run
//! use upgrade_core::{checks, config::Config, data::Data, facts::Facts, report};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let facts = Facts::from_yaml(&std::fs::read_to_string("fixtures/facts/unhealthy.yaml")?)?;
//! let config = Config::from_yaml(&std::fs::read_to_string("upgrade-checks.yaml")?)?;
//! let report = checks::run(&facts, "1.33".parse()?, &config, Data::embedded())?;
//! print!("{}", report::text(&report));
//! std::process::exit(i32::from(report.exit_code())); // 0 ok, 3 warnings, 4 blockers
//! # }
//! ```
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

pub mod addons;
mod atomic_file;
pub mod checks;
pub mod command_step;
pub mod config;
pub mod constraint;
pub mod data;
pub mod env_vars;
pub mod executor;
pub mod facts;
pub mod journal;
pub mod lockfile;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod redact;
pub mod report;
pub mod skew;
pub mod snapshot;
pub mod tool;
pub mod version;

pub use process::{ProcessBuilder, ProcessError, ProcessOutput};
