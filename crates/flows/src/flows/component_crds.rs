//! The CRDs of a component upgrade: a companion CRD release (`karpenter-crd`, `kserve-crd`)
//! upgraded first as its own snapshotted step, the chart's `crds/` (which `helm upgrade`
//! never touches) applied as a reversible step, the CRDs in its templates left to Helm, and
//! every one of them checked after the upgrade. A new definition that drops a version still
//! in the cluster's `status.storedVersions` blocks the plan.

use std::collections::BTreeMap;

use serde_json::Value;
use upgrade_core::version::parse_loose_semver;
use upgrade_helm::{
    ChartRef, Helm, ListOptions, ReleaseRef, TemplateOptions, ValuesScope, chart::manifest_crds,
};
use upgrade_kube::backup::BackupKind;
use upgrade_kube::crd::{CrdComparison, CrdFingerprint, CrdState, compare, crd_name};

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field, one_line};

/// The companion CRD release's upgrade.
#[derive(Debug, Clone)]
pub(crate) struct CompanionUpgrade {
    /// The release.
    pub release: ReleaseRef,
    /// Its chart at the new version.
    pub chart: ChartRef,
}

/// What the plan does about CRDs.
#[derive(Debug, Default)]
pub(crate) struct CrdPlan {
    /// The companion CRD release to upgrade first, when it is behind.
    pub companion: Option<CompanionUpgrade>,
    /// The `crds/` definitions to apply (missing or different in the cluster).
    pub apply: Vec<Value>,
    /// Every definition the new charts ship, checked after the upgrade.
    pub expected: Vec<CrdFingerprint>,
    /// The kinds of those definitions the cluster serves now (for a backup of their objects).
    pub live_kinds: Vec<BackupKind>,
    /// For the plan.
    pub changes: Vec<String>,
    /// For the plan.
    pub findings: Vec<String>,
    /// For the plan.
    pub blockers: Vec<String>,
}

/// What the CRD planning needs to know about the upgrade.
pub(crate) struct CrdInputs<'a> {
    /// The main release.
    pub release: &'a ReleaseRef,
    /// The new chart.
    pub chart: &'a ChartRef,
    /// Its name (Chart.yaml).
    pub chart_name: &'a str,
    /// Its version, as the chart spells it.
    pub version: &'a str,
    /// The new chart's templates rendered with the user's values (`helm template`), or why
    /// they could not be.
    pub rendered: &'a std::result::Result<String, String>,
    /// The companion CRD chart the user named, if any.
    pub crd_chart: Option<&'a ChartRef>,
    /// The cluster's `gitVersion`.
    pub kube_version: &'a str,
}

fn describe(comparison: &CrdComparison) -> Option<String> {
    match &comparison.state {
        CrdState::Current => None,
        CrdState::Missing => Some(format!("create {}", comparison.name)),
        CrdState::Differs(why) => Some(format!("update {} ({})", comparison.name, why.join("; "))),
    }
}

/// The release of chart `chart_name` in the cluster, any namespace (`name-version` is how
/// `helm list` prints the chart).
async fn release_of_chart(
    helm: &Helm,
    chart_name: &str,
    except: &ReleaseRef,
) -> Result<Option<(ReleaseRef, String)>> {
    let releases = helm
        .list(&ListOptions::default())
        .await
        .map_err(|e| FlowError::failed("list the Helm releases", e))?;
    let prefix = format!("{chart_name}-");
    Ok(releases
        .into_iter()
        .filter(|r| r.release_ref() != *except)
        .find_map(|r| {
            let version = r.chart.strip_prefix(&prefix)?;
            parse_loose_semver(version)?;
            Some((r.release_ref(), version.to_string()))
        }))
}

