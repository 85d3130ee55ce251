//! One report across the fleet, from each cluster step's `report.json` (the workflow's
//! `report` artifacts downloaded as `<dir>/<cluster>/report.json`, or a rehearsal's output
//! folder, which has that layout).

use std::path::Path;

use serde::Serialize;

use super::cluster::{ClusterResult, ClusterRun};
use crate::error::{FlowError, Result};
use crate::report::Format;

/// The fleet's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// Each cluster's run, by name.
    pub clusters: Vec<ClusterRun>,
    /// Clusters per result.
    pub totals: std::collections::BTreeMap<String, usize>,
}

impl FleetReport {
    /// From runs.
    pub fn of(mut clusters: Vec<ClusterRun>) -> FleetReport {
        clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        let mut totals = std::collections::BTreeMap::new();
        for c in &clusters {
            *totals.entry(c.result.as_str().to_string()).or_insert(0) += 1;
        }
        FleetReport { clusters, totals }
    }

    /// Reads every `<dir>/*/report.json`; a folder without one is skipped, a report that
    /// does not read is bad input naming the file.
    pub fn read(dir: &Path) -> Result<FleetReport> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            FlowError::invalid(
                "artifacts",
                format!("{} cannot be read: {e}", dir.display()),
                "give the folder holding one folder per cluster with its report.json",
            )
        })?;
        let mut runs = Vec::new();
        for entry in entries.flatten() {
            let file = entry.path().join("report.json");
            if !file.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| FlowError::failed(format!("read {}", file.display()), e))?;
            let run: ClusterRun = serde_json::from_str(&text).map_err(|e| {
                FlowError::invalid(
                    "artifacts",
                    format!("{} is not a cluster report: {e}", file.display()),
                    "give the report artifacts upgrade-fleet run-cluster wrote",
                )
            })?;
            runs.push(run);
        }
        if runs.is_empty() {
            return Err(FlowError::invalid(
                "artifacts",
                format!("{} holds no <cluster>/report.json", dir.display()),
                "download each cluster step's report artifact into <dir>/<cluster>/report.json",
            ));
        }
        Ok(FleetReport::of(runs))
    }

    /// Whether any cluster counts as failed.
    pub fn failed(&self) -> bool {
        self.clusters.iter().any(|c| c.result.counts_as_failed())
    }

    /// 0 every cluster ok, 3 some with warnings, 1 any failed.
    pub fn exit_code(&self) -> u8 {
        if self.failed() {
            upgrade_core::exit::FAILED
        } else if self
            .clusters
            .iter()
            .any(|c| c.result == ClusterResult::Warning)
        {
            upgrade_core::exit::WARNINGS
        } else {
            upgrade_core::exit::OK
        }
    }

    fn rows(&self) -> Vec<[String; 6]> {
        self.clusters
            .iter()
            .map(|c| {
                [
                    c.cluster.clone(),
                    c.from.clone().unwrap_or_else(|| "?".into()),
                    c.to.clone().unwrap_or_else(|| "?".into()),
                    c.result.as_str().to_string(),
                    format!("{:.1}s", c.duration_secs),
                    if c.findings.is_empty() {
                        c.outcome.clone()
                    } else {
                        format!("{} finding(s): {}", c.findings.len(), c.findings.join("; "))
                    },
                ]
            })
            .collect()
    }

    /// Renders in `format` (text, JSON, Markdown; JUnit is a test case per cluster).
    pub fn render(&self, format: Format) -> String {
        let totals: Vec<String> = self
            .totals
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("serialises") + "\n",
            Format::Text => {
                let mut out = String::new();
                for [name, from, to, result, took, note] in self.rows() {
                    out.push_str(&format!(
                        "{name:<24} {from:<22} -> {to:<22} {result:<11} {took:>8}  {note}\n"
                    ));
                }
                out.push_str(&format!(
                    "\n{} cluster(s): {}\n",
                    self.clusters.len(),
                    totals.join(", ")
                ));
                out
            }
            Format::Markdown => {
                let mut out = String::from(
                    "| cluster | from | to | result | duration | findings |\n|---|---|---|---|---|---|\n",
                );
                for row in self.rows() {
                    let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                out.push_str(&format!(
                    "\n{} cluster(s): {}.\n",
                    self.clusters.len(),
                    totals.join(", ")
                ));
                out
            }
            Format::Junit => {
                let failures = self
                    .clusters
                    .iter()
                    .filter(|c| c.result.counts_as_failed())
                    .count();
                let mut out = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"fleet\" tests=\"{}\" failures=\"{failures}\">\n",
                    self.clusters.len()
                );
                for c in &self.clusters {
                    out.push_str(&format!(
                        "  <testcase classname=\"fleet\" name=\"{}\" time=\"{:.1}\">",
                        crate::report::xml_escape(&c.cluster),
                        c.duration_secs
                    ));
                    if c.result.counts_as_failed() {
                        out.push_str(&format!(
                            "<failure message=\"{}\">{}</failure>",
                            c.result.as_str(),
                            crate::report::xml_escape(&c.outcome)
                        ));
                    }
                    out.push_str("</testcase>\n");
                }
                out.push_str("</testsuite>\n");
                out
            }
        }
    }
}
