//! Terraform's machine-readable UI (`-json` on init, plan and apply) and its diagnostics.
//!
//! The stream is one JSON object per line, but it is not guaranteed to be pure JSON
//! (hashicorp/terraform#29252): undecodable lines are kept as [`UiMessage::Unparsed`],
//! never an error. Unknown message types are kept whole.

use serde::{Deserialize, Serialize};

/// One diagnostic: an error or a warning, as Terraform reports it in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// One line, e.g. "Error acquiring the state lock".
    pub summary: String,
    /// The explanation, possibly several lines.
    #[serde(default)]
    pub detail: Option<String>,
    /// The resource address the diagnostic is about, when Terraform gives one.
    #[serde(default)]
    pub address: Option<String>,
}

impl Diagnostic {
    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }
}

/// Counts from a `change_summary` message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// Objects to create.
    #[serde(default)]
    pub add: u64,
    /// Objects to update in place.
    #[serde(default)]
    pub change: u64,
    /// Objects to destroy (replacements count here and in `add`).
    #[serde(default)]
    pub remove: u64,
    /// Objects to import.
    #[serde(default)]
    pub import: u64,
}

/// One line of the `-json` UI stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UiMessage {
    /// A `diagnostic` message.
    Diagnostic(Diagnostic),
    /// A `change_summary` message.
    ChangeSummary(ChangeSummary),
    /// Any other message: its `type` and `@message`.
    Other {
        /// The `type` field.
        kind: String,
        /// The human-readable `@message`.
        message: String,
    },
    /// A line that is not a JSON object.
    Unparsed(String),
}

impl UiMessage {
    /// Parses one line of the stream; never fails.
    pub fn parse_line(line: &str) -> UiMessage {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(rename = "@message", default)]
            message: String,
            #[serde(default)]
            diagnostic: Option<Diagnostic>,
            #[serde(default)]
            changes: Option<ChangeSummary>,
        }
        match serde_json::from_str::<Raw>(line) {
            Ok(raw) => match (raw.kind.as_str(), raw.diagnostic, raw.changes) {
                ("diagnostic", Some(diag), _) => UiMessage::Diagnostic(diag),
                ("change_summary", _, Some(changes)) => UiMessage::ChangeSummary(changes),
                _ => UiMessage::Other {
                    kind: raw.kind,
                    message: raw.message,
                },
            },
            Err(_) => UiMessage::Unparsed(line.to_string()),
        }
    }
}

/// What a `-json` run reported, gathered from its whole stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UiStream {
    /// Every diagnostic, in order.
    pub diagnostics: Vec<Diagnostic>,
    /// The last change summary, if any.
    pub change_summary: Option<ChangeSummary>,
    /// Lines that were not JSON (kept for the record).
    pub unparsed: Vec<String>,
}

impl UiStream {
    /// Parses a whole stream (stdout of a `-json` command).
    pub fn parse(text: &str) -> UiStream {
        let mut stream = UiStream::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match UiMessage::parse_line(line) {
                UiMessage::Diagnostic(d) => stream.diagnostics.push(d),
                UiMessage::ChangeSummary(c) => stream.change_summary = Some(c),
                UiMessage::Unparsed(l) => stream.unparsed.push(l),
                UiMessage::Other { .. } => {}
            }
        }
        stream
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_stream_keeps_plain_lines_and_unknown_types() {
        let text = r#"{"@level":"info","@message":"Terraform 1.15.5","type":"version","terraform":"1.15.5","ui":"1.3"}
Acquiring state lock. This may take a few moments...
{"@level":"error","@message":"Error: Error acquiring the state lock","type":"diagnostic","diagnostic":{"severity":"error","summary":"Error acquiring the state lock","detail":"Lock Info:\n  ID:        abc"}}
{"@level":"info","type":"change_summary","changes":{"add":1,"change":2,"import":0,"remove":3,"action_invocation":0,"operation":"plan"}}
{"type":"something_new","@message":"hello"}"#;
        let stream = UiStream::parse(text);
        assert_eq!(stream.diagnostics.len(), 1);
        assert!(stream.diagnostics[0].is_error());
        assert_eq!(
            stream.change_summary,
            Some(ChangeSummary {
                add: 1,
                change: 2,
                remove: 3,
                import: 0
            })
        );
        assert_eq!(
            stream.unparsed,
            ["Acquiring state lock. This may take a few moments..."]
        );
    }
}
