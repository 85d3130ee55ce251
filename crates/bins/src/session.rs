//! What every changing command shares: inputs validated before anything is touched, the
//! cluster connected through the interlock, the tools resolved, and one way to run steps
//! (plan shown, confirmation, the upgrade lock, the journal, the report).
//!
//! The order matters: [`Session::open`] fails with exit 2 on a bad lockfile, a missing tool or
//! the wrong cluster *before* any step exists, so bad input never changes anything.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use upgrade_core::executor::{RunOutcome, Step};
use upgrade_core::journal::{Journal, StepStatus};
use upgrade_core::lockfile::PlatformLock;
use upgrade_core::tool::{HELM, TERRAFORM};
use upgrade_core::version::KubeVersion;
use upgrade_helm::Helm;
use upgrade_kube::connect::{Cluster, ConnectOptions};
use upgrade_tf::{AsyncTerraform, Terraform};

use crate::cli::{CommonArgs, OutputFormat};
use crate::exit::{CliError, FAILED, OK};
use crate::progress::Progressed;
use crate::run::{Finished, OnUnfinished, RunSettings, run_locked};

/// A command's validated inputs and its connection to the cluster.
#[derive(Debug)]
pub struct Session {
    /// The shared flags.
    pub common: CommonArgs,
    /// The cluster, behind the interlock.
    pub cluster: Cluster,
    /// The platform lockfile, when one exists.
    pub lock: Option<PlatformLock>,
}

/// The argv a run was started with, kept beside the journal so `upgrade-rollback` can rebuild
/// the same steps later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The command, e.g. `upgrade-karpenter`.
    pub command: String,
    /// Its arguments, without the program name.
    pub args: Vec<String>,
}

impl Session {
    /// Validates the shared inputs and connects. Every failure here is bad input (exit 2):
    /// an unreadable lockfile, `--apply` without `--expect-cluster`, a context that is not
    /// the expected cluster, an unreadable kubeconfig.
    pub async fn open(common: &CommonArgs) -> Result<Session, CliError> {
        let lock = read_lockfile(&common.lockfile)?;
        Session::open_with_lock(common, lock).await
    }

    /// [`open`](Self::open) for a caller that has read the lockfile already (with
    /// [`read_lockfile`]) to check other inputs before connecting.
    pub async fn open_with_lock(
        common: &CommonArgs,
        lock: Option<PlatformLock>,
    ) -> Result<Session, CliError> {
        if common.apply && common.expect_cluster.is_none() {
            return Err(CliError::usage(anyhow::anyhow!(
                "--apply changes a cluster, so it needs --expect-cluster NAME (the EKS cluster name or API server URL this change is meant for)"
            )));
        }
        let cluster = Cluster::connect(&ConnectOptions {
            kubeconfig: common.kubeconfig.clone(),
            context: common.kube_context.clone(),
            expect_cluster: common.expect_cluster.clone(),
        })
        .await
        .map_err(CliError::usage)?;
        Ok(Session {
            common: common.clone(),
            cluster,
            lock,
        })
    }

    /// The journal file (`<snapshot-dir>/journal.jsonl`).
    pub fn journal(&self) -> PathBuf {
        self.common.snapshot_dir.join("journal.jsonl")
    }

    /// The snapshot store (`<snapshot-dir>/snapshots`).
    pub fn snapshots(&self) -> PathBuf {
        self.common.snapshot_dir.join("snapshots")
    }

    /// Where run records are kept (`<snapshot-dir>/runs`).
    pub fn runs_dir(&self) -> PathBuf {
        self.common.snapshot_dir.join("runs")
    }

