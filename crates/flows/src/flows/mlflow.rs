//! The MLflow tracking server's upgrade (seed 000 "MLflow Upgrade", seed 002 "MLflow
//! Database Backup"), in the order a schema change needs: a database snapshot through the
//! site's own command (and its wait, until the snapshot is usable), `mlflow db upgrade` run
//! in the cluster with the new image, then the image rollout, then the `/health` check.
//! The new server checks the schema when it starts and refuses an out-of-date one, so the
//! migration comes first; meanwhile the old pods keep serving on the migrated schema, which
//! the plan says, or, with `scale_down`, the server is stopped for the migration.
//!
//! Rollback, in reverse: the pod template is put back (`kubectl rollout undo`); then, only
//! if the migration Job was started, it is stopped and the database restored from the
//! snapshot this run took (never when the snapshot's own wait failed, nor when the run
//! failed before the migration: a needless restore loses what was written since). Without a
//! snapshot command a run is refused unless `no_db_snapshot` says so explicitly: a migrated
//! database cannot be migrated back. The commands are recorded with their placeholders
//! filled in, so a later rollback restores exactly the snapshot this run took.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde::{Deserialize, Serialize};
use upgrade_core::command_step::{CommandSpec, CommandStep};
use upgrade_core::executor::Step;
use upgrade_kube::job::{TemplateJobSpec, TemplateJobStep};
use upgrade_kube::step::{
    DeploymentImageSpec, DeploymentImageStep, DeploymentScaleSpec, DeploymentScaleStep,
};
use upgrade_verify::probe::{Check, ProbeSpec, Retry};
use upgrade_verify::step::ProbeStep;

use crate::context::FlowContext;
use crate::error::{FlowError, Result, field};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const FLOW: &str = "mlflow-upgrade";

/// The placeholders a snapshot or restore command may use.
pub const PLACEHOLDERS: [&str; 2] = ["{run_id}", "{date}"];

/// An MLflow tracking server upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlflowSpec {
    /// The new image, e.g. `ghcr.io/mlflow/mlflow:v2.16.0`.
    pub image: String,
    /// The namespace of the tracking server.
    pub namespace: String,
    /// The tracking server's Deployment.
    pub deployment: String,
    /// The container running MLflow in that Deployment.
    pub container: String,
    /// The container's environment variable holding the backend store URI (the database
    /// `mlflow db upgrade` migrates).
    pub db_uri_env: String,
    /// Takes the database snapshot before anything changes, e.g. `aws rds
    /// create-db-snapshot --db-instance-identifier mlops --db-snapshot-identifier
    /// mlops-pre-upgrade-{run_id}` (split like a shell would, run without one).
    #[serde(default)]
    pub db_snapshot_command: Option<String>,
    /// Waits until the snapshot is usable before anything changes, e.g. `aws rds wait
    /// db-snapshot-available --db-snapshot-identifier mlops-pre-upgrade-{run_id}`.
    #[serde(default)]
    pub db_snapshot_wait_command: Option<String>,
    /// Restores the database from that snapshot on rollback.
    #[serde(default)]
    pub db_restore_command: Option<String>,
    /// Upgrade without a database snapshot: the migration then cannot be undone.
    #[serde(default)]
    pub no_db_snapshot: bool,
    /// Stop the server (scale to 0) for the migration and start it again with the new image
    /// afterwards: downtime, but no old server ever runs on the migrated schema.
    #[serde(default)]
    pub scale_down: bool,
    /// The tracking server's URL whose `/health` must answer after the upgrade.
    #[serde(default)]
    pub health_url: Option<String>,
    /// An experiment that must still be readable after the upgrade (needs `health_url`).
    #[serde(default)]
    pub experiment: Option<String>,
    /// Attempts of the health check before it fails the run (backoff 1s doubling to 10s).
    pub health_attempts: u32,
    /// The limit of the rollout, the migration Job and each command.
    pub timeout: Duration,
}

