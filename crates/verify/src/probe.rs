//! HTTP probes: KServe v1 and v2 inference, MLflow health and experiment reads, and any HTTP
//! request from the configuration, each with a per-attempt timeout and retries with backoff.
//!
//! A probe passes when one attempt gets the expected response. Every failure — a bad status,
//! a response of the wrong shape, a timeout, a refused connection — is retried (a pod that is
//! still starting after an upgrade recovers), and the last attempt's failure becomes the
//! finding: the probe, the URL, what was expected and what came back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::report::{Finding, Status};
use crate::{Error, Result};

/// One probe from the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// The name findings carry, e.g. `iris-v1`.
    pub name: String,
    /// What to request and what to expect.
    pub check: Check,
    /// Timeout of one attempt (default `10s`).
    #[serde(default = "default_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Retries with backoff (default 3 attempts, 500ms doubling up to 5s).
    #[serde(default)]
    pub retry: Retry,
}

impl ProbeSpec {
    /// A probe with the default timeout and retries.
    pub fn new(name: impl Into<String>, check: Check) -> Self {
        ProbeSpec {
            name: name.into(),
            check,
            timeout: default_timeout(),
            retry: Retry::default(),
        }
    }

    /// (builder) Per-attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// (builder) Retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Retries with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each attempt.
    #[serde(with = "crate::duration")]
    pub backoff: Duration,
    /// The longest wait between attempts.
    #[serde(with = "crate::duration")]
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// One attempt, no retries.
    pub fn once() -> Self {
        Retry {
            attempts: 1,
            ..Retry::default()
        }
    }

    /// The wait after attempt `n` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What a probe requests and what it expects back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// KServe v1: `POST {url}/v1/models/{model}:predict` with `{"instances": ...}`; expects
    /// 200 and `predictions`, an array with one item per instance.
    KserveV1 {
        /// The model server's base URL, e.g. `http://sklearn-iris.mlops.svc`.
        url: String,
        /// The model name.
        model: String,
        /// The instances (default: one iris flower, `[[5.1, 3.5, 1.4, 0.2]]`).
        #[serde(default = "default_v1_instances")]
        instances: Value,
    },
    /// KServe v2 (Open Inference Protocol): `POST {url}/v2/models/{model}/infer` with
    /// `{"inputs": ...}`; expects 200, `model_name` = the model, and `outputs`: a non-empty
    /// array of tensors whose `data` length matches their `shape`.
    KserveV2 {
        /// The model server's base URL.
        url: String,
        /// The model name.
        model: String,
        /// The input tensors (default: one FP32 tensor of shape `[1, 4]`, an iris flower).
        #[serde(default = "default_v2_inputs")]
        inputs: Value,
    },
    /// MLflow: `GET {url}/health`; expects 200 and the body `OK`.
    MlflowHealth {
        /// The tracking server's base URL, e.g. `http://mlflow.mlops.svc:5000`.
        url: String,
    },
    /// MLflow: reads an experiment by name through the REST API
    /// (`GET {url}/api/2.0/mlflow/experiments/get-by-name`); expects it to exist and be active.
    MlflowExperiment {
        /// The tracking server's base URL.
        url: String,
        /// The experiment name.
        experiment: String,
    },
    /// Any HTTP request.
    Http {
        /// The full URL.
        url: String,
        /// The method (default `GET`).
        #[serde(default = "default_method")]
        method: String,
        /// Request headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A JSON request body (sent with `Content-Type: application/json`).
        #[serde(default)]
        json: Option<Value>,
        /// The expected status (default 200).
        #[serde(default = "default_status")]
        status: u16,
        /// A substring the body must contain.
        #[serde(default)]
        body_contains: Option<String>,
        /// A JSON pointer (RFC 6901, e.g. `/status/ready`) that must exist in the JSON body.
        #[serde(default)]
        json_pointer: Option<String>,
        /// The value the pointer must hold (any value when omitted).
        #[serde(default)]
        json_equals: Option<Value>,
    },
}

fn default_v1_instances() -> Value {
    json!([[5.1, 3.5, 1.4, 0.2]])
}

fn default_v2_inputs() -> Value {
    json!([{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}])
}

fn default_method() -> String {
    "GET".into()
}

fn default_status() -> u16 {
    200
}

impl Check {
    /// A KServe v1 predict of one iris flower.
    pub fn kserve_v1(url: impl Into<String>, model: impl Into<String>) -> Self {
        Check::KserveV1 {
            url: url.into(),
            model: model.into(),
            instances: default_v1_instances(),
        }
    }

