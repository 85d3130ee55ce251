//! One module per command; each `run` takes parsed arguments and returns an exit code.

pub mod lock;
pub mod mlflow;
pub mod preflight;
pub mod tf_providers;
pub mod verify;
