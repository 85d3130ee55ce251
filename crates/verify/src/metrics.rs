//! Prometheus: PromQL metrics with tolerances, a baseline captured before an upgrade, and the
//! comparison after it.
//!
//! Each [`MetricSpec`] is an instant query that returns one number (aggregate with `sum`,
//! `max` or `histogram_quantile` so it does). Queries may use `${var}` placeholders filled from
//! [`Vars`]. The comparison of a value against its baseline is [`judge`]: past the `fail`
//! tolerance is a failure, past `warn` a warning, past `max` always a failure, and a query with
//! no data is a failure (or a warning, per metric) — never a pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::{Finding, Status};
use crate::{Error, Result};

/// Values for `${name}` placeholders in queries.
pub type Vars = BTreeMap<String, String>;

/// Which way is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// A rise is bad (error rates, latencies). The default.
    #[default]
    HigherIsWorse,
    /// A fall is bad (throughput, success ratios).
    LowerIsWorse,
}

/// How far a value may move the bad way from its baseline: the larger of an absolute amount
/// and a fraction of the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// In the metric's own unit, e.g. `0.01` (one percentage point of an error ratio).
    #[serde(default)]
    pub absolute: Option<f64>,
    /// A fraction of the baseline, e.g. `0.2` for 20%.
    #[serde(default)]
    pub relative: Option<f64>,
}

impl Tolerance {
    /// A tolerance of both kinds.
    pub fn new(absolute: f64, relative: f64) -> Self {
        Tolerance {
            absolute: Some(absolute),
            relative: Some(relative),
        }
    }

    /// The allowed move from `baseline`.
    pub fn allowed(&self, baseline: f64) -> f64 {
        let abs = self.absolute.unwrap_or(0.0);
        let rel = self.relative.unwrap_or(0.0) * baseline.abs();
        abs.max(rel)
    }

    fn describe(&self) -> String {
        match (self.absolute, self.relative) {
            (Some(a), Some(r)) => format!("max({}, {}%)", fmt_value(a), fmt_value(r * 100.0)),
            (Some(a), None) => fmt_value(a),
            (None, Some(r)) => format!("{}%", fmt_value(r * 100.0)),
            (None, None) => "0".into(),
        }
    }
}

/// One metric to capture and compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// The name findings carry, e.g. `kserve-error-rate`.
    pub name: String,
    /// An instant PromQL query returning one value; `${var}` placeholders allowed.
    pub query: String,
    /// Which way is bad (default `higher-is-worse`).
    #[serde(default)]
    pub direction: Direction,
    /// Past this move from the baseline: a warning (default 10%).
    #[serde(default = "default_warn")]
    pub warn: Tolerance,
    /// Past this move from the baseline: a failure (default 25%).
    #[serde(default = "default_fail")]
    pub fail: Tolerance,
    /// A ceiling (or a floor for `lower-is-worse`) that fails whatever the baseline was.
    #[serde(default)]
    pub limit: Option<f64>,
    /// What a query without data gives (default `fail`; `warn` for metrics of idle services).
    #[serde(default = "default_no_data")]
    pub no_data: Status,
}

fn default_warn() -> Tolerance {
    Tolerance {
        absolute: None,
        relative: Some(0.10),
    }
}

fn default_fail() -> Tolerance {
    Tolerance {
        absolute: None,
        relative: Some(0.25),
    }
}

fn default_no_data() -> Status {
    Status::Fail
}

