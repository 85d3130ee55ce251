//! Helm 3 and Helm 4 for real: argv per major, the live cluster on kube-sim, release storage, secrets never leaking. One test binary for the crate.

mod common;

mod argv;
mod cluster;
mod no_secret_leaks;
mod real_helm;
mod storage_reader;
mod storage_real_json;
