//! Seed 001's green configuration: Knative's `config-domain` set to the platform's subdomain
//! (so model-serving hosts match the certificate and the CNAMEs), and the Prometheus scrape
//! jobs the guide adds (ml-pipeline, katib-controller, notebook-controller), each a change of
//! one ConfigMap on green, snapshotted and put back by the rollback; blue's model-serving
//! ingress and authorization policies copied to green as they are (the same certificate),
//! deleted again by the rollback; and the FSx permissions Job of [`super::fsx`].

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
    /// Objects copied from blue as they are, `resource/namespace/name` (or `resource/name`
    /// when cluster-scoped), e.g. the model-serving ingress
    /// `ingresses/istio-system/istio-ingress` and the authorization policies
    /// `authorizationpolicies.security.istio.io/kubeflow-user-example-com/allow-predictor`.
    #[serde(default)]
    pub copy_from_blue: Vec<String>,
    /// Shared-file-system claims on green (`namespace/name`) whose root gets the notebook
    /// user's ownership (seed 001's FSx permissions).
    #[serde(default)]
    pub fsx_permissions: Vec<String>,
    /// The image of the permissions Job.
    #[serde(default = "default_permissions_image")]
    pub permissions_image: String,
    /// The permissions Job's shell command (the volume is at `/data`).
    #[serde(default = "default_permissions_command")]
    pub permissions_command: String,
}

fn default_permissions_image() -> String {
    super::fsx::DEFAULT_PERMISSIONS_IMAGE.into()
}

