//! Static scans for CI, before the upgrade: manifests in files (YAML, JSON, `kind: List`, the
//! copies kept in `last-applied-configuration` annotations) and rendered charts, checked for
//! APIs removed or deprecated on the way to a target minor, each with its file and line.
//!
//! Pure like the rest of the crate: the caller reads the files and renders the charts (the
//! `upgrade-flows` scan flow does both) and hands the text in.
//!
//! ```
//! use upgrade_checks::{data::Data, scan::Scanner};
//!
//! let mut scanner = Scanner::new(Data::embedded(), "1.25".parse().unwrap());
//! scanner.scan_text("k8s/pdb.yaml", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n");
//! let report = scanner.finish();
//! assert_eq!(report.findings[0].line, Some(1));
//! assert_eq!(report.exit_code(), 4); // removed by 1.25: a blocker
//! ```

use std::fmt::Write as _;

use serde::Serialize;
use upgrade_core::version::KubeMinor;

use crate::checks::Severity;
use crate::data::Data;
use crate::manifest::{self, ManifestObject, Origin};

/// What the data says about one API used by a scanned object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ApiStatus {
    /// Not served any more at the target.
    Removed {
        /// The first minor without it.
        removed_in: KubeMinor,
        /// The replacement to use (followed through replacements that are removed too).
        replacement: Option<String>,
        /// The first minor that serves the replacement.
        replacement_available_in: Option<KubeMinor>,
    },
    /// Deprecated at the target, still served there.
    Deprecated {
        /// The minor that deprecated it.
        deprecated_in: KubeMinor,
        /// The first minor without it, when scheduled.
        removed_in: Option<KubeMinor>,
        /// The replacement.
        replacement: Option<String>,
    },
    /// Versioned by a component's own releases (cert-manager, the CSI snapshot CRDs).
    Component {
        /// The component.
        component: String,
        /// The component release that deprecated it.
        deprecated_in: Option<String>,
        /// The first component release without it.
        removed_in: Option<String>,
        /// The replacement.
        replacement: Option<String>,
    },
}

/// One object of a scanned file that uses a removed or deprecated API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanFinding {
    /// The file (for a chart: the chart folder and the template that rendered it).
    pub file: String,
    /// The 1-based line of the object's `apiVersion` (of the annotation for an applied copy);
    /// `None` for rendered charts, whose output lines are not the template's.
    pub line: Option<usize>,
    /// The API used.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when set.
    pub namespace: Option<String>,
    /// Where the API was found: `manifest`, or the annotation with the applied copy.
    pub found_in: String,
    /// Blocker when removed by the target, warning when deprecated (or versioned by a
    /// component release).
    pub severity: Severity,
    /// What the data says.
    #[serde(flatten)]
    pub status: ApiStatus,
    /// One line for people.
    pub message: String,
}

/// A file that could not be scanned (whole or from one document on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unscanned {
    /// The file.
    pub file: String,
    /// Why.
    pub problem: String,
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// The target minor.
    pub target: KubeMinor,
    /// Every file (or chart) scanned.
    pub scanned: Vec<String>,
    /// The objects that use removed or deprecated APIs, in file order.
    pub findings: Vec<ScanFinding>,
    /// What could not be scanned.
    pub unscanned: Vec<Unscanned>,
}

impl ScanReport {
    /// 4 when an API is removed by the target, 3 when one is deprecated or a file could not
    /// be scanned, else 0 (pluto's 3 and 2 map to 4 and 3).
    pub fn exit_code(&self) -> u8 {
        if self
            .findings
            .iter()
            .any(|f| f.severity == Severity::Blocker)
        {
            4
        } else if !self.findings.is_empty() || !self.unscanned.is_empty() {
            3
        } else {
            0
        }
    }

