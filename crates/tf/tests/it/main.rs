//! Terraform for real: argv policy, plan, review, apply and lock files with the real terraform and the simulated AWS provider. One test binary for the crate.

mod support;

mod policy;
mod real_terraform;