fn default_permissions_command() -> String {
    super::fsx::DEFAULT_PERMISSIONS_COMMAND.into()
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
    if spec.knative_domain.is_none()
        && spec.prometheus_config.is_none()
        && spec.copy_from_blue.is_empty()
        && spec.fsx_permissions.is_empty()
    {
        return Err(FlowError::invalid(
            "knative_domain",
            "nothing to configure",
            "give Knative's domain (--knative-domain), the Prometheus ConfigMap (--prometheus-config), objects to copy from blue (--copy-from-blue) and/or FSx claims (--fsx-permissions)",
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
    let mut findings = Vec::new();
    let mut blockers = Vec::new();
    if !spec.copy_from_blue.is_empty() {
        let (step, change, found, blocked) =
            plan_copy_from_blue(ctx, &green_spec, &green, &spec.copy_from_blue).await?;
        steps.push(Box::new(step));
        changes.push(change);
        findings.extend(found);
        blockers.extend(blocked);
    }
    for claim in &spec.fsx_permissions {
        let (ns, name) = claim.split_once('/').ok_or_else(|| {
            FlowError::invalid(
                "fsx_permissions",
                format!("`{claim}` is not NAMESPACE/CLAIM"),
                "name each claim as NAMESPACE/NAME",
            )
        })?;
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(green.client().clone(), ns);
        if claims
            .get_opt(name)
            .await
            .map_err(|e| FlowError::failed(format!("read claim {claim} on green"), e))?
            .is_none()
        {
            return Err(FlowError::invalid(
                "fsx_permissions",
                format!("green has no claim {claim}"),
                "move the user namespace first (upgrade-bluegreen transfer) or name a claim green has",
            ));
        }
        let job_name: String = format!("fsx-permissions-{name}").chars().take(63).collect();
        changes.push(format!(
            "claim {claim}: Job {job_name} runs `{}` with the volume at /data (the ownership change stays after a rollback)",
            spec.permissions_command
        ));
        steps.push(Box::new(super::fsx::FsxPermissionsStep::new(
            super::fsx::FsxPermissionsSpec {
                id: format!("bluegreen/fsx-permissions/{ns}/{name}"),
                green: green_spec.clone(),
                claim: claim.clone(),
                job_name: job_name.trim_end_matches('-').to_string(),
                image: spec.permissions_image.clone(),
                command: spec.permissions_command.clone(),
                timeout_secs: 600,
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
    plan.findings = findings;
    plan.blockers = blockers;
    let mut recorded = spec.clone();
    recorded.green = green_spec;
    Ok(Planned::new(CONFIGURE_FLOW, &recorded, plan, steps))
}

/// Blue's named objects as one copy step (the transfer's, so the rollback deletes only what
/// it created): each must exist on blue; a kind green does not serve blocks; an object green
/// has already is kept and said so. Returns the step, its change line, findings, blockers.
async fn plan_copy_from_blue(
    ctx: &FlowContext,
    green_spec: &GreenCluster,
    green: &upgrade_kube::connect::Cluster,
    wanted: &[String],
) -> Result<(super::TransferStep, String, Vec<String>, Vec<String>)> {
    use upgrade_kube::transfer::{self, KindSlice};
    let bad = |object: &str| {
        FlowError::invalid(
            "copy_from_blue",
            format!("`{object}` is not RESOURCE/NAMESPACE/NAME or RESOURCE/NAME"),
            "name the object as kubectl does, e.g. ingresses/istio-system/istio-ingress",
        )
    };
    let mut asked: Vec<(String, String)> = Vec::new();
    for object in wanted {
        let (resource, key) = object.split_once('/').ok_or_else(|| bad(object))?;
        if key.is_empty() || key.split('/').count() > 2 {
            return Err(bad(object));
        }
        asked.push((resource.to_string(), key.to_string()));
    }
    let blue = ctx.cluster();
    let names: Vec<String> = asked.iter().map(|(r, _)| r.clone()).collect();
    // Each name resolved on its own, so short names and singulars map to their kind.
    let mut kinds: BTreeMap<String, transfer::TransferKind> = BTreeMap::new();
    for name in &names {
        if kinds.contains_key(name) {
            continue;
        }
        let (resolved, _) = transfer::resolve_kinds(blue, std::slice::from_ref(name))
            .await
            .map_err(FlowError::from)?;
        let kind = resolved.into_iter().next().ok_or_else(|| {
            FlowError::invalid(
                "copy_from_blue",
                format!("blue does not serve `{name}`"),
                "name a kind blue serves (kubectl api-resources)",
            )
        })?;
        kinds.insert(name.clone(), kind);
    }
    let mut slices: Vec<KindSlice> = Vec::new();
    for (resource, key) in &asked {
        let kind = kinds[resource].clone();
        if kind.namespaced != key.contains('/') {
            return Err(FlowError::invalid(
                "copy_from_blue",
                format!(
                    "{} is {}: name it as {}",
                    kind.resource(),
                    if kind.namespaced {
                        "namespaced"
                    } else {
                        "cluster-scoped"
                    },
                    if kind.namespaced {
                        "RESOURCE/NAMESPACE/NAME"
                    } else {
                        "RESOURCE/NAME"
                    }
                ),
                "correct --copy-from-blue",
            ));
        }
        match slices.iter_mut().find(|s| s.kind == kind) {
            Some(slice) => slice.objects.push(key.clone()),
            None => slices.push(KindSlice {
                kind,
                objects: vec![key.clone()],
            }),
        }
    }
    let on_blue = transfer::present(blue, &slices)
        .await
        .map_err(FlowError::from)?;
    for slice in &slices {
        for object in &slice.objects {
            let key = format!("{} {object}", slice.kind.resource());
            if !on_blue.contains(&key) {
                return Err(FlowError::invalid(
                    "copy_from_blue",
                    format!("blue has no {key}"),
                    "name an object blue has",
                ));
            }
        }
    }
    let (_, green_lacks) = transfer::resolve_kinds(green, &names)
        .await
        .map_err(FlowError::from)?;
    let blockers: Vec<String> = green_lacks
        .iter()
        .map(|k| {
            format!(
                "green does not serve {k}: install the component that defines it on green first"
            )
        })
        .collect();
    let findings: Vec<String> = if blockers.is_empty() {
        transfer::present(green, &slices)
            .await
            .map_err(FlowError::from)?
            .into_iter()
            .map(|k| format!("green has {k} already: kept as it is"))
            .collect()
    } else {
        Vec::new()
    };
    let change = format!(
        "copy from blue as they are: {}",
        slices
            .iter()
            .flat_map(|s| s
                .objects
                .iter()
                .map(move |o| format!("{} {o}", s.kind.resource())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let step = super::TransferStep::new(
        super::TransferStepSpec {
            id: "bluegreen/copy-from-blue".into(),
            green: green_spec.clone(),
            slices,
            fresh_claims: Default::default(),
        },
        blue.clone(),
        ctx.events_handle(),
    );
    Ok((step, change, findings, blockers))
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
