//! Plan review: every change classified and judged against rules, before anything applies.
//!
//! Defaults fit an EKS platform: deleting or replacing a cluster, a database, a bucket or a
//! file system is a **blocker** unless that address is explicitly allowed; replacing a node
//! group is a **warning** (every node is rolled); an action list this crate does not know is
//! a blocker (fail closed); a plan that errored is a blocker. Sensitive values never appear
//! in a review: they show as `(sensitive)`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::plan::{Action, Change, Mode, Plan, ReplaceOrder, ResourceChange, render_path};

/// Resource types whose delete or replace blocks a plan by default.
pub const DEFAULT_PROTECTED_TYPES: &[&str] = &[
    "aws_eks_cluster",
    "aws_db_instance",
    "aws_rds_cluster",
    "aws_s3_bucket",
    "aws_efs_file_system",
];

/// Resource types whose replacement is a warning by default.
pub const DEFAULT_WARN_ON_REPLACE_TYPES: &[&str] = &["aws_eks_node_group"];

/// What the review treats as dangerous. Deserialisable, so pipelines can keep the rules in
/// a file; missing fields take the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewRules {
    /// Types whose delete or replace is a blocker.
    pub protected_types: BTreeSet<String>,
    /// Addresses whose delete or replace is a blocker, whatever their type.
    pub protected_addresses: BTreeSet<String>,
    /// Addresses explicitly allowed to be deleted or replaced (a warning instead).
    pub allowed_destroy: BTreeSet<String>,
    /// Types whose replacement is worth a warning.
    pub warn_on_replace_types: BTreeSet<String>,
}

impl Default for ReviewRules {
    fn default() -> Self {
        ReviewRules {
            protected_types: DEFAULT_PROTECTED_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            protected_addresses: BTreeSet::new(),
            allowed_destroy: BTreeSet::new(),
            warn_on_replace_types: DEFAULT_WARN_ON_REPLACE_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl ReviewRules {
    /// (chainable) Protects a resource type.
    pub fn protect_type(mut self, resource_type: impl Into<String>) -> Self {
        self.protected_types.insert(resource_type.into());
        self
    }

    /// (chainable) Protects one address (an instance, or all instances of a resource).
    pub fn protect_address(mut self, address: impl Into<String>) -> Self {
        self.protected_addresses.insert(address.into());
        self
    }

    /// (chainable) Allows one protected address to be deleted or replaced.
    pub fn allow_destroy(mut self, address: impl Into<String>) -> Self {
        self.allowed_destroy.insert(address.into());
        self
    }

    fn matches(set: &BTreeSet<String>, address: &str) -> bool {
        // `aws_eks_cluster.this` also covers `aws_eks_cluster.this[0]` / `["a"]`.
        let without_key = address
            .strip_suffix(']')
            .and_then(|a| a.rfind('[').map(|i| &a[..i]))
            .unwrap_or(address);
        set.contains(address) || set.contains(without_key)
    }

    fn is_protected(&self, change: &ResourceChange) -> bool {
        self.protected_types.contains(&change.resource_type)
            || Self::matches(&self.protected_addresses, &change.address)
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs a human look; does not block.
    Warning,
    /// The plan must not be applied as is.
    Blocker,
}

/// What a change does, in review terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new object.
    Create,
    /// An in-place update.
    UpdateInPlace,
    /// The object is replaced (see the order).
    Replace,
    /// The object is destroyed.
    Delete,
    /// The object leaves the state but is not destroyed.
    Forget,
    /// A data source read.
    Read,
    /// Nothing.
    NoOp,
    /// An action list this crate does not know.
    Unknown,
}

impl ChangeKind {
    fn of(action: &Action) -> (ChangeKind, Option<ReplaceOrder>) {
        match action {
            Action::NoOp => (ChangeKind::NoOp, None),
            Action::Create => (ChangeKind::Create, None),
            Action::Read => (ChangeKind::Read, None),
            Action::Update => (ChangeKind::UpdateInPlace, None),
            Action::Delete => (ChangeKind::Delete, None),
            Action::Forget => (ChangeKind::Forget, None),
            Action::Replace(order) => (ChangeKind::Replace, Some(*order)),
            Action::Unknown(_) => (ChangeKind::Unknown, None),
        }
    }

    fn label(self, order: Option<ReplaceOrder>) -> &'static str {
        match (self, order) {
            (ChangeKind::Create, _) => "create",
            (ChangeKind::UpdateInPlace, _) => "update in place",
            (ChangeKind::Replace, Some(ReplaceOrder::CreateThenDelete)) => "replace (create first)",
            (ChangeKind::Replace, Some(ReplaceOrder::CreateThenForget)) => "replace (forget old)",
            (ChangeKind::Replace, _) => "replace (delete first)",
            (ChangeKind::Delete, _) => "delete",
            (ChangeKind::Forget, _) => "forget",
            (ChangeKind::Read, _) => "read",
            (ChangeKind::NoOp, _) => "no-op",
            (ChangeKind::Unknown, _) => "UNKNOWN",
        }
    }
}

/// One attribute that changes, with values rendered and redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeDiff {
    /// e.g. `vpc_config[0].subnet_ids`.
    pub path: String,
    /// The value before, as compact JSON, or `(sensitive)`.
    pub before: String,
    /// The value after, as compact JSON, `(sensitive)` or `(known after apply)`.
    pub after: String,
}

/// One reviewed resource change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewedChange {
    /// The resource address.
    pub address: String,
    /// The resource type.
    pub resource_type: String,
    /// What it does.
    pub kind: ChangeKind,
    /// The replacement order, for replacements.
    pub replace_order: Option<ReplaceOrder>,
    /// Terraform's action list, verbatim.
    pub actions: Vec<String>,
    /// The review's verdict.
    pub severity: Severity,
    /// Why it has that severity.
    pub reasons: Vec<String>,
    /// The attributes that forced a replacement.
    pub replace_paths: Vec<String>,
    /// Terraform's reason, e.g. `replace_because_cannot_update`.
    pub action_reason: Option<String>,
    /// Attributes that change (updates and replacements).
    pub attributes: Vec<AttributeDiff>,
}