    /// `--timeout`, or `default` when it was not given.
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.common.timeout.unwrap_or(default)
    }

    /// A Helm handle on the same kubeconfig and context; a missing helm is bad input.
    pub fn helm(&self) -> Result<Arc<Helm>, CliError> {
        HELM.resolve().map_err(CliError::usage)?;
        let mut builder = Helm::builder();
        if let Some(path) = &self.common.kubeconfig {
            builder = builder.kubeconfig(path);
        }
        builder = builder.context(&self.cluster.identity().context);
        Ok(Arc::new(builder.build().map_err(CliError::usage)?))
    }

    /// A Terraform handle on `dir`; a missing terraform or folder is bad input.
    pub fn terraform(&self, dir: &Path) -> Result<AsyncTerraform, CliError> {
        TERRAFORM.resolve().map_err(CliError::usage)?;
        if !dir.is_dir() {
            return Err(CliError::usage(anyhow::anyhow!(
                "the Terraform folder {} does not exist; pass --terraform-dir with the environment's folder",
                dir.display()
            )));
        }
        Ok(Terraform::builder(dir)
            .build()
            .map_err(CliError::usage)?
            .into())
    }

    /// Where runs keep their records, and who this process is to the upgrade lock.
    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            journal: self.journal(),
            snapshots: self.snapshots(),
            holder: holder(),
            lock_ttl: Duration::from_secs(60),
        }
    }

    /// A new run id for `component`: `<component>-<UTC time>`.
    pub fn new_run_id(component: &str) -> String {
        let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        format!("{component}-{now}")
    }

    /// Shows the plan, and without `--apply` stops there (exit 0). With `--apply` asks for
    /// confirmation (skipped by `--yes`), records the run, runs the steps under the upgrade
    /// lock, and prints the report. Exit 0 when every step verified, 1 when a step failed
    /// (the run was rolled back, or stopped with its way back recorded).
    pub async fn execute(
        &self,
        plan: &Plan,
        steps: &[&dyn Step],
        out: &mut dyn Write,
    ) -> Result<u8, CliError> {
        let mut report = RunReport::planned(self, plan, steps);
        if !self.common.apply {
            report.outcome =
                "dry run: nothing was changed; re-run with --apply to make these changes".into();
            report.print(self.common.output, out)?;
            return Ok(OK);
        }
        if !self.common.yes {
            confirm(plan, steps, out)?;
        }
        self.record_run(plan)?;
        let settings = self.run_settings();
        let on_unfinished = if self.common.resume {
            OnUnfinished::Resume
        } else {
            OnUnfinished::Refuse
        };
        let shown: Vec<Progressed> = steps.iter().map(|s| Progressed::new(*s)).collect();
        let shown: Vec<&dyn Step> = shown.iter().map(|s| s as &dyn Step).collect();
        let finished = run_locked(
            &self.cluster,
            &settings,
            &plan.run_id,
            &shown,
            on_unfinished,
        )
        .await
        .map_err(|e| {
            // A refused unfinished run is the caller's choice to make, not a failure.
            if e.to_string().contains("did not finish") {
                CliError::usage(e)
            } else {
                CliError::failed(e)
            }
        })?;
        let code = report.finish(&self.journal(), &finished);
        report.print(self.common.output, out)?;
        Ok(code)
    }

    fn record_run(&self, plan: &Plan) -> Result<(), CliError> {
        let record = RunRecord {
            run_id: plan.run_id.clone(),
            command: plan.command.clone(),
            args: std::env::args().skip(1).collect(),
        };
        let dir = self.runs_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create {}", dir.display()))
            .map_err(CliError::failed)?;
        let path = dir.join(format!("{}.json", plan.run_id));
        let text = serde_json::to_vec_pretty(&record).expect("a run record serialises");
        // Written whole or not at all: a half-written record would make the run unrollable.
        tempfile::NamedTempFile::new_in(&dir)
            .and_then(|mut file| {
                file.write_all(&text)?;
                file.as_file().sync_all()?;
                file.persist(&path).map_err(|e| e.error)?;
                Ok(())
            })
            .with_context(|| format!("write {}", path.display()))
            .map_err(CliError::failed)?;
        Ok(())
    }
}

