//! Seed 001's step 4, second half: the platform's Helm releases installed on green, each as
//! blue runs it (blue's own values, the chart version blue runs unless another is named),
//! with the user's values files on top to point green at the cloned or shared stores.
//!
//! Each release is one reversible step: the rollback uninstalls it from green (the CRDs of
//! a chart's `crds/` stay, as Helm leaves them, and are named in the plan). Blue's values
//! are read when the step runs and handed to Helm in a private temporary file, so they (and
//! the secrets in them) never reach the plan, the run record or a report.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};
use upgrade_helm::step::{HelmUpgradeSpec, HelmUpgradeStep};
use upgrade_helm::{
    ChartRef, Helm, ReleaseRef, RollbackOptions, UpgradeOptions, ValuesScope, WaitMode,
};

use super::transfer::{GreenCluster, LazyGreen, connect_green};
use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const PLATFORM_FLOW: &str = "bluegreen-platform";

/// One release to install on green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreenRelease {
    /// The release (name and namespace), the same on blue and green.
    pub release: ReleaseRef,
    /// The chart (a folder, an archive, `repo/chart` or `oci://`); its version, when not
    /// set, is the one blue runs.
    pub chart: ChartRef,
    /// Values files applied after blue's values (later wins): green's own settings, e.g.
    /// the cloned database's endpoint.
    #[serde(default)]
    pub values_files: Vec<PathBuf>,
    /// Start from blue's user-supplied values (`helm get values`); off for a release blue
    /// does not run.
    #[serde(default = "yes")]
    pub blue_values: bool,
}

fn yes() -> bool {
    true
}

/// What goes onto green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    /// The green cluster.
    pub green: GreenCluster,
    /// The releases, installed in this order (CRD charts first).
    pub releases: Vec<GreenRelease>,
    /// Helm's wait for each release (seconds).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    600
}

/// What [`GreenHelmStep`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GreenHelmSpec {
    /// The green cluster (the interlock is checked before Helm runs against it).
    pub green: GreenCluster,
    /// Blue's release whose user-supplied values come first, when asked for.
    pub blue_values_of: Option<ReleaseRef>,
    /// The install on green (its values files are the user's; blue's go first at apply).
    pub install: HelmUpgradeSpec,
}

impl StepSpec for GreenHelmSpec {
    const KIND: &'static str = "bluegreen-helm-install";
}

/// Installs one release on green with blue's values under the user's; the rollback
/// uninstalls it.
pub struct GreenHelmStep {
    spec: GreenHelmSpec,
    green: LazyGreen,
    green_helm: Arc<Helm>,
    blue_helm: Arc<Helm>,
}

impl GreenHelmStep {
    /// The step of `spec`: Helm runs against green with `green_helm`, blue's values are read
    /// with `blue_helm`.
    pub fn new(
        spec: GreenHelmSpec,
        green_helm: Arc<Helm>,
        blue_helm: Arc<Helm>,
        stop: upgrade_core::process::StopSignal,
    ) -> GreenHelmStep {
        GreenHelmStep {
            green: LazyGreen::new(spec.green.clone(), stop),
            spec,
            green_helm,
            blue_helm,
        }
    }

    /// The Helm step with `options` (checked against green first: the wrong context never
    /// gets a release).
    async fn inner(
        &self,
        options: Option<UpgradeOptions>,
    ) -> std::result::Result<HelmUpgradeStep, String> {
        self.green.get().await.map_err(|e| e.to_string())?;
        let mut spec = self.spec.install.clone();
        if let Some(options) = options {
            spec.options = options;
        }
        Ok(HelmUpgradeStep {
            spec,
            helm: Arc::clone(&self.green_helm),
        })
    }
}

impl Step for GreenHelmStep {
    fn id(&self) -> &str {
        &self.spec.install.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        let install = &self.spec.install;
        format!(
            "helm install {} -n {} {}{} on green{}",
            install.release.name,
            install.release.namespace,
            install.chart,
            install
                .chart
                .version
                .as_deref()
                .map(|v| format!(" --version {v}"))
                .unwrap_or_default(),
            match (
                &self.spec.blue_values_of,
                install.options.values_files.len()
            ) {
                (Some(_), 0) => " with blue's values".to_string(),
                (Some(_), n) => format!(" with blue's values and {n} values file(s) on top"),
                (None, 0) => String::new(),
                (None, n) => format!(" with {n} values file(s)"),
            }
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move { self.inner(None).await?.capture(snapshot).await })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let mut options = self.spec.install.options.clone();
            // Blue's values in a private file that lives as long as the install.
            let mut _blue_file = None;
            if let Some(blue) = &self.spec.blue_values_of {
                let values = self
                    .blue_helm
                    .values(blue, None, ValuesScope::User)
                    .await
                    .map_err(|e| format!("read blue's values of {blue}: {e}"))?;
                let file = tempfile::Builder::new()
                    .prefix("blue-values-")
                    .suffix(".json")
                    .tempfile()
                    .map_err(|e| format!("a temporary values file: {e}"))?;
                upgrade_core::atomic_file::write_private(
                    file.path(),
                    &serde_json::to_vec(&values).unwrap_or_default(),
                )
                .map_err(|e| format!("write blue's values: {e}"))?;
                options.values_files.insert(0, file.path().to_path_buf());
                _blue_file = Some(file);
            }
            self.inner(Some(options)).await?.apply().await
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move { self.inner(None).await?.verify().await })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move { self.inner(None).await?.rollback(snapshot).await })
    }
}

