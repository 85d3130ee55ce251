//! JUnit XML: one test suite per category, one test case per check. Blockers and warnings are
//! failures (their `type` says which), infos pass with their text in `system-out`, and checks
//! that did not run are skipped with the reason.

use std::fmt::Write;

use crate::checks::{Category, Finding, Report, Severity, registry};

/// Escapes text for XML attributes and content.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn finding_line(f: &Finding) -> String {
    let subject = f
        .subject
        .as_ref()
        .map(|s| format!("{s}: "))
        .unwrap_or_default();
    let hop = f.hop.map(|h| format!(" [hop {h}]")).unwrap_or_default();
    format!("{subject}{}{hop}", f.message)
}

/// Renders the report as JUnit XML.
pub fn junit(report: &Report) -> String {
    let checks = registry();
    let categories = {
        let mut c: Vec<Category> = checks.iter().map(|c| c.category).collect();
        c.sort();
        c.dedup();
        c
    };
    let mut suites = String::new();
    let (mut total, mut total_failures, mut total_skipped) = (0, 0, 0);
    for category in categories {
        let mut cases = String::new();
        let (mut tests, mut failures, mut skipped) = (0, 0, 0);
        for check in checks.iter().filter(|c| c.category == category) {
            tests += 1;
            let name = escape(&format!("{} {}", check.code, check.title));
            let classname = format!("upgrade-checks.{}", check.code);
            let _ = write!(
                cases,
                "    <testcase classname=\"{classname}\" name=\"{name}\""
            );
            let found: Vec<&Finding> = report
                .findings
                .iter()
                .filter(|f| f.code == check.code)
                .collect();
            if let Some(not_run) = report.not_run.iter().find(|n| n.code == check.code) {
                skipped += 1;
                let _ = writeln!(
                    cases,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(&not_run.reason)
                );
                continue;
            }
            let worst = found.iter().map(|f| f.severity).max();
            let body = found
                .iter()
                .map(|f| finding_line(f))
                .collect::<Vec<_>>()
                .join("\n");
            match worst {
                Some(severity @ (Severity::Blocker | Severity::Warning)) => {
                    failures += 1;
                    let _ = writeln!(
                        cases,
                        ">\n      <failure type=\"{severity}\" message=\"{}\">{}\n\nfix: {} ({})</failure>\n    </testcase>",
                        escape(&format!("{} {severity} finding(s)", found.len())),
                        escape(&body),
                        escape(check.remediation),
                        escape(&check.docs())
                    );
                }
                Some(Severity::Info) => {
                    let _ = writeln!(
                        cases,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        escape(&body)
                    );
                }
                None => cases.push_str("/>\n"),
            }
        }
        total += tests;
        total_failures += failures;
        total_skipped += skipped;
        let _ = write!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n",
            escape(&category.to_string())
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{total}\" failures=\"{total_failures}\" errors=\"0\" skipped=\"{total_skipped}\">\n{suites}</testsuites>\n",
        escape(&format!(
            "upgrade checks {} {} → {}",
            report.cluster, report.current, report.target
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&apos; \n"
        );
    }
}
