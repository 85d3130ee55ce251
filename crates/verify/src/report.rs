//! Findings, the verification report and its exit code.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use upgrade_core::exit::{BLOCKED as EXIT_BLOCKERS, OK as EXIT_OK, WARNINGS as EXIT_WARNINGS};

/// How a probe or a metric comparison came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As expected.
    Pass,
    /// Outside the warning tolerance, inside the failure tolerance (or no baseline to compare).
    Warn,
    /// Not as expected: a bad response, a timeout, a refused connection, a metric beyond its
    /// failure tolerance, or no data where data was needed.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One result: which probe or metric, where, what was expected and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The probe or metric name from the configuration.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was asked: the URL (with method) or the PromQL query.
    pub target: String,
    /// What a pass needs.
    pub expected: String,
    /// What came back.
    pub actual: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        name: impl Into<String>,
        status: Status,
        target: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Finding {
            name: name.into(),
            status,
            target: target.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

/// Every finding of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Findings in the order they were made.
    pub findings: Vec<Finding>,
}

impl Report {
    /// A report of these findings.
    pub fn new(findings: Vec<Finding>) -> Self {
        Report { findings }
    }

    /// Adds findings.
    pub fn extend(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
    }

    /// The worst status, `None` for an empty report.
    pub fn worst(&self) -> Option<Status> {
        self.findings.iter().map(|f| f.status).max()
    }

    /// The process exit code, as upgrade-core's reports: `0` all passed, `3` warnings and no
    /// failures, `4` at least one failure. An empty report is `4`: nothing was verified.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Some(Status::Pass) => EXIT_OK,
            Some(Status::Warn) => EXIT_WARNINGS,
            Some(Status::Fail) | None => EXIT_BLOCKERS,
        }
    }

    /// A plain-text rendering for terminals and logs: one block per finding, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(out, "{} {}  {}", f.status.label(), f.name, f.target);
            if f.status != Status::Pass {
                let _ = writeln!(out, "     expected: {}", f.expected);
            }
            let _ = writeln!(out, "     got:      {}", f.actual);
        }
        let count = |s| self.findings.iter().filter(|f| f.status == s).count();
        let _ = writeln!(
            out,
            "{} passed, {} warnings, {} failed (exit {})",
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Fail),
            self.exit_code()
        );
        if self.findings.is_empty() {
            out.push_str("nothing was verified: the configuration has no probes and no metrics\n");
        }
        out
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_finding() {
        let f = |s| Finding::new("x", s, "t", "e", "a");
        assert_eq!(Report::new(vec![f(Status::Pass)]).exit_code(), 0);
        assert_eq!(
            Report::new(vec![f(Status::Pass), f(Status::Warn)]).exit_code(),
            3
        );
        assert_eq!(
            Report::new(vec![f(Status::Fail), f(Status::Warn)]).exit_code(),
            4
        );
        assert_eq!(Report::default().exit_code(), 4);
    }

    #[test]
    fn text_report() {
        let report = Report::new(vec![
            Finding::new(
                "mlflow-health",
                Status::Pass,
                "GET http://mlflow:5000/health",
                "200 with body `OK`",
                "200 `OK`",
            ),
            Finding::new(
                "iris-v1",
                Status::Fail,
                "POST http://iris/v1/models/sklearn-iris:predict",
                "200 with `predictions`: an array of 1 item",
                "connection refused (is the server running and the URL right?)",
            ),
        ]);
        insta::assert_snapshot!(report.text(), @r"
        PASS mlflow-health  GET http://mlflow:5000/health
             got:      200 `OK`
        FAIL iris-v1  POST http://iris/v1/models/sklearn-iris:predict
             expected: 200 with `predictions`: an array of 1 item
             got:      connection refused (is the server running and the URL right?)
        1 passed, 0 warnings, 1 failed (exit 4)
        ");
    }
}
