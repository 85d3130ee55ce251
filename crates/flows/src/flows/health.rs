//! Seed 002's daily health check and seed 004's pre-upgrade baseline, read only: every
//! unhealthy node, pod, claim, deployment, certificate (not Ready, or expiring within the
//! given days), InferenceService, failed Argo Workflow and Argo CD application, with a
//! severity each (exit 4 something is down, 3 worth a look, 0 healthy); the cluster's
//! resource headroom and its PodDisruptionBudgets.
//!
//! With log sources, the components' logs are read and scanned too ([`super::logs`]): a
//! panic is a failure, error-level lines and repeated reconcile errors are warnings.
//!
//! A baseline saved before an upgrade ([`HealthSpec::save_baseline`]) is compared after it
//! ([`HealthSpec::baseline`]): what was already unhealthy is reported as known (a warning,
//! not the upgrade's failure), what is new keeps its severity, what got better is listed, and
//! a budget that allowed disruptions before and allows none now is a warning.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use upgrade_kube::health::{HealthFinding, HealthOptions, Severity};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::{Format, xml_escape};

/// The baseline file's shape.
pub const BASELINE_SCHEMA: &str = "upgrade-health-baseline/v1";

/// What the check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// Report certificates expiring within this many days (cert-manager renews 30 days
    /// before expiry by default).
    #[serde(default = "default_expiry_days")]
    pub certificate_expiry_days: u32,
    /// Compare with this baseline (saved before the upgrade).
    #[serde(default)]
    pub baseline: Option<PathBuf>,
    /// Save what is seen now as a baseline here.
    #[serde(default)]
    pub save_baseline: Option<PathBuf>,
    /// Components whose logs are read and scanned (none: logs are not read).
    #[serde(default)]
    pub logs: Vec<super::logs::LogSource>,
}

fn default_expiry_days() -> u32 {
    14
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            certificate_expiry_days: default_expiry_days(),
            baseline: None,
            save_baseline: None,
            logs: Vec::new(),
        }
    }
}

/// The cluster's capacity and what its pods ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headroom {
    /// Nodes.
    pub nodes: usize,
    /// Nodes whose Ready condition is True.
    pub ready_nodes: usize,
    /// Allocatable CPU of every node (millicores).
    pub cpu_allocatable_millis: u64,
    /// CPU requested by the pods on nodes (millicores).
    pub cpu_requested_millis: u64,
    /// Allocatable memory (bytes).
    pub memory_allocatable_bytes: u64,
    /// Memory requested (bytes).
    pub memory_requested_bytes: u64,
}

impl Headroom {
    fn line(&self) -> String {
        let pct = |used: u64, of: u64| (used * 100).checked_div(of).unwrap_or(0);
        format!(
            "{}/{} nodes Ready; CPU {}m of {}m requested ({}%); memory {} MiB of {} MiB requested ({}%)",
            self.ready_nodes,
            self.nodes,
            self.cpu_requested_millis,
            self.cpu_allocatable_millis,
            pct(self.cpu_requested_millis, self.cpu_allocatable_millis),
            self.memory_requested_bytes >> 20,
            self.memory_allocatable_bytes >> 20,
            pct(self.memory_requested_bytes, self.memory_allocatable_bytes)
        )
    }
}

/// One PodDisruptionBudget's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    /// `namespace/name`.
    pub name: String,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `status.currentHealthy`.
    pub current_healthy: i32,
    /// `status.desiredHealthy`.
    pub desired_healthy: i32,
}

/// What a baseline holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// [`BASELINE_SCHEMA`].
    pub schema: String,
    /// The cluster it was taken on.
    pub cluster: String,
    /// When.
    pub taken_at: jiff::Timestamp,
    /// What was unhealthy then.
    pub findings: Vec<HealthFinding>,
    /// Capacity then.
    pub headroom: Headroom,
    /// The budgets then.
    pub budgets: Vec<BudgetState>,
    /// What the components' logs held then.
    #[serde(default)]
    pub logs: Vec<super::logs::LogScan>,
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthItem {
    /// The check, e.g. `pod not running`.
    pub check: String,
    /// How bad.
    pub severity: Severity,
    /// `Kind namespace/name`.
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// Already so in the baseline.
    pub known_before: bool,
}

