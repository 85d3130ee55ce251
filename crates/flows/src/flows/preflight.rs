//! The preflight: every check for the path to a target minor, on live facts or a saved dump.
//! Read only: nothing is changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_checks::checks::Report;
use upgrade_checks::config::Config;
use upgrade_checks::data::Data;
use upgrade_checks::facts::Facts;
use upgrade_core::version::KubeMinor;
use upgrade_kube::facts::{GatherOptions, gather};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::events::Event;

/// A preflight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightSpec {
    /// The Kubernetes minor to check the path to, e.g. `1.31` (each minor on the way).
    pub target: String,
    /// A YAML or JSON dump of the cluster's facts instead of the live cluster.
    #[serde(default)]
    pub facts: Option<PathBuf>,
    /// The check configuration: thresholds, severities, ignores.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// A folder with newer version data files (`removed_apis.yaml`, `eks.yaml`,
    /// `compatibility.yaml`); the files it lacks stay embedded.
    #[serde(default)]
    pub data: Option<PathBuf>,
}

/// The spec checked: the target, the configuration and, when given, the facts file.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The target minor.
    pub target: KubeMinor,
    /// The configuration.
    pub config: Config,
    /// The facts, when read from a file.
    pub facts: Option<Facts>,
    /// The version data.
    pub data: std::borrow::Cow<'static, Data>,
}

/// Checks the spec without a cluster.
pub fn validate(spec: &PreflightSpec) -> Result<Inputs> {
    let target: KubeMinor = spec
        .target
        .parse()
        .map_err(|e| FlowError::invalid("target", format!("{}: {e}", spec.target), ""))?;
    let read = |name: &str, path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            FlowError::invalid(
                name,
                format!("cannot read {}: {e}", path.display()),
                "fix the path",
            )
        })
    };
    let config = match &spec.config {
        Some(path) => Config::from_yaml(&read("config", path)?).map_err(|e| {
            FlowError::invalid(
                "config",
                format!("check configuration {}: {e}", path.display()),
                "",
            )
        })?,
        None => Config::default(),
    };
    let facts = spec
        .facts
        .as_deref()
        .map(|path| {
            Facts::from_yaml(&read("facts", path)?).map_err(|e| {
                FlowError::invalid("facts", format!("facts file {}: {e}", path.display()), "")
            })
        })
        .transpose()?;
    let data = load_data(spec.data.as_deref())?;
    Ok(Inputs {
        target,
        config,
        facts,
        data,
    })
}

/// The embedded version data, or the folder's (the `data` field of a spec).
pub fn load_data(dir: Option<&Path>) -> Result<std::borrow::Cow<'static, Data>> {
    Data::load(dir).map_err(|e| {
        FlowError::invalid(
            "data",
            e.to_string(),
            "give a folder with valid removed_apis.yaml, eks.yaml or compatibility.yaml files, or leave it out to use the embedded data",
        )
    })
}

/// Runs the checks on `facts`.
pub fn check(facts: &Facts, inputs: &Inputs) -> Result<Report> {
    upgrade_checks::checks::run(facts, inputs.target, &inputs.config, &inputs.data)
        .map_err(|e| FlowError::invalid("target", format!("{}: {e}", inputs.target), ""))
}

/// The live cluster's facts (read only), with the Helm major in use when helm is found, so
/// chart kubeVersion checks use its rule; notes go to the event sink.
pub async fn live_facts(ctx: &FlowContext) -> Result<Facts> {
    let options = GatherOptions {
        cluster_name: ctx.connect_options().expect_cluster.clone(),
        ..GatherOptions::default()
    };
    let gathered = gather(ctx.cluster(), &options)
        .await
        .map_err(|e| FlowError::failed("gather the cluster's facts", e))?;
    for note in &gathered.notes {
        ctx.events().event(&Event::Note {
            message: note.clone(),
        });
    }
    let mut facts = gathered.facts;
    if let Ok(helm) = ctx.helm()
        && let Ok(version) = helm.version().await
    {
        facts.helm_major = Some(match version.major() {
            upgrade_helm::HelmMajor::V3 => 3,
            upgrade_helm::HelmMajor::V4 => 4,
        });
    }
    Ok(facts)
}
