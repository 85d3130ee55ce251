//! What a flow shows before it runs ([`Plan`]) and after ([`RunReport`]), and their renderings
//! in text, JSON, Markdown and JUnit XML. Nothing here prints: callers write the strings
//! where they want.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upgrade_core::executor::{RunOutcome, Step};
use upgrade_core::journal::{Journal, StepStatus};

use crate::error::{EXIT_BLOCKED, EXIT_OK, EXIT_WARNINGS};

/// One step's line in a plan or report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLine {
    /// The step id.
    pub id: String,
    /// The component.
    pub component: String,
    /// What it does.
    pub description: String,
    /// Why it cannot be undone, when it cannot (`None`: its snapshot undoes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// What a flow will do, before anything changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The command that does this, e.g. `upgrade-karpenter`.
    pub command: String,
    /// The cluster, as its context shows it.
    pub cluster: String,
    /// The run id the run will have (`<component>-<UTC time>`).
    pub run_id: String,
    /// What changes, for people: `karpenter 1.5.0 -> 1.6.0`.
    pub changes: Vec<String>,
    /// What the checks found that does not block.
    pub findings: Vec<String>,
    /// What blocks the run (it is refused while any is left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// The steps, in order, with what cannot be undone.
    pub steps: Vec<StepLine>,
}

impl Plan {
    /// A plan of `steps` for `run_id`.
    pub fn new(
        command: impl Into<String>,
        cluster: impl Into<String>,
        run_id: impl Into<String>,
        steps: &[&dyn Step],
    ) -> Plan {
        Plan {
            command: command.into(),
            cluster: cluster.into(),
            run_id: run_id.into(),
            steps: steps
                .iter()
                .map(|s| StepLine::of(*s, StepStatus::Pending))
                .collect(),
            ..Plan::default()
        }
    }

    /// The exit code of a plan that is only shown: 4 with blockers, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.blockers.is_empty() {
            EXIT_OK
        } else {
            EXIT_BLOCKED
        }
    }

    /// The steps that cannot be undone.
    pub fn irreversible_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.irreversible.is_some())
            .count()
    }
}

/// The report a flow's run (or its plan) renders to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The command, e.g. `upgrade-karpenter`.
    pub command: String,
    /// The cluster it ran against.
    pub cluster: String,
    /// The run id.
    pub run_id: String,
    /// Whether the steps were run.
    pub applied: bool,
    /// What changes.
    pub changes: Vec<String>,
    /// Findings that did not block (blockers are listed first, marked `BLOCKER`).
    pub findings: Vec<String>,
    /// The steps.
    pub steps: Vec<StepLine>,
    /// The post-checks after a completed run, when the flow has any: empty when they passed,
    /// else the problems found (they make the exit code 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_checks: Option<Vec<String>>,
    /// How it ended, in one line.
    pub outcome: String,
    /// The failed step's error in full, when a step failed (a drain names every blocking
    /// pod and budget; the outcome has only its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The journal (when the run was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// The snapshot store (when the run was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<PathBuf>,
}

impl RunReport {
    /// The report of a plan that was not applied.
    pub fn of_plan(plan: &Plan) -> RunReport {
        let outcome = if plan.blockers.is_empty() {
            "dry run: nothing was changed; re-run with --apply to make these changes".to_string()
        } else {
            format!(
                "blocked by {} finding(s); nothing was changed",
                plan.blockers.len()
            )
        };
        RunReport {
            command: plan.command.clone(),
            cluster: plan.cluster.clone(),
            run_id: plan.run_id.clone(),
            applied: false,
            changes: plan.changes.clone(),
            findings: plan
                .blockers
                .iter()
                .map(|b| format!("BLOCKER: {b}"))
                .chain(plan.findings.iter().cloned())
                .collect(),
            steps: plan.steps.clone(),
            post_checks: None,
            outcome,
            failure: None,
            journal: None,
            snapshots: None,
        }
    }

    /// The problems the post-checks found (none when they passed or did not run).
    pub fn warnings(&self) -> &[String] {
        self.post_checks.as_deref().unwrap_or_default()
    }

