//! Rendering a [`Report`](crate::checks::Report): a text view for terminals, JSON for
//! pipelines, a Markdown upgrade playbook, and JUnit XML for CI dashboards.
//!
//! Every renderer is a pure function of the report (and, for the playbook, the facts whose
//! names it fills in), so the output is stable and snapshot-tested.

mod junit;
mod markdown;
mod text;

pub use junit::junit;
pub use markdown::playbook;
pub use text::text;

use crate::checks::Report;

/// The report as pretty-printed JSON (stable field order; see [`Report`] for the fields).
pub fn json(report: &Report) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