/// A finding about the plan as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanFinding {
    /// How serious.
    pub severity: Severity,
    /// What it is.
    pub message: String,
}

/// A change to a root module output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputReview {
    /// The output's name.
    pub name: String,
    /// What happens to it.
    pub kind: ChangeKind,
}

/// Counts per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReviewCounts {
    /// Creates.
    pub create: usize,
    /// In-place updates.
    pub update: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletes.
    pub delete: usize,
    /// Forgets.
    pub forget: usize,
    /// Reads.
    pub read: usize,
    /// Unknown actions.
    pub unknown: usize,
}

/// The review of a whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanReview {
    /// The Terraform that made the plan.
    pub terraform_version: Option<String>,
    /// The plan's format version.
    pub format_version: String,
    /// Counts per kind (no-ops excluded).
    pub counts: ReviewCounts,
    /// Every change except no-ops, in plan order.
    pub changes: Vec<ReviewedChange>,
    /// Resources changed outside Terraform (from refresh).
    pub drift: Vec<ReviewedChange>,
    /// Output changes (values omitted: outputs may be sensitive).
    pub outputs: Vec<OutputReview>,
    /// Findings about the plan as a whole.
    pub findings: Vec<PlanFinding>,
}

impl PlanReview {
    /// Reviews `plan` against `rules`.
    pub fn new(plan: &Plan, rules: &ReviewRules) -> PlanReview {
        let mut counts = ReviewCounts::default();
        let mut changes = Vec::new();
        for rc in &plan.resource_changes {
            let reviewed = review_change(rc, rules);
            match reviewed.kind {
                ChangeKind::NoOp => continue,
                ChangeKind::Create => counts.create += 1,
                ChangeKind::UpdateInPlace => counts.update += 1,
                ChangeKind::Replace => counts.replace += 1,
                ChangeKind::Delete => counts.delete += 1,
                ChangeKind::Forget => counts.forget += 1,
                ChangeKind::Read => counts.read += 1,
                ChangeKind::Unknown => counts.unknown += 1,
            }
            changes.push(reviewed);
        }
        let drift = plan
            .resource_drift
            .iter()
            .map(|rc| {
                let mut d = review_change(rc, rules);
                d.severity = if rules.is_protected(rc) {
                    Severity::Warning
                } else {
                    Severity::Info
                };
                d.reasons = vec!["changed outside Terraform".into()];
                d
            })
            .collect();
        let outputs = plan
            .output_changes
            .iter()
            .map(|(name, change)| OutputReview {
                name: name.clone(),
                kind: ChangeKind::of(&change.actions).0,
            })
            .filter(|o| o.kind != ChangeKind::NoOp)
            .collect();
        let mut findings = Vec::new();
        if plan.errored == Some(true) {
            findings.push(PlanFinding {
                severity: Severity::Blocker,
                message: "planning errored; the plan is not complete enough to apply".into(),
            });
        }
        if plan.complete == Some(false) {
            findings.push(PlanFinding {
                severity: Severity::Warning,
                message: "the plan is incomplete (-target or deferred changes): more changes \
                          will follow"
                    .into(),
            });
        }
        if plan.applyable == Some(false) {
            findings.push(PlanFinding {
                severity: Severity::Info,
                message: "nothing to apply".into(),
            });
        }
        PlanReview {
            terraform_version: plan.terraform_version.clone(),
            format_version: plan.format_version.clone(),
            counts,
            changes,
            drift,
            outputs,
            findings,
        }
    }

