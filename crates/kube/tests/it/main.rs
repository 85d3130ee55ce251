//! The Kubernetes side against kube-sim: interlock, facts, drains, rollouts, locks, backups, executor steps. One test binary for the crate.

mod cluster;
mod crd_step;
mod job_step;
mod preview;