    /// A text table: `file:line  severity  kind name  message`, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let at = match f.line {
                Some(line) => format!("{}:{line}", f.file),
                None => f.file.clone(),
            };
            let _ = writeln!(
                out,
                "{at}\n  {:<8} {}",
                f.severity.to_string().to_uppercase(),
                f.message
            );
        }
        for u in &self.unscanned {
            let _ = writeln!(out, "{}\n  UNSCANNED {}", u.file, u.problem);
        }
        let blockers = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
            .count();
        let _ = writeln!(
            out,
            "{}{} file(s) scanned for APIs on the way to {}: {blockers} removed, {} deprecated, {} unscanned. Exit code {}.",
            if out.is_empty() { "" } else { "\n" },
            self.scanned.len(),
            self.target,
            self.findings.len() - blockers,
            self.unscanned.len(),
            self.exit_code()
        );
        out
    }

    /// Pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A Markdown table for a pull request comment.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Removed and deprecated APIs on the way to {}\n\n{} file(s) scanned.\n\n",
            self.target,
            self.scanned.len()
        );
        if self.findings.is_empty() && self.unscanned.is_empty() {
            out.push_str("Nothing found.\n");
            return out;
        }
        out.push_str("| Where | Severity | Finding |\n|---|---|---|\n");
        let cell = |s: &str| s.replace('|', "\\|");
        for f in &self.findings {
            let at = f
                .line
                .map_or_else(|| f.file.clone(), |l| format!("{}:{l}", f.file));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                cell(&at),
                f.severity,
                cell(&f.message)
            );
        }
        for u in &self.unscanned {
            let _ = writeln!(
                out,
                "| `{}` | unscanned | {} |",
                cell(&u.file),
                cell(&u.problem)
            );
        }
        out
    }

    /// JUnit XML: one test case per scanned file, failed by its findings.
    pub fn junit(&self) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let failed = |file: &str| {
            self.findings.iter().any(|f| f.file.starts_with(file))
                || self.unscanned.iter().any(|u| u.file == file)
        };
        let failures = self.scanned.iter().filter(|f| failed(f)).count();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"API scan for {}\" tests=\"{}\" failures=\"{failures}\">\n",
            self.target,
            self.scanned.len()
        );
        for file in &self.scanned {
            let _ = write!(
                out,
                "  <testcase classname=\"upgrade-scan\" name=\"{}\"",
                esc(file)
            );
            let messages: Vec<String> = self
                .findings
                .iter()
                .filter(|f| f.file.starts_with(file.as_str()))
                .map(|f| match f.line {
                    Some(l) => format!("line {l}: {}", f.message),
                    None => format!("{}: {}", f.file, f.message),
                })
                .chain(
                    self.unscanned
                        .iter()
                        .filter(|u| &u.file == file)
                        .map(|u| u.problem.clone()),
                )
                .collect();
            if messages.is_empty() {
                out.push_str("/>\n");
            } else {
                let _ = write!(
                    out,
                    ">\n    <failure message=\"{} finding(s)\">{}</failure>\n  </testcase>\n",
                    messages.len(),
                    esc(&messages.join("\n"))
                );
            }
        }
        out.push_str("</testsuite>\n");
        out
    }
}

/// Scans texts against the data for a target and collects a [`ScanReport`].
pub struct Scanner<'a> {
    data: &'a Data,
    report: ScanReport,
}

