//! What the Helm-managed components (Karpenter, KServe, Argo Workflows) share: the chart,
//! version, values, release and namespace flags; reading the live release; the checks from
//! the embedded data and the chart's kubeVersion; and the steps (custom-resource backup, the
//! snapshotted `helm upgrade`, the verification).
//!
//! Seed 000's procedure for each: update the pinned values, `helm upgrade RELEASE CHART -n NS
//! -f VALUES`, verify the pods (and the component's resources); roll back with
//! `helm rollback` (and re-apply the backup).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use upgrade_checks::checks::EXIT_BLOCKERS;
use upgrade_checks::data::Data;
use upgrade_core::executor::Step;
use upgrade_core::tool::HELM;
use upgrade_core::version::{KubeMinor, parse_loose_semver};
use upgrade_helm::step::HelmUpgradeStep;
use upgrade_helm::values_pin::{ValuesPinStep, check_file};
use upgrade_helm::{ChartRef, ReleaseRef, RollbackOptions, UpgradeOptions, WaitMode};
use upgrade_kube::backup::platform_kinds;
use upgrade_kube::step::{CrBackupStep, WorkloadsReadyStep};

use crate::cli::CommonArgs;
use crate::exit::CliError;
use crate::session::{Plan, RunReport, Session};

/// How long a Helm wait (and the verification) may take when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A Helm-managed platform component and the seed's defaults for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The component's name (step ids, `--component`, the compatibility data, the backups).
    pub name: &'static str,
    /// The command that upgrades it.
    pub command: &'static str,
    /// The upstream chart.
    pub chart: &'static str,
    /// The release name.
    pub release: &'static str,
    /// The release's namespace.
    pub namespace: &'static str,
}

/// Karpenter (seed 000: `helm upgrade karpenter oci://public.ecr.aws/karpenter/karpenter -n karpenter`).
pub const KARPENTER: Component = Component {
    name: "karpenter",
    command: "upgrade-karpenter",
    chart: "oci://public.ecr.aws/karpenter/karpenter",
    release: "karpenter",
    namespace: "karpenter",
};

/// KServe (seed 000: `helm upgrade kserve kserve/kserve -n kserve`).
pub const KSERVE: Component = Component {
    name: "kserve",
    command: "upgrade-kserve",
    chart: "kserve/kserve",
    release: "kserve",
    namespace: "kserve",
};

/// Argo Workflows (`helm upgrade argo-workflows argo/argo-workflows -n argo`).
pub const ARGO_WORKFLOWS: Component = Component {
    name: "argo-workflows",
    command: "upgrade-argo-workflows",
    chart: "argo/argo-workflows",
    release: "argo-workflows",
    namespace: "argo",
};

impl Component {
    /// The values file the seed keeps the component's pins in.
    pub fn default_values(&self) -> PathBuf {
        PathBuf::from(format!("infrastructure/helm/aws/{}-values.yaml", self.name))
    }

    /// The ids of its steps, in order (derived from the name only, so a rollback rebuilds them).
    pub fn step_ids(&self) -> [String; 4] {
        [
            format!("{}/backup", self.name),
            format!("{}/pin-image-tag", self.name),
            format!("{}/helm-upgrade", self.name),
            format!("{}/verify", self.name),
        ]
    }
}

/// The flags of a Helm component upgrade (defaults per component, see each command's help).
#[derive(Debug, Clone, clap::Args)]
pub struct HelmArgs {
    /// The chart: `oci://...`, `repo/chart`, or a local chart folder or `.tgz`.
    #[arg(long, value_name = "REF")]
    pub chart: Option<String>,
    /// The chart version to upgrade to.
    #[arg(long, value_name = "X.Y.Z", value_parser = parse_version)]
    pub version: semver::Version,
    /// The values file with the component's pins (must be a YAML mapping).
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// The Helm release.
    #[arg(long, value_name = "NAME")]
    pub release: Option<String>,
    /// The release's namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Pin this image tag in the values file first (seed 000 step 1), keeping the file's
    /// comments and layout; a rollback puts the file's bytes back.
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,
    /// Where the values file pins the image tag.
    #[arg(long, value_name = "KEY.PATH", default_value = "controller.image.tag")]
    pub image_tag_key: String,
}