/// The live control-plane version, as the API server reports it.
pub async fn live_version(cluster: &Cluster) -> Result<KubeVersion, CliError> {
    let info = cluster
        .client()
        .apiserver_version()
        .await
        .context("read the API server version")
        .map_err(CliError::failed)?;
    info.git_version.parse().map_err(|e| {
        CliError::failed(anyhow::anyhow!(
            "API server version {}: {e}",
            info.git_version
        ))
    })
}

/// Reads the platform lockfile when it exists; an unreadable or malformed one is bad input.
pub fn read_lockfile(path: &Path) -> Result<Option<PlatformLock>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            PlatformLock::parse(&text, path).map_err(CliError::usage)?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::usage(anyhow::anyhow!(
            "cannot read the lockfile {}: {e}; fix its permissions or pass --lockfile with another path",
            path.display()
        ))),
    }
}

fn holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}/{}", std::process::id())
}

/// Asks on the terminal whether to apply `steps` (a pipeline without `--yes` is refused).
pub fn confirm(plan: &Plan, steps: &[&dyn Step], out: &mut dyn Write) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--apply asks for confirmation on a terminal; in a pipeline add --yes"
        )));
    }
    let irreversible = steps.iter().filter(|s| s.irreversible().is_some()).count();
    write!(
        out,
        "Apply {} step(s) of run {}{}? [y/N] ",
        steps.len(),
        plan.run_id,
        if irreversible > 0 {
            format!(" ({irreversible} cannot be undone)")
        } else {
            String::new()
        }
    )
    .and_then(|()| out.flush())
    .map_err(|e| CliError::failed(anyhow::anyhow!(e)))?;
    let mut answer = String::new();
    stdin
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(anyhow::anyhow!(e)))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::usage(anyhow::anyhow!(
            "not confirmed; nothing was changed"
        )))
    }
}

/// What a command is about to do, before its steps run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The command, e.g. `upgrade-karpenter`.
    pub command: String,
    /// The run id (see [`Session::new_run_id`]).
    pub run_id: String,
    /// What changes, for people: `karpenter 1.5.0 -> 1.6.0`.
    pub changes: Vec<String>,
    /// Findings from the checks run before planning (warnings that did not block).
    pub findings: Vec<String>,
}

/// One step's line in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StepLine {
    /// The step id.
    pub id: String,
    /// The component.
    pub component: String,
    /// What it does.
    pub description: String,
    /// Why it cannot be undone, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
    /// How far it got: planned, started, snapshot-taken, applied, verified, rolled-back.
    pub status: String,
}

impl StepLine {
    /// The line of `step` at `status`.
    pub fn of(step: &dyn Step, status: StepStatus) -> StepLine {
        StepLine {
            id: step.id().to_string(),
            component: step.component().to_string(),
            description: step.description(),
            irreversible: step.irreversible(),
            status: status_name(status).to_string(),
        }
    }
}

/// The report every changing command prints.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The command.
    pub command: String,
    /// The cluster it ran against.
    pub cluster: String,
    /// The run id.
    pub run_id: String,
    /// Whether the steps were run (`--apply`).
    pub applied: bool,
    /// What changes.
    pub changes: Vec<String>,
    /// Findings that did not block.
    pub findings: Vec<String>,
    /// The steps.
    pub steps: Vec<StepLine>,
    /// How it ended, in one line.
    pub outcome: String,
    /// The journal.
    pub journal: PathBuf,
    /// The snapshot store.
    pub snapshots: PathBuf,
}

impl RunReport {
    /// The report of a plan, before anything runs.
    pub fn planned(session: &Session, plan: &Plan, steps: &[&dyn Step]) -> RunReport {
        RunReport {
            command: plan.command.clone(),
            cluster: session.cluster.identity().display_name(),
            run_id: plan.run_id.clone(),
            applied: session.common.apply,
            changes: plan.changes.clone(),
            findings: plan.findings.clone(),
            steps: steps
                .iter()
                .map(|s| StepLine::of(*s, StepStatus::Pending))
                .collect(),
            outcome: String::new(),
            journal: session.journal(),
            snapshots: session.snapshots(),
        }
    }

