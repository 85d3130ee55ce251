//! Cordon and uncordon that remember who cordoned a node.
//!
//! A node we cordon carries the annotation [`CORDONED_BY`]. Uncordon only lifts a cordon we
//! set: a node an admin had cordoned before the upgrade stays cordoned. The memory lives on
//! the node itself, so it survives a crash of the upgrade run.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::connect::Cluster;
use crate::error::Result;
use crate::retry::{idempotent_write, read};

/// The annotation marking a cordon this toolkit set.
pub const CORDONED_BY: &str = "upgrade.mlops.dev/cordoned-by";

/// The field manager for our writes.
pub const FIELD_MANAGER: &str = "mlops-upgrade";

/// What cordon found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cordoned {
    /// We cordoned it now.
    Now,
    /// We had cordoned it already (a resumed run).
    AlreadyByUs,
    /// Someone else had cordoned it; we leave that cordon to them.
    AlreadyByAdmin,
}

/// What uncordon did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncordoned {
    /// We lifted our cordon.
    Lifted,
    /// It was not cordoned.
    WasSchedulable,
    /// It was cordoned by someone else before us; it stays cordoned.
    LeftForAdmin,
}

/// Marks `node` unschedulable, remembering whether it already was.
pub async fn cordon(cluster: &Cluster, node: &str) -> Result<Cordoned> {
    cluster.guard()?;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let current = read(&format!("read node {node}"), nodes.get(node)).await?;
    let unschedulable = current
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if unschedulable {
        return Ok(if ours(&current) {
            Cordoned::AlreadyByUs
        } else {
            Cordoned::AlreadyByAdmin
        });
    }
    let patch = json!({
        "metadata": { "annotations": { CORDONED_BY: "mlops-upgrade" } },
        "spec": { "unschedulable": true },
    });
    // The merge patch is idempotent, so a transient failure is simply sent again.
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    idempotent_write(&format!("cordon node {node}"), || {
        nodes.patch(node, &params, &patch)
    })
    .await?;
    tracing::info!(node, "cordoned");
    Ok(Cordoned::Now)
}

/// Lifts the cordon on `node` if, and only if, this toolkit set it.
pub async fn uncordon(cluster: &Cluster, node: &str) -> Result<Uncordoned> {
    cluster.guard()?;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let current = read(&format!("read node {node}"), nodes.get(node)).await?;
    let unschedulable = current
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !ours(&current) {
        return Ok(if unschedulable {
            Uncordoned::LeftForAdmin
        } else {
            Uncordoned::WasSchedulable
        });
    }
    let patch = json!({
        "metadata": { "annotations": { CORDONED_BY: null } },
        "spec": { "unschedulable": null },
    });
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    idempotent_write(&format!("uncordon node {node}"), || {
        nodes.patch(node, &params, &patch)
    })
    .await?;
    tracing::info!(node, "uncordoned");
    Ok(Uncordoned::Lifted)
}

fn ours(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CORDONED_BY))
}