fn parse_version(text: &str) -> Result<semver::Version, String> {
    semver::Version::parse(text.trim_start_matches('v')).map_err(|e| {
        format!("`{text}` is not a chart version ({e}); write it as X.Y.Z, e.g. 1.6.0")
    })
}

impl HelmArgs {
    /// The release (`--release`/`--namespace` or the component's).
    pub fn release(&self, component: &Component) -> ReleaseRef {
        ReleaseRef::new(
            self.release.as_deref().unwrap_or(component.release),
            self.namespace.as_deref().unwrap_or(component.namespace),
        )
    }

    /// The image-tag key path, split at dots.
    pub fn image_tag_key(&self) -> Vec<String> {
        self.image_tag_key.split('.').map(str::to_string).collect()
    }

    /// The values file (`--values` or the seed's).
    pub fn values_file(&self, component: &Component) -> PathBuf {
        self.values
            .clone()
            .unwrap_or_else(|| component.default_values())
    }

    /// The chart at the target version. A reference naming an existing file or folder, or
    /// a path with more than one `/` (a repo chart has exactly one), is a local chart;
    /// anything else is parsed as `oci://...` or `repo/chart`. (A missing local chart is
    /// reported when it is read; a rollback rebuilds the steps from another folder.)
    pub fn chart(&self, component: &Component) -> Result<ChartRef, CliError> {
        let text = self.chart.as_deref().unwrap_or(component.chart);
        let looks_local = !text.contains("://") && text.matches('/').count() > 1;
        let chart = if looks_local || Path::new(text).exists() {
            ChartRef::path(text)
        } else {
            ChartRef::parse(text).map_err(|e| CliError::usage(anyhow!("--chart {text}: {e}")))?
        };
        let chart = chart.with_version(self.version.to_string());
        chart
            .to_args()
            .map_err(|e| CliError::usage(anyhow!("--chart {text}: {e}")))?;
        Ok(chart)
    }
}

/// Reads and checks the values file: it must be readable YAML whose top level is a mapping
/// (an empty file counts as an empty mapping).
pub fn read_values(path: &Path) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(anyhow!(
            "cannot read the values file {}: {e}; pass --values with the component's values file",
            path.display()
        ))
    })?;
    let value: serde_json::Value = serde_norway::from_str(&text).map_err(|e| {
        CliError::usage(anyhow!(
            "the values file {} is not valid YAML ({}); fix it or pass --values with another file",
            path.display(),
            one_line(&e.to_string())
        ))
    })?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Null => Ok(serde_json::json!({})),
        other => Err(CliError::usage(anyhow!(
            "the values file {} holds a YAML {}, not a mapping of values; Helm values files are `key: value` mappings",
            path.display(),
            match other {
                serde_json::Value::Array(_) => "list",
                serde_json::Value::String(_) => "string",
                _ => "scalar",
            }
        ))),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The release as it runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRelease {
    /// The chart version.
    pub chart_version: String,
    /// The app version.
    pub app_version: String,
    /// The current revision.
    pub revision: u32,
    /// Its status (`deployed`, `failed`, ...).
    pub status: String,
}

/// What the checks found before any change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// What blocks the upgrade (exit 4).
    pub blockers: Vec<String>,
    /// What the user should know (the plan lists them).
    pub findings: Vec<String>,
}

/// Checks the target against the cluster: the chart's kubeVersion as this Helm evaluates it,
/// and the component's supported and tested Kubernetes ranges from the embedded data
/// (looked up by the chart's appVersion, which is what the vendors' matrices list).
pub fn check_compatibility(
    component: &Component,
    compat: &upgrade_helm::ChartCompatibility,
    cluster_minor: KubeMinor,
) -> Checked {
    let mut checked = Checked::default();
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
    match data.component_compat(component.name, app) {
        Some(row) => {
            if let Some(range) = row.supported
                && !range.contains(cluster_minor)
            {
                checked.blockers.push(format!(
                    "{} {app} is supported on Kubernetes {range}, not this cluster's {cluster_minor} (data row {}, checked {}); pick a version whose range covers {cluster_minor}",
                    component.name, row.version, row.checked
                ));
            }
            if let Some(range) = row.tested
                && !range.contains(cluster_minor)
            {
                checked.findings.push(format!(
                    "{} {app} was tested with Kubernetes {range}, not {cluster_minor} (data row {}, checked {})",
                    component.name, row.version, row.checked
                ));
            }
        }
        None if data.knows_component(component.name) => {
            let newest = data
                .newest_component_line(component.name)
                .map(|r| format!("; the data ends at {} (checked {})", r.version, r.checked))
                .unwrap_or_default();
            checked.findings.push(format!(
                "no compatibility row for {} {app}, so its support of Kubernetes {cluster_minor} is unknown{newest}",
                component.name
            ));
        }
        None => {}
    }
    if let Some(crds) = &compat.crds {
        checked.findings.push(format!(
            "the chart ships {} CRD(s) under crds/, which helm upgrade never updates; if they changed, apply them first: {}",
            crds.crds.len(),
            crds.apply_command
        ));
    }
    checked
}