    /// A KServe v2 infer of one iris flower.
    pub fn kserve_v2(url: impl Into<String>, model: impl Into<String>) -> Self {
        Check::KserveV2 {
            url: url.into(),
            model: model.into(),
            inputs: default_v2_inputs(),
        }
    }

    /// MLflow's `/health`.
    pub fn mlflow_health(url: impl Into<String>) -> Self {
        Check::MlflowHealth { url: url.into() }
    }

    /// An MLflow experiment read by name.
    pub fn mlflow_experiment(url: impl Into<String>, experiment: impl Into<String>) -> Self {
        Check::MlflowExperiment {
            url: url.into(),
            experiment: experiment.into(),
        }
    }

    /// A `GET` expecting 200.
    pub fn http_get(url: impl Into<String>) -> Self {
        Check::Http {
            url: url.into(),
            method: default_method(),
            headers: BTreeMap::new(),
            json: None,
            status: default_status(),
            body_contains: None,
            json_pointer: None,
            json_equals: None,
        }
    }

    /// The request this check sends.
    pub(crate) fn request(&self) -> Request {
        let base = |url: &str| url.trim_end_matches('/').to_string();
        match self {
            Check::KserveV1 {
                url,
                model,
                instances,
            } => Request::post(
                format!("{}/v1/models/{model}:predict", base(url)),
                json!({ "instances": instances }),
            ),
            Check::KserveV2 { url, model, inputs } => Request::post(
                format!("{}/v2/models/{model}/infer", base(url)),
                json!({ "inputs": inputs }),
            ),
            Check::MlflowHealth { url } => Request::get(format!("{}/health", base(url))),
            Check::MlflowExperiment { url, experiment } => Request::get(format!(
                "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
                base(url),
                encode_query_value(experiment)
            )),
            Check::Http {
                url,
                method,
                headers,
                json,
                ..
            } => Request {
                method: method.to_ascii_uppercase(),
                url: url.clone(),
                headers: headers.clone(),
                json: json.clone(),
            },
        }
    }

    /// What a pass needs, for findings.
    pub fn expectation(&self) -> String {
        match self {
            Check::KserveV1 { instances, .. } => match instances.as_array() {
                Some(a) => format!(
                    "200 with `predictions`: an array of {} item{}",
                    a.len(),
                    plural(a.len())
                ),
                None => "200 with `predictions`: an array".into(),
            },
            Check::KserveV2 { model, .. } => format!(
                "200 with `model_name` `{model}` and `outputs`: tensors whose data length matches their shape"
            ),
            Check::MlflowHealth { .. } => "200 with body `OK`".into(),
            Check::MlflowExperiment { experiment, .. } => {
                format!("200 with experiment `{experiment}` in lifecycle stage `active`")
            }
            Check::Http {
                status,
                body_contains,
                json_pointer,
                json_equals,
                ..
            } => {
                let mut parts = vec![format!("status {status}")];
                if let Some(s) = body_contains {
                    parts.push(format!("a body containing `{s}`"));
                }
                match (json_pointer, json_equals) {
                    (Some(p), Some(v)) => parts.push(format!("JSON `{p}` = {v}")),
                    (Some(p), None) => parts.push(format!("JSON `{p}` present")),
                    _ => {}
                }
                parts.join(", ")
            }
        }
    }