impl MetricSpec {
    /// A higher-is-worse metric with the default tolerances.
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        MetricSpec {
            name: name.into(),
            query: query.into(),
            direction: Direction::HigherIsWorse,
            warn: default_warn(),
            fail: default_fail(),
            limit: None,
            no_data: Status::Fail,
        }
    }

    /// (builder) Tolerances.
    pub fn tolerances(mut self, warn: Tolerance, fail: Tolerance) -> Self {
        self.warn = warn;
        self.fail = fail;
        self
    }

    /// (builder) A limit that fails whatever the baseline.
    pub fn limit(mut self, limit: f64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The query with `vars` filled in.
    pub fn render(&self, vars: &Vars) -> Result<String> {
        render_template(&self.query, vars).map_err(|missing| {
            Error::Config(format!(
                "metric `{}` uses `${{{missing}}}`, which has no value; set prometheus.vars.{missing}",
                self.name
            ))
        })
    }

    /// The failing finding for a query that cannot be rendered.
    pub(crate) fn unrenderable(&self, error: &Error) -> Finding {
        Finding::new(
            &self.name,
            Status::Fail,
            &self.query,
            "a query with every var set",
            error.to_string(),
        )
    }

    /// The default metrics for a KServe InferenceService in serverless mode (Knative
    /// queue-proxy metrics): the 5xx ratio and the p95 latency in milliseconds. The ratio's
    /// numerator falls back to `vector(0)` (a service that never failed has no 5xx series);
    /// with no traffic at all the denominator is empty and the metric has no data. Uses the vars
    /// `namespace`, `revision` (default `${service}-predictor.*`) and `window`.
    pub fn kserve_defaults() -> Vec<MetricSpec> {
        let selector = r#"namespace="${namespace}",revision_name=~"${revision}""#;
        vec![
            MetricSpec {
                name: "kserve-error-rate".into(),
                query: format!(
                    r#"(sum(rate(revision_app_request_count{{{selector},response_code_class="5xx"}}[${{window}}])) or vector(0)) / sum(rate(revision_app_request_count{{{selector}}}[${{window}}]))"#
                ),
                warn: Tolerance::new(0.005, 0.5),
                fail: Tolerance::new(0.02, 1.0),
                limit: Some(0.05),
                ..MetricSpec::new("", "")
            },
            MetricSpec {
                name: "kserve-p95-latency-ms".into(),
                query: format!(
                    r#"histogram_quantile(0.95, sum by (le) (rate(revision_app_request_latencies_bucket{{{selector}}}[${{window}}])))"#
                ),
                warn: Tolerance::new(10.0, 0.2),
                fail: Tolerance::new(25.0, 0.5),
                ..MetricSpec::new("", "")
            },
        ]
    }

    /// The default metrics for the MLflow tracking server run with `--expose-prometheus`
    /// (its `mlflow_http_request_*` metrics, from prometheus-flask-exporter): the 5xx ratio and
    /// the p95 latency in seconds. Uses the vars
    /// `mlflow_selector` (default `namespace="mlops",service="mlflow"`) and `window`.
    pub fn mlflow_defaults() -> Vec<MetricSpec> {
        vec![
            MetricSpec {
                name: "mlflow-error-rate".into(),
                query: r#"(sum(rate(mlflow_http_request_total{${mlflow_selector},status=~"5.."}[${window}])) or vector(0)) / sum(rate(mlflow_http_request_total{${mlflow_selector}}[${window}]))"#.into(),
                warn: Tolerance::new(0.005, 0.5),
                fail: Tolerance::new(0.02, 1.0),
                limit: Some(0.05),
                no_data: Status::Warn,
                ..MetricSpec::new("", "")
            },
            MetricSpec {
                name: "mlflow-p95-latency-s".into(),
                query: r#"histogram_quantile(0.95, sum by (le) (rate(mlflow_http_request_duration_seconds_bucket{${mlflow_selector}}[${window}])))"#.into(),
                warn: Tolerance::new(0.05, 0.2),
                fail: Tolerance::new(0.2, 0.5),
                no_data: Status::Warn,
                ..MetricSpec::new("", "")
            },
        ]
    }
}