impl MlflowSpec {
    /// An upgrade to `image` of seed 000's tracking server (`mlops/mlflow`).
    pub fn new(image: &str) -> MlflowSpec {
        MlflowSpec {
            image: image.into(),
            namespace: "mlops".into(),
            deployment: "mlflow".into(),
            container: "mlflow".into(),
            db_uri_env: "BACKEND_STORE_URI".into(),
            db_snapshot_command: None,
            db_snapshot_wait_command: None,
            db_restore_command: None,
            no_db_snapshot: false,
            scale_down: false,
            health_url: None,
            experiment: None,
            health_attempts: 10,
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// A command split into argv, its program found, placeholders still in it.
#[derive(Debug, Clone)]
struct SplitCommand {
    argv: Vec<String>,
    program: PathBuf,
}

impl SplitCommand {
    fn parse(name: &'static str, text: &str) -> Result<SplitCommand> {
        let argv = super::split_words(name, text)?;
        super::check_secrets(name, &argv)?;
        if argv.is_empty() {
            return Err(FlowError::invalid(
                name,
                "is empty",
                "give the command to run, e.g. `aws rds create-db-snapshot ...`",
            ));
        }
        for arg in &argv {
            // `${env:NAME}` secret references are not placeholders.
            let without_refs = upgrade_core::redact::env_refs(arg)
                .iter()
                .fold(arg.clone(), |text, name| {
                    text.replace(&format!("${{env:{name}}}"), "")
                });
            let mut rest = without_refs.as_str();
            while let Some(start) = rest.find('{') {
                let tail = &rest[start..];
                let end = tail.find('}').map_or(tail.len(), |e| e + 1);
                let placeholder = &tail[..end];
                if !PLACEHOLDERS.contains(&placeholder) {
                    return Err(FlowError::invalid(
                        name,
                        format!("uses `{placeholder}`, which is not a placeholder"),
                        format!("use {} (or remove the braces)", PLACEHOLDERS.join(" or ")),
                    ));
                }
                rest = &tail[end..];
            }
        }
        let program_name = &argv[0];
        let program = if program_name.contains('/') {
            Some(PathBuf::from(program_name)).filter(|p| p.is_file())
        } else {
            which::which(program_name).ok()
        };
        let Some(program) = program else {
            return Err(FlowError::invalid(
                name,
                format!(
                    "the program `{program_name}` was not found{}",
                    if program_name.contains('/') {
                        ""
                    } else {
                        " on PATH"
                    }
                ),
                "install it or give its full path",
            ));
        };
        Ok(SplitCommand { argv, program })
    }

    /// The command with the placeholders filled in, as data.
    fn filled(&self, values: &BTreeMap<&str, String>, timeout: Duration) -> CommandSpec {
        let fill = |arg: &String| {
            values
                .iter()
                .fold(arg.clone(), |text, (name, value)| text.replace(name, value))
        };
        CommandSpec::new(&self.program, self.argv[1..].iter().map(fill)).timeout(timeout)
    }
}

/// The spec checked, without the cluster.
#[derive(Debug)]
struct Inputs {
    snapshot: Option<(SplitCommand, SplitCommand)>,
    snapshot_wait: Option<SplitCommand>,
    probes: Vec<ProbeSpec>,
}

fn validate(spec: &MlflowSpec) -> Result<Inputs> {
    check_image(&spec.image)?;
    for (name, value) in [
        ("namespace", &spec.namespace),
        ("deployment", &spec.deployment),
    ] {
        if value.is_empty()
            || value.len() > 63
            || !value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(FlowError::invalid(
                name,
                format!("`{value}` is not a Kubernetes name"),
                "use lowercase letters, digits and '-'",
            ));
        }
    }
    if spec.db_uri_env.is_empty()
        || !spec
            .db_uri_env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(FlowError::invalid(
            "db_uri_env",
            format!("`{}` is not an environment variable name", spec.db_uri_env),
            "give the container's variable holding the database URI, e.g. BACKEND_STORE_URI",
        ));
    }
    if spec.no_db_snapshot && spec.db_snapshot_command.is_some() {
        return Err(FlowError::invalid(
            "no_db_snapshot",
            format!("contradicts {}", field("db_snapshot_command")),
            "give one of them",
        ));
    }
    let snapshot = match (&spec.db_snapshot_command, &spec.db_restore_command) {
        (Some(snapshot), Some(restore)) => Some((
            SplitCommand::parse("db_snapshot_command", snapshot)?,
            SplitCommand::parse("db_restore_command", restore)?,
        )),
        (Some(_), None) => {
            return Err(FlowError::invalid(
                "db_snapshot_command",
                format!("needs {}", field("db_restore_command")),
                "without it the rollback cannot restore the database",
            ));
        }
        (None, Some(_)) => {
            return Err(FlowError::invalid(
                "db_restore_command",
                format!(
                    "needs {} to take the snapshot it restores",
                    field("db_snapshot_command")
                ),
                "",
            ));
        }
        (None, None) => None,
    };
    if spec.db_snapshot_wait_command.is_some() && snapshot.is_none() {
        return Err(FlowError::invalid(
            "db_snapshot_wait_command",
            format!("needs {}", field("db_snapshot_command")),
            "it waits for the snapshot that command takes",
        ));
    }
    let snapshot_wait = spec
        .db_snapshot_wait_command
        .as_deref()
        .map(|text| SplitCommand::parse("db_snapshot_wait_command", text))
        .transpose()?;
    if spec.experiment.is_some() && spec.health_url.is_none() {
        return Err(FlowError::invalid(
            "experiment",
            format!("needs {}", field("health_url")),
            "the experiment is read through the tracking server",
        ));
    }
    let mut probes = Vec::new();
    if let Some(url) = &spec.health_url {
        super::check_secrets("health_url", std::slice::from_ref(url))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(FlowError::invalid(
                "health_url",
                format!(
                    "`{}` is not an http(s) URL",
                    upgrade_core::redact::scrub_credentials(url)
                ),
                "give the tracking server's base URL, e.g. http://mlflow.mlops:5000",
            ));
        }
        if spec.health_attempts == 0 {
            return Err(FlowError::invalid(
                "health_attempts",
                "must be at least 1",
                "",
            ));
        }
        let retry = Retry {
            attempts: spec.health_attempts,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        probes.push(ProbeSpec::new("mlflow-health", Check::mlflow_health(url)).with_retry(retry));
        if let Some(experiment) = &spec.experiment {
            probes.push(
                ProbeSpec::new(
                    "mlflow-experiment",
                    Check::mlflow_experiment(url, experiment),
                )
                .with_retry(retry),
            );
        }
        upgrade_verify::probe::validate(&probes)
            .map_err(|e| FlowError::invalid("health_url", e.to_string(), ""))?;
    }
    Ok(Inputs {
        snapshot,
        snapshot_wait,
        probes,
    })
}

fn check_image(image: &str) -> Result<()> {
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    let tagged = image[name_end..].contains(':') || image.contains("@sha256:");
    if image.is_empty() || image.contains(char::is_whitespace) || !tagged {
        return Err(FlowError::invalid(
            "image",
            format!("`{image}` has no tag"),
            "pin the version, e.g. ghcr.io/mlflow/mlflow:v2.16.0",
        ));
    }
    if image[name_end..].ends_with(':') {
        return Err(FlowError::invalid(
            "image",
            format!("`{image}` has an empty tag"),
            "pin the version, e.g. ghcr.io/mlflow/mlflow:v2.16.0",
        ));
    }
    Ok(())
}

/// The tracking server as it runs now.
struct Live {
    /// The image of the MLflow container.
    image: String,
    /// The Deployment's replicas.
    replicas: i32,
}

/// The tracking server as it runs now; the Deployment, container and database variable must
/// exist.
async fn live(ctx: &FlowContext, spec: &MlflowSpec) -> Result<Live> {
    let api: kube::Api<Deployment> =
        kube::Api::namespaced(ctx.cluster().client().clone(), &spec.namespace);
    let deployment = api
        .get_opt(&spec.deployment)
        .await
        .map_err(|e| {
            FlowError::failed(
                format!("read deployment {}/{}", spec.namespace, spec.deployment),
                e,
            )
        })?
        .ok_or_else(|| {
            FlowError::invalid(
                "deployment",
                format!(
                    "there is no deployment {}/{} on {}",
                    spec.namespace,
                    spec.deployment,
                    ctx.cluster_name()
                ),
                format!(
                    "set {} and {} to the tracking server's",
                    field("namespace"),
                    field("deployment")
                ),
            )
        })?;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let containers = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let container = containers
        .iter()
        .find(|c| c.name == spec.container)
        .ok_or_else(|| {
            FlowError::invalid(
                "container",
                format!(
                    "deployment {}/{} has no container `{}` (it has: {})",
                    spec.namespace,
                    spec.deployment,
                    spec.container,
                    names.join(", ")
                ),
                "",
            )
        })?;
    let has_env = container
        .env
        .iter()
        .flatten()
        .any(|e| e.name == spec.db_uri_env);
    if !has_env && container.env_from.as_ref().is_none_or(|e| e.is_empty()) {
        return Err(FlowError::invalid(
            "db_uri_env",
            format!(
                "container `{}` of deployment {}/{} has no environment variable {}",
                spec.container, spec.namespace, spec.deployment, spec.db_uri_env
            ),
            "name the one holding the database URI",
        ));
    }
    let image = container.image.clone().unwrap_or_default();
    if image == spec.image {
        return Err(FlowError::invalid(
            "image",
            format!(
                "deployment {}/{} already runs {}; nothing to upgrade",
                spec.namespace, spec.deployment, spec.image
            ),
            "give the new image",
        ));
    }
    Ok(Live { image, replicas })
}

/// The blockers (and, into `findings`, the warnings) of going from `current` to `target`.
fn version_checks(current: &str, target: &str, findings: &mut Vec<String>) -> Vec<String> {
    let (Some(from), Some(to)) = (tag_version(current), tag_version(target)) else {
        findings.push(format!(
            "cannot compare the versions of {current} and {target}; make sure this is not a downgrade"
        ));
        return Vec::new();
    };
    if to < from {
        return vec![format!(
            "{from} -> {to} is a downgrade: MLflow cannot run on a database migrated by a newer version; restore the database snapshot taken before the upgrade and roll back with upgrade-rollback instead"
        )];
    }
    if to.major > from.major {
        findings.push(format!(
            "{from} -> {to} crosses a major version: read MLflow's release notes for breaking changes to clients and the REST API"
        ));
    }
    Vec::new()
}

fn tag_version(image: &str) -> Option<semver::Version> {
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    let (_, tag) = image[name_end..].split_once(':')?;
    let tag = tag.split('@').next()?.trim_start_matches('v');
    semver::Version::parse(tag).ok()
}

/// `{run_id}` and `{date}` (the run's UTC day, taken from its id).
fn placeholder_values(run_id: &str) -> BTreeMap<&'static str, String> {
    let day = run_id
        .rsplit('-')
        .next()
        .filter(|stamp| stamp.len() == 16 && stamp.as_bytes()[8] == b'T')
        .map(|stamp| format!("{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8]))
        .unwrap_or_else(|| jiff::Timestamp::now().strftime("%Y-%m-%d").to_string());
    BTreeMap::from([("{run_id}", run_id.to_string()), ("{date}", day)])
}

/// A Job name for this run: `<deployment>-db-upgrade-<run id>`, lowercased, at most 63
/// characters.
fn job_name(deployment: &str, run_id: &str) -> String {
    let id: String = run_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = id.strip_prefix("mlflow-").unwrap_or(&id);
    let mut name = format!("{deployment}-db-upgrade-{id}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

fn steps(
    ctx: &FlowContext,
    spec: &MlflowSpec,
    inputs: Inputs,
    live: &Live,
    run_id: &str,
) -> Vec<Box<dyn Step>> {
    let values = placeholder_values(run_id);
    let timeout = spec.timeout;
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let mut restore = None;
    if let Some((snapshot, restore_command)) = &inputs.snapshot {
        let capture = snapshot.filled(&values, timeout);
        let verify = inputs
            .snapshot_wait
            .as_ref()
            .map(|wait| wait.filled(&values, timeout));
        restore = Some(restore_command.filled(&values, timeout));
        // The snapshot itself is never undone: the migration's rollback restores from it,
        // and only when the migration started.
        steps.push(Box::new(CommandStep {
            id: "mlflow/db-snapshot".into(),
            component: "mlflow".into(),
            description: format!(
                "snapshot the database: {capture}{}",
                verify
                    .as_ref()
                    .map(|wait| format!(", then wait: {wait}"))
                    .unwrap_or_default(),
            ),
            capture: Some(capture),
            apply: None,
            verify,
            rollback: None,
            irreversible: None,
        }));
    }
    let scale = |id: &str, replicas: i32| -> Box<dyn Step> {
        Box::new(DeploymentScaleStep {
            spec: DeploymentScaleSpec {
                id: id.into(),
                component: "mlflow".into(),
                namespace: spec.namespace.clone(),
                deployment: spec.deployment.clone(),
                replicas,
                timeout,
            },
            cluster: ctx.cluster().clone(),
        })
    };
    if spec.scale_down {
        steps.push(scale("mlflow/scale-down", 0));
    }
    steps.push(Box::new(TemplateJobStep {
        spec: TemplateJobSpec {
            id: "mlflow/db-upgrade".into(),
            component: "mlflow".into(),
            namespace: spec.namespace.clone(),
            deployment: spec.deployment.clone(),
            container: spec.container.clone(),
            image: spec.image.clone(),
            command: vec![
                "mlflow".into(),
                "db".into(),
                "upgrade".into(),
                format!("$({})", spec.db_uri_env),
            ],
            job_name: job_name(&spec.deployment, run_id),
            timeout,
            irreversible: restore.is_none().then(|| {
                "a schema migration cannot be reversed, and no database snapshot was taken".into()
            }),
            undo: restore,
        },
        cluster: ctx.cluster().clone(),
    }));
    steps.push(Box::new(DeploymentImageStep {
        spec: DeploymentImageSpec {
            id: "mlflow/image".into(),
            component: "mlflow".into(),
            namespace: spec.namespace.clone(),
            deployment: spec.deployment.clone(),
            container: spec.container.clone(),
            image: spec.image.clone(),
            timeout,
        },
        cluster: ctx.cluster().clone(),
    }));
    if spec.scale_down {
        steps.push(scale("mlflow/scale-up", live.replicas.max(1)));
    }
    if !inputs.probes.is_empty() {
        steps.push(Box::new(ProbeStep {
            id: "mlflow/health".into(),
            component: "mlflow".into(),
            probes: inputs.probes,
        }));
    }
    steps
}

/// Checks the spec without a cluster (image, names, commands, URLs); [`plan`] checks it again.
pub fn check(spec: &MlflowSpec) -> Result<()> {
    validate(spec).map(drop)
}

/// Plans the MLflow upgrade: the spec checked, the live Deployment read, the version
/// compared (a downgrade blocks), the steps built with this run's snapshot names.
pub async fn plan(ctx: &FlowContext, spec: &MlflowSpec) -> Result<Planned> {
    let inputs = validate(spec)?;
    let live = live(ctx, spec).await?;
    let run_id = ctx.new_run_id("mlflow")?;
    let mut findings = Vec::new();
    if inputs.snapshot.is_none() {
        findings.push(if spec.no_db_snapshot {
            "no database snapshot, as asked: a failed migration cannot be undone".to_string()
        } else {
            "no database snapshot command: applying is refused unless running without a snapshot is asked for explicitly"
                .to_string()
        });
    }
    if inputs.probes.is_empty() {
        findings.push("no health URL: only the rollout and the migration Job are checked".into());
    }
    if spec.scale_down {
        findings.push(format!(
            "the server is stopped (0 of {} replica(s)) from before the migration until the new image runs: downtime",
            live.replicas
        ));
    } else {
        findings.push(format!(
            "between the migration and the end of the rollout, the running {} pods serve on the migrated schema (MLflow checks its schema only when it starts); if that version cannot work on it, ask for a scale-down (`scale_down`, `--scale-down`) to stop the server for the migration",
            live.image
        ));
    }
    let blockers = version_checks(&live.image, &spec.image, &mut findings);
    let unprotected = inputs.snapshot.is_none() && !spec.no_db_snapshot;
    let steps = steps(ctx, spec, inputs, &live, &run_id);
    let refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan::new("upgrade-mlflow", ctx.cluster_name(), run_id, &refs);
    plan.changes = vec![format!(
        "deployment {}/{} container {}: {} -> {}",
        spec.namespace, spec.deployment, spec.container, live.image, spec.image
    )];
    plan.findings = findings;
    plan.blockers = blockers;
    let planned = Planned::new(FLOW, spec, plan, steps);
    Ok(if unprotected {
        planned.refuse_apply(FlowError::invalid(
            "db_snapshot_command",
            "a run without a database snapshot is refused: a migrated database cannot be migrated back",
            format!(
                "give {} and {} (or set {} to accept that)",
                field("db_snapshot_command"),
                field("db_restore_command"),
                field("no_db_snapshot")
            ),
        ))
    } else {
        planned
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_from_the_run_id() {
        let values = placeholder_values("mlflow-20261122T031835Z");
        assert_eq!(values["{date}"], "2026-11-22");
        assert_eq!(values["{run_id}"], "mlflow-20261122T031835Z");
        assert_eq!(
            job_name("mlflow", "mlflow-20261122T031835Z"),
            "mlflow-db-upgrade-20261122t031835z"
        );
        assert!(job_name(&"d".repeat(60), "mlflow-x").len() <= 63);
    }

    #[test]
    fn versions_compare_by_tag() {
        let mut findings = Vec::new();
        assert!(version_checks("m/mlflow:v2.9.2", "m/mlflow:v2.16.0", &mut findings).is_empty());
        assert!(findings.is_empty());
        let blockers = version_checks("m/mlflow:v2.16.0", "m/mlflow:v2.9.2", &mut findings);
        assert!(blockers[0].contains("downgrade"), "{blockers:?}");
        version_checks("m/mlflow:2.21.0", "m/mlflow:3.1.0", &mut findings);
        assert!(findings[0].contains("major"), "{findings:?}");
        version_checks("m/mlflow:latest", "m/mlflow:3.1.0", &mut findings);
        assert!(findings[1].contains("cannot compare"), "{findings:?}");
    }

    #[test]
    fn commands_are_split_and_their_placeholders_checked() {
        let cmd =
            SplitCommand::parse("db_snapshot_command", "cp 'a b' snap-{run_id}-{date}.db").unwrap();
        let values = placeholder_values("mlflow-20261122T031835Z");
        let filled = cmd.filled(&values, Duration::from_secs(5));
        assert!(filled.program.is_absolute());
        assert_eq!(
            filled.args,
            ["a b", "snap-mlflow-20261122T031835Z-2026-11-22.db"]
        );
        for (text, expected) in [
            ("cp 'a b", "unbalanced quote"),
            ("", "is empty"),
            ("cp {runid} x", "`{runid}`, which is not a placeholder"),
            ("no-such-program-xyz a", "not found on PATH"),
        ] {
            let err = SplitCommand::parse("db_snapshot_command", text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn the_snapshot_flags_fit_together() {
        let spec = |f: &dyn Fn(&mut MlflowSpec)| {
            let mut spec = MlflowSpec::new("ghcr.io/mlflow/mlflow:v2.16.0");
            f(&mut spec);
            validate(&spec).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(
            spec(&|s| s.db_snapshot_command = Some("true".into()))
                .unwrap_err()
                .contains("needs `db_restore_command`")
        );
        assert!(
            spec(&|s| s.db_restore_command = Some("true".into()))
                .unwrap_err()
                .contains("needs `db_snapshot_command`")
        );
        assert!(
            spec(&|s| s.db_snapshot_wait_command = Some("true".into()))
                .unwrap_err()
                .contains("needs `db_snapshot_command`")
        );
        assert!(
            spec(&|s| s.experiment = Some("e".into()))
                .unwrap_err()
                .contains("needs `health_url`")
        );
        assert!(
            spec(&|s| s.image = "ghcr.io/mlflow/mlflow".into())
                .unwrap_err()
                .contains("has no tag")
        );
        spec(&|_| {}).unwrap();
    }
}
