//! A Helm-managed platform component's upgrade (Karpenter, KServe, Argo Workflows): seed
//! 000's procedure made reversible. Pin the image tag in the values file, back up the
//! component's custom resources, `helm upgrade` with a snapshot, and verify its Deployments
//! and Ready resources; a rollback restores the release and re-applies the backup.
//!
//! Checked before anything changes: the values file (a readable YAML mapping whose pin can be
//! edited), the chart reference and version, a pending release, the chart's kubeVersion as
//! the Helm in use evaluates it, and the component's supported Kubernetes range in the
//! embedded compatibility data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upgrade_checks::data::Data;
use upgrade_core::executor::Step;
use upgrade_core::version::{KubeMinor, parse_loose_semver};
use upgrade_helm::step::{HelmUpgradeSpec, HelmUpgradeStep};
use upgrade_helm::values_pin::{ValuesPinStep, check_file};
use upgrade_helm::{
    ChartRef, ReleaseRef, RollbackOptions, UpgradeOptions, ValuesStrategy, WaitMode,
};
use upgrade_kube::backup::platform_kinds;
use upgrade_kube::crd::{CrdApplySpec, CrdApplyStep};
use upgrade_kube::step::{CrBackupSpec, CrBackupStep, WorkloadsReadySpec, WorkloadsReadyStep};

use super::component_crds;
use crate::context::FlowContext;
use crate::error::{FlowError, Result, field, one_line};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "helm-component-upgrade";

/// How long Helm's wait and the verification may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A component upgrade: which release, to which chart version, with which values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentUpgradeSpec {
    /// The component (`karpenter`, `kserve`, `argo-workflows`): names its steps, its row in
    /// the compatibility data and the custom resources backed up.
    pub component: String,
    /// The command that runs this flow, for reports (`upgrade-karpenter`).
    pub command: String,
    /// The chart: `oci://...`, `repo/chart`, or a local chart folder or `.tgz`.
    pub chart: String,
    /// The chart version to upgrade to; `1.6.0` and `v1.6.0` are the same version.
    pub version: String,
    /// The values file with the component's pins (a YAML mapping).
    pub values: PathBuf,
    /// The Helm release.
    pub release: String,
    /// The release's namespace.
    pub namespace: String,
    /// Pin this image tag in the values file first (seed 000 step 1), keeping its comments
    /// and layout; a rollback puts the file's bytes back.
    #[serde(default)]
    pub image_tag: Option<String>,
    /// Where the values file pins the image tag, dotted (`controller.image.tag`).
    pub image_tag_key: String,
    /// The chart of the companion CRD release (`karpenter-crd`, `kserve-crd`), when it is not
    /// published beside [`chart`](Self::chart) under that name; upgraded first, to the same
    /// version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crd_chart: Option<String>,
    /// How long Helm's wait and the verification may take.
    pub timeout: Duration,
}

