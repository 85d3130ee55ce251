//! A Helm release whose stored manifest names APIs removed on the way to a target: the latest
//! revision's record rewritten to the replacement APIs (what the helm-mapkubeapis plugin
//! does), snapshotted, verified and reversible, for Helm 3 and Helm 4 records in Secrets or
//! ConfigMaps. Nothing in the cluster's objects changes: only Helm's memory of them, so the
//! next `helm upgrade` can compare against APIs the cluster serves.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use upgrade_checks::manifest::api_mappings;
use upgrade_core::executor::Step;
use upgrade_core::version::KubeMinor;
use upgrade_kube::release_apis::{ReleaseApiMapSpec, ReleaseApiMapStep, latest_revision};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "release-map-apis";

/// Which release, for which target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseApisSpec {
    /// The release name.
    pub release: String,
    /// Its namespace.
    pub namespace: String,
    /// The minor whose removals to map (the next hop's, or the live one after it), e.g. `1.25`.
    pub target: String,
    /// A folder with newer version data files (see the preflight's `data`).
    #[serde(default)]
    pub data: Option<PathBuf>,
}

/// Plans the rewrite: the latest record read, the removed APIs in its manifest mapped to
/// replacements the cluster serves now; one that has none, or whose replacement the cluster
/// does not serve yet, blocks; a record in a pending state blocks.
pub async fn plan(ctx: &FlowContext, spec: &ReleaseApisSpec) -> Result<Planned> {
    let target: KubeMinor = spec.target.parse().map_err(|e| {
        FlowError::invalid(
            "target",
            format!("{}: {e}", spec.target),
            "give a Kubernetes minor such as 1.25",
        )
    })?;
    for (name, value) in [("release", &spec.release), ("namespace", &spec.namespace)] {
        if value.trim().is_empty() {
            return Err(FlowError::invalid(
                name,
                "is empty",
                "name the release and its namespace",
            ));
        }
    }
    let data = crate::flows::preflight::load_data(spec.data.as_deref())?;
    let live = crate::flows::live_version(ctx).await?.minor;
    if target < live {
        return Err(FlowError::invalid(
            "target",
            format!("{target} is older than the cluster's {live}"),
            format!(
                "give {live} (or the next hop's minor) as {}",
                field("target")
            ),
        ));
    }
    let stored = latest_revision(ctx.cluster(), &spec.namespace, &spec.release)
        .await
        .map_err(|e| FlowError::failed("read the release's Helm record", e))?
        .ok_or_else(|| {
            FlowError::invalid(
                "release",
                format!(
                    "Helm keeps no record of release {} in namespace {}",
                    spec.release, spec.namespace
                ),
                "check the name and namespace (helm list -A)",
            )
        })?;
    let (mappings, unmappable) = api_mappings(&stored.manifest, &data, live, target);
    let run_id = ctx.new_run_id("release-apis")?;
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    if !mappings.is_empty() {
        steps.push(Box::new(ReleaseApiMapStep {
            spec: ReleaseApiMapSpec {
                id: format!("{}/map-apis", spec.release),
                component: spec.release.clone(),
                namespace: spec.namespace.clone(),
                release: spec.release.clone(),
                storage: stored.storage,
                object: stored.object.clone(),
                mappings: mappings.clone(),
            },
            cluster: ctx.cluster().clone(),
        }));
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new("upgrade-map-apis", ctx.cluster_name(), run_id, &refs);
    let (_, moved) = upgrade_checks::manifest::map_api_versions(&stored.manifest, &mappings);
    plan.changes = if moved.is_empty() {
        vec![format!(
            "{}/{} revision {}: its stored manifest names no API removed by {target}; nothing to rewrite",
            spec.namespace, spec.release, stored.revision
        )]
    } else {
        moved
            .iter()
            .map(|m| {
                format!(
                    "{}/{} revision {} ({:?} {}): {m}",
                    spec.namespace, spec.release, stored.revision, stored.storage, stored.object
                )
            })
            .collect()
    };
    plan.findings = vec![
        "only Helm's stored record changes, not the objects in the cluster; the next helm upgrade renders the chart again, so change the chart to the new APIs too".into(),
    ];
    plan.blockers = unmappable;
    if stored.status.starts_with("pending") {
        plan.blockers.push(format!(
            "revision {} is {}: another Helm operation is in progress or was cut off; finish or roll it back first",
            stored.revision, stored.status
        ));
    }
    Ok(Planned::new(FLOW, spec, plan, steps))
}