    /// Checks a response (status and body); `Err` says what was wrong with it.
    fn judge(&self, status: u16, body: &str) -> Result<String, String> {
        let expect_json = |status_wanted: u16| -> Result<Value, String> {
            if status != status_wanted {
                return Err(format!("status {status}, body {}", snippet(body)));
            }
            serde_json::from_str(body).map_err(|e| {
                format!(
                    "status {status}, a body that is not JSON ({e}): {}",
                    snippet(body)
                )
            })
        };
        match self {
            Check::KserveV1 { instances, .. } => {
                let v = expect_json(200)?;
                let Some(predictions) = v.get("predictions").and_then(Value::as_array) else {
                    return Err(format!(
                        "200 without a `predictions` array: {}",
                        snippet(body)
                    ));
                };
                if let Some(want) = instances.as_array().map(Vec::len)
                    && predictions.len() != want
                {
                    return Err(format!(
                        "200 with {} prediction{} for {want} instance{}: {}",
                        predictions.len(),
                        plural(predictions.len()),
                        plural(want),
                        snippet(body)
                    ));
                }
                Ok(format!(
                    "200 predictions {}",
                    compact(&Value::Array(predictions.clone()))
                ))
            }
            Check::KserveV2 { model, .. } => {
                let v = expect_json(200)?;
                if v.get("model_name").and_then(Value::as_str) != Some(model.as_str()) {
                    return Err(format!(
                        "200 with `model_name` {}, not `{model}`",
                        v.get("model_name")
                            .map(compact)
                            .unwrap_or_else(|| "missing".into())
                    ));
                }
                let outputs = v
                    .get("outputs")
                    .and_then(Value::as_array)
                    .filter(|o| !o.is_empty());
                let Some(outputs) = outputs else {
                    return Err(format!(
                        "200 without a non-empty `outputs` array: {}",
                        snippet(body)
                    ));
                };
                for out in outputs {
                    check_tensor(out)?;
                }
                let first = &outputs[0];
                Ok(format!(
                    "200 {} output{}, `{}` data {}",
                    outputs.len(),
                    plural(outputs.len()),
                    first.get("name").and_then(Value::as_str).unwrap_or("?"),
                    compact(&first["data"])
                ))
            }
            Check::MlflowHealth { .. } => {
                if status == 200 && body.trim() == "OK" {
                    Ok("200 `OK`".into())
                } else {
                    Err(format!("status {status}, body {}", snippet(body)))
                }
            }
            Check::MlflowExperiment { experiment, .. } => {
                let v = expect_json(200)?;
                let exp = &v["experiment"];
                if exp["name"].as_str() != Some(experiment.as_str()) {
                    return Err(format!(
                        "200 without experiment `{experiment}`: {}",
                        snippet(body)
                    ));
                }
                let stage = exp["lifecycle_stage"].as_str().unwrap_or("missing");
                if stage != "active" {
                    return Err(format!(
                        "experiment `{experiment}` is in lifecycle stage `{stage}`"
                    ));
                }
                Ok(format!(
                    "200 experiment `{experiment}` (id {}) active",
                    exp["experiment_id"].as_str().unwrap_or("?")
                ))
            }
            Check::Http {
                status: want,
                body_contains,
                json_pointer,
                json_equals,
                ..
            } => {
                if status != *want {
                    return Err(format!("status {status}, body {}", snippet(body)));
                }
                if let Some(s) = body_contains
                    && !body.contains(s.as_str())
                {
                    return Err(format!(
                        "status {status}, a body without `{s}`: {}",
                        snippet(body)
                    ));
                }
                if let Some(pointer) = json_pointer {
                    let v = expect_json(*want)?;
                    let Some(found) = v.pointer(pointer) else {
                        return Err(format!(
                            "status {status}, JSON without `{pointer}`: {}",
                            snippet(body)
                        ));
                    };
                    if let Some(wanted) = json_equals
                        && found != wanted
                    {
                        return Err(format!(
                            "status {status}, JSON `{pointer}` = {}",
                            compact(found)
                        ));
                    }
                    return Ok(format!("status {status}, `{pointer}` = {}", compact(found)));
                }
                Ok(format!("status {status}"))
            }
        }
    }
}

fn check_tensor(out: &Value) -> Result<(), String> {
    let name = out.get("name").and_then(Value::as_str).unwrap_or("?");
    let shape: Option<Vec<u64>> = out
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|s| s.iter().map(Value::as_u64).collect());
    let Some(shape) = shape else {
        return Err(format!(
            "output `{name}` has no integer `shape`: {}",
            compact(out)
        ));
    };
    if out.get("datatype").and_then(Value::as_str).is_none() {
        return Err(format!("output `{name}` has no `datatype`"));
    }
    let Some(data) = out.get("data").and_then(Value::as_array) else {
        return Err(format!("output `{name}` has no `data` array"));
    };
    let want: u64 = shape.iter().product();
    let got = flat_len(data) as u64;
    if got != want {
        return Err(format!(
            "output `{name}` has shape {shape:?} ({want} values) but {got} data values"
        ));
    }
    Ok(())
}

fn flat_len(values: &[Value]) -> usize {
    values
        .iter()
        .map(|v| v.as_array().map_or(1, |a| flat_len(a)))
        .sum()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    truncate(&s, 120)
}

