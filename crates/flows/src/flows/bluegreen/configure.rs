//! Seed 001's green configuration: Knative's `config-domain` set to the platform's subdomain
//! (so model-serving hosts match the certificate and the CNAMEs), and the Prometheus scrape
//! jobs the guide adds (ml-pipeline, katib-controller, notebook-controller). Each is a change
//! of one ConfigMap on green, snapshotted and put back by the rollback.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upgrade_core::executor::{Step, StepFuture, StepRecord, StepSpec};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

use super::transfer::{GreenCluster, LazyGreen, connect_green};
use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const CONFIGURE_FLOW: &str = "bluegreen-configure";

/// A Prometheus scrape job seed 001 adds: name and target.
pub const SEED_SCRAPE_JOBS: &[(&str, &str)] = &[
    ("ml-pipeline", "ml-pipeline.kubeflow.svc:8888"),
    ("katib-controller", "katib-controller.kubeflow.svc:8080"),
    (
        "notebook-controller",
        "notebook-controller-service.kubeflow.svc:8080",
    ),
];

/// What green is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigureSpec {
    /// The green cluster.
    pub green: GreenCluster,
    /// Knative's default domain (the platform's subdomain, e.g. `platform.example.com`).
    #[serde(default)]
    pub knative_domain: Option<String>,
    /// Add seed 001's scrape jobs to this Prometheus server ConfigMap (`namespace/name`,
    /// key `prometheus.yml`), e.g. `prometheus/prometheus-server`.
    #[serde(default)]
    pub prometheus_config: Option<String>,
}

/// What [`ConfigMapStep`] sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMapSpec {
    /// Step id.
    pub id: String,
    /// The cluster (green).
    pub green: GreenCluster,
    /// `namespace/name`.
    pub config_map: String,
    /// The keys set, with their new values.
    pub data: BTreeMap<String, String>,
    /// What it is for, for people.
    pub purpose: String,
}

impl StepSpec for ConfigMapSpec {
    const KIND: &'static str = "bluegreen-configmap";
}

/// Sets keys of one ConfigMap on green; the rollback puts each key's old value back (or
/// removes a key that was not there).
pub struct ConfigMapStep {
    spec: ConfigMapSpec,
    green: LazyGreen,
}

impl ConfigMapStep {
    /// The step of `spec`; green is connected on first use.
    pub fn new(spec: ConfigMapSpec, stop: StopSignal) -> ConfigMapStep {
        let green = LazyGreen::new(spec.green.clone(), stop);
        ConfigMapStep { spec, green }
    }

    async fn api(&self) -> std::result::Result<(Api<ConfigMap>, &str), upgrade_kube::Error> {
        let green = self.green.get().await?;
        green.guard()?;
        let (ns, name) = self
            .spec
            .config_map
            .split_once('/')
            .unwrap_or(("default", &self.spec.config_map));
        Ok((Api::namespaced(green.client().clone(), ns), name))
    }

    async fn data(&self) -> std::result::Result<BTreeMap<String, String>, String> {
        let (api, name) = self.api().await.map_err(|e| e.to_string())?;
        let cm = api
            .get(name)
            .await
            .map_err(|e| format!("read ConfigMap {}: {e}", self.spec.config_map))?;
        Ok(cm.data.unwrap_or_default())
    }

    async fn set(&self, data: Value) -> std::result::Result<(), String> {
        let (api, name) = self.api().await.map_err(|e| e.to_string())?;
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .map_err(|e| format!("patch ConfigMap {}: {e}", self.spec.config_map))?;
        Ok(())
    }
}

const BEFORE_FILE: &str = "configmap-before.json";

impl Step for ConfigMapStep {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn component(&self) -> &str {
        "bluegreen"
    }

    fn record(&self) -> StepRecord {
        StepRecord::of(&self.spec)
    }

    fn description(&self) -> String {
        format!(
            "{} on green: set {} in ConfigMap {}",
            self.spec.purpose,
            self.spec
                .data
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            self.spec.config_map
        )
    }

    fn capture<'a>(&'a self, snapshot: &'a mut SnapshotWriter) -> StepFuture<'a> {
        Box::pin(async move {
            let now = self.data().await?;
            let before: BTreeMap<&String, Option<&String>> =
                self.spec.data.keys().map(|k| (k, now.get(k))).collect();
            snapshot.put_json(BEFORE_FILE, &before)?;
            Ok(())
        })
    }

    fn apply(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.set(json!(self.spec.data)).await?;
            Ok(())
        })
    }

    fn verify(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let now = self.data().await?;
            for (key, value) in &self.spec.data {
                if now.get(key) != Some(value) {
                    return Err(
                        format!("{} key {key} is not what was set", self.spec.config_map).into(),
                    );
                }
            }
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, snapshot: &'a Snapshot) -> StepFuture<'a> {
        Box::pin(async move {
            let before: BTreeMap<String, Option<String>> = snapshot.get_json(BEFORE_FILE)?;
            self.set(json!(before)).await?;
            Ok(())
        })
    }
}

