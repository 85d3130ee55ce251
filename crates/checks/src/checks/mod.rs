//! The check engine: a registry of checks with stable codes, and a runner that turns facts, a
//! target and a configuration into a [`Report`].
//!
//! Each check has a code (`SKEW001`), a title, a default severity, the range of target minors
//! where it applies, what it inspects, how to fix what it finds, and where its rule comes
//! from. Checks are pure functions over [`Facts`]; the same facts give the same report.
//! `docs/checks.md` is generated from this registry and a test keeps it in sync.
//!
//! ```
//! use upgrade_checks::checks::run;
//! use upgrade_checks::config::Config;
//! use upgrade_checks::data::Data;
//! use upgrade_checks::facts::Facts;
//!
//! let facts = Facts::from_yaml("cluster: {name: dev, server_version: v1.29.8-eks-1}").unwrap();
//! let report = run(&facts, "1.31".parse().unwrap(), &Config::default(), Data::embedded()).unwrap();
//! assert_eq!(report.plan.hops.len(), 2);
//! println!("exit code {}", report.exit_code());
//! ```

mod apis;
mod cluster;
mod compat;
mod reference;
mod terraform;
mod workloads;

pub use reference::reference;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::{Coverage, Data};
use crate::facts::Facts;
use crate::plan::{PlanError, UpgradePlan};
use upgrade_core::version::{KubeMinor, KubeVersion};

/// Where the generated check reference lives, relative to the workspace root.
pub const DOCS_PATH: &str = "docs/checks.md";

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; does not change the exit code.
    Info,
    /// Likely trouble; fix or accept before upgrading (exit code 3).
    Warning,
    /// The upgrade will fail or break something; fix first (exit code 4).
    Blocker,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Blocker => "blocker",
        })
    }
}

/// What area a check covers (groups the reference and the reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Versions, the support calendar and the skew policy.
    Versions,
    /// Removed APIs and Helm charts.
    Apis,
    /// Platform components and EKS add-ons.
    Compatibility,
    /// Workloads, disruption budgets, pods, nodes and storage.
    Workloads,
    /// The Terraform plan.
    Terraform,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::Versions => "Versions and skew",
            Category::Apis => "APIs and Helm charts",
            Category::Compatibility => "Components and add-ons",
            Category::Workloads => "Workloads and drains",
            Category::Terraform => "Terraform plan",
        })
    }
}

/// The target minors where a check applies (inclusive; `None` = open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applies {
    /// The first target minor where the check applies.
    pub from: Option<KubeMinor>,
    /// The last one.
    pub until: Option<KubeMinor>,
}

impl Applies {
    /// Every version.
    pub const ALWAYS: Applies = Applies {
        from: None,
        until: None,
    };

    /// From `1.<minor>` on.
    pub const fn from_minor(minor: u32) -> Applies {
        Applies {
            from: Some(KubeMinor::new(1, minor)),
            until: None,
        }
    }

    /// Whether `minor` is in range.
    pub fn contains(&self, minor: KubeMinor) -> bool {
        self.from.is_none_or(|f| minor >= f) && self.until.is_none_or(|u| minor <= u)
    }
}

impl fmt::Display for Applies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.until) {
            (None, None) => f.write_str("all versions"),
            (Some(from), None) => write!(f, "target ≥ {from}"),
            (None, Some(until)) => write!(f, "target ≤ {until}"),
            (Some(from), Some(until)) => write!(f, "target {from}–{until}"),
        }
    }
}

/// What a check function returns.
pub(crate) enum Outcome {
    /// The check ran; these are its issues (empty = pass).
    Checked(Vec<Issue>),
    /// The check could not run on these facts, for this reason.
    Skipped(String),
}

/// One problem a check found, before the engine attaches code and severity.
pub(crate) struct Issue {
    subject: Option<Subject>,
    message: String,
    hop: Option<KubeMinor>,
}

impl Issue {
    pub(crate) fn new(subject: Option<Subject>, message: impl Into<String>) -> Self {
        Self {
            subject,
            message: message.into(),
            hop: None,
        }
    }