/// Seed 000 step 1 pins the image tag (`controller.image.tag`) in the values file; a pin left
/// at another version than the chart's app is usually a forgotten edit. `pinned` is the tag
/// the upgrade will run: `--image-tag`, else the file's.
pub fn image_pin_finding(
    pinned: Option<&str>,
    values_file: &Path,
    app_version: Option<&str>,
) -> Option<String> {
    let pinned = pinned?;
    let app = app_version?;
    let same = match (
        parse_loose_semver(pinned.trim_start_matches('v')),
        parse_loose_semver(app.trim_start_matches('v')),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => pinned == app,
    };
    (!same).then(|| {
        format!(
            "{} pins the image tag {pinned} while the chart's app is {app}: the upgrade runs {pinned}; pass --image-tag {app} to pin it, unless that is deliberate",
            values_file.display()
        )
    })
}

/// The upgrade's steps, built from the arguments only: the component's custom-resource
/// backup, the image-tag pin (with `--image-tag`), the snapshotted `helm upgrade`, and the
/// verification.
pub fn component_steps(
    component: &Component,
    args: &HelmArgs,
    session: &Session,
) -> Result<Vec<Box<dyn Step>>, CliError> {
    let [backup_id, pin_id, upgrade_id, verify_id] = component.step_ids();
    let release = args.release(component);
    let timeout = session.timeout_or(DEFAULT_TIMEOUT);
    let options = UpgradeOptions {
        create_namespace: true,
        values_files: vec![args.values_file(component)],
        wait: WaitMode::Ready,
        timeout,
        ..UpgradeOptions::default()
    };
    let rollback = RollbackOptions {
        wait: WaitMode::Ready,
        timeout,
        ..RollbackOptions::default()
    };
    let kinds = platform_kinds(component.name);
    let mut steps: Vec<Box<dyn Step>> = vec![Box::new(CrBackupStep {
        id: backup_id,
        component: component.name.into(),
        cluster: session.cluster.clone(),
        kinds: kinds.clone(),
        namespace: None,
    })];
    if let Some(tag) = &args.image_tag {
        steps.push(Box::new(ValuesPinStep {
            id: pin_id,
            component: component.name.into(),
            path: args.values_file(component),
            key: args.image_tag_key(),
            value: tag.clone(),
        }));
    }
    steps.extend([
        Box::new(HelmUpgradeStep {
            id: upgrade_id,
            component: component.name.into(),
            helm: session.helm()?,
            release: release.clone(),
            chart: args.chart(component)?,
            options,
            restore_source: None,
            rollback,
        }),
        Box::new(WorkloadsReadyStep {
            id: verify_id,
            component: component.name.into(),
            cluster: session.cluster.clone(),
            namespace: release.namespace,
            kinds,
            timeout,
        }) as Box<dyn Step>,
    ]);
    Ok(steps)
}