fn snippet(body: &str) -> String {
    if body.trim().is_empty() {
        return "(empty)".into();
    }
    format!("`{}`", truncate(body.trim(), 200))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

fn encode_query_value(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) url: String,
    headers: BTreeMap<String, String>,
    json: Option<Value>,
}

impl Request {
    fn get(url: String) -> Self {
        Request {
            method: "GET".into(),
            url,
            headers: BTreeMap::new(),
            json: None,
        }
    }

    fn post(url: String, body: Value) -> Self {
        Request {
            method: "POST".into(),
            url,
            headers: BTreeMap::new(),
            json: Some(body),
        }
    }
}

/// Runs probes over one shared HTTP client.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    /// A prober with its own HTTP client (rustls).
    pub fn new() -> Result<Self> {
        Ok(Prober {
            client: crate::http_client()?,
        })
    }

    /// A prober over a client the caller configured (proxies, CA certificates, ...).
    pub fn with_client(client: reqwest::Client) -> Self {
        Prober { client }
    }

    /// Runs one probe with its retries; the finding is the first passing attempt or the last
    /// failing one.
    pub async fn run(&self, spec: &ProbeSpec) -> Finding {
        let request = spec.check.request();
        let target = format!("{} {}", request.method, request.url);
        let expected = spec.check.expectation();
        let attempts = spec.retry.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let started = Instant::now();
            match self.attempt(&request, spec.timeout).await {
                Ok((status, body)) => match spec.check.judge(status, &body) {
                    Ok(actual) => {
                        tracing::debug!(probe = %spec.name, attempt, elapsed = ?started.elapsed(), "probe passed");
                        let retried = if attempt > 1 {
                            format!(" (attempt {attempt} of {attempts})")
                        } else {
                            String::new()
                        };
                        return Finding::new(
                            &spec.name,
                            Status::Pass,
                            target,
                            expected,
                            format!("{actual}{retried}"),
                        );
                    }
                    Err(why) => last = why,
                },
                Err(why) => last = why,
            }
            tracing::info!(probe = %spec.name, attempt, attempts, problem = %last, "probe attempt failed");
            if attempt < attempts {
                tokio::time::sleep(spec.retry.delay_after(attempt)).await;
            }
        }
        let actual = if attempts > 1 {
            format!("{last} (after {attempts} attempts)")
        } else {
            last
        };
        Finding::new(&spec.name, Status::Fail, target, expected, actual)
    }

    /// Runs every probe, concurrently, keeping their order in the result.
    pub async fn run_all(&self, specs: &[ProbeSpec]) -> Vec<Finding> {
        let mut set = tokio::task::JoinSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let prober = self.clone();
            let spec = spec.clone();
            set.spawn(async move { (i, prober.run(&spec).await) });
        }
        let mut results: Vec<Option<Finding>> = vec![None; specs.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, finding)) => results[i] = Some(finding),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        results.into_iter().flatten().collect()
    }

    async fn attempt(&self, request: &Request, timeout: Duration) -> Result<(u16, String), String> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", request.method))?;
        // `${env:NAME}` secrets (a password in the URL, a token header) are resolved here
        // only; the probe as written, and what is reported, keep the reference.
        let mut secrets = Vec::new();
        let mut resolve = |text: &str| {
            upgrade_core::redact::expand_env_refs(text)
                .map(|expanded| {
                    secrets.extend(expanded.secrets);
                    expanded.text
                })
                .map_err(|e| e.to_string())
        };
        let url = resolve(&request.url)?;
        let mut headers = Vec::with_capacity(request.headers.len());
        for (k, v) in &request.headers {
            headers.push((k.clone(), resolve(v)?));
        }
        let scrub = |why: String| {
            let redactor = upgrade_core::redact::Redactor::for_command(&[], &secrets);
            redactor.scrub(&why)
        };
        let mut builder = self.client.request(method, &url).timeout(timeout);
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = &request.json {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| scrub(describe_error(&e, timeout)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| scrub(describe_error(&e, timeout)))?;
        Ok((status, scrub(body)))
    }
}

/// Says what went wrong with a request in words a person can act on.
pub(crate) fn describe_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!(
            "no response within {} (timed out; raise the probe's timeout if the service is just slow)",
            crate::duration::render(timeout)
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connection refused (is the server running and the URL right?)".into();
                }
                std::io::ErrorKind::ConnectionReset => {
                    return "connection reset by the server".into();
                }
                _ => {}
            }
        }
        source = e.source();
    }
    if error.is_builder() {
        return format!("bad request URL: {error}");
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    if error.is_connect() {
        format!("could not connect: {text}")
    } else {
        text
    }
}