    /// Fills in each step's status from the journal and the outcome; returns the exit code.
    pub fn finish(&mut self, journal: &Path, finished: &Finished) -> u8 {
        if let Ok(Some(state)) = Journal::run(journal, &self.run_id) {
            for line in &mut self.steps {
                line.status = status_name(state.status_of(&line.id)).to_string();
            }
        }
        let (outcome, code) = match finished {
            Finished::Ran(RunOutcome::Completed) => {
                ("completed: every step applied and verified".to_string(), OK)
            }
            Finished::Ran(RunOutcome::RolledBack {
                failed_step,
                error,
                rollback,
            }) => {
                let first = error.lines().next().unwrap_or_default();
                let blocked = match &rollback.blocked {
                    Some((step, why)) => format!("; rollback stopped at {step}: {why}"),
                    None => String::new(),
                };
                (
                    format!(
                        "failed at {failed_step} ({first}); rolled back {} step(s){blocked}",
                        rollback.rolled_back.len()
                    ),
                    FAILED,
                )
            }
            Finished::Ran(RunOutcome::Stopped { failed_step, error }) => {
                let first = error.lines().next().unwrap_or_default();
                (
                    format!(
                        "failed at {failed_step} ({first}); stopped, the run is unfinished: resume it with --resume or undo it with upgrade-rollback"
                    ),
                    FAILED,
                )
            }
            Finished::RolledBack(rollback) => (
                format!(
                    "the unfinished run was rolled back ({} step(s))",
                    rollback.rolled_back.len()
                ),
                OK,
            ),
        };
        self.outcome = outcome;
        code
    }

    /// Renders the report in `format`.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => {
                serde_json::to_string_pretty(self).expect("a report serialises") + "\n"
            }
            OutputFormat::Markdown => self.markdown(),
            OutputFormat::Junit => self.junit(),
            OutputFormat::Text => self.text(),
        }
    }

    fn print(&self, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
        out.write_all(self.render(format).as_bytes())
            .context("write the report")
            .map_err(CliError::failed)
    }

    fn text(&self) -> String {
        let mut s = format!(
            "{} on {}\nrun: {}{}\n",
            self.command,
            self.cluster,
            self.run_id,
            if self.applied { "" } else { " (plan only)" }
        );
        if !self.changes.is_empty() {
            s.push_str("changes:\n");
            for c in &self.changes {
                s.push_str(&format!("  - {c}\n"));
            }
        }
        if !self.findings.is_empty() {
            s.push_str("findings:\n");
            for f in &self.findings {
                s.push_str(&format!("  - {f}\n"));
            }
        }
        s.push_str("steps:\n");
        for (n, step) in self.steps.iter().enumerate() {
            s.push_str(&format!(
                "  {}. [{}] {}: {}\n",
                n + 1,
                step.status,
                step.id,
                step.description
            ));
            if let Some(why) = &step.irreversible {
                s.push_str(&format!("     cannot be undone: {why}\n"));
            }
        }
        s.push_str(&format!("outcome: {}\n", self.outcome));
        if self.applied {
            s.push_str(&format!(
                "journal: {}\nsnapshots: {}\n",
                self.journal.display(),
                self.snapshots.display()
            ));
        }
        s
    }

    /// One test case per step; a step that did not verify in an applied run is a failure.
    fn junit(&self) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let failed = |step: &StepLine| self.applied && step.status != "verified";
        let failures = self.steps.iter().filter(|s| failed(s)).count();
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            esc(&self.command),
            self.steps.len()
        );
        for step in &self.steps {
            s.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\">",
                esc(&step.component),
                esc(&step.id)
            ));
            if failed(step) {
                s.push_str(&format!(
                    "<failure message=\"{}\">{}</failure>",
                    esc(&step.status),
                    esc(&self.outcome)
                ));
            } else if !self.applied {
                s.push_str("<skipped message=\"plan only\"/>");
            }
            s.push_str("</testcase>\n");
        }
        s.push_str("</testsuite>\n");
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!(
            "# {} on {}\n\nRun `{}`{}.\n\n",
            self.command,
            self.cluster,
            self.run_id,
            if self.applied { "" } else { " (plan only)" }
        );
        if !self.changes.is_empty() {
            s.push_str("## Changes\n\n");
            for c in &self.changes {
                s.push_str(&format!("- {c}\n"));
            }
            s.push('\n');
        }
        if !self.findings.is_empty() {
            s.push_str("## Findings\n\n");
            for f in &self.findings {
                s.push_str(&format!("- {f}\n"));
            }
            s.push('\n');
        }
        s.push_str("## Steps\n\n| # | step | status | what | undo |\n|---|---|---|---|---|\n");
        for (n, step) in self.steps.iter().enumerate() {
            s.push_str(&format!(
                "| {} | `{}` | {} | {} | {} |\n",
                n + 1,
                step.id,
                step.status,
                step.description.replace('|', "\\|"),
                step.irreversible
                    .as_deref()
                    .map(|w| format!("cannot: {w}"))
                    .unwrap_or_else(|| "snapshot + rollback".into())
            ));
        }
        s.push_str(&format!("\n**Outcome:** {}\n", self.outcome));
        s
    }
}

