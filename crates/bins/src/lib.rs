//! The per-component upgrade commands, as a library: argument structs, one exit-code policy
//! ([`exit`]), and one module per command whose `run` the thin `src/bin/*.rs` mains call
//! through [`cli::main`]. Tests and other tools call the same functions.
//!
//! Every changing command goes through [`session::Session`]: inputs validated before any
//! change, the plan printed, and with `--apply` its steps run under the cluster's upgrade lock
//! through the journaled executor, rolled back by themselves on failure, with a record that
//! `upgrade-rollback` can undo later.
//!
//! # Example
//!
//! Running `upgrade-karpenter` from another Rust tool (a plan only: no `--apply`):
//!
//! ```no_run
//! use clap::Parser;
//! use upgrade_bins::cli::Command;
//! use upgrade_bins::commands::karpenter;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let args = karpenter::Args::try_parse_from([
//!     "upgrade-karpenter",
//!     "--version",
//!     "1.6.0",
//!     "--image-tag",
//!     "1.6.0",
//!     "--kube-context",
//!     "prod-eks",
//! ])?;
//! let mut report = Vec::new();
//! match args.run(&mut report).await {
//!     Ok(code) => println!("exit {code}:\n{}", String::from_utf8_lossy(&report)),
//!     Err(err) => eprintln!("exit {}: {:#}", err.code, err.error),
//! }
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod commands;
pub mod demo;
pub mod exit;
pub mod platform;
pub mod progress;
pub mod replacer;
pub mod run;
pub mod sample;
pub mod session;
