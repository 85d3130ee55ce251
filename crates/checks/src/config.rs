//! The checks' configuration file: thresholds, severity overrides and ignores for named
//! resources.
//!
//! ```yaml
//! # upgrade-checks.yaml
//! thresholds:
//!   min_replicas: 2                 # WL001: fewer ready replicas than this is a warning
//!   long_running_pod_minutes: 15    # POD004: EKS evicts for 15 minutes, then fails the update
//!   certificate_expiry_days: 14     # CERT001
//!   warning_event_count: 5          # EVT001: repeated warnings of one reason
//! severity:
//!   WL003: warning                  # raise (or lower) a check's severity
//! ignore:
//!   - check: WL001
//!     resources: ["kube-system/*", "mlops/mlflow"]   # namespace/name, `*` matches anything
//!     reason: leader-elected controllers run one replica on purpose
//!   - check: EVT001                 # no resources: ignore the check entirely
//!     reason: noisy in dev
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checks::{Severity, registry};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML of the expected shape (unknown keys are refused, so typos do not go unseen).
    #[error("the check configuration does not parse: {0}")]
    Parse(#[source] serde_norway::Error),
    /// A check code that does not exist.
    #[error(
        "the check configuration names unknown check `{code}` (in `{section}`); known checks: {known}"
    )]
    UnknownCheck {
        /// The unknown code.
        code: String,
        /// Where it appeared (`severity`, `ignore`).
        section: &'static str,
        /// Every known code, comma-separated.
        known: String,
    },
    /// A threshold out of range.
    #[error("threshold `{name}` must be {rule}, not {value}")]
    Threshold {
        /// The threshold.
        name: &'static str,
        /// The value given.
        value: i64,
        /// What it must be.
        rule: &'static str,
    },
}

/// Numbers the checks compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// WL001: a Deployment/StatefulSet with fewer replicas than this loses service on drain.
    pub min_replicas: i32,
    /// POD004: pods of Jobs and workflows running longer than this outlive EKS's eviction
    /// window (managed node groups give up after 15 minutes).
    pub long_running_pod_minutes: u64,
    /// CERT001: certificates expiring within this many days.
    pub certificate_expiry_days: u32,
    /// EVT001: warning events of one reason on one object repeated at least this often.
    pub warning_event_count: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_replicas: 2,
            long_running_pod_minutes: 15,
            certificate_expiry_days: 14,
            warning_event_count: 5,
        }
    }
}

/// Ignore a check, for some resources or entirely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// The check code.
    pub check: String,
    /// `namespace/name` (or `name` for cluster-scoped objects) patterns; `*` matches any
    /// text. Empty = the whole check.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Why (shown in reports).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Severity per check code, replacing the default.
    pub severity: BTreeMap<String, Severity>,
    /// Ignore rules.
    pub ignore: Vec<IgnoreRule>,
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = serde_norway::from_str(text).map_err(ConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks codes and thresholds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let known = || {
            registry()
                .iter()
                .map(|c| c.code)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let is_known = |code: &str| registry().iter().any(|c| c.code == code);
        for code in self.severity.keys() {
            if !is_known(code) {
                return Err(ConfigError::UnknownCheck {
                    code: code.clone(),
                    section: "severity",
                    known: known(),
                });
            }
        }
        for rule in &self.ignore {
            if !is_known(&rule.check) {
                return Err(ConfigError::UnknownCheck {
                    code: rule.check.clone(),
                    section: "ignore",
                    known: known(),
                });
            }
        }
        if self.thresholds.min_replicas < 1 {
            return Err(ConfigError::Threshold {
                name: "min_replicas",
                value: i64::from(self.thresholds.min_replicas),
                rule: "at least 1",
            });
        }
        if self.thresholds.warning_event_count < 1 {
            return Err(ConfigError::Threshold {
                name: "warning_event_count",
                value: i64::from(self.thresholds.warning_event_count),
                rule: "at least 1",
            });
        }
        Ok(())
    }

    /// The ignore rule that silences `code` for `resource` (`namespace/name` or `name`), if any.
    pub fn ignored_by(&self, code: &str, resource: Option<&str>) -> Option<&IgnoreRule> {
        self.ignore.iter().find(|rule| {
            rule.check == code
                && (rule.resources.is_empty()
                    || resource.is_some_and(|r| rule.resources.iter().any(|p| glob(p, r))))
        })
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = rest.split('*').collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i == pieces.len() - 1;
        if last {
            return remaining.ends_with(piece);
        }
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("kube-system/*", "kube-system/coredns"));
        assert!(!glob("kube-system/*", "mlops/coredns"));
        assert!(glob("mlops/mlflow", "mlops/mlflow"));
        assert!(!glob("mlops/mlflow", "mlops/mlflow-db"));
        assert!(glob("*/mlflow-*", "mlops/mlflow-db"));
        assert!(glob("*", "anything/at-all"));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c-b"));
    }

    #[test]
    fn parses_the_documented_example_and_applies_ignores() {
        let text = "
thresholds: {min_replicas: 3}
severity: {WL003: warning}
ignore:
  - check: WL001
    resources: [\"kube-system/*\"]
    reason: leader elected
  - check: EVT001
";
        let config = Config::from_yaml(text).unwrap();
        assert_eq!(config.thresholds.min_replicas, 3);
        assert_eq!(
            config.thresholds.long_running_pod_minutes, 15,
            "defaults stay"
        );
        assert_eq!(config.severity["WL003"], Severity::Warning);
        assert!(
            config
                .ignored_by("WL001", Some("kube-system/coredns"))
                .is_some()
        );
        assert!(config.ignored_by("WL001", Some("mlops/mlflow")).is_none());
        assert!(config.ignored_by("WL001", None).is_none());
        assert!(config.ignored_by("EVT001", None).is_some());
        assert!(config.ignored_by("EVT001", Some("x/y")).is_some());
    }

    #[test]
    fn mistakes_are_named() {
        let err = Config::from_yaml("ignore: [{check: WL999}]").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown check `WL999` (in `ignore`)"),
            "{text}"
        );
        assert!(text.contains("SKEW001"), "{text}");
        let err = Config::from_yaml("thresholds: {min_replica: 2}").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `min_replica`"),
            "{err}"
        );
        let err = Config::from_yaml("thresholds: {min_replicas: 0}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "threshold `min_replicas` must be at least 1, not 0"
        );
        let err = Config::from_yaml("severity: {WL001: fatal}").unwrap_err();
        assert!(err.to_string().contains("unknown variant `fatal`"), "{err}");
    }
}