/// `prometheus.yml` with seed 001's scrape jobs added (the ones it lacks); `None` when it has
/// them all.
fn with_scrape_jobs(
    text: &str,
) -> std::result::Result<Option<(String, Vec<&'static str>)>, String> {
    let mut config: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_norway::from_str(text).map_err(|e| format!("prometheus.yml is not YAML: {e}"))?
    };
    if !config.is_object() {
        return Err("prometheus.yml is not a mapping".into());
    }
    if config["scrape_configs"].is_null() {
        config["scrape_configs"] = json!([]);
    }
    let jobs = config["scrape_configs"]
        .as_array_mut()
        .ok_or("prometheus.yml's scrape_configs is not a list")?;
    let mut added = Vec::new();
    for (name, target) in SEED_SCRAPE_JOBS {
        if !jobs.iter().any(|j| j["job_name"] == *name) {
            jobs.push(json!({
                "job_name": name,
                "scrape_interval": "60s",
                "static_configs": [{"targets": [target]}],
            }));
            added.push(*name);
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let yaml = serde_norway::to_string(&config).map_err(|e| e.to_string())?;
    Ok(Some((yaml, added)))
}

/// Plans green's configuration: each ConfigMap must exist on green (the platform installed).
pub async fn plan_configure(ctx: &FlowContext, spec: &ConfigureSpec) -> Result<Planned> {
    if spec.knative_domain.is_none() && spec.prometheus_config.is_none() {
        return Err(FlowError::invalid(
            "knative_domain",
            "nothing to configure",
            "give Knative's domain (--knative-domain) and/or the Prometheus ConfigMap (--prometheus-config)",
        ));
    }
    let (green_spec, green) = connect_green(ctx, &spec.green).await?;
    let read = |key: &str| {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let api: Api<ConfigMap> = Api::namespaced(green.client().clone(), ns);
        let (key, name) = (key.to_string(), name.to_string());
        async move {
            api.get_opt(&name)
                .await
                .map_err(|e| FlowError::failed(format!("read ConfigMap {key} on green"), e))?
                .ok_or_else(|| {
                    FlowError::invalid(
                        "green",
                        format!("green has no ConfigMap {key}"),
                        "install the platform component on green first",
                    )
                })
        }
    };
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let mut changes = Vec::new();
    if let Some(domain) = &spec.knative_domain {
        let key = "knative-serving/config-domain";
        let cm = read(key).await?;
        // The step is planned even when green has the value: a resumed run re-plans after
        // its own change, and must plan the same steps; setting it again changes nothing.
        if cm.data.unwrap_or_default().contains_key(domain) {
            changes.push(format!(
                "{key}: {domain} is the domain already (set again, no change)"
            ));
        } else {
            changes.push(format!("{key}: default domain {domain}"));
        }
        steps.push(Box::new(ConfigMapStep::new(
            ConfigMapSpec {
                id: "bluegreen/knative-domain".into(),
                green: green_spec.clone(),
                config_map: key.into(),
                data: BTreeMap::from([(domain.clone(), String::new())]),
                purpose: "Knative's domain".into(),
            },
            ctx.stop_signal().clone(),
        )));
    }
    if let Some(key) = &spec.prometheus_config {
        let cm = read(key).await?;
        let text = cm
            .data
            .unwrap_or_default()
            .get("prometheus.yml")
            .cloned()
            .unwrap_or_default();
        let (yaml, change) = match with_scrape_jobs(&text).map_err(|e| {
            FlowError::invalid(
                "prometheus_config",
                format!("{key}: {e}"),
                "fix the ConfigMap",
            )
        })? {
            Some((yaml, added)) => (
                yaml,
                format!(
                    "{key}: add scrape jobs {} (the file is rewritten: comments are not kept)",
                    added.join(", ")
                ),
            ),
            // Planned anyway (see above): a resumed run re-plans after its own change.
            None => (
                text,
                format!("{key}: has seed 001's scrape jobs already (no change)"),
            ),
        };
        changes.push(change);
        steps.push(Box::new(ConfigMapStep::new(
            ConfigMapSpec {
                id: "bluegreen/prometheus-scrape-jobs".into(),
                green: green_spec.clone(),
                config_map: key.clone(),
                data: BTreeMap::from([("prometheus.yml".to_string(), yaml)]),
                purpose: "Prometheus scrape jobs".into(),
            },
            ctx.stop_signal().clone(),
        )));
    }
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new(
        "upgrade-bluegreen",
        ctx.cluster_name(),
        ctx.new_run_id("bluegreen-configure")?,
        &refs,
    );
    plan.changes = changes;
    let mut recorded = spec.clone();
    recorded.green = green_spec;
    Ok(Planned::new(CONFIGURE_FLOW, &recorded, plan, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_jobs_are_added_once_and_others_kept() {
        let text = "global: {scrape_interval: 15s}\nscrape_configs:\n- job_name: ml-pipeline\n  static_configs: [{targets: ['x:1']}]\n- job_name: mine\n";
        let (yaml, added) = with_scrape_jobs(text).unwrap().unwrap();
        assert_eq!(added, ["katib-controller", "notebook-controller"]);
        let config: Value = serde_norway::from_str(&yaml).unwrap();
        let names: Vec<&str> = config["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "ml-pipeline",
                "mine",
                "katib-controller",
                "notebook-controller"
            ]
        );
        assert_eq!(config["global"]["scrape_interval"], "15s");
        assert!(with_scrape_jobs(&yaml).unwrap().is_none());
        assert!(with_scrape_jobs("scrape_configs: 3").is_err());
    }
}
