//! One module per command; each turns its `Args` into a flow's spec, calls the flow and
//! renders the outcome.

pub mod argo_workflows;
pub mod aws_args;
pub mod bluegreen;
pub mod eks;
pub mod emergency;
pub mod fleet;
pub mod health;
pub mod helm_args;
pub mod karpenter;
pub mod kserve;
pub mod lock;
pub mod map_apis;
pub mod mlflow;
pub mod nodes;
pub mod preflight;
pub mod release;
pub mod releases;
pub mod rollback;
pub mod rollout_args;
pub mod tf_providers;
pub mod verify;