/// Checks a probe list for mistakes a run would only find late (unknown methods, bad URLs).
pub fn validate(specs: &[ProbeSpec]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for spec in specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(Error::Config(format!(
                "two probes are named `{}`; give each probe its own name",
                spec.name
            )));
        }
        let request = spec.check.request();
        if reqwest::Method::from_bytes(request.method.as_bytes()).is_err() {
            return Err(Error::Config(format!(
                "probe `{}`: `{}` is not an HTTP method",
                spec.name, request.method
            )));
        }
        let scheme_ok = reqwest::Url::parse(&request.url)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !scheme_ok {
            return Err(Error::Config(format!(
                "probe `{}`: `{}` is not a URL; write it in full, e.g. http://mlflow.mlops.svc:5000",
                spec.name, request.url
            )));
        }
        if spec.retry.attempts == 0 {
            return Err(Error::Config(format!(
                "probe `{}`: retry.attempts is 0; it must be at least 1",
                spec.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_shape() {
        let check = Check::kserve_v1("http://x", "iris");
        assert!(check.judge(200, r#"{"predictions":[0]}"#).is_ok());
        let e = check.judge(200, r#"{"predictions":[0,1]}"#).unwrap_err();
        assert_eq!(
            e,
            "200 with 2 predictions for 1 instance: `{\"predictions\":[0,1]}`"
        );
        let e = check.judge(200, r#"{"outputs":[0]}"#).unwrap_err();
        assert!(e.contains("without a `predictions` array"), "{e}");
        let e = check.judge(500, "boom").unwrap_err();
        assert_eq!(e, "status 500, body `boom`");
        let e = check.judge(200, "<html>").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn v2_shape() {
        let check = Check::kserve_v2("http://x", "iris");
        let good = r#"{"model_name":"iris","outputs":[{"name":"output-0","shape":[1],"datatype":"INT64","data":[0]}]}"#;
        assert!(check.judge(200, good).is_ok());
        let wrong_len = r#"{"model_name":"iris","outputs":[{"name":"o","shape":[2],"datatype":"INT64","data":[0]}]}"#;
        assert!(
            check
                .judge(200, wrong_len)
                .unwrap_err()
                .contains("shape [2] (2 values) but 1 data values")
        );
        let wrong_model = r#"{"model_name":"other","outputs":[]}"#;
        assert!(
            check
                .judge(200, wrong_model)
                .unwrap_err()
                .contains("not `iris`")
        );
        let no_outputs = r#"{"model_name":"iris","outputs":[]}"#;
        assert!(
            check
                .judge(200, no_outputs)
                .unwrap_err()
                .contains("non-empty `outputs`")
        );
    }

    #[test]
    fn http_pointer_and_substring() {
        let Check::Http { .. } = Check::http_get("http://x") else {
            unreachable!()
        };
        let check = Check::Http {
            url: "http://x".into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            json: None,
            status: 200,
            body_contains: Some("status".into()),
            json_pointer: Some("/status/ready".into()),
            json_equals: Some(json!(true)),
        };
        assert!(check.judge(200, r#"{"status":{"ready":true}}"#).is_ok());
        assert!(
            check
                .judge(200, r#"{"status":{"ready":false}}"#)
                .unwrap_err()
                .contains("= false")
        );
        assert!(
            check
                .judge(200, r#"{"status":{}}"#)
                .unwrap_err()
                .contains("JSON without `/status/ready`")
        );
        assert!(
            check
                .judge(200, r#"{"state":1}"#)
                .unwrap_err()
                .contains("a body without `status`")
        );
        assert!(
            check
                .judge(503, r#"{"status":{"ready":true}}"#)
                .unwrap_err()
                .contains("status 503")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry::default();
        assert_eq!(r.delay_after(1), Duration::from_millis(500));
        assert_eq!(r.delay_after(2), Duration::from_secs(1));
        assert_eq!(r.delay_after(5), Duration::from_secs(5));
    }

    #[test]
    fn experiment_names_are_encoded() {
        let Request { url, .. } = Check::mlflow_experiment("http://m/", "a b&c").request();
        assert_eq!(
            url,
            "http://m/api/2.0/mlflow/experiments/get-by-name?experiment_name=a%20b%26c"
        );
    }
}