    /// The hop (target minor) the issue belongs to.
    pub(crate) fn at_hop(mut self, hop: KubeMinor) -> Self {
        self.hop = Some(hop);
        self
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// The kind (`Deployment`, `Node`, `HelmRelease`, `Addon`…).
    pub kind: String,
    /// The namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl Subject {
    pub(crate) fn cluster(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    pub(crate) fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// `namespace/name`, or `name` for cluster-scoped objects (what ignore rules match).
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key())
    }
}

/// What a check sees.
pub(crate) struct Context<'a> {
    pub(crate) facts: &'a Facts,
    pub(crate) plan: &'a UpgradePlan,
    pub(crate) config: &'a Config,
    pub(crate) data: &'a Data,
    /// The rendered manifests, scanned on first use.
    pub(crate) scan: std::cell::OnceCell<apis::Scan>,
}

impl Context<'_> {
    pub(crate) fn current(&self) -> KubeMinor {
        self.plan.current
    }

    pub(crate) fn target(&self) -> KubeMinor {
        self.plan.target
    }

    /// The minors the control plane reaches, in order.
    pub(crate) fn hop_targets(&self) -> impl Iterator<Item = KubeMinor> + '_ {
        self.plan.hop_targets()
    }

    pub(crate) fn first_hop(&self) -> KubeMinor {
        self.current().next()
    }
}

/// One registered check.
#[derive(Clone, Copy)]
pub struct CheckInfo {
    /// The stable code (`PDB001`).
    pub code: &'static str,
    /// A short title.
    pub title: &'static str,
    /// The default severity (a config file can override it).
    pub severity: Severity,
    /// The area.
    pub category: Category,
    /// The target minors where it applies.
    pub applies: Applies,
    /// What it inspects and when it fires.
    pub inspects: &'static str,
    /// How to fix what it finds.
    pub remediation: &'static str,
    /// Where the rule comes from.
    pub source: &'static str,
    run: fn(&Context<'_>) -> Outcome,
}

impl CheckInfo {
    /// The anchor of the check in the reference (`pdb001`).
    pub fn anchor(&self) -> String {
        self.code.to_ascii_lowercase()
    }

    /// `docs/checks.md#pdb001`.
    pub fn docs(&self) -> String {
        format!("{DOCS_PATH}#{}", self.anchor())
    }
}

impl fmt::Debug for CheckInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckInfo")
            .field("code", &self.code)
            .field("severity", &self.severity)
            .finish_non_exhaustive()
    }
}

/// Every check, in reference order.
pub fn registry() -> &'static [CheckInfo] {
    static ALL: std::sync::OnceLock<Vec<CheckInfo>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        all.extend_from_slice(cluster::CHECKS);
        all.extend_from_slice(apis::CHECKS);
        all.extend_from_slice(compat::CHECKS);
        all.extend_from_slice(workloads::CHECKS);
        all.extend_from_slice(terraform::CHECKS);
        // Grouped by category (stable: module order within a category).
        all.sort_by_key(|c| c.category);
        all
    })
}

/// One finding, ready for a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check code.
    pub code: &'static str,
    /// The check title.
    pub title: &'static str,
    /// The severity (after config overrides).
    pub severity: Severity,
    /// The area.
    pub category: Category,
    /// What it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// What is wrong, with the numbers.
    pub message: String,
    /// The hop (target minor) it blocks or belongs to; `None` = before the first hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<KubeMinor>,
    /// How to fix it.
    pub remediation: &'static str,
    /// The reference entry.
    pub docs: String,
}

/// A finding an ignore rule silenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// The check code.
    pub code: &'static str,
    /// What it was about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The rule's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A check that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    /// The check code.
    pub code: &'static str,
    /// Why (not applicable to this path, or facts missing).
    pub reason: String,
}

/// Counts per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Blockers.
    pub blockers: usize,
    /// Warnings.
    pub warnings: usize,
    /// Infos.
    pub infos: usize,
    /// Checks that ran.
    pub checks_run: usize,
    /// Checks that passed (ran, no unsilenced finding).
    pub checks_passed: usize,
}