impl<'a> Scanner<'a> {
    /// A scanner for the path to `target`.
    pub fn new(data: &'a Data, target: KubeMinor) -> Scanner<'a> {
        Scanner {
            data,
            report: ScanReport {
                target,
                scanned: Vec::new(),
                findings: Vec::new(),
                unscanned: Vec::new(),
            },
        }
    }

    /// Scans the manifests of one file; findings carry `file` and their line.
    pub fn scan_text(&mut self, file: &str, text: &str) {
        self.report.scanned.push(file.to_string());
        let (objects, error) = manifest::objects_until_error(text);
        let lines = locate(text, &objects);
        for (object, line) in objects.iter().zip(lines) {
            self.judge(file, line, object);
        }
        if let Some(e) = error {
            self.unscanned(
                file,
                format!("{e}; this and later documents were not scanned"),
            );
        }
    }

    /// Scans what `helm template` rendered for the chart in `chart_dir`: each object is named
    /// by the template its `# Source:` comment names.
    pub fn scan_rendered_chart(&mut self, chart_dir: &str, rendered: &str) {
        self.report.scanned.push(chart_dir.to_string());
        for (template, text) in split_by_source(rendered) {
            let file = match template {
                Some(t) => format!("{chart_dir} ({t})"),
                None => chart_dir.to_string(),
            };
            let (objects, error) = manifest::objects_until_error(&text);
            for object in &objects {
                self.judge(&file, None, object);
            }
            if let Some(e) = error {
                self.unscanned(chart_dir, format!("{file}: {e}"));
            }
        }
    }

    /// Records a file (or chart) that could not be scanned.
    pub fn unscanned(&mut self, file: &str, problem: impl Into<String>) {
        if !self.report.scanned.iter().any(|f| f == file) {
            self.report.scanned.push(file.to_string());
        }
        self.report.unscanned.push(Unscanned {
            file: file.to_string(),
            problem: problem.into(),
        });
    }

    /// The report.
    pub fn finish(self) -> ScanReport {
        self.report
    }

    fn judge(&mut self, file: &str, line: Option<usize>, o: &ManifestObject) {
        let target = self.report.target;
        let (severity, status) = if let Some(row) = self.data.removed_api(&o.api_version, &o.kind) {
            match (row.removed_in, row.deprecated_in) {
                (Some(removed), _) if removed <= target => {
                    let (replacement, available) = self.data.final_replacement(row, target);
                    (
                        Severity::Blocker,
                        ApiStatus::Removed {
                            removed_in: removed,
                            replacement: replacement.map(str::to_string),
                            replacement_available_in: available,
                        },
                    )
                }
                (removed, Some(deprecated)) if deprecated <= target => (
                    Severity::Warning,
                    ApiStatus::Deprecated {
                        deprecated_in: deprecated,
                        removed_in: removed,
                        replacement: row.replacement.clone(),
                    },
                ),
                _ => return,
            }
        } else if let Some(row) = self.data.component_api(&o.api_version, &o.kind) {
            (
                Severity::Warning,
                ApiStatus::Component {
                    component: row.component.clone(),
                    deprecated_in: row.deprecated_in.clone(),
                    removed_in: row.removed_in.clone(),
                    replacement: row.replacement.clone(),
                },
            )
        } else {
            return;
        };
        let found_in = match o.origin {
            Origin::Manifest => "manifest".to_string(),
            Origin::Annotation(key) => key.to_string(),
        };
        let message = describe(o, &status);
        self.report.findings.push(ScanFinding {
            file: file.to_string(),
            line,
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            name: o.name.clone(),
            namespace: o.namespace.clone(),
            found_in,
            severity,
            status,
            message,
        });
    }
}

fn describe(o: &ManifestObject, status: &ApiStatus) -> String {
    let name = match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    };
    let applied = match o.origin {
        Origin::Manifest => String::new(),
        Origin::Annotation(key) => format!(" as last applied ({key})"),
    };
    let use_ = |r: &Option<String>| {
        r.as_deref().map_or_else(
            || "; there is no replacement API".into(),
            |r| format!("; use {r}"),
        )
    };
    let what = match status {
        ApiStatus::Removed {
            removed_in,
            replacement,
            replacement_available_in,
        } => {
            let since = replacement_available_in
                .map(|a| format!(" (served since {a})"))
                .unwrap_or_default();
            format!("is removed in {removed_in}{}{since}", use_(replacement))
        }
        ApiStatus::Deprecated {
            deprecated_in,
            removed_in,
            replacement,
        } => {
            let removal = removed_in
                .map(|r| format!("removed in {r}"))
                .unwrap_or_else(|| "not yet scheduled for removal".into());
            format!(
                "is deprecated since {deprecated_in} and {removal}{}",
                use_(replacement)
            )
        }
        ApiStatus::Component {
            component,
            deprecated_in,
            removed_in,
            replacement,
        } => {
            let when = match (removed_in, deprecated_in) {
                (Some(r), _) => format!("is removed in {component} {r}"),
                (None, Some(d)) => format!("is deprecated since {component} {d}"),
                (None, None) => format!("is versioned by {component}"),
            };
            format!("{when} (whatever the cluster's minor){}", use_(replacement))
        }
    };
    format!("{} `{name}` ({}){applied} {what}", o.kind, o.api_version)
}

/// The byte offset where each YAML document of `text` starts, in the order the YAML parser
/// numbers them: a `---` line starts one; text before the first `---` is one only when it has
/// content (comments and blank lines are not a document).
fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut leading_content = false;
    let mut seen_marker = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ");
        if is_marker {
            if !seen_marker && leading_content {
                starts.push(0);
            }
            seen_marker = true;
            starts.push(offset + line.len());
        } else if !seen_marker {
            let trimmed = bare.trim();
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                leading_content = true;
            }
        }
        offset += line.len();
    }
    if !seen_marker {
        starts.push(0);
    }
    starts
}

