//! End-to-end tests against the real tools installed by `./dev tools`.
//!
//! One test binary with a module per area (as cargo and uv do).

mod bluegreen_run;
mod crate_graph;
mod demo;
mod embed;
mod lock_cli;
mod platform_run;
mod real_platform;
mod real_tools;
mod scans;
mod scripts;
mod upstream;