impl ComponentUpgradeSpec {
    fn seed(
        component: &str,
        command: &str,
        chart: &str,
        release: &str,
        namespace: &str,
        version: &str,
    ) -> Self {
        ComponentUpgradeSpec {
            component: component.into(),
            command: command.into(),
            chart: chart.into(),
            version: version.into(),
            values: PathBuf::from(format!("infrastructure/helm/aws/{component}-values.yaml")),
            release: release.into(),
            namespace: namespace.into(),
            image_tag: None,
            image_tag_key: "controller.image.tag".into(),
            crd_chart: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Karpenter to `version`, with seed 000's defaults
    /// (`helm upgrade karpenter oci://public.ecr.aws/karpenter/karpenter -n karpenter`).
    pub fn karpenter(version: &str) -> Self {
        Self::seed(
            "karpenter",
            "upgrade-karpenter",
            "oci://public.ecr.aws/karpenter/karpenter",
            "karpenter",
            "karpenter",
            version,
        )
    }

    /// KServe to `version`, with seed 000's defaults (`helm upgrade kserve kserve/kserve -n kserve`).
    pub fn kserve(version: &str) -> Self {
        Self::seed(
            "kserve",
            "upgrade-kserve",
            "kserve/kserve",
            "kserve",
            "kserve",
            version,
        )
    }

    /// Argo Workflows to `version`
    /// (`helm upgrade argo-workflows argo/argo-workflows -n argo`).
    pub fn argo_workflows(version: &str) -> Self {
        Self::seed(
            "argo-workflows",
            "upgrade-argo-workflows",
            "argo/argo-workflows",
            "argo-workflows",
            "argo",
            version,
        )
    }

    /// Any Helm release (`upgrade-release`): named after the release, with the same backup
    /// (the objects of every kind its charts define), pins, CRD handling, verification and
    /// rollback as the platform's components.
    pub fn release(release: &str, namespace: &str, chart: &str, version: &str) -> Self {
        Self::seed(
            release,
            "upgrade-release",
            chart,
            release,
            namespace,
            version,
        )
    }

    /// The release.
    pub fn release_ref(&self) -> ReleaseRef {
        ReleaseRef::new(&self.release, &self.namespace)
    }

    /// The ids of its steps, in order (from the component's name only): the backup, the
    /// image-tag pin, the companion CRD release, the `crds/` definitions, the release, the
    /// verification. A plan leaves out the ones it does not need.
    pub fn step_ids(&self) -> [String; 6] {
        let name = &self.component;
        [
            format!("{name}/backup"),
            format!("{name}/pin-image-tag"),
            format!("{name}/crd-release"),
            format!("{name}/crds"),
            format!("{name}/helm-upgrade"),
            format!("{name}/verify"),
        ]
    }

    fn image_tag_path(&self) -> Vec<String> {
        self.image_tag_key.split('.').map(str::to_string).collect()
    }
}

/// The spec checked, with paths absolute and the chart resolved.
#[derive(Debug, Clone)]
struct Checked {
    spec: ComponentUpgradeSpec,
    chart: ChartRef,
    crd_chart: Option<ChartRef>,
    version: semver::Version,
    pinned_now: Option<String>,
}

/// Checks every field without touching the cluster.
fn validate(spec: &ComponentUpgradeSpec) -> Result<Checked> {
    let mut spec = spec.clone();
    if spec.component.is_empty() {
        return Err(FlowError::invalid(
            "component",
            "is empty",
            "name the component, e.g. karpenter",
        ));
    }
    let version = parse_loose_semver(&spec.version)
        .filter(|_| spec.version.trim_start_matches('v').split('.').count() == 3)
        .ok_or_else(|| {
            FlowError::invalid(
                "version",
                format!("`{}` is not a chart version", spec.version),
                "write it as X.Y.Z (a leading `v` is fine), e.g. 1.6.0",
            )
        })?;
    spec.values = absolute(&spec.values);
    read_values(&spec.values)?;
    let key = spec.image_tag_path();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let pinned_now = match &spec.image_tag {
        // The pin must be possible before anything runs.
        Some(_) => Some(check_file(&spec.values, &key).map_err(|e| {
            FlowError::invalid(
                "image_tag_key",
                e.to_string(),
                format!(
                    "point {} at the values file's image tag, or drop {}",
                    field("image_tag_key"),
                    field("image_tag")
                ),
            )
        })?),
        None => check_file(&spec.values, &key).ok(),
    };
    let chart = chart_ref("chart", &spec.chart, &spec.version)?;
    if let upgrade_helm::ChartSource::Path(path) = &chart.source {
        spec.chart = path.display().to_string();
    }
    let crd_chart = match &spec.crd_chart {
        Some(text) => {
            let crd_chart = chart_ref("crd_chart", text, &spec.version)?;
            if let upgrade_helm::ChartSource::Path(path) = &crd_chart.source {
                spec.crd_chart = Some(path.display().to_string());
            }
            Some(crd_chart)
        }
        None => None,
    };
    Ok(Checked {
        spec,
        chart,
        crd_chart,
        version,
        pinned_now,
    })
}

/// The chart at `version`. A reference naming an existing file or folder, or a path with
/// more than one `/` (a repo chart has exactly one), is a local chart (made absolute); anything
/// else is parsed as `oci://...` or `repo/chart`.
fn chart_ref(field_name: &str, text: &str, version: &str) -> Result<ChartRef> {
    let bad = |e: upgrade_helm::Error| {
        FlowError::invalid(
            field_name,
            e.to_string(),
            "give `oci://...`, `repo/chart` or a chart folder",
        )
    };
    let looks_local = !text.contains("://") && text.matches('/').count() > 1;
    let chart = if looks_local || Path::new(text).exists() {
        ChartRef::path(absolute(Path::new(text)))
    } else {
        ChartRef::parse(text).map_err(bad)?
    };
    let chart = chart.with_version(version.to_string());
    chart.to_args().map_err(bad)?;
    Ok(chart)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Reads and checks a values file: readable YAML whose top level is a mapping (an empty file
/// is an empty mapping).
pub fn read_values(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FlowError::invalid(
            "values",
            format!("cannot read the values file {}: {e}", path.display()),
            format!("set {} to the component's values file", field("values")),
        )
    })?;
    let value: serde_json::Value = serde_norway::from_str(&text).map_err(|e| {
        FlowError::invalid(
            "values",
            format!(
                "the values file {} is not valid YAML ({})",
                path.display(),
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            format!("fix it or set {} to another file", field("values")),
        )
    })?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Null => Ok(serde_json::json!({})),
        other => Err(FlowError::invalid(
            "values",
            format!(
                "the values file {} holds a YAML {}, not a mapping of values",
                path.display(),
                match other {
                    serde_json::Value::Array(_) => "list",
                    serde_json::Value::String(_) => "string",
                    _ => "scalar",
                }
            ),
            "Helm values files are `key: value` mappings",
        )),
    }
}

/// What the checks found before any change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompatibilityFindings {
    /// What blocks the upgrade.
    pub blockers: Vec<String>,
    /// What the user should know.
    pub findings: Vec<String>,
}

/// Checks a chart against the cluster: its kubeVersion as the Helm in use evaluates it, and
/// the component's supported and tested Kubernetes ranges from the embedded data (looked up
/// by the chart's appVersion, which is what the vendors' matrices list).
pub fn check_compatibility(
    component: &str,
    compat: &upgrade_helm::ChartCompatibility,
    cluster_minor: KubeMinor,
) -> CompatibilityFindings {
    let mut checked = CompatibilityFindings::default();
    if let Some(reason) = &compat.kube_version.reason {
        checked.blockers.push(format!(
            "chart {} {} refuses this cluster: {reason}",
            compat.chart, compat.version
        ));
    }
    if compat.deprecated {
        checked.findings.push(format!(
            "chart {} {} is marked deprecated",
            compat.chart, compat.version
        ));
    }
    let app = compat
        .app_version
        .as_deref()
        .unwrap_or(&compat.version)
        .trim_start_matches('v');
    let data = Data::embedded();
    match data.component_compat(component, app) {
        Some(row) => {
            if let Some(range) = row.supported
                && !range.contains(cluster_minor)
            {
                checked.blockers.push(format!(
                    "{component} {app} is supported on Kubernetes {range}, not this cluster's {cluster_minor} (data row {}, checked {}); pick a version whose range covers {cluster_minor}",
                    row.version, row.checked
                ));
            }
            if let Some(range) = row.tested
                && !range.contains(cluster_minor)
            {
                checked.findings.push(format!(
                    "{component} {app} was tested with Kubernetes {range}, not {cluster_minor} (data row {}, checked {})",
                    row.version, row.checked
                ));
            }
        }
        None if data.knows_component(component) => {
            let newest = data
                .newest_component_line(component)
                .map(|r| format!("; the data ends at {} (checked {})", r.version, r.checked))
                .unwrap_or_default();
            checked.findings.push(format!(
                "no compatibility row for {component} {app}, so its support of Kubernetes {cluster_minor} is unknown{newest}"
            ));
        }
        None => {}
    }
    // The chart's CRDs are planned by `component_crds` against the live definitions.
    checked
}

/// A major version change of the app or the chart (Argo CD v2 → v3, Argo Workflows v3 → v4)
/// is flagged with the component's upgrade notes (from the embedded data; the chart's own
/// release notes otherwise): such releases carry breaking changes no check here knows.
pub fn major_change_finding(
    component: &str,
    chart_name: &str,
    live: &upgrade_helm::ReleaseMetadata,
    compat: &upgrade_helm::ChartCompatibility,
) -> Option<String> {
    let major = |v: &str| parse_loose_semver(v).map(|v| v.major);
    let live_app = Some(live.app_version.as_str()).filter(|a| !a.trim().is_empty());
    let new_app = compat
        .app_version
        .as_deref()
        .filter(|a| !a.trim().is_empty());
    let mut changed = Vec::new();
    if let (Some(from), Some(to)) = (live_app, new_app)
        && major(from).is_some_and(|m| Some(m) != major(to))
    {
        changed.push(format!("app {from} -> {to}"));
    }
    if major(&live.version).is_some_and(|m| Some(m) != major(&compat.version)) {
        changed.push(format!("chart {} -> {}", live.version, compat.version));
    }
    if changed.is_empty() {
        return None;
    }
    let data = Data::embedded();
    let notes = data
        .upgrade_notes
        .get(component)
        .or_else(|| data.upgrade_notes.get(chart_name))
        .map(|url| format!("read the upgrade notes first: {url}"))
        .unwrap_or_else(|| format!("read the release notes of chart {chart_name} first"));
    Some(format!(
        "major version change ({}): breaking changes are likely; {notes}",
        changed.join(", ")
    ))
}

/// The values the live release was given that the values file does not give (set by hand
/// with `--set`, or a file since edited): `helm upgrade --reset-values` drops them.
pub fn values_dropped(live_user: &serde_json::Value, file: &serde_json::Value) -> Vec<String> {
    fn walk(live: &serde_json::Value, file: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match (live, file) {
            (serde_json::Value::Object(live), serde_json::Value::Object(file)) => {
                for (key, value) in live {
                    let dotted = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match file.get(key) {
                        Some(mine) => walk(value, mine, &dotted, out),
                        None => out.push(dotted),
                    }
                }
            }
            (live, file) if live != file => out.push(path.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(live_user, file, "", &mut out);
    out
}

/// Seed 000 step 1 pins the image tag in the values file; a pin left at another version than
/// the chart's app is usually a forgotten edit. `pinned` is the tag the upgrade will run.
pub fn image_pin_finding(
    pinned: Option<&str>,
    values_file: &Path,
    app_version: Option<&str>,
) -> Option<String> {
    let pinned = pinned?;
    let app = app_version?;
    let same = match (parse_loose_semver(pinned), parse_loose_semver(app)) {
        (Some(a), Some(b)) => a == b,
        _ => pinned == app,
    };
    (!same).then(|| {
        format!(
            "{} pins the image tag {pinned} while the chart's app is {app}: the upgrade runs {pinned}; set the image tag to {app} to pin it, unless that is deliberate",
            values_file.display()
        )
    })
}

/// The keys of `user` that the chart's `defaults` do not have, dotted, not descending into
/// keys the chart leaves open: an empty or null mapping (`podAnnotations: {}`,
/// `nodeSelector:`), `global`, and the chart's dependencies (their values live in the
/// subcharts).
pub fn unknown_value_keys(
    user: &serde_json::Value,
    defaults: &serde_json::Value,
    dependencies: &[String],
) -> Vec<String> {
    fn walk(
        user: &serde_json::Map<String, serde_json::Value>,
        defaults: &serde_json::Map<String, serde_json::Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        for (key, value) in user {
            let dotted = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match (defaults.get(key), value) {
                (None, _) => out.push(dotted),
                (Some(serde_json::Value::Object(chart)), serde_json::Value::Object(mine))
                    if !chart.is_empty() =>
                {
                    walk(mine, chart, &dotted, out)
                }
                _ => {}
            }
        }
    }
    let (Some(user), Some(defaults)) = (user.as_object(), defaults.as_object()) else {
        return Vec::new();
    };
    let open: serde_json::Map<String, serde_json::Value> = user
        .iter()
        .filter(|(k, _)| k.as_str() != "global" && !dependencies.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::new();
    walk(&open, defaults, "", &mut out);
    out
}

/// Every key path of a values tree, dotted, mappings included.
fn dotted_keys(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        if let Some(map) = value.as_object() {
            for (key, child) in map {
                let dotted = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.push(dotted.clone());
                walk(child, &dotted, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// What to say about a key of the values file that the new chart's values.yaml lacks: removed
/// by the new chart (it was in the running chart's values), with the new key of the same name
/// it was perhaps renamed to; or in neither chart (misspelled?).
pub fn unknown_key_finding(
    key: &str,
    values_file: &Path,
    version: &str,
    old_values: Option<&serde_json::Value>,
    new_defaults: &serde_json::Value,
) -> String {
    let file = values_file.display();
    let pointer =
        |v: &serde_json::Value| v.pointer(&format!("/{}", key.replace('.', "/"))).is_some();
    let Some(old) = old_values.filter(|old| pointer(old)) else {
        return format!(
            "{file}: `{key}` is in neither the running chart's values nor the {version} chart's \
             values.yaml (misspelled?); Helm passes it to the templates, which ignore it unless \
             they read it"
        );
    };
    let old_keys = dotted_keys(old);
    let last = key.rsplit('.').next().unwrap_or(key);
    let renamed: Vec<String> = dotted_keys(new_defaults)
        .into_iter()
        .filter(|k| !old_keys.contains(k))
        .filter(|k| k.rsplit('.').next() == Some(last))
        .collect();
    let hint = match renamed.as_slice() {
        [] => String::new(),
        [one] => format!("; perhaps renamed to `{one}`"),
        many => format!(
            "; perhaps renamed to one of {}",
            many.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{file}: `{key}` was removed from the chart's values in {version}{hint}; the new \
         templates ignore it unless they read it"
    )
}

/// What the values file's other pins of the running version become.
struct MovedPins {
    /// Keys the pin step moves with the image tag: key path and new value.
    also: Vec<(Vec<String>, String)>,
    /// One line per moved key, for the plan.
    changes: Vec<String>,
    /// Keys left pinning the running version.
    blockers: Vec<String>,
    /// The running version the upgrade replaces, which no workload may still run after it
    /// (`None` when the version does not change, or the image tag keeps it on purpose).
    replaced: Option<String>,
}

/// Every key of the values file that pins the running app version (a server image beside
/// the controller's, an image reference, a digest) moves with the image tag, or blocks the
/// plan: left behind, it keeps part of the component at the old version under the new chart
/// (seen: Argo Workflows' server at v3.7.4 under a v3.7.11 controller). Without an image tag
/// every such pin blocks, the main key's too: the chart's new default would be overridden.
fn other_version_pins(
    checked: &Checked,
    user_values: &serde_json::Value,
    live: &upgrade_helm::ReleaseMetadata,
    compat: &upgrade_helm::ChartCompatibility,
) -> MovedPins {
    let spec = &checked.spec;
    let mut moved = MovedPins {
        also: Vec::new(),
        changes: Vec::new(),
        blockers: Vec::new(),
        replaced: None,
    };
    // A chart without appVersion (KServe's) versions its images with the chart.
    let running = Some(live.app_version.as_str())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or(&live.version);
    let target = compat.app_version.as_deref().unwrap_or(&compat.version);
    let (Some(old), Some(new)) = (parse_loose_semver(running), parse_loose_semver(target)) else {
        return moved;
    };
    if old == new {
        return moved;
    }
    let pins = upgrade_helm::values_pin::version_pins(user_values, &old);
    let main_key = spec.image_tag_path();
    let file = spec.values.display();
    let tag = spec.image_tag.as_deref().and_then(parse_loose_semver);
    if tag.as_ref() != Some(&old) {
        moved.replaced = Some(old.to_string());
    }
    for pin in pins {
        let is_main = pin.key == main_key;
        let is_digest = pin.key.last().is_some_and(|k| k == "digest");
        match &tag {
            Some(_) if is_main => {}
            Some(tag) if pin.editable && !is_digest => {
                let value = pin.respelled(tag);
                moved
                    .changes
                    .push(format!("{file}: {} {} -> {value}", pin.dotted(), pin.value));
                moved.also.push((pin.key.clone(), value));
            }
            Some(_) if is_digest => moved.blockers.push(format!(
                "`{}` in {file} pins the digest {} of the {running} image, which wins over any tag: \
                 set it to the digest of the {target} image, or remove it",
                pin.dotted(),
                pin.value
            )),
            Some(_) => moved.blockers.push(format!(
                "`{}` in {file} pins {} (the running version {running}) inside a list, which this \
                 tool does not edit: change it to {target} by hand, then plan again",
                pin.dotted(),
                pin.value
            )),
            None => moved.blockers.push(format!(
                "`{}` in {file} pins {} (the running version {running}) while the chart moves to \
                 {target}: give the image tag {target} (`--image-tag`, `image_tag` in the spec) to \
                 move every pin together, or remove the pin to run the chart's default",
                pin.dotted(),
                pin.value
            )),
        }
    }
    moved
}

/// The upgrade's steps from the checked spec: the custom-resource backup, the image-tag pin
/// (with an image tag), the snapshotted `helm upgrade`, and the verification.
fn steps(
    ctx: &FlowContext,
    checked: &Checked,
    chart_version: &str,
    also_pinned: Vec<(Vec<String>, String)>,
    replaced_version: Option<String>,
    crds: component_crds::CrdPlan,
) -> Result<Vec<Box<dyn Step>>> {
    let spec = &checked.spec;
    let [
        backup_id,
        pin_id,
        crd_release_id,
        crds_id,
        upgrade_id,
        verify_id,
    ] = spec.step_ids();
    let release = spec.release_ref();
    let kinds = platform_kinds(&spec.component);
    // A release the seeds do not name backs up the objects of every kind its charts define.
    let backup_kinds = if kinds.is_empty() {
        crds.live_kinds.clone()
    } else {
        kinds.clone()
    };
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    if !backup_kinds.is_empty() {
        steps.push(Box::new(CrBackupStep {
            spec: CrBackupSpec {
                id: backup_id,
                component: spec.component.clone(),
                kinds: backup_kinds,
                namespace: None,
            },
            cluster: ctx.cluster().clone(),
        }));
    }
    if let Some(tag) = &spec.image_tag {
        steps.push(Box::new(ValuesPinStep {
            id: pin_id,
            component: spec.component.clone(),
            path: spec.values.clone(),
            key: spec.image_tag_path(),
            value: tag.clone(),
            also: also_pinned,
        }));
    }
    if let Some(companion) = crds.companion {
        steps.push(Box::new(HelmUpgradeStep {
            spec: HelmUpgradeSpec {
                id: crd_release_id,
                component: spec.component.clone(),
                release: companion.release,
                chart: companion.chart,
                options: UpgradeOptions {
                    // Its own values stay (labels or annotations of the definitions); the
                    // new chart's defaults come with the new version.
                    values: ValuesStrategy::ResetThenReuse,
                    wait: WaitMode::ReadyLegacy,
                    timeout: spec.timeout,
                    ..UpgradeOptions::default()
                },
                restore_source: None,
                rollback: RollbackOptions {
                    wait: WaitMode::ReadyLegacy,
                    timeout: spec.timeout,
                    ..RollbackOptions::default()
                },
            },
            helm: ctx.helm()?,
        }));
    }
    if !crds.apply.is_empty() {
        steps.push(Box::new(CrdApplyStep {
            spec: CrdApplySpec {
                id: crds_id,
                component: spec.component.clone(),
                definitions: crds.apply,
            },
            cluster: ctx.cluster().clone(),
        }));
    }
    steps.push(Box::new(HelmUpgradeStep {
        spec: HelmUpgradeSpec {
            id: upgrade_id,
            component: spec.component.clone(),
            release: release.clone(),
            chart: checked.chart.clone().with_version(chart_version),
            options: UpgradeOptions {
                create_namespace: true,
                values_files: vec![spec.values.clone()],
                // Helm 4's watcher (kstatus) leaves an object `Unknown` until its next event
                // when one status read fails (a 503 listing ReplicaSets, measured on
                // kube-sim), then waits out the whole timeout and rolls back a healthy
                // upgrade (upstream helm#32615, #32616); the legacy poller retries 5xx and
                // 429. Custom resources are checked by the readiness step that follows.
                wait: WaitMode::ReadyLegacy,
                timeout: spec.timeout,
                ..UpgradeOptions::default()
            },
            restore_source: None,
            rollback: RollbackOptions {
                wait: WaitMode::ReadyLegacy,
                timeout: spec.timeout,
                ..RollbackOptions::default()
            },
        },
        helm: ctx.helm()?,
    }));
    steps.push(Box::new(WorkloadsReadyStep {
        spec: WorkloadsReadySpec {
            id: verify_id,
            component: spec.component.clone(),
            namespace: release.namespace,
            kinds,
            timeout: spec.timeout,
            replaced_version,
            crds: crds.expected,
        },
        cluster: ctx.cluster().clone(),
    }));
    Ok(steps)
}

/// The server's answer to the new manifest before anything changes: every object of the
/// rendered chart (not its CRDs, planned apart, nor its hooks, which Helm runs apart) as a
/// dry-run server-side apply against the live one, and the release's objects the new
/// manifest drops. Lines for the plan's changes, and blockers for the objects the API server
/// refuses (an immutable field changed: the upgrade would fail there).
async fn preview(
    ctx: &FlowContext,
    helm: &upgrade_helm::Helm,
    release: &ReleaseRef,
    rendered: &std::result::Result<String, String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let rendered = match rendered {
        Ok(text) => text,
        Err(why) => {
            return Ok((
                vec![format!(
                    "preview: the chart could not be rendered here ({why})"
                )],
                Vec::new(),
            ));
        }
    };
    let objects = |text: &str, what: &str| {
        upgrade_helm::chart::manifest_objects(text, Some(what)).map(|objects| {
            objects
                .into_iter()
                .filter(|o| o["kind"] != "CustomResourceDefinition")
                .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_null())
                .collect::<Vec<_>>()
        })
    };
    let new = objects(rendered, "the rendered chart")
        .map_err(|e| FlowError::failed("read the rendered chart", e))?;
    let current = helm
        .manifest(release, None)
        .await
        .map_err(|e| FlowError::failed(format!("read the manifest of release {release}"), e))?;
    let current = objects(&current, "the release's manifest")
        .map_err(|e| FlowError::failed(format!("read the manifest of release {release}"), e))?;
    let previewed =
        upgrade_kube::preview::preview(ctx.cluster(), &new, &current, &release.namespace)
            .await
            .map_err(|e| FlowError::failed("preview the upgrade with a server-side dry run", e))?;
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    let mut labels_only = 0;
    for change in &previewed {
        match &change.change {
            // Every object's chart-version label moves with the chart: one line for them all.
            upgrade_kube::preview::Change::Changed(fields) if fields == &["metadata.labels"] => {
                labels_only += 1;
            }
            upgrade_kube::preview::Change::Changed(fields) if fields.len() > 4 => {
                lines.push(format!(
                    "preview: change {} ({}, and {} more)",
                    change.object,
                    fields[..4].join(", "),
                    fields.len() - 4
                ));
            }
            upgrade_kube::preview::Change::Refused(why) => refused.push(format!(
                "the API server refuses {} in a dry run ({}): the upgrade would fail there; \
                 an immutable field changed needs the object deleted and recreated, which \
                 this tool does not do for you",
                change.object,
                one_line(why)
            )),
            _ => lines.push(format!("preview: {change}")),
        }
    }
    if labels_only > 0 {
        lines.push(format!(
            "preview: {labels_only} other object(s) change only their labels (the chart's version)"
        ));
    }
    if previewed.is_empty() {
        lines.push("preview: the server-side dry run changes no object".to_string());
    }
    Ok((lines, refused))
}

/// Checks the spec without a cluster (files, chart reference, version), so bad input is
/// reported before connecting; [`plan`] checks it again.
pub fn check(spec: &ComponentUpgradeSpec) -> Result<()> {
    validate(spec).map(drop)
}

/// Plans a component upgrade: every field checked, the live release read (a pending one
/// blocks), the chart and data checks (blockers), the steps built. Nothing changes until
/// [`Planned::apply`].
pub async fn plan(ctx: &FlowContext, spec: &ComponentUpgradeSpec) -> Result<Planned> {
    let checked = validate(spec)?;
    let spec = &checked.spec;
    let helm = ctx.helm()?;
    let release = spec.release_ref();
    let mut blockers = Vec::new();
    let mut findings = Vec::new();
    let live = match helm.preflight(&release).await {
        Ok(history) if history.is_empty() => None,
        Ok(_) => Some(
            helm.metadata(&release, None)
                .await
                .map_err(|e| FlowError::failed(format!("read release {release}"), e))?,
        ),
        Err(err @ upgrade_helm::Error::PendingOperation { .. }) => {
            blockers.push(one_line(&err.to_string()));
            None
        }
        Err(err) => return Err(FlowError::failed(format!("read release {release}"), err)),
    };
    let git_version = ctx
        .cluster()
        .client()
        .apiserver_version()
        .await
        .map_err(|e| FlowError::failed("read the API server version", e))?
        .git_version;
    let cluster_minor: KubeMinor = git_version.parse().map_err(|e| {
        FlowError::failed(format!("the API server reports version `{git_version}`"), e)
    })?;
    let compat = helm
        .chart_compatibility(&checked.chart, &git_version)
        .await
        .map_err(|e| {
            FlowError::invalid(
                "chart",
                format!(
                    "cannot read chart {}: {}",
                    checked.chart,
                    one_line(&e.to_string())
                ),
                format!(
                    "check {} and {} (for a repo chart, `helm repo add` it first)",
                    field("chart"),
                    field("version")
                ),
            )
        })?;
    // `v0.15.2` and `0.15.2` are one version; the step asks Helm for the chart's own spelling.
    if parse_loose_semver(&compat.version).as_ref() != Some(&checked.version) {
        return Err(FlowError::invalid(
            "version",
            format!(
                "the chart at {} is version {}, not {}",
                checked.chart, compat.version, spec.version
            ),
            format!(
                "give the chart of {} or set {} to {}",
                spec.version,
                field("version"),
                compat.version
            ),
        ));
    }
    let defaults = helm
        .show_values(&checked.chart)
        .await
        .map_err(|e| FlowError::failed(format!("read the values of chart {}", checked.chart), e))?;
    let user_values = read_values(&spec.values)?;
    let metadata = helm.show_chart(&checked.chart).await.map_err(|e| {
        FlowError::failed(format!("read the Chart.yaml of chart {}", checked.chart), e)
    })?;
    let dependencies: Vec<String> = metadata
        .dependencies
        .iter()
        .map(|d| d.alias.clone().unwrap_or_else(|| d.name.clone()))
        .collect();
    let unknown = unknown_value_keys(&user_values, &defaults, &dependencies);
    // The running chart's values (its defaults with the release's own), to tell a key the new
    // chart removed from one neither chart has.
    let old_values = match (&live, unknown.is_empty()) {
        (Some(_), false) => {
            let all = helm
                .values(&release, None, upgrade_helm::ValuesScope::All)
                .await
                .map_err(|e| {
                    FlowError::failed(format!("read the values of release {release}"), e)
                })?;
            Some(serde_json::to_value(&all).expect("values serialise"))
        }
        _ => None,
    };
    for key in unknown {
        findings.push(unknown_key_finding(
            &key,
            &spec.values,
            &compat.version,
            old_values.as_ref(),
            &defaults,
        ));
    }
    let found = check_compatibility(&spec.component, &compat, cluster_minor);
    blockers.extend(found.blockers);
    findings.extend(found.findings);
    findings.extend(image_pin_finding(
        spec.image_tag.as_deref().or(checked.pinned_now.as_deref()),
        &spec.values,
        compat.app_version.as_deref(),
    ));
    // KServe's charts carry no appVersion.
    let target_app = compat
        .app_version
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("none");
    let change = match &live {
        Some(live) => {
            if parse_loose_semver(&live.version).is_some_and(|from| from > checked.version) {
                findings.push(format!(
                    "{release}: {} -> {} is a downgrade",
                    live.version, compat.version
                ));
            }
            format!(
                "{release}: chart {} (app {}, revision {}, {}) -> {} (app {target_app}) from {}",
                live.version,
                if live.app_version.trim().is_empty() {
                    "none"
                } else {
                    &live.app_version
                },
                live.revision,
                live.status,
                compat.version,
                checked.chart
            )
        }
        None => format!(
            "{release}: not installed -> install chart {} (app {target_app}) from {}",
            compat.version, checked.chart
        ),
    };
    let mut changes = vec![change];
    if let Some(tag) = &spec.image_tag {
        changes.push(format!(
            "{}: {} {} -> {tag}",
            spec.values.display(),
            spec.image_tag_key,
            checked.pinned_now.as_deref().unwrap_or("?")
        ));
    }
    if let Some(live) = &live {
        findings.extend(major_change_finding(
            &spec.component,
            metadata.name.trim(),
            live,
            &compat,
        ));
        let live_values = helm
            .values(&release, None, upgrade_helm::ValuesScope::User)
            .await
            .map_err(|e| FlowError::failed(format!("read the values of release {release}"), e))?;
        let live_values = serde_json::to_value(&live_values).expect("values serialise");
        let dropped = values_dropped(&live_values, &user_values);
        changes.push(format!(
            "values: --reset-values: the {} chart's defaults, then {} alone{}",
            compat.version,
            spec.values.display(),
            if dropped.is_empty() {
                String::new()
            } else {
                format!(
                    "; the release values it changes or lacks (set by hand, or edited since) go: {}",
                    dropped.join(", ")
                )
            }
        ));
    }
    let (also_pinned, replaced_version) = match &live {
        Some(live) => {
            let moved = other_version_pins(&checked, &user_values, live, &compat);
            blockers.extend(moved.blockers);
            changes.extend(moved.changes);
            (moved.also, moved.replaced)
        }
        None => (Vec::new(), None),
    };
    let rendered = helm
        .template(
            &release,
            &checked.chart,
            &upgrade_helm::TemplateOptions {
                kube_version: Some(git_version.clone()),
                values_files: vec![spec.values.clone()],
                ..upgrade_helm::TemplateOptions::default()
            },
        )
        .await;
    if let Err(e) = &rendered
        && e.failure_kind() == Some(upgrade_helm::FailureKind::ValuesSchema)
    {
        blockers.push(format!(
            "{} does not meet the {} chart's values.schema.json, so Helm would refuse the \
             upgrade: {}",
            spec.values.display(),
            compat.version,
            one_line(&e.to_string())
        ));
    }
    let rendered = rendered.map_err(|e| match e.failure_kind() {
        Some(upgrade_helm::FailureKind::ValuesSchema) => {
            "the values do not meet its values.schema.json (see the blockers)".to_string()
        }
        _ => one_line(&e.to_string()),
    });
    if live.is_some() {
        let (preview_changes, refused) = preview(ctx, &helm, &release, &rendered).await?;
        changes.extend(preview_changes);
        blockers.extend(refused);
    }
    let crds = component_crds::plan(
        ctx,
        &helm,
        &component_crds::CrdInputs {
            release: &release,
            chart: &checked.chart,
            chart_name: &metadata.name,
            version: &compat.version,
            rendered: &rendered,
            crd_chart: checked.crd_chart.as_ref(),
            kube_version: &git_version,
        },
    )
    .await?;
    changes.extend(crds.changes.iter().cloned());
    findings.extend(crds.findings.iter().cloned());
    blockers.extend(crds.blockers.iter().cloned());
    let steps = steps(
        ctx,
        &checked,
        &compat.version,
        also_pinned,
        replaced_version,
        crds,
    )?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new(
        &spec.command,
        ctx.cluster_name(),
        ctx.new_run_id(&spec.component)?,
        &refs,
    );
    plan.changes = changes;
    plan.findings = findings;
    plan.blockers = blockers;
    Ok(Planned::new(FLOW, spec, plan, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_must_be_a_readable_yaml_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "controller:\n  image:\n    tag: \"1.6.0\"\n").unwrap();
        assert_eq!(
            read_values(&good).unwrap()["controller"]["image"]["tag"],
            "1.6.0"
        );
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(read_values(&empty).unwrap(), serde_json::json!({}));
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "controller:\n  image: [unclosed\n").unwrap();
        let err = read_values(&broken).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
        let text = err.to_string();
        assert!(text.contains("is not valid YAML"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- a\n- b\n").unwrap();
        let text = read_values(&list).unwrap_err().to_string();
        assert!(text.contains("holds a YAML list, not a mapping"), "{text}");
        let missing = read_values(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("`values`: cannot read the values file"),
            "{missing}"
        );
    }

    #[test]
    fn charts_resolve_to_local_folders_or_references() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("karpenter");
        std::fs::create_dir(&local).unwrap();
        let chart = chart_ref("chart", &local.to_string_lossy(), "1.6.0").unwrap();
        assert_eq!(chart.source, upgrade_helm::ChartSource::Path(local.clone()));
        assert_eq!(
            chart_ref("chart", "oci://public.ecr.aws/karpenter/karpenter", "1.6.0")
                .unwrap()
                .to_string(),
            "oci://public.ecr.aws/karpenter/karpenter@1.6.0"
        );
        let relative = chart_ref("chart", "charts/kserve/0.15.0", "0.15.0").unwrap();
        let upgrade_helm::ChartSource::Path(path) = relative.source else {
            panic!("a path")
        };
        assert!(
            path.is_absolute() && path.ends_with("charts/kserve/0.15.0"),
            "{path:?}"
        );
        let err = chart_ref("chart", "kserve", "0.15.0").unwrap_err();
        assert!(err.to_string().starts_with("`chart`: "), "{err}");
        let err = chart_ref(
            "chart",
            "oci://public.ecr.aws/karpenter/karpenter:1.5.0",
            "1.6.0",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("differs from the version"),
            "{err}"
        );
    }

    #[test]
    fn keys_the_new_chart_does_not_know_are_named_and_open_maps_accept_anything() {
        let defaults = serde_json::json!({
            "controller": {"image": {"tag": "v3.7.11"}, "podAnnotations": {}, "nodeSelector": null},
            "server": {"enabled": true},
        });
        let user = serde_json::json!({
            "controller": {
                "image": {"tag": "v3.7.4", "digest": "sha256:1"},
                "podAnnotations": {"a": "b"},
                "nodeSelector": {"pool": "system"},
                "replicaz": 2,
            },
            "serverr": {"enabled": false},
            "global": {"image": {"registry": "quay.io"}},
            "postgresql": {"enabled": true},
        });
        assert_eq!(
            unknown_value_keys(&user, &defaults, &["postgresql".to_string()]),
            ["controller.image.digest", "controller.replicaz", "serverr"]
        );
        assert!(unknown_value_keys(&defaults, &defaults, &[]).is_empty());
    }

    #[test]
    fn versions_may_have_a_leading_v() {
        let dir = tempfile::tempdir().unwrap();
        let values = dir.path().join("v.yaml");
        std::fs::write(&values, "controller:\n  image:\n    tag: x\n").unwrap();
        let spec = |version: &str| ComponentUpgradeSpec {
            values: values.clone(),
            chart: dir.path().display().to_string(),
            ..ComponentUpgradeSpec::kserve(version)
        };
        assert_eq!(
            validate(&spec("v0.15.2")).unwrap().version,
            semver::Version::new(0, 15, 2)
        );
        assert_eq!(
            validate(&spec("0.15.2")).unwrap().version,
            semver::Version::new(0, 15, 2)
        );
        let err = validate(&spec("1.6")).unwrap_err();
        assert!(err.to_string().contains("write it as X.Y.Z"), "{err}");
    }

    fn compat(app: &str, kube_reason: Option<&str>) -> upgrade_helm::ChartCompatibility {
        upgrade_helm::ChartCompatibility {
            chart: "karpenter".into(),
            version: app.into(),
            app_version: Some(app.into()),
            deprecated: false,
            kube_version: upgrade_helm::chart::KubeVersionCheck {
                constraint: Some(">=1.29.0-0".into()),
                kube_version: "v1.30.4".into(),
                compatible: kube_reason.is_none(),
                reason: kube_reason.map(str::to_string),
            },
            crds: None,
        }
    }

    #[test]
    fn data_ranges_block_or_warn() {
        let minor = |m: &str| m.parse::<KubeMinor>().unwrap();
        // Karpenter 1.6 is supported on 1.26-1.34.
        assert_eq!(
            check_compatibility("karpenter", &compat("1.6.0", None), minor("1.30")),
            CompatibilityFindings::default()
        );
        let checked = check_compatibility("karpenter", &compat("1.6.0", None), minor("1.35"));
        assert_eq!(checked.blockers.len(), 1, "{checked:?}");
        assert!(
            checked.blockers[0]
                .contains("supported on Kubernetes 1.26–1.34, not this cluster's 1.35"),
            "{checked:?}"
        );
        let checked = check_compatibility(
            "karpenter",
            &compat("1.6.0", Some("outside the kubeVersion")),
            minor("1.30"),
        );
        assert!(
            checked.blockers[0].contains("refuses this cluster"),
            "{checked:?}"
        );
        // KServe 0.15 is tested with 1.30-1.32: 1.33 is a warning, not a blocker.
        let checked = check_compatibility("kserve", &compat("v0.15.0", None), minor("1.33"));
        assert!(checked.blockers.is_empty(), "{checked:?}");
        assert!(
            checked.findings[0].contains("tested with Kubernetes 1.30–1.32"),
            "{checked:?}"
        );
        let checked = check_compatibility("karpenter", &compat("9.9.0", None), minor("1.30"));
        assert!(checked.findings[0].contains("no compatibility row for karpenter 9.9.0"));
    }

    #[test]
    fn a_major_version_change_is_flagged_with_the_upgrade_notes() {
        let live: upgrade_helm::ReleaseMetadata = serde_json::from_value(serde_json::json!({
            "name": "argocd", "chart": "argo-cd", "version": "7.7.23", "appVersion": "v2.13.4",
            "namespace": "argocd", "revision": 1, "status": "deployed"
        }))
        .unwrap();
        let mut target = compat("v3.0.6", None);
        target.version = "8.0.17".into();
        let finding = major_change_finding("argocd", "argo-cd", &live, &target).unwrap();
        assert!(
            finding.starts_with(
                "major version change (app v2.13.4 -> v3.0.6, chart 7.7.23 -> 8.0.17)"
            ),
            "{finding}"
        );
        assert!(
            finding.contains(
                "https://argo-cd.readthedocs.io/en/stable/operator-manual/upgrading/overview/"
            ),
            "{finding}"
        );
        let finding = major_change_finding("cert-manager-x", "ingress", &live, &target).unwrap();
        assert!(
            finding.ends_with("read the release notes of chart ingress first"),
            "{finding}"
        );
        let mut minor = compat("v2.14.0", None);
        minor.version = "7.8.0".into();
        assert_eq!(
            major_change_finding("argocd", "argo-cd", &live, &minor),
            None
        );
    }

    #[test]
    fn values_the_file_changes_or_lacks_are_named() {
        let live = serde_json::json!({"controller": {"replicas": 3, "image": {"tag": "1.5.0"}}, "debug": true});
        let file = serde_json::json!({"controller": {"replicas": 2, "image": {"tag": "1.5.0"}}});
        assert_eq!(
            values_dropped(&live, &file),
            ["controller.replicas", "debug"]
        );
        assert!(values_dropped(&file, &file).is_empty());
        assert!(values_dropped(&serde_json::json!({}), &file).is_empty());
    }

    #[test]
    fn a_key_the_new_chart_dropped_is_told_from_a_misspelled_one() {
        let file = Path::new("argo-values.yaml");
        let old =
            serde_json::json!({"server": {"extraArgs": [], "secure": false}, "controller": {}});
        let new = serde_json::json!({"server": {"secure": false, "args": {"extraArgs": []}}, "controller": {}});
        let removed = unknown_key_finding("server.extraArgs", file, "0.47.5", Some(&old), &new);
        assert_eq!(
            removed,
            "argo-values.yaml: `server.extraArgs` was removed from the chart's values in 0.47.5; \
             perhaps renamed to `server.args.extraArgs`; the new templates ignore it unless they read it"
        );
        let typo = unknown_key_finding("server.secur", file, "0.47.5", Some(&old), &new);
        assert!(
            typo.contains("is in neither the running chart's values"),
            "{typo}"
        );
    }

    #[test]
    fn a_stale_image_pin_is_reported() {
        let file = Path::new("karpenter-values.yaml");
        let finding = image_pin_finding(Some("1.5.0"), file, Some("1.6.0")).unwrap();
        assert!(finding.contains("pins the image tag 1.5.0"), "{finding}");
        assert!(finding.contains("set the image tag to 1.6.0"), "{finding}");
        assert_eq!(image_pin_finding(Some("1.5.0"), file, Some("v1.5.0")), None);
        assert_eq!(image_pin_finding(None, file, Some("1.6.0")), None);
    }
}