/// How a report names a step's status.
pub fn status_name(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "planned",
        StepStatus::Started => "started",
        StepStatus::SnapshotTaken => "snapshot-taken",
        StepStatus::Applied => "applied",
        StepStatus::Verified => "verified",
        StepStatus::RolledBack => "rolled-back",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(applied: bool) -> RunReport {
        RunReport {
            command: "upgrade-eks".into(),
            cluster: "mlops-platform-dev (https://eks.example)".into(),
            run_id: "eks-20261122T030000Z".into(),
            applied,
            changes: vec!["control plane 1.30 -> 1.31".into()],
            findings: vec!["ADDON002 coredns v1.11.1 is not the default for 1.31".into()],
            steps: vec![
                StepLine {
                    id: "eks/control-plane-1.31".into(),
                    component: "eks".into(),
                    description: "cluster_version = 1.31 in terraform.tfvars | apply".into(),
                    irreversible: Some("EKS cannot downgrade a control plane".into()),
                    status: if applied { "verified" } else { "planned" }.into(),
                },
                StepLine {
                    id: "eks/nodes-1.31".into(),
                    component: "eks".into(),
                    description: "roll 3 nodes to 1.31".into(),
                    irreversible: None,
                    status: if applied { "rolled-back" } else { "planned" }.into(),
                },
            ],
            outcome: if applied {
                "failed at eks/nodes-1.31 (drain blocked); rolled back 1 step(s)".into()
            } else {
                "dry run: nothing was changed; re-run with --apply to make these changes".into()
            },
            journal: "/state/journal.jsonl".into(),
            snapshots: "/state/snapshots".into(),
        }
    }

    #[test]
    fn reports_render_in_every_format() {
        insta::assert_snapshot!("plan_text", report(false).render(OutputFormat::Text));
        insta::assert_snapshot!("run_text", report(true).render(OutputFormat::Text));
        insta::assert_snapshot!("run_markdown", report(true).render(OutputFormat::Markdown));
        let json: serde_json::Value =
            serde_json::from_str(&report(true).render(OutputFormat::Json)).unwrap();
        assert_eq!(
            json["steps"][0]["irreversible"],
            "EKS cannot downgrade a control plane"
        );
        assert_eq!(json["steps"][1]["status"], "rolled-back");
        insta::assert_snapshot!("run_junit", report(true).render(OutputFormat::Junit));
    }
}
