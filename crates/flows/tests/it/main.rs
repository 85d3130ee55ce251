//! The flows as a library: runs started from Rust are planned, recorded, applied and undone
//! like the commands' runs, with the real helm against kube-sim. One test binary for the
//! crate.

mod crds;
mod library;
mod safety;
mod world;