    /// The worst severity found (`Info` for an empty plan).
    pub fn verdict(&self) -> Severity {
        self.changes
            .iter()
            .map(|c| c.severity)
            .chain(self.findings.iter().map(|f| f.severity))
            .max()
            .unwrap_or(Severity::Info)
    }

    /// Whether anything blocks the plan.
    pub fn is_blocked(&self) -> bool {
        self.verdict() == Severity::Blocker
    }

    /// Changes with the given severity.
    pub fn with_severity(&self, severity: Severity) -> impl Iterator<Item = &ReviewedChange> {
        self.changes.iter().filter(move |c| c.severity == severity)
    }

    /// The change at `address`, if the plan changes it.
    pub fn change(&self, address: &str) -> Option<&ReviewedChange> {
        self.changes.iter().find(|c| c.address == address)
    }

    /// One line per blocker.
    pub fn blocker_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .with_severity(Severity::Blocker)
            .map(|c| format!("{}: {}", c.address, c.reasons.join("; ")))
            .collect();
        lines.extend(
            self.findings
                .iter()
                .filter(|f| f.severity == Severity::Blocker)
                .map(|f| f.message.clone()),
        );
        lines
    }

    /// The review as pretty JSON, for pipelines.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a review serialises")
    }

    /// The review as a table, for people.
    pub fn render_table(&self) -> String {
        let c = &self.counts;
        let mut out = format!(
            "Plan review: {} to create, {} to update in place, {} to replace, {} to delete, \
             {} to forget",
            c.create, c.update, c.replace, c.delete, c.forget
        );
        if c.unknown > 0 {
            let _ = write!(out, ", {} UNKNOWN", c.unknown);
        }
        let _ = writeln!(
            out,
            " (Terraform {}, plan format {})",
            self.terraform_version.as_deref().unwrap_or("?"),
            self.format_version
        );
        let rows: Vec<[String; 4]> = self
            .changes
            .iter()
            .chain(self.drift.iter())
            .map(|ch| {
                let action = if self.drift.iter().any(|d| std::ptr::eq(d, ch)) {
                    format!("drift: {}", ch.kind.label(ch.replace_order))
                } else {
                    ch.kind.label(ch.replace_order).to_string()
                };
                [
                    severity_label(ch.severity).to_string(),
                    action,
                    ch.address.clone(),
                    ch.reasons.join("; "),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let header = ["SEVERITY", "ACTION", "ADDRESS", "NOTES"].map(String::from);
            let widths: Vec<usize> = (0..3)
                .map(|i| {
                    rows.iter()
                        .chain(std::iter::once(&header))
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            out.push('\n');
            let line = |r: &[String; 4]| {
                format!(
                    "{:w0$}  {:w1$}  {:w2$}  {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                )
                .trim_end()
                .to_string()
            };
            let _ = writeln!(out, "{}", line(&header));
            let all: Vec<&ReviewedChange> = self.changes.iter().chain(self.drift.iter()).collect();
            for (row, ch) in rows.iter().zip(all) {
                let _ = writeln!(out, "{}", line(row));
                for attr in &ch.attributes {
                    let _ = writeln!(
                        out,
                        "{:indent$}  ~ {}: {} -> {}",
                        "",
                        attr.path,
                        attr.before,
                        attr.after,
                        indent = widths[0]
                    );
                }
            }
        }
        if !self.outputs.is_empty() {
            out.push_str("\nOutputs: ");
            let list: Vec<String> = self
                .outputs
                .iter()
                .map(|o| format!("{} ({})", o.name, o.kind.label(None)))
                .collect();
            out.push_str(&list.join(", "));
            out.push('\n');
        }
        for f in &self.findings {
            let _ = writeln!(out, "\n{}: {}", severity_label(f.severity), f.message);
        }
        let blockers = self.blocker_lines().len();
        let warnings = self.with_severity(Severity::Warning).count()
            + self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count();
        let _ = writeln!(
            out,
            "\nResult: {} ({} blocker{}, {} warning{})",
            match self.verdict() {
                Severity::Blocker => "BLOCKED",
                Severity::Warning => "OK with warnings",
                Severity::Info => "OK",
            },
            blockers,
            if blockers == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" },
        );
        out
    }
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Blocker => "BLOCKER",
    }
}

fn review_change(rc: &ResourceChange, rules: &ReviewRules) -> ReviewedChange {
    let (kind, replace_order) = ChangeKind::of(&rc.change.actions);
    let mut reasons = Vec::new();
    let protected = rc.mode == Mode::Managed && rules.is_protected(rc);
    let allowed = ReviewRules::matches(&rules.allowed_destroy, &rc.address);
    let what = match kind {
        ChangeKind::Replace => "replaces",
        _ => "deletes",
    };
    let severity = match kind {
        ChangeKind::Unknown => {
            reasons.push(format!(
                "unknown action list [{}]; treated as dangerous",
                rc.change.actions
            ));
            Severity::Blocker
        }
        _ if rc.change.actions.destroys() && protected && !allowed => {
            reasons.push(format!(
                "{what} protected {} (allow this address explicitly to proceed)",
                rc.resource_type
            ));
            Severity::Blocker
        }
        _ if rc.change.actions.destroys() && protected => {
            reasons.push(format!(
                "{what} protected {}; allowed by rule",
                rc.resource_type
            ));
            Severity::Warning
        }
        ChangeKind::Replace if rules.warn_on_replace_types.contains(&rc.resource_type) => {
            reasons.push(format!(
                "replaces {}: every node is drained and rolled",
                rc.resource_type
            ));
            Severity::Warning
        }
        ChangeKind::Replace if replace_order == Some(ReplaceOrder::CreateThenForget) => {
            reasons.push("the old object stays in the cloud, unmanaged".into());
            Severity::Warning
        }
        ChangeKind::Replace | ChangeKind::Delete => {
            reasons.push("destroys an existing object".into());
            Severity::Warning
        }
        ChangeKind::Forget => {
            reasons.push("leaves the state; the object is no longer managed".into());
            Severity::Warning
        }
        _ => Severity::Info,
    };
    let replace_paths: Vec<String> = rc
        .change
        .replace_paths
        .iter()
        .map(|p| render_path(p))
        .collect();
    if !replace_paths.is_empty() {
        reasons.push(format!("forced by {}", replace_paths.join(", ")));
    }
    let attributes = match kind {
        ChangeKind::UpdateInPlace | ChangeKind::Replace => attribute_diffs(&rc.change),
        _ => Vec::new(),
    };
    ReviewedChange {
        address: rc.address.clone(),
        resource_type: rc.resource_type.clone(),
        kind,
        replace_order,
        actions: rc.change.actions.as_strings(),
        severity,
        reasons,
        replace_paths,
        action_reason: rc.action_reason.clone(),
        attributes,
    }
}

/// The attributes that differ between before and after, redacted.
fn attribute_diffs(change: &Change) -> Vec<AttributeDiff> {
    let mut out = Vec::new();
    let decoded = [
        &change.before_sensitive,
        &change.after_sensitive,
        &change.after_unknown,
    ]
    .map(Change::value);
    walk(
        &mut out,
        String::new(),
        &Change::value(&change.before),
        &Change::value(&change.after),
        Mirrors {
            before_sensitive: Some(&decoded[0]),
            after_sensitive: Some(&decoded[1]),
            after_unknown: Some(&decoded[2]),
        },
    );
    out
}

/// The mirror trees at one point of the walk.
#[derive(Clone, Copy)]
struct Mirrors<'a> {
    before_sensitive: Option<&'a Value>,
    after_sensitive: Option<&'a Value>,
    after_unknown: Option<&'a Value>,
}

impl<'a> Mirrors<'a> {
    fn child(self, key: &str) -> Mirrors<'a> {
        // A `true` mirror covers everything below it.
        let step = |m: Option<&'a Value>| match m {
            Some(Value::Bool(true)) => m,
            Some(Value::Object(map)) => map.get(key),
            _ => None,
        };
        Mirrors {
            before_sensitive: step(self.before_sensitive),
            after_sensitive: step(self.after_sensitive),
            after_unknown: step(self.after_unknown),
        }
    }
}