/// The line of each object's `apiVersion` (the annotation's line for an applied copy),
/// searched in order from where the previous object was found and not before its document.
fn locate(text: &str, objects: &[ManifestObject]) -> Vec<Option<usize>> {
    let starts = document_starts(text);
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut cursor = 0;
    let mut last_object = 0;
    objects
        .iter()
        .map(|o| {
            let from = cursor.max(starts.get(o.document - 1).copied().unwrap_or(0));
            match o.origin {
                Origin::Manifest => {
                    let at = find_api_version(text, from, &o.api_version)?;
                    cursor = at + 1;
                    last_object = at;
                    Some(line_of(at))
                }
                Origin::Annotation(key) => text[last_object..]
                    .find(key)
                    .map(|i| line_of(last_object + i)),
            }
        })
        .collect()
}

/// The offset of the next `apiVersion: <value>` (YAML, quoted or not, or JSON) at or after
/// `from`.
fn find_api_version(text: &str, from: usize, value: &str) -> Option<usize> {
    let mut at = from;
    while let Some(i) = text.get(at..)?.find("apiVersion") {
        let key = at + i;
        let rest = &text[key + "apiVersion".len()..];
        let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
        let rest = rest.trim_start_matches([' ', '\t']);
        if let Some(rest) = rest.strip_prefix(':') {
            let rest = rest.trim_start_matches([' ', '\t']);
            let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
            if let Some(after) = rest.strip_prefix(value)
                && after.chars().next().is_none_or(|c| {
                    matches!(c, '"' | '\'' | ',' | '}' | ' ' | '\t' | '\r' | '\n' | '#')
                })
            {
                return Some(key);
            }
        }
        at = key + 1;
    }
    None
}

/// `helm template` output split into the documents of each template, by its `# Source:`
/// comments.
fn split_by_source(rendered: &str) -> Vec<(Option<String>, String)> {
    let mut parts: Vec<(Option<String>, String)> = Vec::new();
    let mut current: (Option<String>, String) = (None, String::new());
    for line in rendered.split_inclusive('\n') {
        if let Some(source) = line.trim_end().strip_prefix("# Source: ") {
            if !current.1.trim().is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            // `chart/templates/x.yaml`: the chart's own name is the folder already given.
            let template = source.split_once('/').map_or(source, |(_, rest)| rest);
            current = (Some(template.to_string()), String::new());
            continue;
        }
        current.1.push_str(line);
    }
    if !current.1.trim().is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> KubeMinor {
        s.parse().unwrap()
    }

    #[test]
    fn lines_follow_documents_lists_json_and_annotations() {
        let text = "# a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ok}\n---\n---\nkind: List\napiVersion: v1\nitems:\n  - apiVersion: batch/v1beta1\n    kind: CronJob\n    metadata: {name: a}\n  - kind: CronJob\n    apiVersion: \"batch/v1beta1\"\n    metadata: {name: b}\n";
        let mut scanner = Scanner::new(Data::embedded(), m("1.25"));
        scanner.scan_text("x.yaml", text);
        let report = scanner.finish();
        let at: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.name.as_str(), f.line))
            .collect();
        assert_eq!(at, [("a", Some(11)), ("b", Some(15))]);
        assert_eq!(report.exit_code(), 4);

        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"extensions/v1beta1","kind":"Ingress","metadata":{"name":"i"}}]}"#;
        let mut scanner = Scanner::new(Data::embedded(), m("1.22"));
        scanner.scan_text("x.json", json);
        assert_eq!(scanner.finish().findings[0].line, Some(1));
    }

    #[test]
    fn deprecated_is_a_warning_and_nothing_before_its_deprecation() {
        let text =
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: utilities}\n";
        let scan = |target: &str| {
            let mut scanner = Scanner::new(Data::embedded(), m(target));
            scanner.scan_text("d.yaml", text);
            scanner.finish()
        };
        let r = scan("1.15");
        assert_eq!(r.exit_code(), 3);
        assert_eq!(
            r.findings[0].message,
            "Deployment `utilities` (extensions/v1beta1) is deprecated since 1.9 and removed in 1.16; use apps/v1"
        );
        assert_eq!(scan("1.16").exit_code(), 4);
        assert_eq!(scan("1.8").exit_code(), 0);
    }

    #[test]
    fn chart_output_is_named_by_template() {
        let rendered = "---\n# Source: web/templates/pdb.yaml\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n---\n# Source: web/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
        let mut scanner = Scanner::new(Data::embedded(), m("1.25"));
        scanner.scan_rendered_chart("charts/web", rendered);
        let report = scanner.finish();
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].file, "charts/web (templates/pdb.yaml)");
        assert_eq!(report.findings[0].line, None);
        assert_eq!(report.scanned, ["charts/web"]);
    }
}