/// Plans, checks and (with `--apply`) runs a component's upgrade.
///
/// Order: every input validated (values file, chart reference, helm) → connect → the live
/// release read (a pending one blocks) → the chart and data checks (blockers exit 4) → the
/// plan, and with `--apply` the journaled run.
pub async fn run_upgrade(
    component: &Component,
    args: &HelmArgs,
    common: &CommonArgs,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let values_file = args.values_file(component);
    read_values(&values_file)?;
    let key = args.image_tag_key();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let pinned_now = match &args.image_tag {
        // The pin must be possible before anything runs.
        Some(_) => Some(check_file(&values_file, &key).map_err(CliError::usage)?),
        None => check_file(&values_file, &key).ok(),
    };
    let chart = args.chart(component)?;
    HELM.resolve().map_err(CliError::usage)?;
    let session = Session::open(common).await?;
    let helm = session.helm()?;
    let release = args.release(component);

    let mut checked = Checked::default();
    let live = match helm.preflight(&release).await {
        Ok(history) if history.is_empty() => None,
        Ok(_) => {
            let meta = helm
                .metadata(&release, None)
                .await
                .map_err(|e| CliError::failed(anyhow!("read release {release}: {e}")))?;
            Some(LiveRelease {
                chart_version: meta.version,
                app_version: meta.app_version,
                revision: meta.revision,
                status: meta.status.to_string(),
            })
        }
        Err(err @ upgrade_helm::Error::PendingOperation { .. }) => {
            checked.blockers.push(one_line(&err.to_string()));
            None
        }
        Err(err) => {
            return Err(CliError::failed(anyhow!("read release {release}: {err}")));
        }
    };

    let git_version = session
        .cluster
        .client()
        .apiserver_version()
        .await
        .map_err(|e| CliError::failed(anyhow!("read the API server version: {e}")))?
        .git_version;
    let cluster_minor: KubeMinor = git_version.parse().map_err(|e| {
        CliError::failed(anyhow!(
            "the cluster reports version `{git_version}`, which does not parse: {e}"
        ))
    })?;
    let compat = helm
        .chart_compatibility(&chart, &git_version)
        .await
        .map_err(|e| {
            CliError::usage(anyhow!(
                "cannot read chart {chart}: {}; check --chart and --version (for a repo chart, `helm repo add` it first)",
                one_line(&e.to_string())
            ))
        })?;
    if compat.version != args.version.to_string() {
        return Err(CliError::usage(anyhow!(
            "the chart at {chart} is version {}, not {}; pass the chart of {} or --version {}",
            compat.version,
            args.version,
            args.version,
            compat.version
        )));
    }
    let found = check_compatibility(component, &compat, cluster_minor);
    checked.blockers.extend(found.blockers);
    checked.findings.extend(found.findings);
    checked.findings.extend(image_pin_finding(
        args.image_tag.as_deref().or(pinned_now.as_deref()),
        &values_file,
        compat.app_version.as_deref(),
    ));

    let target_app = compat.app_version.as_deref().unwrap_or("?");
    let change = match &live {
        Some(live) => {
            if semver::Version::parse(&live.chart_version).is_ok_and(|from| from > args.version) {
                checked.findings.push(format!(
                    "{release}: {} -> {} is a downgrade",
                    live.chart_version, args.version
                ));
            }
            format!(
                "{release}: chart {} (app {}, revision {}, {}) -> {} (app {target_app}) from {chart}",
                live.chart_version, live.app_version, live.revision, live.status, args.version
            )
        }
        None => format!(
            "{release}: not installed -> install chart {} (app {target_app}) from {chart}",
            args.version
        ),
    };
    let mut changes = vec![change];
    if let Some(tag) = &args.image_tag {
        changes.push(format!(
            "{}: {} {} -> {tag}",
            values_file.display(),
            args.image_tag_key,
            pinned_now.as_deref().unwrap_or("?")
        ));
    }
    let plan = Plan {
        command: component.command.into(),
        run_id: Session::new_run_id(component.name),
        changes,
        findings: checked.findings.clone(),
    };
    let steps = component_steps(component, args, &session)?;
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    if !checked.blockers.is_empty() {
        return print_blocked(&session, plan, &refs, &checked.blockers, out);
    }
    session.execute(&plan, &refs, out).await
}