/// What the check saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthOutcome {
    /// The cluster.
    pub cluster: String,
    /// When.
    pub checked_at: jiff::Timestamp,
    /// Everything found, failures first.
    pub items: Vec<HealthItem>,
    /// Checks that could not run (kinds not served).
    pub not_checked: Vec<String>,
    /// Capacity now.
    pub headroom: Headroom,
    /// The budgets now.
    pub budgets: Vec<BudgetState>,
    /// The baseline compared with: when it was taken, its headroom, and what was unhealthy
    /// then and is not now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared: Option<Comparison>,
    /// Where the baseline was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_baseline: Option<PathBuf>,
}

/// The baseline side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// When the baseline was taken.
    pub taken_at: jiff::Timestamp,
    /// Its headroom.
    pub headroom: Headroom,
    /// Unhealthy then, healthy now.
    pub fixed: Vec<String>,
}

impl HealthOutcome {
    /// The worst severity.
    pub fn worst(&self) -> Option<Severity> {
        self.items.iter().map(|i| i.severity).max()
    }

    /// 0 healthy, 3 warnings only, 4 a failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Some(Severity::Failure) => upgrade_core::exit::BLOCKED,
            Some(Severity::Warning) => upgrade_core::exit::WARNINGS,
            None => upgrade_core::exit::OK,
        }
    }

    /// Renders in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("serialises") + "\n",
            Format::Markdown => self.markdown(),
            Format::Junit => self.junit(),
            Format::Text => self.text(),
        }
    }

    fn label(item: &HealthItem) -> &'static str {
        match (item.severity, item.known_before) {
            (Severity::Failure, _) => "FAIL",
            (Severity::Warning, true) => "KNOWN",
            (Severity::Warning, false) => "WARN",
        }
    }

    fn text(&self) -> String {
        let mut s = format!("health of {} at {}\n", self.cluster, self.checked_at);
        for item in &self.items {
            s.push_str(&format!(
                "{:5} {}: {} - {}{}\n",
                Self::label(item),
                item.check,
                item.subject,
                item.message,
                if item.known_before {
                    " (so before the upgrade too)"
                } else {
                    ""
                }
            ));
        }
        for n in &self.not_checked {
            s.push_str(&format!("SKIP  {n}\n"));
        }
        s.push_str(&format!("headroom: {}\n", self.headroom.line()));
        if let Some(c) = &self.compared {
            s.push_str(&format!(
                "baseline of {}: {}\n",
                c.taken_at,
                c.headroom.line()
            ));
            for fixed in &c.fixed {
                s.push_str(&format!("FIXED {fixed}\n"));
            }
        }
        let blocked: Vec<&BudgetState> = self
            .budgets
            .iter()
            .filter(|b| b.disruptions_allowed == 0)
            .collect();
        s.push_str(&format!(
            "budgets: {} PodDisruptionBudgets, {} allowing no disruption now{}\n",
            self.budgets.len(),
            blocked.len(),
            if blocked.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    blocked
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        if let Some(path) = &self.saved_baseline {
            s.push_str(&format!("baseline saved: {}\n", path.display()));
        }
        let count = |sev| self.items.iter().filter(|i| i.severity == sev).count();
        s.push_str(&format!(
            "{} failed, {} warnings (exit {})\n",
            count(Severity::Failure),
            count(Severity::Warning),
            self.exit_code()
        ));
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!(
            "# Health of {}\n\nChecked at {}; exit {}.\n\n| | check | subject | what |\n|---|---|---|---|\n",
            self.cluster,
            self.checked_at,
            self.exit_code()
        );
        let cell = |t: &str| t.replace('|', "\\|");
        for item in &self.items {
            s.push_str(&format!(
                "| {} | {} | {} | {}{} |\n",
                Self::label(item),
                cell(&item.check),
                cell(&item.subject),
                cell(&item.message),
                if item.known_before {
                    " (so before the upgrade too)"
                } else {
                    ""
                }
            ));
        }
        if self.items.is_empty() {
            s.push_str("| OK | every check | | healthy |\n");
        }
        s.push_str(&format!("\nHeadroom: {}.\n", self.headroom.line()));
        if let Some(c) = &self.compared {
            s.push_str(&format!(
                "\nBaseline of {}: {}.\n",
                c.taken_at,
                c.headroom.line()
            ));
            for fixed in &c.fixed {
                s.push_str(&format!("- fixed since: {}\n", cell(fixed)));
            }
        }
        for n in &self.not_checked {
            s.push_str(&format!("\n- not checked: {n}"));
        }
        s.push('\n');
        s
    }

    /// One test case per finding (a failure or a warning fails it; known ones are skipped).
    fn junit(&self) -> String {
        let failures = self.items.iter().filter(|i| !i.known_before).count();
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"health of {}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml_escape(&self.cluster),
            self.items.len().max(1)
        );
        for item in &self.items {
            s.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\">",
                xml_escape(&item.check),
                xml_escape(&item.subject)
            ));
            if item.known_before {
                s.push_str("<skipped message=\"unhealthy before the upgrade too\"/>");
            } else {
                s.push_str(&format!(
                    "<failure message=\"{}\">{}</failure>",
                    Self::label(item),
                    xml_escape(&item.message)
                ));
            }
            s.push_str("</testcase>\n");
        }
        if self.items.is_empty() {
            s.push_str("  <testcase classname=\"health\" name=\"every check\"></testcase>\n");
        }
        s.push_str("</testsuite>\n");
        s
    }
}