    /// The exit code of a completed run: 3 when the post-checks found problems, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.warnings().is_empty() {
            EXIT_OK
        } else {
            EXIT_WARNINGS
        }
    }

    /// Fills each step's status from the journal.
    pub fn with_statuses(mut self, journal: &Path) -> RunReport {
        if let Ok(Some(state)) = Journal::run(journal, &self.run_id) {
            for line in &mut self.steps {
                line.status = status_name(state.status_of(&line.id)).to_string();
            }
        }
        self
    }

    /// Renders the report in `format`.
    /// Credentials that a command or URL in it would show are masked: reports end up in
    /// CI logs.
    pub fn render(&self, format: Format) -> String {
        let text = match format {
            Format::Json => serde_json::to_string_pretty(self).expect("a report serialises") + "\n",
            Format::Markdown => self.markdown(),
            Format::Junit => self.junit(),
            Format::Text => self.text(),
        };
        upgrade_core::redact::scrub_credentials(&text)
    }

    fn text(&self) -> String {
        let mut s = format!(
            "{} on {}\nrun: {}{}\n",
            self.command,
            self.cluster,
            self.run_id,
            if self.applied { "" } else { " (plan only)" }
        );
        let list = |s: &mut String, title: &str, items: &[String]| {
            if !items.is_empty() {
                s.push_str(&format!("{title}:\n"));
                for item in items {
                    s.push_str(&format!("  - {item}\n"));
                }
            }
        };
        list(&mut s, "changes", &self.changes);
        list(&mut s, "findings", &self.findings);
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
        match &self.post_checks {
            Some(problems) if problems.is_empty() => {
                s.push_str("post-checks: the cluster is healthy\n");
            }
            Some(problems) => list(&mut s, "post-checks (problems after the upgrade)", problems),
            None => {}
        }
        s.push_str(&format!("outcome: {}\n", self.outcome));
        if let Some(failure) = self.failure.as_deref().filter(|f| f.contains('\n')) {
            s.push_str("failure:\n");
            for line in failure.lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
        if let (Some(journal), Some(snapshots)) = (&self.journal, &self.snapshots) {
            s.push_str(&format!(
                "journal: {}\nsnapshots: {}\n",
                journal.display(),
                snapshots.display()
            ));
        }
        s
    }

    /// One test case per step; a step that did not verify in an applied run is a failure.
    fn junit(&self) -> String {
        let failed = |step: &StepLine| self.applied && step.status != "verified";
        let failures = self.steps.iter().filter(|s| failed(s)).count()
            + usize::from(!self.warnings().is_empty());
        let tests = self.steps.len() + usize::from(self.post_checks.is_some());
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">\n",
            xml_escape(&self.command),
        );
        for step in &self.steps {
            s.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\">",
                xml_escape(&step.component),
                xml_escape(&step.id)
            ));
            if failed(step) {
                s.push_str(&format!(
                    "<failure message=\"{}\">{}</failure>",
                    xml_escape(&step.status),
                    xml_escape(&match &self.failure {
                        Some(failure) => format!("{}\n{failure}", self.outcome),
                        None => self.outcome.clone(),
                    })
                ));
            } else if !self.applied {
                s.push_str("<skipped message=\"plan only\"/>");
            }
            s.push_str("</testcase>\n");
        }
        match &self.post_checks {
            Some(problems) if problems.is_empty() => s.push_str(
                "  <testcase classname=\"post-checks\" name=\"post-checks\"></testcase>\n",
            ),
            Some(problems) => s.push_str(&format!(
                "  <testcase classname=\"post-checks\" name=\"post-checks\"><failure message=\"warnings\">{}</failure></testcase>\n",
                xml_escape(&problems.join("\n"))
            )),
            None => {}
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
        let section = |s: &mut String, title: &str, items: &[String]| {
            if !items.is_empty() {
                s.push_str(&format!("## {title}\n\n"));
                for item in items {
                    s.push_str(&format!("- {item}\n"));
                }
                s.push('\n');
            }
        };
        section(&mut s, "Changes", &self.changes);
        section(&mut s, "Findings", &self.findings);
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
        match &self.post_checks {
            Some(problems) if problems.is_empty() => {
                s.push_str("\n**Post-checks:** the cluster is healthy.\n");
            }
            Some(problems) => {
                s.push('\n');
                section(&mut s, "Post-checks", problems);
            }
            None => {}
        }
        s.push_str(&format!("\n**Outcome:** {}\n", self.outcome));
        if let Some(failure) = self.failure.as_deref().filter(|f| f.contains('\n')) {
            s.push_str(&format!("\n```text\n{failure}\n```\n"));
        }
        s
    }
}

