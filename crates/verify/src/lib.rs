//! Post-upgrade verification for the MLOps platform: does the upgraded platform still serve?
//!
//! - [`probe`]: KServe v1 (`/v1/models/NAME:predict`) and v2 (`/v2/models/NAME/infer`)
//!   inference with a sample payload and an expected response shape, MLflow `/health` and an
//!   experiment read, and any HTTP request from the configuration — each with a per-attempt
//!   timeout and retries with backoff.
//! - [`metrics`]: PromQL metrics (defaults for KServe and MLflow) captured as a [`Baseline`]
//!   before an upgrade and compared after it with absolute and relative tolerances.
//! - [`canary`]: the KServe canary rollout (storageUri and canaryTrafficPercent in steps,
//!   readiness, canary-vs-stable analysis, promotion or automatic rollback), every step
//!   reported to a recorder.
//!
//! Every problem — a bad response, a timeout, a refused connection, an unreachable
//! Prometheus, a query with no data — is a failing [`Finding`], never a pass. A [`Report`]'s
//! exit code follows upgrade-core's: `0` passed, `3` warnings, `4` failures.
//!
//! ```no_run
//! use upgrade_verify::{Baseline, Prometheus, VerifyConfig, verify};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = VerifyConfig::from_yaml(&std::fs::read_to_string("verify.yaml")?)?;
//! let prom_config = config.prometheus.as_ref().expect("the example config has prometheus");
//! let prom = Prometheus::new(&prom_config.url, prom_config.timeout)?;
//!
//! // Before the upgrade.
//! let baseline = Baseline::capture(&prom, &prom_config.metrics, &prom_config.effective_vars()).await?;
//! std::fs::write("baseline.json", baseline.to_json())?;
//!
//! // ... upgrade ...
//!
//! // After it: probes and the comparison.
//! let report = verify(&config, Some(&baseline)).await?;
//! print!("{}", report.text());
//! std::process::exit(i32::from(report.exit_code()));
//! # }
//! ```

pub mod canary;
pub mod config;
pub mod duration;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod step;

pub use config::{PrometheusConfig, VerifyConfig};
pub use metrics::{Baseline, MetricSpec, Prometheus, Tolerance};
pub use probe::{Check, ProbeSpec, Prober, Retry};
pub use report::{Finding, Report, Status};

/// This crate's errors. Probe and metric problems are findings, not errors; these are the
/// problems that stop a run from starting or going on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration (or a plan, or a baseline file) is wrong; the message says how to fix it.
    #[error("configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Prometheus could not answer while capturing a baseline.
    #[error("capturing the baseline of `{metric}` failed: {problem}\nquery: {query}")]
    Prometheus {
        /// The metric.
        metric: String,
        /// The query as sent.
        query: String,
        /// What went wrong, in words.
        problem: String,
    },
    /// A Kubernetes object the run needs is missing or incomplete.
    #[error("{0}")]
    NotFound(String),
    /// A Kubernetes API call failed.
    #[error("could not {action}")]
    Kube {
        /// What was being done, e.g. `patch InferenceService mlops/iris`.
        action: String,
        /// The API error (boxed: it is large and rare).
        #[source]
        source: Box<kube::Error>,
    },
    /// The canary could not finish (e.g. promoted but never ready).
    #[error("{0}")]
    Canary(String),
    /// The recorder refused an event, so the rollout stopped.
    #[error("could not record a canary step; the rollout stopped")]
    Record {
        /// The recorder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("upgrade-verify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Error::HttpClient)
}

/// Runs every probe of `config` and, when `baseline` is given and Prometheus is configured,
/// compares the metrics against it. Findings come in that order.
pub async fn verify(config: &VerifyConfig, baseline: Option<&Baseline>) -> Result<Report> {
    config.validate()?;
    let prober = Prober::new()?;
    let mut report = Report::new(prober.run_all(&config.probes).await);
    match (&config.prometheus, baseline) {
        (Some(prom_config), Some(baseline)) => {
            let prom = Prometheus::new(&prom_config.url, prom_config.timeout)?;
            report.extend(
                baseline
                    .compare(&prom, &prom_config.metrics, &prom_config.effective_vars())
                    .await,
            );
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "a baseline was given but the configuration has no `prometheus` section to compare it with".into(),
            ));
        }
        _ => {}
    }
    Ok(report)
}