/// Prints the plan with its blockers and returns exit 4; nothing is changed.
pub fn print_blocked(
    session: &Session,
    mut plan: Plan,
    steps: &[&dyn Step],
    blockers: &[String],
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    plan.findings = blockers
        .iter()
        .map(|b| format!("BLOCKER: {b}"))
        .chain(plan.findings)
        .collect();
    let mut report = RunReport::planned(session, &plan, steps);
    report.applied = false;
    report.outcome = format!(
        "blocked by {} finding(s); nothing was changed",
        blockers.len()
    );
    out.write_all(report.render(session.common.output).as_bytes())
        .map_err(|e| CliError::failed(anyhow!("write the report: {e}")))?;
    Ok(EXIT_BLOCKERS)
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
        assert_eq!(err.code, 2);
        let text = format!("{:#}", err.error);
        assert!(text.contains("is not valid YAML"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- a\n- b\n").unwrap();
        let text = format!("{:#}", read_values(&list).unwrap_err().error);
        assert!(text.contains("holds a YAML list, not a mapping"), "{text}");
        let missing = read_values(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(
            format!("{:#}", missing.error).contains("cannot read the values file"),
            "{:#}",
            missing.error
        );
    }

    #[test]
    fn charts_resolve_to_local_folders_or_references() {
        let args = |chart: &str| HelmArgs {
            chart: Some(chart.into()),
            version: semver::Version::new(1, 6, 0),
            values: None,
            release: None,
            namespace: None,
            image_tag: None,
            image_tag_key: "controller.image.tag".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("karpenter");
        std::fs::create_dir(&local).unwrap();
        let chart = args(&local.to_string_lossy()).chart(&KARPENTER).unwrap();
        assert_eq!(chart.source, upgrade_helm::ChartSource::Path(local.clone()));
        let chart = HelmArgs {
            chart: None,
            ..args("")
        }
        .chart(&KARPENTER)
        .unwrap();
        assert_eq!(
            chart.to_string(),
            "oci://public.ecr.aws/karpenter/karpenter@1.6.0"
        );
        assert_eq!(
            args("charts/kserve/0.15.0").chart(&KSERVE).unwrap().source,
            upgrade_helm::ChartSource::Path("charts/kserve/0.15.0".into())
        );
        let err = args("kserve").chart(&KSERVE).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(
            format!("{:#}", err.error).contains("--chart kserve: "),
            "{:#}",
            err.error
        );
        let err = args("oci://public.ecr.aws/karpenter/karpenter:1.5.0")
            .chart(&KARPENTER)
            .unwrap_err();
        assert!(
            format!("{:#}", err.error).contains("differs from the version"),
            "{:#}",
            err.error
        );
        assert!(
            parse_version("1.6")
                .unwrap_err()
                .contains("write it as X.Y.Z")
        );
        assert_eq!(
            parse_version("v1.6.0").unwrap(),
            semver::Version::new(1, 6, 0)
        );
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
            check_compatibility(&KARPENTER, &compat("1.6.0", None), minor("1.30")),
            Checked::default()
        );
        let checked = check_compatibility(&KARPENTER, &compat("1.6.0", None), minor("1.35"));
        assert_eq!(checked.blockers.len(), 1, "{checked:?}");
        assert!(
            checked.blockers[0]
                .contains("supported on Kubernetes 1.26–1.34, not this cluster's 1.35"),
            "{checked:?}"
        );
        let checked = check_compatibility(
            &KARPENTER,
            &compat("1.6.0", Some("outside the kubeVersion")),
            minor("1.30"),
        );
        assert!(
            checked.blockers[0].contains("refuses this cluster"),
            "{checked:?}"
        );
        // KServe 0.15 is tested with 1.30-1.32: 1.33 is a warning, not a blocker.
        let checked = check_compatibility(&KSERVE, &compat("v0.15.0", None), minor("1.33"));
        assert!(checked.blockers.is_empty(), "{checked:?}");
        assert!(
            checked.findings[0].contains("tested with Kubernetes 1.30–1.32"),
            "{checked:?}"
        );
        let checked = check_compatibility(&KARPENTER, &compat("9.9.0", None), minor("1.30"));
        assert!(checked.findings[0].contains("no compatibility row for karpenter 9.9.0"));
    }

    #[test]
    fn a_stale_image_pin_is_reported() {
        let file = Path::new("karpenter-values.yaml");
        let finding = image_pin_finding(Some("1.5.0"), file, Some("1.6.0")).unwrap();
        assert!(finding.contains("pins the image tag 1.5.0"), "{finding}");
        assert!(finding.contains("pass --image-tag 1.6.0"), "{finding}");
        assert_eq!(image_pin_finding(Some("1.5.0"), file, Some("v1.5.0")), None);
        assert_eq!(image_pin_finding(None, file, Some("1.6.0")), None);
    }
}
