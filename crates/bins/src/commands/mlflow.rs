//! `upgrade-mlflow`: the MLflow tracking server's upgrade (seed 000 "MLflow Upgrade", seed 002
//! "MLflow Database Backup"): a database snapshot through the site's own command, the image
//! update, `mlflow db upgrade` run in the cluster with the new image, and the `/health` check.
//!
//! Rollback, in reverse: a migration Job still running is stopped, the Deployment's pod
//! template is put back (`kubectl rollout undo`), and the database is restored with the
//! restore command from the snapshot this run took. Without a snapshot command `--apply` is
//! refused unless `--no-db-snapshot` says so explicitly: a migrated database cannot be
//! migrated back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use upgrade_core::ProcessBuilder;
use upgrade_core::command_step::CommandStep;
use upgrade_core::executor::Step;
use upgrade_core::journal::Journal;
use upgrade_kube::job::TemplateJobStep;
use upgrade_kube::step::DeploymentImageStep;
use upgrade_verify::probe::{Check, ProbeSpec, Retry};
use upgrade_verify::step::ProbeStep;

use crate::cli::CommonArgs;
use crate::exit::CliError;
use crate::session::{Plan, RunReport, Session};

/// The command's name, in run records and reports.
pub const COMMAND: &str = "upgrade-mlflow";

const BLOCKED: u8 = upgrade_checks::checks::EXIT_BLOCKERS;

/// The placeholders a snapshot or restore command may use.
pub const PLACEHOLDERS: [&str; 2] = ["{run_id}", "{date}"];

/// `upgrade-mlflow` arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "upgrade-mlflow",
    version,
    about = "Upgrade the MLflow tracking server: database snapshot, image, `mlflow db upgrade` in the cluster, /health",
    after_help = "Steps: mlflow/db-snapshot (--db-snapshot-command, --db-snapshot-wait-command), mlflow/image, mlflow/db-upgrade (a Job\n\
from the Deployment's pod template with the new image), mlflow/health (--health-url).\n\
Rollback: stop the migration Job, rollout undo, then --db-restore-command.\n\
Commands are split like a shell would (no shell runs them); {run_id} and {date} are replaced.\n\n\
Exit codes: 0 done (or planned), 1 failed and rolled back, 2 bad input (nothing changed),\n\
4 blocked, e.g. a downgrade (nothing changed)."
)]
pub struct Args {
    /// Flags every command shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The new image, e.g. `ghcr.io/mlflow/mlflow:v2.16.0`.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The namespace of the tracking server.
    #[arg(long, value_name = "NAME", default_value = "mlops")]
    pub namespace: String,
    /// The tracking server's Deployment.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    pub deployment: String,
    /// The container running MLflow in that Deployment.
    #[arg(long, value_name = "NAME", default_value = "mlflow")]
    pub container: String,
    /// The container's environment variable holding the backend store URI (the database
    /// `mlflow db upgrade` migrates).
    #[arg(long, value_name = "NAME", default_value = "BACKEND_STORE_URI")]
    pub db_uri_env: String,
    /// Takes the database snapshot before anything changes, e.g. `aws rds
    /// create-db-snapshot --db-instance-identifier mlops --db-snapshot-identifier
    /// mlops-pre-upgrade-{run_id}`.
    #[arg(long, value_name = "COMMAND", conflicts_with = "no_db_snapshot")]
    pub db_snapshot_command: Option<String>,
    /// Waits until the snapshot is usable before anything changes, e.g. `aws rds wait
    /// db-snapshot-available --db-snapshot-identifier mlops-pre-upgrade-{run_id}` (an RDS
    /// snapshot takes minutes; the migration must not start before it is available).
    #[arg(long, value_name = "COMMAND", requires = "db_snapshot_command")]
    pub db_snapshot_wait_command: Option<String>,
    /// Restores the database from that snapshot on rollback (required with
    /// --db-snapshot-command).
    #[arg(long, value_name = "COMMAND")]
    pub db_restore_command: Option<String>,
    /// Upgrade without a database snapshot: the migration then cannot be undone.
    #[arg(long)]
    pub no_db_snapshot: bool,
    /// The tracking server's URL whose `/health` must answer after the upgrade.
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,
    /// An experiment that must still be readable after the upgrade (needs --health-url).
    #[arg(long, value_name = "NAME", requires = "health_url")]
    pub experiment: Option<String>,
    /// Attempts of the health check before it fails the run (backoff 1s doubling to 10s).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub health_attempts: u32,
    /// The run id (default: a new one). `upgrade-rollback` passes the recorded one, so the
    /// restore command names the snapshot this run took.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

/// A command split into argv, with the placeholders still in it.
#[derive(Debug, Clone)]
struct SplitCommand {
    argv: Vec<String>,
    /// `argv[0]` found on PATH (the runner does not search it).
    program: PathBuf,
}

impl SplitCommand {
    fn parse(flag: &'static str, text: &str) -> Result<SplitCommand, CliError> {
        let argv = shlex::split(text).ok_or_else(|| {
            CliError::usage(anyhow!(
                "{flag} `{text}` has an unbalanced quote or a trailing backslash; quote its arguments as in a shell"
            ))
        })?;
        if argv.is_empty() {
            return Err(CliError::usage(anyhow!(
                "{flag} is empty; give the command to run, e.g. `aws rds create-db-snapshot ...`"
            )));
        }
        for arg in &argv {
            let mut rest = arg.as_str();
            while let Some(start) = rest.find('{') {
                let tail = &rest[start..];
                let end = tail.find('}').map_or(tail.len(), |e| e + 1);
                let placeholder = &tail[..end];
                if !PLACEHOLDERS.contains(&placeholder) {
                    return Err(CliError::usage(anyhow!(
                        "{flag} uses `{placeholder}`, which is not a placeholder; use {} (or remove the braces)",
                        PLACEHOLDERS.join(" or ")
                    )));
                }
                rest = &tail[end..];
            }
        }
        let name = &argv[0];
        let program = if name.contains('/') {
            Some(PathBuf::from(name)).filter(|p| p.is_file())
        } else {
            which::which(name).ok()
        };
        let Some(program) = program else {
            return Err(CliError::usage(anyhow!(
                "{flag}: the program `{name}` was not found{}; install it or give its full path",
                if name.contains('/') { "" } else { " on PATH" }
            )));
        };
        Ok(SplitCommand { argv, program })
    }