/// Runs the check on the context's cluster; saves or compares a baseline as asked.
pub async fn health(ctx: &FlowContext, spec: &HealthSpec) -> Result<HealthOutcome> {
    // A baseline that cannot be read is bad input, before anything is looked at.
    let baseline = match &spec.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };
    let cluster = ctx.cluster();
    let options = HealthOptions {
        certificate_expiry: Some(std::time::Duration::from_secs(
            u64::from(spec.certificate_expiry_days) * 86_400,
        )),
        failed_workflows: true,
    };
    let report = upgrade_kube::health::check_with(cluster, &options).await?;
    let (headroom, budgets, logs) = tokio::try_join!(
        headroom(ctx),
        budgets(ctx),
        super::logs::scan(ctx, &spec.logs)
    )?;
    let mut items: Vec<HealthItem> = report
        .findings
        .iter()
        .map(|f| {
            let known = baseline.as_ref().is_some_and(|b| {
                b.findings
                    .iter()
                    .any(|k| k.check == f.check && k.subject == f.subject)
            });
            HealthItem {
                check: f.check.to_string(),
                severity: if known {
                    Severity::Warning
                } else {
                    f.check.severity()
                },
                subject: f.subject.clone(),
                message: f.message.clone(),
                known_before: known,
            }
        })
        .collect();
    let mut not_checked = report.not_checked.clone();
    for scan in &logs {
        if let Some(why) = &scan.not_read {
            not_checked.push(format!("logs of {}: {why}", scan.source));
        }
        let before = baseline
            .as_ref()
            .and_then(|b| b.logs.iter().find(|l| l.source == scan.source));
        for (pattern, count) in &scan.counts {
            let was = before
                .and_then(|b| b.counts.get(pattern))
                .copied()
                .unwrap_or(0);
            if *count < pattern.threshold() || *count <= was {
                continue;
            }
            items.push(HealthItem {
                check: format!("log {}", pattern.label()),
                severity: match pattern {
                    super::logs::LogPattern::Panic => Severity::Failure,
                    _ => Severity::Warning,
                },
                subject: format!("logs of {} ({})", scan.source, scan.read.join(", ")),
                message: format!(
                    "{count} {} line(s){}, e.g. {}",
                    pattern.label(),
                    if before.is_some() {
                        format!(" (before: {was})")
                    } else {
                        String::new()
                    },
                    scan.samples.get(pattern).cloned().unwrap_or_default()
                ),
                known_before: false,
            });
        }
    }
    let compared = baseline.as_ref().map(|b| {
        for before in &b.budgets {
            let now = budgets.iter().find(|n| n.name == before.name);
            if let Some(now) =
                now.filter(|n| n.disruptions_allowed == 0 && before.disruptions_allowed > 0)
            {
                items.push(HealthItem {
                    check: "budget allows no disruption".into(),
                    severity: Severity::Warning,
                    subject: format!("PodDisruptionBudget {}", now.name),
                    message: format!(
                        "{} of {} healthy, no disruption allowed (before: {} allowed)",
                        now.current_healthy, now.desired_healthy, before.disruptions_allowed
                    ),
                    known_before: false,
                });
            }
        }
        Comparison {
            taken_at: b.taken_at,
            headroom: b.headroom.clone(),
            fixed: b
                .findings
                .iter()
                .filter(|k| {
                    !report
                        .findings
                        .iter()
                        .any(|f| f.check == k.check && f.subject == k.subject)
                })
                .map(|k| format!("{}: {} ({})", k.check, k.subject, k.message))
                .collect(),
        }
    });
    items.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.subject.cmp(&b.subject)));
    let mut outcome = HealthOutcome {
        cluster: ctx.cluster_name(),
        checked_at: jiff::Timestamp::now(),
        items,
        not_checked,
        headroom: headroom.clone(),
        budgets: budgets.clone(),
        compared,
        saved_baseline: None,
    };
    if let Some(path) = &spec.save_baseline {
        let saved = Baseline {
            schema: BASELINE_SCHEMA.into(),
            cluster: outcome.cluster.clone(),
            taken_at: outcome.checked_at,
            findings: report.findings,
            headroom,
            budgets,
            logs,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| FlowError::failed(format!("create {}", dir.display()), e))?;
        }
        upgrade_core::atomic_file::write(
            path,
            &serde_json::to_vec_pretty(&saved).expect("serialises"),
        )
        .map_err(|e| FlowError::failed(format!("write {}", path.display()), e))?;
        outcome.saved_baseline = Some(path.clone());
    }
    Ok(outcome)
}

