//! The generated check reference (`docs/checks.md`).

use std::fmt::Write;

use super::{Category, EXIT_BLOCKERS, EXIT_OK, EXIT_USAGE, EXIT_WARNINGS, registry};

/// The Markdown reference of every check, generated from the registry.
///
/// `docs/checks.md` holds this text; the crate's tests fail when they differ
/// (`UPDATE_DOCS=1 cargo test -p upgrade-checks --test it docs` rewrites it).
pub fn reference() -> String {
    let checks = registry();
    let mut out = String::new();
    out.push_str("# Upgrade checks reference\n\n");
    out.push_str("<!-- Generated from crates/checks/src/checks by `UPDATE_DOCS=1 cargo test -p upgrade-checks --test it docs`. Do not edit by hand. -->\n\n");
    let _ = writeln!(
        out,
        "{} checks. Each has a stable code, a default severity (a configuration file can override it), the target versions where it applies, and the source of its rule.\n",
        checks.len()
    );
    out.push_str("Severities: **blocker** — the upgrade fails or breaks something, fix it first; **warning** — likely trouble, fix or accept it; **info** — worth knowing.\n\n");
    let _ = writeln!(
        out,
        "Exit codes: `{EXIT_OK}` no blockers or warnings (infos allowed); `{EXIT_WARNINGS}` warnings but no blockers; `{EXIT_BLOCKERS}` at least one blocker; `{EXIT_USAGE}` usage or input error (bad flags, unreadable facts or configuration).\n"
    );
    out.push_str("| code | title | severity | applies to |\n|---|---|---|---|\n");
    for c in checks {
        let _ = writeln!(
            out,
            "| [{}](#{}) | {} | {} | {} |",
            c.code,
            c.anchor(),
            c.title,
            c.severity,
            c.applies
        );
    }
    out.push('\n');
    let mut categories: Vec<Category> = checks.iter().map(|c| c.category).collect();
    categories.sort();
    categories.dedup();
    for category in categories {
        let _ = writeln!(out, "## {category}\n");
        for c in checks.iter().filter(|c| c.category == category) {
            let _ = writeln!(out, "### {}\n", c.code);
            let _ = writeln!(out, "**{}** — {}, {}.\n", c.title, c.severity, c.applies);
            let _ = writeln!(out, "{}\n", c.inspects);
            let _ = writeln!(out, "Remediation: {}\n", c.remediation);
            let _ = writeln!(out, "Source: {}\n", c.source);
        }
    }
    out
}