    fn filled(&self, values: &BTreeMap<&str, String>) -> Vec<String> {
        let fill = |arg: &String| {
            values
                .iter()
                .fold(arg.clone(), |text, (name, value)| text.replace(name, value))
        };
        self.argv.iter().map(fill).collect()
    }

    /// The runner for this command with the placeholders filled in.
    fn builder(&self, values: &BTreeMap<&str, String>, timeout: Duration) -> ProcessBuilder {
        let mut cmd = ProcessBuilder::new(&self.program);
        cmd.args(&self.filled(values)[1..]).timeout(timeout);
        cmd
    }

    /// The command as the user wrote it, placeholders filled in (secrets redacted).
    fn shown(&self, values: &BTreeMap<&str, String>) -> String {
        let argv = self.filled(values);
        let mut cmd = ProcessBuilder::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.to_string()
    }
}

/// The inputs, checked.
#[derive(Debug)]
struct Inputs {
    snapshot: Option<(SplitCommand, SplitCommand)>,
    snapshot_wait: Option<SplitCommand>,
    probes: Vec<ProbeSpec>,
}

/// Runs the command; returns the exit code.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let inputs = validate(args)?;
    let session = Session::open(&args.common).await?;
    let live = read_live(args, &session).await?;
    let mut args = args.clone();
    let run_id = match (&args.run_id, args.common.resume) {
        (Some(id), _) => id.clone(),
        // A resumed run keeps its id, so its restore command names the snapshot it took.
        (None, true) => Journal::unfinished(&session.journal())
            .map_err(|e| CliError::usage(anyhow!("{e}; fix or move the journal")))?
            .map(|run| run.run_id)
            .unwrap_or_else(|| Session::new_run_id("mlflow")),
        (None, false) => Session::new_run_id("mlflow"),
    };
    args.run_id = Some(run_id.clone());
    let steps = steps(&args, &session).await?;
    let step_refs: Vec<&dyn Step> = steps.iter().map(|s| s.as_ref()).collect();
    let mut plan = Plan {
        command: COMMAND.into(),
        run_id,
        changes: vec![format!(
            "deployment {}/{} container {}: {} -> {}",
            args.namespace, args.deployment, args.container, live.image, args.image
        )],
        findings: Vec::new(),
    };
    if inputs.snapshot.is_none() {
        plan.findings.push(if args.no_db_snapshot {
            "no database snapshot (--no-db-snapshot): a failed migration cannot be undone".into()
        } else {
            "no --db-snapshot-command: --apply will be refused (or pass --no-db-snapshot)".into()
        });
    }
    if inputs.probes.is_empty() {
        plan.findings
            .push("no --health-url: only the rollout and the migration Job are checked".into());
    }
    let blockers = version_checks(&live.image, &args.image, &mut plan.findings);
    if !blockers.is_empty() {
        let mut report = RunReport::planned(&session, &plan, &step_refs);
        report.applied = false;
        report
            .findings
            .extend(blockers.iter().map(|b| format!("BLOCKER {b}")));
        report.outcome = "blocked: nothing was changed".into();
        out.write_all(report.render(args.common.output).as_bytes())
            .map_err(|e| CliError::failed(anyhow!("write the report: {e}")))?;
        return Ok(BLOCKED);
    }
    session.execute(&plan, &step_refs, out).await
}

