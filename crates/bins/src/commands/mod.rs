//! One module per command; each `run` takes parsed arguments and returns an exit code.

pub mod eks;
pub mod lock;
pub mod nodes;
pub mod preflight;
pub mod verify;
