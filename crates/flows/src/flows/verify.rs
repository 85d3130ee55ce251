//! Post-upgrade verification: a Prometheus baseline before the upgrade; after it, the probes
//! and the comparison with the baseline. Read only.

use std::path::Path;

use upgrade_verify::{Baseline, Prometheus, Report, VerifyConfig};

use crate::error::{FlowError, Result};

/// Reads and checks a verification config.
pub fn read_config(path: &Path) -> Result<VerifyConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FlowError::invalid(
            "config",
            format!(
                "cannot read the verification config {}: {e}",
                path.display()
            ),
            "fix the path",
        )
    })?;
    let config = VerifyConfig::from_yaml(&text).map_err(|e| {
        FlowError::invalid(
            "config",
            format!("verification config {}: {e}", path.display()),
            "",
        )
    })?;
    config.validate().map_err(|e| {
        FlowError::invalid(
            "config",
            format!("verification config {}: {e}", path.display()),
            "",
        )
    })?;
    Ok(config)
}

/// Captures the baseline of the configured metrics and writes it to `out`.
pub async fn baseline(config: &VerifyConfig, out: &Path) -> Result<Baseline> {
    let prom_config = config.prometheus.as_ref().ok_or_else(|| {
        FlowError::invalid(
            "config",
            "the verification config has no `prometheus` section",
            "add one (url, metrics) to capture a baseline",
        )
    })?;
    let prom = Prometheus::new(&prom_config.url, prom_config.timeout).map_err(FlowError::input)?;
    let baseline = Baseline::capture(&prom, &prom_config.metrics, &prom_config.effective_vars())
        .await
        .map_err(|e| FlowError::failed("capture the baseline", e))?;
    upgrade_core::atomic_file::write(out, baseline.to_json().as_bytes())
        .map_err(|e| FlowError::failed(format!("write {}", out.display()), e))?;
    Ok(baseline)
}

/// Runs the probes and compares the metrics with `baseline` (when given).
pub async fn check(config: &VerifyConfig, baseline: Option<&Path>) -> Result<Report> {
    let baseline = match baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                FlowError::invalid(
                    "baseline",
                    format!("cannot read {}: {e}", path.display()),
                    "fix the path",
                )
            })?;
            Some(Baseline::from_json(&text).map_err(|e| {
                FlowError::invalid("baseline", format!("{}: {e}", path.display()), "")
            })?)
        }
        None => None,
    };
    upgrade_verify::verify(config, baseline.as_ref())
        .await
        .map_err(FlowError::input)
}
