//! The flows, one module each. Every changing flow has a spec (serde, checked before anything
//! changes) and a `plan` function returning a [`Planned`](crate::run::Planned) to show and
//! apply; the read-only ones return their report directly.

use upgrade_core::version::KubeVersion;

use crate::context::FlowContext;
use crate::error::{FlowError, Result};

pub mod canary;
pub mod eks;
pub mod helm_component;
pub mod lock;
pub mod mlflow;
pub mod nodes;
pub mod preflight;
pub mod rollback;
pub mod tf_providers;
pub mod verify;

/// The live control-plane version, as the API server reports it.
pub async fn live_version(ctx: &FlowContext) -> Result<KubeVersion> {
    let info = ctx
        .cluster()
        .client()
        .apiserver_version()
        .await
        .map_err(|e| FlowError::failed("read the API server version", e))?;
    info.git_version
        .parse()
        .map_err(|e| FlowError::failed(format!("API server version {}", info.git_version), e))
}