/// The steps, rebuilt from the arguments alone (`upgrade-rollback` calls this with
/// `--run-id` set to the recorded run).
pub async fn steps(args: &Args, session: &Session) -> Result<Vec<Box<dyn Step>>, CliError> {
    let inputs = validate(args)?;
    let run_id = args.run_id.clone().ok_or_else(|| {
        CliError::usage(anyhow!(
            "the MLflow steps need the run id their snapshot is named after; pass --run-id"
        ))
    })?;
    let values = placeholder_values(&run_id);
    let timeout = session.timeout_or(Duration::from_secs(15 * 60));
    let cluster = session.cluster.clone();
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    if let Some((snapshot, restore)) = &inputs.snapshot {
        steps.push(Box::new(CommandStep {
            id: "mlflow/db-snapshot".into(),
            component: "mlflow".into(),
            description: format!(
                "snapshot the database: {}{} (rollback: {})",
                snapshot.shown(&values),
                inputs
                    .snapshot_wait
                    .as_ref()
                    .map(|wait| format!(", then wait: {}", wait.shown(&values)))
                    .unwrap_or_default(),
                restore.shown(&values)
            ),
            capture: Some(snapshot.builder(&values, timeout)),
            apply: None,
            verify: inputs
                .snapshot_wait
                .as_ref()
                .map(|wait| wait.builder(&values, timeout)),
            rollback: Some(restore.builder(&values, timeout)),
        }));
    }
    steps.push(Box::new(DeploymentImageStep {
        id: "mlflow/image".into(),
        component: "mlflow".into(),
        cluster: cluster.clone(),
        namespace: args.namespace.clone(),
        deployment: args.deployment.clone(),
        container: args.container.clone(),
        image: args.image.clone(),
        timeout,
    }));
    steps.push(Box::new(TemplateJobStep {
        id: "mlflow/db-upgrade".into(),
        component: "mlflow".into(),
        cluster,
        namespace: args.namespace.clone(),
        deployment: args.deployment.clone(),
        container: args.container.clone(),
        image: args.image.clone(),
        command: vec![
            "mlflow".into(),
            "db".into(),
            "upgrade".into(),
            format!("$({})", args.db_uri_env),
        ],
        job_name: job_name(&args.deployment, &run_id),
        timeout,
        irreversible: inputs.snapshot.is_none().then(|| {
            "a schema migration cannot be reversed, and no database snapshot was taken".into()
        }),
    }));
    if !inputs.probes.is_empty() {
        steps.push(Box::new(ProbeStep {
            id: "mlflow/health".into(),
            component: "mlflow".into(),
            probes: inputs.probes,
        }));
    }
    Ok(steps)
}

/// Every check that needs no cluster.
fn validate(args: &Args) -> Result<Inputs, CliError> {
    check_image(&args.image)?;
    for (flag, value) in [
        ("--namespace", &args.namespace),
        ("--deployment", &args.deployment),
    ] {
        if value.is_empty()
            || value.len() > 63
            || !value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(CliError::usage(anyhow!(
                "{flag} `{value}` is not a Kubernetes name; use lowercase letters, digits and '-'"
            )));
        }
    }
    if args.db_uri_env.is_empty()
        || !args
            .db_uri_env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(CliError::usage(anyhow!(
            "--db-uri-env `{}` is not an environment variable name; pass the container's variable holding the database URI, e.g. BACKEND_STORE_URI",
            args.db_uri_env
        )));
    }
    let snapshot = match (&args.db_snapshot_command, &args.db_restore_command) {
        (Some(snapshot), Some(restore)) => Some((
            SplitCommand::parse("--db-snapshot-command", snapshot)?,
            SplitCommand::parse("--db-restore-command", restore)?,
        )),
        (Some(_), None) => {
            return Err(CliError::usage(anyhow!(
                "--db-snapshot-command needs --db-restore-command: without it the rollback cannot restore the database"
            )));
        }
        (None, Some(_)) => {
            return Err(CliError::usage(anyhow!(
                "--db-restore-command needs --db-snapshot-command to take the snapshot it restores"
            )));
        }
        (None, None) => None,
    };
    let snapshot_wait = args
        .db_snapshot_wait_command
        .as_deref()
        .map(|text| SplitCommand::parse("--db-snapshot-wait-command", text))
        .transpose()?;
    if snapshot.is_none() && args.common.apply && !args.no_db_snapshot {
        return Err(CliError::usage(anyhow!(
            "--apply without a database snapshot: a migrated database cannot be migrated back; pass --db-snapshot-command and --db-restore-command (or --no-db-snapshot to accept that)"
        )));
    }
    let mut probes = Vec::new();
    if let Some(url) = &args.health_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(anyhow!(
                "--health-url `{url}` is not an http(s) URL; pass the tracking server's base URL, e.g. http://mlflow.mlops:5000"
            )));
        }
        if args.health_attempts == 0 {
            return Err(CliError::usage(anyhow!(
                "--health-attempts must be at least 1"
            )));
        }
        let retry = Retry {
            attempts: args.health_attempts,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        probes.push(ProbeSpec::new("mlflow-health", Check::mlflow_health(url)).with_retry(retry));
        if let Some(experiment) = &args.experiment {
            probes.push(
                ProbeSpec::new(
                    "mlflow-experiment",
                    Check::mlflow_experiment(url, experiment),
                )
                .with_retry(retry),
            );
        }
        upgrade_verify::probe::validate(&probes)
            .map_err(|e| CliError::usage(anyhow!("--health-url: {e}")))?;
    }
    Ok(Inputs {
        snapshot,
        snapshot_wait,
        probes,
    })
}