/// How a report is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A table for terminals.
    #[default]
    Text,
    /// JSON for pipelines.
    Json,
    /// A Markdown upgrade playbook.
    Markdown,
    /// JUnit XML for CI dashboards.
    Junit,
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

/// The one-line outcome of an executor run, and whether everything applied was undone.
pub(crate) fn describe_outcome(outcome: &RunOutcome) -> String {
    match outcome {
        RunOutcome::Completed => "completed: every step applied and verified".to_string(),
        RunOutcome::RolledBack {
            failed_step,
            error,
            rollback,
        } => {
            let first = error.lines().next().unwrap_or_default();
            let blocked = match &rollback.blocked {
                Some((step, why)) => format!("; rollback stopped at {step}: {why}"),
                None => String::new(),
            };
            format!(
                "failed at {failed_step} ({first}); rolled back {} step(s){blocked}",
                rollback.rolled_back.len()
            )
        }
        RunOutcome::Stopped { failed_step, error } => {
            let first = error.lines().next().unwrap_or_default();
            format!(
                "failed at {failed_step} ({first}); stopped, the run is unfinished: resume it with --resume or undo it with upgrade-rollback"
            )
        }
    }
}

pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
                    irreversible: Some("EKS rolls a control plane back only through its API, and the EKS cluster name is unknown".into()),
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
            post_checks: None,
            outcome: if applied {
                "failed at eks/nodes-1.31 (drain blocked); rolled back 1 step(s)".into()
            } else {
                "dry run: nothing was changed; re-run with --apply to make these changes".into()
            },
            failure: applied.then(|| {
                "cannot drain node n1: 1 pod did not leave\n  - ml/web-1: disruption budget: ml/web allows 0 disruptions right now [budget: ml/web]".into()
            }),
            journal: applied.then(|| "/state/journal.jsonl".into()),
            snapshots: applied.then(|| "/state/snapshots".into()),
        }
    }

    #[test]
    fn reports_render_in_every_format() {
        insta::assert_snapshot!("plan_text", report(false).render(Format::Text));
        insta::assert_snapshot!("run_text", report(true).render(Format::Text));
        insta::assert_snapshot!("run_markdown", report(true).render(Format::Markdown));
        let json: serde_json::Value =
            serde_json::from_str(&report(true).render(Format::Json)).unwrap();
        assert_eq!(
            json["steps"][0]["irreversible"],
            "EKS rolls a control plane back only through its API, and the EKS cluster name is unknown"
        );
        assert_eq!(json["steps"][1]["status"], "rolled-back");
        insta::assert_snapshot!("run_junit", report(true).render(Format::Junit));
    }

    #[test]
    fn post_check_warnings_are_part_of_every_format_and_the_exit_code() {
        let mut done = report(true);
        done.post_checks = Some(Vec::new());
        assert_eq!(done.exit_code(), EXIT_OK);
        assert!(
            done.render(Format::Text)
                .contains("post-checks: the cluster is healthy\n")
        );
        done.post_checks = Some(vec!["node node-b is NotReady".into()]);
        assert_eq!(done.exit_code(), EXIT_WARNINGS);
        assert!(
            done.render(Format::Text)
                .contains("post-checks (problems after the upgrade):\n  - node node-b is NotReady")
        );
        let json: serde_json::Value =
            serde_json::from_str(&done.render(Format::Json)).expect("only JSON");
        assert_eq!(json["post_checks"][0], "node node-b is NotReady");
        assert!(
            done.render(Format::Junit)
                .contains("name=\"post-checks\"><failure")
        );
        assert!(done.render(Format::Markdown).contains("## Post-checks"));
    }
}
