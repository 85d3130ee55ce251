//! The runner against real child processes, and the executor killed at every step boundary of a sample run. One test binary for the crate.

mod executor;
mod process;