fn check_image(image: &str) -> Result<(), CliError> {
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    let tagged = image[name_end..].contains(':') || image.contains("@sha256:");
    if image.is_empty() || image.contains(char::is_whitespace) || !tagged {
        return Err(CliError::usage(anyhow!(
            "--image `{image}` has no tag; pin the version, e.g. ghcr.io/mlflow/mlflow:v2.16.0"
        )));
    }
    if image[name_end..].ends_with(':') {
        return Err(CliError::usage(anyhow!(
            "--image `{image}` has an empty tag; pin the version, e.g. ghcr.io/mlflow/mlflow:v2.16.0"
        )));
    }
    Ok(())
}

/// What the cluster runs now.
#[derive(Debug)]
struct Live {
    image: String,
}

async fn read_live(args: &Args, session: &Session) -> Result<Live, CliError> {
    let api: kube::Api<Deployment> =
        kube::Api::namespaced(session.cluster.client().clone(), &args.namespace);
    let deployment = api
        .get_opt(&args.deployment)
        .await
        .map_err(|e| {
            CliError::failed(anyhow!(
                "read deployment {}/{}: {e}",
                args.namespace,
                args.deployment
            ))
        })?
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "there is no deployment {}/{} on {}; pass --namespace and --deployment of the tracking server",
                args.namespace,
                args.deployment,
                session.cluster.identity().display_name()
            ))
        })?;
    let containers = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let container = containers
        .iter()
        .find(|c| c.name == args.container)
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "deployment {}/{} has no container `{}` (it has: {}); pass --container",
                args.namespace,
                args.deployment,
                args.container,
                names.join(", ")
            ))
        })?;
    let has_env = container
        .env
        .iter()
        .flatten()
        .any(|e| e.name == args.db_uri_env);
    if !has_env && container.env_from.as_ref().is_none_or(|e| e.is_empty()) {
        return Err(CliError::usage(anyhow!(
            "container `{}` of deployment {}/{} has no environment variable {}; pass --db-uri-env with the one holding the database URI",
            args.container,
            args.namespace,
            args.deployment,
            args.db_uri_env
        )));
    }
    let image = container.image.clone().unwrap_or_default();
    if image == args.image {
        return Err(CliError::usage(anyhow!(
            "deployment {}/{} already runs {}; nothing to upgrade: pass the new --image",
            args.namespace,
            args.deployment,
            args.image
        )));
    }
    Ok(Live { image })
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

/// `{run_id}` and `{date}` (the run's UTC day, taken from its id so a later rollback
/// computes the same names).
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

impl crate::cli::Command for Args {
    fn common(&self) -> &crate::cli::CommonArgs {
        &self.common
    }

    async fn run(&self, out: &mut dyn std::io::Write) -> Result<u8, crate::exit::CliError> {
        run(self, out).await
    }
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
        let cmd = SplitCommand::parse("--x", "cp 'a b' snap-{run_id}-{date}.db").unwrap();
        let values = placeholder_values("mlflow-20261122T031835Z");
        assert_eq!(
            cmd.shown(&values),
            "cp 'a b' snap-mlflow-20261122T031835Z-2026-11-22.db"
        );
        for (text, expected) in [
            ("cp 'a b", "unbalanced quote"),
            ("", "is empty"),
            ("cp {runid} x", "`{runid}`, which is not a placeholder"),
            ("no-such-program-xyz a", "not found on PATH"),
        ] {
            let err = SplitCommand::parse("--x", text).unwrap_err();
            assert!(
                err.error.to_string().contains(expected),
                "{text}: {}",
                err.error
            );
        }
    }
}
