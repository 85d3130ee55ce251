//! The upgrade knowledge base: what decides whether and how a cluster can be upgraded.
//!
//! Everything here is pure: its only inputs are its arguments (plain, serde-friendly facts)
//! and the version data compiled into the binary. A live cluster, a simulator or a saved YAML
//! dump feed it alike. The process runner and the run machinery live in `upgrade-core`,
//! which does not depend on this crate, so tools that only drive Terraform or Helm never
//! compile the data.
//!
//! - [`skew`]: the version skew policy as rules with their source;
//! - [`plan`]: the one-minor-at-a-time upgrade path and what each hop needs first;
//! - [`data`]: the embedded version data (removed APIs, EKS calendar and add-ons, component
//!   compatibility), every row with its source and the day it was checked;
//! - [`addons`]: choosing EKS add-on versions from `describe-addon-versions`;
//! - [`facts`]: the plain input structs a live cluster or a YAML dump fills;
//! - [`manifest`]: reading rendered multi-document manifests;
//! - [`checks`] and [`config`]: the check registry with stable codes, and its configuration;
//! - [`report`]: text, JSON, the Markdown upgrade playbook and JUnit XML;
//! - [`scan`]: static scans of manifest files and rendered charts for removed APIs, with lines.
//!
//! Checking a saved cluster dump against a target:
//!
//! ```no_run
//! use upgrade_checks::{checks, config::Config, data::Data, facts::Facts, report};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let facts = Facts::from_yaml(&std::fs::read_to_string("fixtures/facts/unhealthy.yaml")?)?;
//! let config = Config::from_yaml(&std::fs::read_to_string("upgrade-checks.yaml")?)?;
//! let report = checks::run(&facts, "1.33".parse()?, &config, Data::embedded())?;
//! print!("{}", report::text(&report));
//! std::process::exit(i32::from(report.exit_code())); // 0 ok, 3 warnings, 4 blockers
//! # }
//! ```

pub mod addons;
pub mod checks;
pub mod config;
pub mod data;
pub mod facts;
pub mod manifest;
pub mod plan;
pub mod report;
pub mod scan;
pub mod skew;

pub use checks::{Finding, Report, Severity, run};