fn is_true(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

fn walk(out: &mut Vec<AttributeDiff>, path: String, before: &Value, after: &Value, m: Mirrors) {
    let unknown = is_true(m.after_unknown);
    if let (Value::Object(b), Value::Object(a)) = (before, after)
        && !unknown
        && !is_true(m.before_sensitive)
        && !is_true(m.after_sensitive)
    {
        // Keys only the unknown-mirror has are computed attributes appearing at apply.
        let unknown_keys = match m.after_unknown {
            Some(Value::Object(u)) => Some(u.keys()),
            _ => None,
        };
        let keys: BTreeSet<&String> = b
            .keys()
            .chain(a.keys())
            .chain(unknown_keys.into_iter().flatten())
            .collect();
        for key in keys {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(
                out,
                child,
                b.get(key).unwrap_or(&Value::Null),
                a.get(key).unwrap_or(&Value::Null),
                m.child(key),
            );
        }
        return;
    }
    if before == after && !unknown {
        return;
    }
    let render = |v: &Value, sensitive: bool| {
        if sensitive {
            "(sensitive)".to_string()
        } else {
            let text = v.to_string();
            if text.chars().count() > 80 {
                format!("{}…", text.chars().take(79).collect::<String>())
            } else {
                text
            }
        }
    };
    out.push(AttributeDiff {
        path,
        before: render(before, is_true(m.before_sensitive)),
        after: if unknown {
            "(known after apply)".into()
        } else {
            render(after, is_true(m.after_sensitive))
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"{
      "format_version": "1.2", "terraform_version": "1.15.5",
      "applyable": true, "complete": true, "errored": false,
      "resource_changes": [
        {"address": "aws_eks_cluster.this", "mode": "managed", "type": "aws_eks_cluster", "name": "this",
         "change": {"actions": ["delete", "create"],
           "before": {"name": "dev", "version": "1.30", "vpc_config": [{"subnet_ids": ["a", "b"]}]},
           "after": {"name": "dev", "version": "1.30", "vpc_config": [{"subnet_ids": ["a", "c"]}]},
           "after_unknown": {"arn": true}, "replace_paths": [["vpc_config", 0, "subnet_ids"]]},
         "action_reason": "replace_because_cannot_update"},
        {"address": "aws_eks_node_group.default", "mode": "managed", "type": "aws_eks_node_group", "name": "default",
         "change": {"actions": ["create", "delete"], "before": {"version": "1.30"}, "after": {"version": "1.30"},
           "replace_paths": [["instance_types"]]}},
        {"address": "aws_eks_addon.coredns", "mode": "managed", "type": "aws_eks_addon", "name": "coredns",
         "change": {"actions": ["update"],
           "before": {"addon_version": "v1.11.1", "token": "old-secret", "tags": {"a": "1"}},
           "after": {"addon_version": "v1.11.3", "token": "new-secret", "tags": {"a": "2"}},
           "after_unknown": {"arn": true}, "before_sensitive": {"token": true}, "after_sensitive": {"token": true}}},
        {"address": "aws_s3_bucket.logs", "mode": "managed", "type": "aws_s3_bucket", "name": "logs",
         "change": {"actions": ["forget"], "before": {"bucket": "logs"}, "after": null}},
        {"address": "aws_iam_role.old", "mode": "managed", "type": "aws_iam_role", "name": "old",
         "change": {"actions": ["delete"], "before": {"name": "old"}, "after": null}},
        {"address": "aws_iam_role.new", "mode": "managed", "type": "aws_iam_role", "name": "new",
         "change": {"actions": ["create"], "before": null, "after": {"name": "new"}}},
        {"address": "aws_iam_role.same", "mode": "managed", "type": "aws_iam_role", "name": "same",
         "change": {"actions": ["no-op"], "before": {"name": "same"}, "after": {"name": "same"}}},
        {"address": "data.aws_ami.eks", "mode": "data", "type": "aws_ami", "name": "eks",
         "change": {"actions": ["read"], "before": null, "after": {}}},
        {"address": "aws_thing.future", "mode": "managed", "type": "aws_thing", "name": "future",
         "change": {"actions": ["transmogrify"], "before": {}, "after": {}}}
      ],
      "resource_drift": [
        {"address": "aws_eks_cluster.this", "mode": "managed", "type": "aws_eks_cluster", "name": "this",
         "change": {"actions": ["update"], "before": {"version": "1.29"}, "after": {"version": "1.30"}}}
      ],
      "output_changes": {
        "endpoint": {"actions": ["update"], "before": "a", "after": "b"},
        "unchanged": {"actions": ["no-op"], "before": "x", "after": "x"}
      }
    }"#;

    fn plan() -> Plan {
        Plan::from_slice(PLAN.as_bytes()).unwrap()
    }

    #[test]
    fn table_rendering() {
        let review = PlanReview::new(&plan(), &ReviewRules::default());
        insta::assert_snapshot!(review.render_table());
    }

    #[test]
    fn json_rendering() {
        let review = PlanReview::new(&plan(), &ReviewRules::default());
        insta::assert_snapshot!(review.to_json());
    }

    #[test]
    fn sensitive_values_never_appear() {
        let review = PlanReview::new(&plan(), &ReviewRules::default());
        for text in [review.render_table(), review.to_json()] {
            assert!(!text.contains("secret"), "{text}");
            assert!(text.contains("(sensitive)"));
        }
    }

    #[test]
    fn protected_replace_blocks_unless_allowed() {
        let review = PlanReview::new(&plan(), &ReviewRules::default());
        let cluster = review.change("aws_eks_cluster.this").unwrap();
        assert_eq!(cluster.severity, Severity::Blocker);
        assert_eq!(cluster.replace_paths, ["vpc_config[0].subnet_ids"]);
        assert_eq!(
            review
                .change("aws_eks_node_group.default")
                .unwrap()
                .severity,
            Severity::Warning
        );
        // The unknown action blocks too (fail closed).
        assert_eq!(
            review.change("aws_thing.future").unwrap().severity,
            Severity::Blocker
        );
        assert_eq!(review.blocker_lines().len(), 2);

        let rules = ReviewRules::default().allow_destroy("aws_eks_cluster.this");
        let review = PlanReview::new(&plan(), &rules);
        assert_eq!(
            review.change("aws_eks_cluster.this").unwrap().severity,
            Severity::Warning
        );
        assert_eq!(
            review.blocker_lines(),
            ["aws_thing.future: unknown action list [transmogrify]; treated as dangerous"]
        );
    }

    #[test]
    fn protected_addresses_cover_every_instance() {
        let rules = ReviewRules::default().protect_address("aws_iam_role.old");
        let review = PlanReview::new(&plan(), &rules);
        assert_eq!(
            review.change("aws_iam_role.old").unwrap().severity,
            Severity::Blocker
        );
        assert!(ReviewRules::matches(
            &rules.protected_addresses,
            "aws_iam_role.old[\"x\"]"
        ));
    }

    #[test]
    fn rules_load_from_a_file_with_defaults_for_missing_fields() {
        let rules: ReviewRules =
            serde_json::from_str(r#"{"allowed_destroy": ["aws_eks_cluster.sandbox"]}"#).unwrap();
        assert!(rules.protected_types.contains("aws_eks_cluster"));
        assert!(rules.allowed_destroy.contains("aws_eks_cluster.sandbox"));
        // A typo in a safety rule must not be silently ignored.
        let typo = serde_json::from_str::<ReviewRules>(r#"{"allow_destroy": ["x"]}"#);
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn an_errored_or_incomplete_plan_is_flagged() {
        let mut p = plan();
        p.resource_changes.clear();
        p.errored = Some(true);
        p.complete = Some(false);
        let review = PlanReview::new(&p, &ReviewRules::default());
        assert!(review.is_blocked());
        assert_eq!(review.findings.len(), 2);
    }
}
