//! The commands end to end: the real binaries and the real helm and terraform against
//! kube-sim. One test binary for the crate; one module per command.

mod support;

mod argo_workflows;
mod bluegreen;
mod eks;
mod emergency;
mod fleet;
mod health;
mod help;
mod karpenter;
mod kserve;
mod map_apis;
mod mlflow;
mod nodes;
mod preflight;
mod rollback;
mod tf_providers;
mod verify;
