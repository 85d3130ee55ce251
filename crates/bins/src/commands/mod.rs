//! One module per command; each `run` takes parsed arguments and returns an exit code.

pub mod argo_workflows;
pub mod eks;
pub mod helm_component;
pub mod karpenter;
pub mod kserve;
pub mod lock;
pub mod mlflow;
pub mod nodes;
pub mod preflight;
pub mod rollback;
pub mod tf_providers;
pub mod verify;