/// Plans the install: green connected and told apart from blue, each release read on blue
/// (its chart version and values), each chart's kubeVersion checked against green's API
/// server, a release green has already blocks.
pub async fn plan_platform(ctx: &FlowContext, spec: &PlatformSpec) -> Result<Planned> {
    if spec.releases.is_empty() {
        return Err(FlowError::invalid(
            "releases",
            "no release given",
            "name each release to install on green (--release NAMESPACE/NAME=CHART)",
        ));
    }
    let (green_spec, green) = connect_green(ctx, &spec.green).await?;
    let green_version = green
        .client()
        .apiserver_version()
        .await
        .map_err(|e| FlowError::failed("read green's version", e))?
        .git_version;
    let blue_helm = ctx.helm()?;
    let green_helm = ctx.helm_for(
        green_spec.kubeconfig.as_deref(),
        green_spec.context.as_deref(),
    )?;
    let run_id = ctx.new_run_id("bluegreen-platform")?;
    let timeout = std::time::Duration::from_secs(spec.timeout_secs);
    let (mut steps, mut changes, mut blockers, mut findings): (Vec<Box<dyn Step>>, _, _, _) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for wanted in &spec.releases {
        let release = &wanted.release;
        for file in &wanted.values_files {
            if !file.is_file() {
                return Err(FlowError::invalid(
                    "values_files",
                    format!("{} (for {release}) is not a file", file.display()),
                    "name an existing values file",
                ));
            }
        }
        let on_blue = match blue_helm.metadata(release, None).await {
            Ok(meta) => Some(meta),
            Err(e) if e.failure_kind() == Some(upgrade_helm::FailureKind::ReleaseNotFound) => None,
            Err(e) => return Err(FlowError::failed(format!("read {release} on blue"), e)),
        };
        if wanted.blue_values && on_blue.is_none() {
            return Err(FlowError::invalid(
                "releases",
                format!("blue runs no release {release} to take values from"),
                format!(
                    "name blue's release, or install it without blue's values ({} false; --no-blue-values)",
                    field("blue_values")
                ),
            ));
        }
        let version = match (&wanted.chart.version, &on_blue) {
            (Some(version), _) => version.clone(),
            (None, Some(meta)) => meta.version.clone(),
            (None, None) => {
                return Err(FlowError::invalid(
                    "releases",
                    format!("{release}: no chart version given and blue does not run it"),
                    "name the chart version (CHART@VERSION)",
                ));
            }
        };
        let chart = wanted.chart.clone().with_version(&version);
        let compatibility = green_helm
            .chart_compatibility(&chart, &green_version)
            .await
            .map_err(|e| {
                FlowError::invalid(
                    "releases",
                    format!("chart {chart}: {e}"),
                    "name a chart Helm can read (a folder, an archive, repo/chart or oci://)",
                )
            })?;
        if !compatibility.is_compatible() {
            blockers.push(format!(
                "{release}: chart {} {version} does not install on green ({green_version}): {}",
                compatibility.chart,
                compatibility
                    .kube_version
                    .reason
                    .clone()
                    .unwrap_or_default()
            ));
        }
        if let Some(crds) = &compatibility.crds {
            findings.push(format!(
                "{release}: the chart's crds/ ({} definitions) are installed with it and stay on green after a rollback, as Helm leaves them",
                crds.crds.len()
            ));
        }
        if !ctx.resume()
            && !green_helm
                .preflight(release)
                .await
                .map_err(|e| FlowError::failed(format!("read {release} on green"), e))?
                .is_empty()
        {
            blockers.push(format!(
                "{release} is installed on green already: green's platform is new, so it is not this run's to change (uninstall it, or upgrade it with upgrade-release against green)"
            ));
        }
        changes.push(format!(
            "green: install {release} from {} {version}{}{}",
            compatibility.chart,
            match &on_blue {
                Some(meta) if wanted.blue_values && meta.version != version => {
                    format!(" (blue runs {}), with blue's values", meta.version)
                }
                Some(_) if wanted.blue_values => ", with blue's values".into(),
                _ => String::new(),
            },
            if wanted.values_files.is_empty() {
                String::new()
            } else {
                format!(
                    " and {}",
                    wanted
                        .values_files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        let values_files = wanted
            .values_files
            .iter()
            .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
            .collect();
        let install = HelmUpgradeSpec {
            id: format!("bluegreen/helm/{}/{}", release.namespace, release.name),
            component: "bluegreen".into(),
            release: release.clone(),
            chart,
            options: UpgradeOptions {
                create_namespace: true,
                values_files,
                wait: WaitMode::ReadyLegacy,
                timeout,
                ..UpgradeOptions::default()
            },
            restore_source: None,
            rollback: RollbackOptions {
                wait: WaitMode::ReadyLegacy,
                timeout,
                ..RollbackOptions::default()
            },
        };
        steps.push(Box::new(GreenHelmStep::new(
            GreenHelmSpec {
                green: green_spec.clone(),
                blue_values_of: wanted.blue_values.then(|| release.clone()),
                install,
            },
            Arc::clone(&green_helm),
            Arc::clone(&blue_helm),
            ctx.stop_signal().clone(),
        )));
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new("upgrade-bluegreen", ctx.cluster_name(), run_id, &refs);
    plan.changes = changes;
    plan.blockers = blockers;
    plan.findings = findings;
    Ok(Planned::new(PLATFORM_FLOW, spec, plan, steps))
}
