//! The `upgrade-*` commands: each parses its flags into a flow's spec, calls the flow in
//! `upgrade-flows`, renders the report and exits with the code of the outcome. Nothing else
//! lives here: to run a flow from your own Rust program, call `upgrade-flows` directly (see
//! its crate docs and `docs/embedding.md`).
//!
//! - [`cli`]: the shared flag groups (cluster, run, timeout, output), the one `main`, and
//!   [`cli::execute`]: print the plan, confirm, apply, print the report.
//! - [`exit`]: the exit-code policy, from the flow's error variant.
//! - [`progress`]: the flows' events as spinners on stderr.
//! - [`commands`]: one module per command, each `Args` → spec → flow → render.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod progress;