/// Plans the CRD side of a component upgrade: reads the new charts' definitions and the
/// cluster's, and decides the steps, the blockers and the verification.
pub(crate) async fn plan(
    ctx: &FlowContext,
    helm: &Helm,
    inputs: &CrdInputs<'_>,
) -> Result<CrdPlan> {
    let mut plan = CrdPlan::default();
    let mut compared: BTreeMap<String, (Value, CrdComparison)> = BTreeMap::new();
    let cluster = ctx.cluster();
    let read_crds = |what: String| move |e: upgrade_helm::Error| FlowError::failed(what, e);

    // The companion CRD chart and its release.
    let crd_chart_name = format!("{}-crd", inputs.chart_name.trim());
    let companion_release = release_of_chart(helm, &crd_chart_name, inputs.release).await?;
    let mut companion_names = Vec::new();
    if let Some((release, live_version)) = companion_release {
        let chart = inputs
            .crd_chart
            .cloned()
            .or_else(|| inputs.chart.companion(&crd_chart_name, inputs.version));
        let Some(chart) = chart else {
            plan.blockers.push(format!(
                "release {release} (chart {crd_chart_name} {live_version}) holds the component's \
                 CRDs, and no {crd_chart_name} chart was found beside {}: give its chart with \
                 {}, or its CRDs stay at {live_version}",
                inputs.chart,
                field("crd_chart")
            ));
            return Ok(plan);
        };
        let metadata = match helm.show_chart(&chart).await {
            Ok(metadata) => metadata,
            Err(e) => {
                plan.blockers.push(format!(
                    "release {release} holds the component's CRDs, and its chart {chart} cannot be \
                     read ({}): give the {crd_chart_name} chart of {} with {}",
                    one_line(&e.to_string()),
                    inputs.version,
                    field("crd_chart")
                ));
                return Ok(plan);
            }
        };
        if parse_loose_semver(&metadata.version) != parse_loose_semver(inputs.version) {
            plan.blockers.push(format!(
                "the CRD chart {chart} is version {}, not {}: give the {crd_chart_name} chart of {} \
                 with {}",
                metadata.version,
                inputs.version,
                inputs.version,
                field("crd_chart")
            ));
            return Ok(plan);
        }
        let chart = chart.with_version(metadata.version.clone());
        // Rendered with the release's own values, as the upgrade will run it.
        let values = helm
            .values(&release, None, ValuesScope::User)
            .await
            .map_err(|e| FlowError::failed(format!("read the values of release {release}"), e))?;
        let values_file = tempfile::NamedTempFile::new()
            .map_err(|e| FlowError::failed("write a temporary values file", e))?;
        std::fs::write(
            values_file.path(),
            serde_json::to_vec(&values).expect("values serialise"),
        )
        .map_err(|e| FlowError::failed("write a temporary values file", e))?;
        let rendered = helm
            .template(
                &release,
                &chart,
                &TemplateOptions {
                    kube_version: Some(inputs.kube_version.to_string()),
                    values_files: vec![values_file.path().to_path_buf()],
                    include_crds: true,
                    ..TemplateOptions::default()
                },
            )
            .await
            .map_err(read_crds(format!("render the CRD chart {chart}")))?;
        let definitions = manifest_crds(&rendered, None)
            .map_err(read_crds(format!("read the CRDs of {chart}")))?;
        let comparisons = compare(cluster, &definitions)
            .await
            .map_err(|e| FlowError::failed("read the cluster's CRDs", e))?;
        let behind: Vec<String> = comparisons.iter().filter_map(describe).collect();
        let same_version =
            parse_loose_semver(&live_version) == parse_loose_semver(&metadata.version);
        if !behind.is_empty() || !same_version {
            plan.changes.push(format!(
                "{release}: chart {crd_chart_name} {live_version} -> {} first (the CRDs: {})",
                metadata.version,
                if behind.is_empty() {
                    "unchanged".to_string()
                } else {
                    behind.join(", ")
                }
            ));
            plan.companion = Some(CompanionUpgrade { release, chart });
        }
        for (definition, comparison) in definitions.into_iter().zip(comparisons) {
            companion_names.push(comparison.name.clone());
            compared.insert(comparison.name.clone(), (definition, comparison));
        }
    } else if let Some(chart) = inputs.crd_chart {
        plan.blockers.push(format!(
            "{} names the CRD chart {chart}, but no release of chart {crd_chart_name} is in the \
             cluster: install it first, or drop {}",
            field("crd_chart"),
            field("crd_chart")
        ));
    }

    // The chart's crds/: Helm created them at install and never updates them.
    let crds_dir = helm
        .show_crd_definitions(inputs.chart)
        .await
        .map_err(read_crds(format!(
            "read the crds/ of chart {}",
            inputs.chart
        )))?;
    let crds_dir: Vec<Value> = crds_dir
        .into_iter()
        .filter(|d| !companion_names.iter().any(|n| n == crd_name(d)))
        .collect();
    let comparisons = compare(cluster, &crds_dir)
        .await
        .map_err(|e| FlowError::failed("read the cluster's CRDs", e))?;
    let mut applied = Vec::new();
    for (definition, comparison) in crds_dir.into_iter().zip(comparisons) {
        match (&comparison.state, &comparison.owner) {
            (CrdState::Current, _) => {}
            (_, Some((ns, name))) if ReleaseRef::new(name, ns) != *inputs.release => {
                plan.blockers.push(format!(
                    "CRD {} belongs to release {ns}/{name}, not {}: upgrade that release to the \
                     definition of {} {} first",
                    comparison.name, inputs.release, inputs.chart_name, inputs.version
                ));
            }
            _ => {
                applied.extend(describe(&comparison));
                plan.apply.push(definition.clone());
            }
        }
        compared.insert(comparison.name.clone(), (definition, comparison));
    }
    if !applied.is_empty() {
        plan.changes.push(format!(
            "CRDs under crds/ of {} {}, which helm upgrade does not update: {}",
            inputs.chart_name,
            inputs.version,
            applied.join(", ")
        ));
    }

    // CRDs among the chart's templates: Helm upgrades them with the release.
    let rendered = inputs.rendered.as_ref().map_err(Clone::clone);
    match rendered.map(|text| manifest_crds(text, None)) {
        Ok(Ok(definitions)) => {
            let definitions: Vec<Value> = definitions
                .into_iter()
                .filter(|d| !compared.contains_key(crd_name(d)))
                .collect();
            let comparisons = compare(cluster, &definitions)
                .await
                .map_err(|e| FlowError::failed("read the cluster's CRDs", e))?;
            let changed: Vec<String> = comparisons.iter().filter_map(describe).collect();
            if !changed.is_empty() {
                plan.changes.push(format!(
                    "CRDs in the templates of {} {}, updated by helm upgrade: {}",
                    inputs.chart_name,
                    inputs.version,
                    changed.join(", ")
                ));
            }
            for (definition, comparison) in definitions.into_iter().zip(comparisons) {
                compared.insert(comparison.name.clone(), (definition, comparison));
            }
        }
        Ok(Err(e)) => plan.findings.push(format!(
            "the chart's templates could not be read for CRDs ({}); the verification checks \
             the CRDs of crds/ and of the CRD chart only",
            one_line(&e.to_string())
        )),
        Err(e) => plan.findings.push(format!(
            "the chart could not be rendered here to find the CRDs in its templates ({e}); \
             the verification checks the CRDs of crds/ and of the CRD chart only"
        )),
    }

    for (definition, comparison) in compared.values() {
        if !comparison.dropped_stored_versions.is_empty() {
            plan.blockers.push(format!(
                "CRD {}: the new definition drops {} still in status.storedVersions, so objects \
                 stored at {} could not be read and the API server refuses the update: migrate \
                 them (read and write back every object, or run kube-storage-version-migrator), \
                 remove the version from status.storedVersions, then plan again",
                comparison.name,
                comparison.dropped_stored_versions.join(", "),
                if comparison.dropped_stored_versions.len() == 1 {
                    "it"
                } else {
                    "them"
                }
            ));
        }
        plan.expected.push(CrdFingerprint::of(definition));
        plan.live_kinds.extend(comparison.live_kind.clone());
    }
    Ok(plan)
}