/// Exit code: no blockers or warnings (infos allowed).
pub const EXIT_OK: u8 = upgrade_core::exit::OK;
/// Exit code: usage or input error.
pub const EXIT_USAGE: u8 = upgrade_core::exit::INVALID;
/// Exit code: warnings but no blockers.
pub const EXIT_WARNINGS: u8 = upgrade_core::exit::WARNINGS;
/// Exit code: at least one blocker.
pub const EXIT_BLOCKERS: u8 = upgrade_core::exit::BLOCKED;

/// The identifier of the JSON report's shape; it changes when a field changes meaning or goes.
pub const REPORT_SCHEMA: &str = "upgrade-report/v1";

/// The result of running every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`], so pipelines can tell which shape they read.
    pub schema: &'static str,
    /// The cluster name.
    pub cluster: String,
    /// The API server version seen.
    pub current: KubeVersion,
    /// The target minor.
    pub target: KubeMinor,
    /// The path.
    pub plan: UpgradePlan,
    /// Findings, worst first, then by hop, code and subject.
    pub findings: Vec<Finding>,
    /// Findings silenced by the configuration.
    pub ignored: Vec<Ignored>,
    /// Checks that did not run.
    pub not_run: Vec<NotRun>,
    /// Counts.
    pub summary: Summary,
    /// Where the embedded data ends.
    pub data: Coverage,
}

impl Report {
    /// The worst severity found, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// The process exit code: [`EXIT_OK`], [`EXIT_WARNINGS`] or [`EXIT_BLOCKERS`].
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Some(Severity::Blocker) => EXIT_BLOCKERS,
            Some(Severity::Warning) => EXIT_WARNINGS,
            Some(Severity::Info) | None => EXIT_OK,
        }
    }

    /// The findings of one hop (`None` = before the first hop).
    pub fn findings_for_hop(&self, hop: Option<KubeMinor>) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.hop == hop)
    }
}

/// Plans `facts`' cluster to `target` and runs every applicable check.
pub fn run(
    facts: &Facts,
    target: KubeMinor,
    config: &Config,
    data: &Data,
) -> Result<Report, PlanError> {
    let plan = UpgradePlan::new(facts.current_minor(), target, data)?;
    let context = Context {
        facts,
        plan: &plan,
        config,
        data,
        scan: std::cell::OnceCell::new(),
    };
    let mut findings = Vec::new();
    let mut ignored = Vec::new();
    let mut not_run = Vec::new();
    let mut summary = Summary::default();
    for check in registry() {
        let reached = std::iter::once(plan.current)
            .chain(plan.hop_targets())
            .any(|m| check.applies.contains(m));
        if !reached {
            not_run.push(NotRun {
                code: check.code,
                reason: format!(
                    "applies to {}; the path {} → {} does not reach it",
                    check.applies, plan.current, plan.target
                ),
            });
            continue;
        }
        let issues = match (check.run)(&context) {
            Outcome::Checked(issues) => issues,
            Outcome::Skipped(reason) => {
                not_run.push(NotRun {
                    code: check.code,
                    reason,
                });
                continue;
            }
        };
        summary.checks_run += 1;
        let severity = config
            .severity
            .get(check.code)
            .copied()
            .unwrap_or(check.severity);
        let mut failed = false;
        for issue in issues {
            let key = issue.subject.as_ref().map(Subject::key);
            if let Some(rule) = config.ignored_by(check.code, key.as_deref()) {
                ignored.push(Ignored {
                    code: check.code,
                    subject: issue.subject,
                    reason: rule.reason.clone(),
                });
                continue;
            }
            failed = true;
            findings.push(Finding {
                code: check.code,
                title: check.title,
                severity,
                category: check.category,
                subject: issue.subject,
                message: issue.message,
                hop: issue.hop,
                remediation: check.remediation,
                docs: check.docs(),
            });
        }
        if !failed {
            summary.checks_passed += 1;
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.hop.cmp(&b.hop))
            .then(a.code.cmp(b.code))
            .then(a.subject.cmp(&b.subject))
            .then(a.message.cmp(&b.message))
    });
    for f in &findings {
        match f.severity {
            Severity::Blocker => summary.blockers += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
    }
    Ok(Report {
        schema: REPORT_SCHEMA,
        cluster: facts.cluster.name.clone(),
        current: facts.cluster.server_version.clone(),
        target,
        plan,
        findings,
        ignored,
        not_run,
        summary,
        data: data.coverage(),
    })
}
