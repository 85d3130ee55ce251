//! The runner against real child processes, the executor killed at every step boundary of a sample run, and runs stopped on request. One test binary for the crate.

mod executor;
mod process;
mod stop;