/// The default vars: `namespace=mlops`, `service=sklearn-iris`, `revision=${service}-predictor.*`,
/// `window=5m`, `mlflow_selector=namespace="mlops",service="mlflow"`.
pub fn default_vars() -> Vars {
    [
        ("namespace", "mlops"),
        ("service", "sklearn-iris"),
        ("revision", "${service}-predictor.*"),
        ("window", "5m"),
        ("mlflow_selector", r#"namespace="mlops",service="mlflow""#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Fills `${name}` placeholders (values may hold placeholders too); `Err` names a missing var.
fn render_template(template: &str, vars: &Vars) -> Result<String, String> {
    let mut text = template.to_string();
    for _ in 0..4 {
        if !text.contains("${") {
            return Ok(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(after.to_string());
            };
            let name = &after[..end];
            let value = vars.get(name).ok_or_else(|| name.to_string())?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        text = out;
    }
    Err("a var whose value refers back to itself".into())
}

/// Judges `current` against `baseline` for `spec`. Pure: the same numbers give the same finding.
/// `reference` names what the baseline is (`baseline`, `stable`).
pub fn judge(
    spec: &MetricSpec,
    target: &str,
    reference: &str,
    baseline: Option<f64>,
    current: Option<f64>,
) -> Finding {
    let finding = |status, expected: String, actual: String| {
        Finding::new(&spec.name, status, target, expected, actual)
    };
    let worse = match spec.direction {
        Direction::HigherIsWorse => "above",
        Direction::LowerIsWorse => "below",
    };
    let Some(current) = current else {
        return finding(
            spec.no_data,
            "a value".into(),
            "no data: the query matched no series or divided by zero (no traffic in the window?)"
                .into(),
        );
    };
    if let Some(limit) = spec.limit {
        let beyond = match spec.direction {
            Direction::HigherIsWorse => current > limit,
            Direction::LowerIsWorse => current < limit,
        };
        if beyond {
            return finding(
                Status::Fail,
                format!("not {worse} the limit {}", fmt_value(limit)),
                format!("{} ({worse} the limit)", fmt_value(current)),
            );
        }
    }
    let Some(baseline) = baseline else {
        return finding(
            Status::Warn,
            format!("a {reference} value to compare with"),
            format!(
                "{} with no {reference} value (the {reference} query had no data); only the limit was checked",
                fmt_value(current)
            ),
        );
    };
    let moved = match spec.direction {
        Direction::HigherIsWorse => current - baseline,
        Direction::LowerIsWorse => baseline - current,
    };
    let warn_at = spec.warn.allowed(baseline);
    let fail_at = spec.fail.allowed(baseline);
    let sign = match spec.direction {
        Direction::HigherIsWorse => '+',
        Direction::LowerIsWorse => '-',
    };
    let expected = format!(
        "{reference} {} {sign} warn {} / fail {}",
        fmt_value(baseline),
        spec.warn.describe(),
        spec.fail.describe()
    );
    let actual = format!(
        "{} ({} {} the {reference} {})",
        fmt_value(current),
        fmt_value(moved.abs()),
        if moved > 0.0 { worse } else { "within" },
        fmt_value(baseline)
    );
    let status = if moved > fail_at {
        Status::Fail
    } else if moved > warn_at {
        Status::Warn
    } else {
        Status::Pass
    };
    let actual = if status == Status::Pass {
        fmt_value(current)
    } else {
        actual
    };
    finding(status, expected, actual)
}

/// A number for people: at most four decimals, trailing zeros trimmed.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl Prometheus {
    /// The time limit of each query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for the server at `url` (e.g. `http://prometheus.monitoring.svc:9090`).
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self> {
        Ok(Prometheus {
            client: crate::http_client()?,
            url: url.into().trim_end_matches('/').to_string(),
            timeout,
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs an instant query. `Ok(None)`: no series, or `NaN` (a ratio over no traffic).
    /// `Err` says in words what went wrong (unreachable, an error status, a PromQL error, more
    /// than one series).
    pub async fn query(&self, promql: &str) -> Result<Option<f64>, String> {
        let endpoint = format!("{}/api/v1/query", self.url);
        let response = self
            .client
            .post(&endpoint)
            .form(&[("query", promql)])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Prometheus at {} is unreachable: {}",
                    self.url,
                    crate::probe::describe_error(&e, self.timeout)
                )
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| crate::probe::describe_error(&e, self.timeout))?;
        let parsed: Value = serde_json::from_str(&body).map_err(|_| {
            format!(
                "Prometheus answered {status} with a body that is not its API's JSON: {}",
                body.chars().take(200).collect::<String>()
            )
        })?;
        if parsed["status"] != "success" {
            return Err(format!(
                "Prometheus refused the query ({status}, {}): {}",
                parsed["errorType"].as_str().unwrap_or("error"),
                parsed["error"].as_str().unwrap_or("no error text")
            ));
        }
        let data = &parsed["data"];
        let value = match data["resultType"].as_str() {
            Some("scalar") => &data["result"],
            Some("vector") => {
                let result = data["result"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                match result {
                    [] => return Ok(None),
                    [one] => &one["value"],
                    many => {
                        return Err(format!(
                            "the query returned {} series; aggregate it to one (sum, max, histogram_quantile over `sum by (le)`)",
                            many.len()
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "the query returned a {} result; it must return one number (an instant vector of one series or a scalar)",
                    other.unwrap_or("missing")
                ));
            }
        };
        let text = value[1].as_str().unwrap_or_default();
        let number: f64 = text
            .parse()
            .map_err(|_| format!("Prometheus returned the value `{text}`, not a number"))?;
        Ok(if number.is_finite() {
            Some(number)
        } else {
            None
        })
    }
}

/// Values captured before an upgrade; saved as JSON between the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The Prometheus queried.
    pub prometheus: String,
    /// When.
    pub captured_at: jiff::Timestamp,
    /// Each metric's rendered query and value (`None`: no data).
    pub values: BTreeMap<String, BaselineValue>,
}

/// One metric's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineValue {
    /// The query as run.
    pub query: String,
    /// The value, `None` when the query had no data.
    pub value: Option<f64>,
}

impl Baseline {
    /// Queries every metric now. Fails on the first query Prometheus cannot answer: a baseline
    /// with holes would make the later comparison meaningless.
    pub async fn capture(prom: &Prometheus, metrics: &[MetricSpec], vars: &Vars) -> Result<Self> {
        let mut values = BTreeMap::new();
        for spec in metrics {
            let query = spec.render(vars)?;
            let value = prom
                .query(&query)
                .await
                .map_err(|problem| Error::Prometheus {
                    metric: spec.name.clone(),
                    query: query.clone(),
                    problem,
                })?;
            values.insert(spec.name.clone(), BaselineValue { query, value });
        }
        Ok(Baseline {
            prometheus: prom.url().to_string(),
            captured_at: jiff::Timestamp::now(),
            values,
        })
    }

    /// The baseline as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a baseline always serializes")
    }

    /// Reads a baseline written by [`to_json`](Self::to_json).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "the baseline is not a baseline file written by capture: {e}"
            ))
        })
    }

    /// Queries every metric again and judges it against this baseline. Never fails: an
    /// unreachable Prometheus or a broken query is a failing finding.
    pub async fn compare(
        &self,
        prom: &Prometheus,
        metrics: &[MetricSpec],
        vars: &Vars,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        for spec in metrics {
            let query = match spec.render(vars) {
                Ok(q) => q,
                Err(e) => {
                    findings.push(spec.unrenderable(&e));
                    continue;
                }
            };
            let Some(base) = self.values.get(&spec.name) else {
                findings.push(Finding::new(
                    &spec.name,
                    Status::Fail,
                    &query,
                    "a baseline value",
                    "the baseline has no value for this metric; capture the baseline with the same configuration",
                ));
                continue;
            };
            if base.query != query {
                findings.push(Finding::new(
                    &spec.name,
                    Status::Fail,
                    &query,
                    format!("the baseline's query `{}`", base.query),
                    "the query differs from the one the baseline was captured with; recapture the baseline",
                ));
                continue;
            }
            findings.push(match prom.query(&query).await {
                Ok(current) => judge(spec, &query, "baseline", base.value, current),
                Err(problem) => Finding::new(
                    &spec.name,
                    Status::Fail,
                    &query,
                    "a value from Prometheus",
                    problem,
                ),
            });
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MetricSpec {
        MetricSpec::new("err", "q").tolerances(Tolerance::new(0.01, 0.5), Tolerance::new(0.05, 1.0))
    }

    #[test]
    fn judging_against_a_baseline() {
        let s = spec();
        assert_eq!(
            judge(&s, "q", "baseline", Some(0.02), Some(0.025)).status,
            Status::Pass
        );
        assert_eq!(
            judge(&s, "q", "baseline", Some(0.02), Some(0.035)).status,
            Status::Warn
        );
        let f = judge(&s, "q", "baseline", Some(0.02), Some(0.1));
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.expected,
            "baseline 0.02 + warn max(0.01, 50%) / fail max(0.05, 100%)"
        );
        assert_eq!(f.actual, "0.1 (0.08 above the baseline 0.02)");
        // Better than the baseline passes.
        assert_eq!(
            judge(&s, "q", "baseline", Some(0.02), Some(0.0)).status,
            Status::Pass
        );
    }

    #[test]
    fn lower_is_worse_and_limits() {
        let mut s = spec();
        s.direction = Direction::LowerIsWorse;
        assert_eq!(
            judge(&s, "q", "baseline", Some(1.0), Some(2.0)).status,
            Status::Pass
        );
        assert_eq!(
            judge(&s, "q", "baseline", Some(1.0), Some(-0.5)).status,
            Status::Fail
        );
        let s = spec().limit(0.03);
        let f = judge(&s, "q", "baseline", Some(0.02), Some(0.031));
        assert_eq!(
            (f.status, f.actual.as_str()),
            (Status::Fail, "0.031 (above the limit)")
        );
    }

    #[test]
    fn missing_data_is_never_a_pass() {
        let s = spec();
        assert_eq!(
            judge(&s, "q", "baseline", Some(0.0), None).status,
            Status::Fail
        );
        assert_eq!(
            judge(&s, "q", "baseline", None, Some(0.0)).status,
            Status::Warn
        );
        let mut idle = spec();
        idle.no_data = Status::Warn;
        assert_eq!(
            judge(&idle, "q", "baseline", Some(0.0), None).status,
            Status::Warn
        );
    }

    #[test]
    fn templates() {
        let mut vars = default_vars();
        vars.insert("service".into(), "iris".into());
        assert_eq!(
            render_template("a{r=~\"${revision}\"}[${window}]", &vars).unwrap(),
            "a{r=~\"iris-predictor.*\"}[5m]"
        );
        assert_eq!(render_template("${nope}", &vars).unwrap_err(), "nope");
        let err = MetricSpec::new("m", "x[${nope}]")
            .render(&vars)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: metric `m` uses `${nope}`, which has no value; set prometheus.vars.nope"
        );
        for spec in MetricSpec::kserve_defaults()
            .iter()
            .chain(&MetricSpec::mlflow_defaults())
        {
            let q = spec.render(&vars).unwrap();
            assert!(!q.contains("${"), "{q}");
        }
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(fmt_value(0.02), "0.02");
        assert_eq!(fmt_value(12.0), "12");
        assert_eq!(fmt_value(0.123456), "0.1235");
        assert_eq!(fmt_value(-0.0), "0");
    }
}