fn read_baseline(path: &std::path::Path) -> Result<Baseline> {
    let fix = "give the file `upgrade-health --save-baseline` wrote before the upgrade";
    let text = std::fs::read_to_string(path)
        .map_err(|e| FlowError::invalid("baseline", format!("{}: {e}", path.display()), fix))?;
    let baseline: Baseline = serde_json::from_str(&text).map_err(|e| {
        FlowError::invalid(
            "baseline",
            format!("{} is not a health baseline: {e}", path.display()),
            fix,
        )
    })?;
    if baseline.schema != BASELINE_SCHEMA {
        return Err(FlowError::invalid(
            "baseline",
            format!(
                "{} is a {} file, not {BASELINE_SCHEMA}",
                path.display(),
                baseline.schema
            ),
            fix,
        ));
    }
    Ok(baseline)
}

/// The nodes' allocatable CPU and memory and what the pods on them request.
async fn headroom(ctx: &FlowContext) -> Result<Headroom> {
    let client = ctx.cluster().client().clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let (nodes, pods) =
        tokio::try_join!(async { nodes.list(&ListParams::default()).await }, async {
            pods.list(&ListParams::default()).await
        },)
        .map_err(|e| FlowError::failed("list nodes and pods", e))?;
    let mut h = Headroom {
        nodes: nodes.items.len(),
        ..Headroom::default()
    };
    for node in &nodes.items {
        let status = node.status.as_ref();
        if upgrade_kube::health::node_ready(node) {
            h.ready_nodes += 1;
        }
        if let Some(alloc) = status.and_then(|s| s.allocatable.as_ref()) {
            h.cpu_allocatable_millis += alloc.get("cpu").map_or(0, |q| cpu_millis(&q.0));
            h.memory_allocatable_bytes += alloc.get("memory").map_or(0, |q| bytes(&q.0));
        }
    }
    for pod in &pods.items {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let scheduled = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some();
        if !scheduled || matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            if let Some(requests) = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
            {
                h.cpu_requested_millis += requests.get("cpu").map_or(0, |q| cpu_millis(&q.0));
                h.memory_requested_bytes += requests.get("memory").map_or(0, |q| bytes(&q.0));
            }
        }
    }
    Ok(h)
}

async fn budgets(ctx: &FlowContext) -> Result<Vec<BudgetState>> {
    let api: Api<PodDisruptionBudget> = Api::all(ctx.cluster().client().clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| FlowError::failed("list PodDisruptionBudgets", e))?;
    let mut out: Vec<BudgetState> = list
        .items
        .iter()
        .map(|b| {
            let status = b.status.as_ref();
            BudgetState {
                name: format!(
                    "{}/{}",
                    b.metadata.namespace.as_deref().unwrap_or_default(),
                    b.metadata.name.as_deref().unwrap_or_default()
                ),
                disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
                current_healthy: status.map_or(0, |s| s.current_healthy),
                desired_healthy: status.map_or(0, |s| s.desired_healthy),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A CPU quantity in millicores (`250m`, `2`, `0.5`).
fn cpu_millis(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<f64>().map_or(0, |c| (c * 1000.0).round() as u64),
    }
}

/// A memory quantity in bytes (`128Mi`, `1Gi`, `1G`, `1000`, `1e3`).
fn bytes(q: &str) -> u64 {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().map_or(0, |n| (n * *factor as f64) as u64);
        }
    }
    q.parse::<f64>().map_or(0, |n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::{bytes, cpu_millis};

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(cpu_millis("250m"), 250);
        assert_eq!(cpu_millis("2"), 2000);
        assert_eq!(cpu_millis("0.5"), 500);
        assert_eq!(bytes("128Mi"), 128 << 20);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("1G"), 1_000_000_000);
        assert_eq!(bytes("1000"), 1000);
        assert_eq!(bytes("1e3"), 1000);
    }
}
