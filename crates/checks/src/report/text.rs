//! The terminal view: a header, findings worst first, then what was ignored or not run.

use std::fmt::Write;

use crate::checks::{Report, registry};

/// Renders the report for a terminal (no colour: meaning never rests on colour alone).
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let path = std::iter::once(plan.current.to_string())
        .chain(plan.hop_targets().map(|m| m.to_string()))
        .collect::<Vec<_>>()
        .join(" → ");
    let _ = writeln!(
        out,
        "Upgrade check for {}: {} → {} ({} hop{}: {path})",
        report.cluster,
        report.current,
        report.target,
        plan.hops.len(),
        if plan.hops.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "Version data: EKS calendar to {}, removed APIs to {}, compatibility to {} (checked {})",
        report.data.newest_calendar_minor,
        report.data.newest_removal_minor,
        report.data.newest_compat_minor,
        report.data.checked
    );
    for note in &plan.notes {
        let _ = writeln!(out, "Note: {note}");
    }
    out.push('\n');
    if report.findings.is_empty() {
        out.push_str("No findings.\n");
    }
    let code_width = report
        .findings
        .iter()
        .map(|f| f.code.len())
        .max()
        .unwrap_or(0);
    // The remediation is the same for every finding of a check: print it the first time.
    let mut explained = std::collections::BTreeSet::new();
    for f in &report.findings {
        let hop = f
            .hop
            .map(|h| format!("hop {h}"))
            .unwrap_or_else(|| "now".to_owned());
        let subject = f
            .subject
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<7}  {:<code_width$}  {:<8}  {subject}",
            f.severity.to_string().to_uppercase(),
            f.code,
            hop
        );
        let indent = " ".repeat(7 + 2 + code_width + 2);
        let _ = writeln!(out, "{indent}{}", f.message);
        if explained.insert(f.code) {
            let _ = writeln!(out, "{indent}fix: {} ({})", f.remediation, f.docs);
        }
    }
    if !report.ignored.is_empty() {
        let _ = writeln!(
            out,
            "\nIgnored by configuration ({}):",
            report.ignored.len()
        );
        for i in &report.ignored {
            let subject = i
                .subject
                .as_ref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            let reason = i
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {}{subject}{reason}", i.code);
        }
    }
    if !report.not_run.is_empty() {
        let _ = writeln!(out, "\nNot run ({}):", report.not_run.len());
        for n in &report.not_run {
            let _ = writeln!(out, "  {}: {}", n.code, n.reason);
        }
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\n{} blocker(s), {} warning(s), {} info; {} of {} checks ran, {} passed. Exit code {}.",
        s.blockers,
        s.warnings,
        s.infos,
        s.checks_run,
        registry().len(),
        s.checks_passed,
        report.exit_code()
    );
    out
}
