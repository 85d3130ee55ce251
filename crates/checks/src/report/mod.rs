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

/// Each version data file: where it was read from, how many rows it has, the newest `checked`
/// date of its rows, and its sources (title and address), for `--show-data`.
pub fn data_files_text(data: &crate::data::Data) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "Version data (every row names one of its file's sources; `--data DIR` reads newer files):\n",
    );
    for file in &data.files {
        let origin = file
            .path
            .as_ref()
            .map_or_else(|| "embedded".to_string(), |p| p.display().to_string());
        let checked = file.checked.as_ref().map_or_else(
            || "no rows".to_string(),
            |d| format!("newest row checked {d}"),
        );
        let _ = writeln!(
            out,
            "\n{}: {origin}, {} row(s), {checked}",
            file.name, file.rows
        );
        for key in &file.sources {
            if let Some(source) = data.sources.get(key) {
                let _ = writeln!(out, "  {key}: {} <{}>", source.title, source.url);
            }
        }
    }
    out
}

/// [`data_files_text`] as JSON: the files with their sources spelled out.
pub fn data_files_json(data: &crate::data::Data) -> String {
    let files: Vec<serde_json::Value> = data
        .files
        .iter()
        .map(|file| {
            let sources: serde_json::Map<String, serde_json::Value> = file
                .sources
                .iter()
                .filter_map(|key| {
                    let source = data.sources.get(key)?;
                    Some((key.clone(), serde_json::to_value(source).ok()?))
                })
                .collect();
            serde_json::json!({
                "name": file.name,
                "path": file.path,
                "rows": file.rows,
                "checked": file.checked,
                "sources": sources,
            })
        })
        .collect();
    serde_json::to_string_pretty(&files).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
