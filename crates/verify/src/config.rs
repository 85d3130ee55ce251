//! The verification configuration (YAML).
//!
//! ```yaml
//! probes:
//!   - name: iris-v1
//!     check: { type: kserve-v1, url: "http://sklearn-iris.mlops.svc", model: sklearn-iris }
//!     timeout: 5s
//!     retry: { attempts: 5, backoff: 1s, max_backoff: 10s }
//!   - name: mlflow-health
//!     check: { type: mlflow-health, url: "http://mlflow.mlops.svc:5000" }
//! prometheus:
//!   url: http://prometheus.monitoring.svc:9090
//!   vars: { namespace: mlops, service: sklearn-iris }
//!   # metrics: omitted = the KServe and MLflow defaults
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{MetricSpec, Vars, default_vars};
use crate::probe::{ProbeSpec, validate};
use crate::{Error, Result};

/// Everything a verification run needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Probes, run concurrently.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    /// Prometheus baseline and comparison; omitted = no metric checks.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
}

/// Where Prometheus is and what to compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server's base URL.
    pub url: String,
    /// Timeout of one query (default `10s`).
    #[serde(default = "default_query_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Values for `${var}` placeholders; merged over [`default_vars`].
    #[serde(default)]
    pub vars: Vars,
    /// The metrics; omitted = [`MetricSpec::kserve_defaults`] and [`MetricSpec::mlflow_defaults`].
    #[serde(default = "default_metrics")]
    pub metrics: Vec<MetricSpec>,
}

impl PrometheusConfig {
    /// A configuration with the default vars and metrics.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusConfig {
            url: url.into(),
            timeout: default_query_timeout(),
            vars: Vars::new(),
            metrics: default_metrics(),
        }
    }

    /// The vars queries are rendered with: the defaults, overridden by the configured ones.
    pub fn effective_vars(&self) -> Vars {
        let mut vars = default_vars();
        vars.extend(self.vars.clone());
        vars
    }
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_metrics() -> Vec<MetricSpec> {
    let mut metrics = MetricSpec::kserve_defaults();
    metrics.extend(MetricSpec::mlflow_defaults());
    metrics
}

impl VerifyConfig {
    /// Parses and validates YAML: unknown keys, duplicate names, bad URLs and queries with
    /// unset vars are refused with the fix.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let config: VerifyConfig = serde_norway::from_str(text).map_err(|e| {
            Error::Config(format!(
                "the verification configuration does not parse: {e}"
            ))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what parsing cannot.
    pub fn validate(&self) -> Result<()> {
        validate(&self.probes)?;
        if let Some(prom) = &self.prometheus {
            let scheme_ok = reqwest::Url::parse(&prom.url)
                .map(|u| matches!(u.scheme(), "http" | "https"))
                .unwrap_or(false);
            if !scheme_ok {
                return Err(Error::Config(format!(
                    "prometheus.url `{}` is not a URL; write it in full, e.g. http://prometheus.monitoring.svc:9090",
                    prom.url
                )));
            }
            let vars = prom.effective_vars();
            let mut seen = std::collections::BTreeSet::new();
            for metric in &prom.metrics {
                if !seen.insert(metric.name.as_str()) {
                    return Err(Error::Config(format!(
                        "two metrics are named `{}`; give each metric its own name",
                        metric.name
                    )));
                }
                metric.render(&vars)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Check;

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let text = r#"
probes:
  - name: iris-v1
    check: { type: kserve-v1, url: "http://sklearn-iris.mlops.svc", model: sklearn-iris }
    timeout: 5s
    retry: { attempts: 5, backoff: 1s, max_backoff: 10s }
  - name: mlflow-health
    check: { type: mlflow-health, url: "http://mlflow.mlops.svc:5000" }
prometheus:
  url: http://prometheus.monitoring.svc:9090
  vars: { namespace: mlops, service: sklearn-iris }
"#;
        let config = VerifyConfig::from_yaml(text).unwrap();
        assert_eq!(config.probes.len(), 2);
        assert_eq!(
            config.probes[0].check,
            Check::kserve_v1("http://sklearn-iris.mlops.svc", "sklearn-iris")
        );
        assert_eq!(config.probes[0].timeout, Duration::from_secs(5));
        assert_eq!(config.probes[0].retry.attempts, 5);
        assert_eq!(config.probes[1].retry, crate::probe::Retry::default());
        let prom = config.prometheus.unwrap();
        assert_eq!(prom.metrics.len(), 4);
        assert_eq!(prom.effective_vars()["window"], "5m");
    }

    #[test]
    fn mistakes_are_refused_with_the_fix() {
        let err = |text: &str| VerifyConfig::from_yaml(text).unwrap_err().to_string();
        insta::assert_snapshot!(err("probes:\n  - name: a\n    check: { type: kserve-v1, url: x, model: m, extra: 1 }\n"), @"configuration: the verification configuration does not parse: probes[0]: unknown field `extra`, expected one of `url`, `model`, `instances` at line 2 column 5");
        insta::assert_snapshot!(err("probes:\n  - name: a\n    check: { type: grpc, url: x }\n"), @"configuration: the verification configuration does not parse: probes[0].check.type: unknown variant `grpc`, expected one of `kserve-v1`, `kserve-v2`, `mlflow-health`, `mlflow-experiment`, `http` at line 3 column 20");
        insta::assert_snapshot!(err("probes:\n  - name: a\n    check: { type: mlflow-health, url: mlflow:5000 }\n"), @"configuration: probe `a`: `mlflow:5000/health` is not a URL; write it in full, e.g. http://mlflow.mlops.svc:5000");
        insta::assert_snapshot!(err("probes:\n  - name: a\n    timeout: 5 parsecs\n    check: { type: mlflow-health, url: http://m }\n"), @"configuration: the verification configuration does not parse: probes[0]: `5 parsecs` has the unknown unit `parsecs`; use ms, s, m or h at line 2 column 5");
        insta::assert_snapshot!(err("prometheus:\n  url: http://p:9090\n  metrics:\n    - name: x\n      query: up{job=\"${job}\"}\n"), @"configuration: metric `x` uses `${job}`, which has no value; set prometheus.vars.job");
    }
}
