//! Seed 001's test of the new cluster before traffic moves: green's health checks (nodes,
//! pods, claims, deployments, certificates, InferenceServices, Argo CD), a predict call for
//! every InferenceService on green, and the probes the user names (MLflow health and an
//! experiment read, smoke tests). Read only; the outcome is recorded in the state folder, and
//! [`super::plan_switch`] refuses to move traffic without a passing one that is newer than
//! the last change a blue/green stage made to green.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use upgrade_verify::{Check, Finding, Report, Status, VerifyConfig};

use super::transfer::{GreenCluster, connect_green};
use crate::context::{FlowContext, StateDir};
use crate::error::{FlowError, Result};

/// What green is checked with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyGreenSpec {
    /// The green cluster.
    pub green: GreenCluster,
    /// The probes (`upgrade-verify`'s configuration: KServe predict calls, MLflow health
    /// and experiment reads, HTTP smoke tests).
    pub config: VerifyConfig,
}

/// A verification of green, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GreenVerification {
    /// Green's API server.
    pub green_server: String,
    /// The cluster named as green.
    pub green_cluster: String,
    /// When it ran.
    pub verified_at: jiff::Timestamp,
    /// Every check, health findings included.
    pub report: Report,
}

impl GreenVerification {
    /// Whether traffic may move: nothing failed (warnings allowed, shown by the switch).
    pub fn passed(&self) -> bool {
        self.report.worst() != Some(Status::Fail) && !self.report.findings.is_empty()
    }
}

const RECORD: &str = "bluegreen-green-verification.json";

fn record_path(state: &StateDir) -> PathBuf {
    state.root().join(RECORD)
}

/// Runs the checks against green and records the outcome (the report's exit code is the
/// command's: 0 passed, 3 warnings, 4 failed).
pub async fn verify_green(ctx: &FlowContext, spec: &VerifyGreenSpec) -> Result<GreenVerification> {
    spec.config
        .validate()
        .map_err(|e| FlowError::invalid("config", format!("verification config: {e}"), ""))?;
    let (green_spec, green) = connect_green(ctx, &spec.green).await?;
    let health = upgrade_kube::health::check(&green).await?;
    let mut report = Report::new(Vec::new());
    let server = green.identity().server_url.clone();
    report.extend(health.findings.iter().map(|f| {
        Finding::new(
            format!("green health: {}", f.check),
            Status::Fail,
            f.subject.clone(),
            "healthy",
            f.message.clone(),
        )
    }));
    report.extend(health.not_checked.iter().map(|n| {
        Finding::new(
            "green health",
            Status::Warn,
            n.clone(),
            "checked",
            "not checked",
        )
    }));
    if health.healthy() {
        report.extend([Finding::new(
            "green health",
            Status::Pass,
            server.clone(),
            "no unhealthy node, pod, claim, deployment, certificate, InferenceService or application",
            "none",
        )]);
    }
    // A predict call for every InferenceService: one the probes do not reach is not verified.
    for (namespace, name) in upgrade_kube::health::inference_services(&green).await? {
        let probed = spec.config.probes.iter().any(|p| match &p.check {
            Check::KserveV1 { url, model, .. } | Check::KserveV2 { url, model, .. } => {
                model == &name || url.contains(&format!("{name}.{namespace}"))
            }
            _ => false,
        });
        if !probed {
            report.extend([Finding::new(
                format!("predict {namespace}/{name}"),
                Status::Fail,
                format!("InferenceService {namespace}/{name} on green"),
                "a kserve_v1 or kserve_v2 probe for it in the verification config",
                "no probe calls it",
            )]);
        }
    }
    // MLflow on green: its health and an experiment read (seed 001's step 9) must be probed.
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::all(green.client().clone());
    let listed = deployments
        .list(&Default::default())
        .await
        .map_err(|e| FlowError::failed("list green's Deployments", e))?;
    let runs_mlflow: Vec<String> = listed
        .items
        .iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|pod| {
                    pod.containers
                        .iter()
                        .any(|c| is_mlflow_image(c.image.as_deref()))
                })
        })
        .map(|d| {
            format!(
                "{}/{}",
                d.metadata.namespace.as_deref().unwrap_or_default(),
                d.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !runs_mlflow.is_empty() {
        let has = |wanted: fn(&Check) -> bool| spec.config.probes.iter().any(|p| wanted(&p.check));
        for (name, probed) in [
            (
                "MLflow health",
                has(|c| matches!(c, Check::MlflowHealth { .. })),
            ),
            (
                "MLflow experiment read",
                has(|c| matches!(c, Check::MlflowExperiment { .. })),
            ),
        ] {
            if !probed {
                report.extend([Finding::new(
                    name,
                    Status::Fail,
                    format!("MLflow on green ({})", runs_mlflow.join(", ")),
                    "an mlflow-health and an mlflow-experiment probe in the verification config",
                    "no probe calls it",
                )]);
            }
        }
    }
    let probes = upgrade_verify::verify(
        &VerifyConfig {
            probes: spec.config.probes.clone(),
            prometheus: spec.config.prometheus.clone(),
        },
        None,
    )
    .await
    .map_err(FlowError::input)?;
    report.extend(probes.findings);
    let verification = GreenVerification {
        green_server: server,
        green_cluster: green_spec.expect_cluster,
        verified_at: jiff::Timestamp::now(),
        report,
    };
    let path = record_path(ctx.state());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| FlowError::failed(format!("create {}", dir.display()), e))?;
    }
    let text = serde_json::to_vec_pretty(&verification).expect("JSON");
    upgrade_core::atomic_file::write(&path, &text)
        .map_err(|e| FlowError::failed(format!("write {}", path.display()), e))?;
    Ok(verification)
}

/// Whether `image` is MLflow's server (`…/mlflow:<tag>`, not an exporter or a sidecar
/// named after it).
fn is_mlflow_image(image: Option<&str>) -> bool {
    let Some(image) = image else { return false };
    let without_digest = image.split('@').next().unwrap_or(image);
    let path = match without_digest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => path,
        _ => without_digest,
    };
    path.rsplit('/').next() == Some("mlflow")
}

/// The latest verification of green, which must have passed and be newer than every
/// recorded run of the stages that change green (transfer, ACK adoption); otherwise bad input
/// naming what to do.
pub fn require_verified_green(state: &StateDir) -> Result<GreenVerification> {
    let path = record_path(state);
    let fix = "run `upgrade-bluegreen verify-green` (with the same --snapshot-dir) and switch once it passes";
    let text = std::fs::read_to_string(&path).map_err(|_| {
        FlowError::invalid(
            "green",
            format!(
                "green has not been verified ({} does not exist)",
                path.display()
            ),
            fix,
        )
    })?;
    let verification: GreenVerification = serde_json::from_str(&text)
        .map_err(|e| FlowError::invalid("green", format!("{}: {e}", path.display()), fix))?;
    if !verification.passed() {
        let failed: Vec<String> = verification
            .report
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .map(|f| format!("{} ({})", f.name, f.actual))
            .collect();
        return Err(FlowError::invalid(
            "green",
            format!(
                "green's verification of {} failed: {}",
                verification.verified_at,
                failed.join("; ")
            ),
            fix,
        ));
    }
    let changed_after = std::fs::read_dir(state.runs())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            crate::record::RunRecord::parse(&text, &entry.path()).ok()
        })
        .filter(|r| {
            (r.flow == super::TRANSFER_FLOW || r.flow == super::ACK_FLOW)
                && r.created > verification.verified_at
        })
        .map(|r| r.run_id)
        .collect::<Vec<_>>();
    if !changed_after.is_empty() {
        return Err(FlowError::invalid(
            "green",
            format!(
                "green changed after its verification of {} (runs {})",
                verification.verified_at,
                changed_after.join(", ")
            ),
            "run `upgrade-bluegreen verify-green` again: what it verified is not what green is now",
        ));
    }
    Ok(verification)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RECORD_FORMAT, RecordedCluster, RunRecord};

    fn verification(at: jiff::Timestamp, status: Status) -> GreenVerification {
        GreenVerification {
            green_server: "https://green".into(),
            green_cluster: "green".into(),
            verified_at: at,
            report: Report::new(vec![Finding::new("smoke", status, "GET /", "200", "200")]),
        }
    }

    fn write(state: &StateDir, v: &GreenVerification) {
        std::fs::create_dir_all(state.root()).unwrap();
        std::fs::write(record_path(state), serde_json::to_vec(v).unwrap()).unwrap();
    }

    #[test]
    fn only_a_passing_verification_newer_than_greens_last_change_allows_the_switch() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let err = require_verified_green(&state).unwrap_err().to_string();
        assert!(err.contains("green has not been verified"), "{err}");

        let now = jiff::Timestamp::now();
        write(&state, &verification(now, Status::Fail));
        let err = require_verified_green(&state).unwrap_err().to_string();
        assert!(err.contains("failed: smoke (200)"), "{err}");

        write(&state, &verification(now, Status::Warn));
        assert!(require_verified_green(&state).is_ok());

        // A transfer recorded after the verification: green is not what was verified.
        let later = RunRecord {
            format: RECORD_FORMAT,
            run_id: "bluegreen-transfer-1".into(),
            flow: super::super::TRANSFER_FLOW.into(),
            command: "upgrade-bluegreen".into(),
            started_by: "test".into(),
            created: now + jiff::SignedDuration::from_secs(60),
            cluster: RecordedCluster {
                context: "blue".into(),
                server: "https://blue".into(),
                eks_name: None,
            },
            spec: serde_json::json!({}),
            steps: Vec::new(),
        };
        std::fs::create_dir_all(state.runs()).unwrap();
        later.write(&state.runs()).unwrap();
        let err = require_verified_green(&state).unwrap_err().to_string();
        assert!(
            err.contains("green changed after its verification")
                && err.contains("bluegreen-transfer-1"),
            "{err}"
        );
    }

    #[test]
    fn mlflow_server_images_are_told_from_others() {
        for image in [
            "ghcr.io/mlflow/mlflow:2.22.0",
            "mlflow",
            "registry.local:5000/ml/mlflow:v3",
            "ghcr.io/mlflow/mlflow@sha256:abc",
        ] {
            assert!(is_mlflow_image(Some(image)), "{image}");
        }
        for image in [
            "ghcr.io/acme/mlflow-exporter:1.0",
            "busybox:1.36",
            "registry.local:5000/mlflowx",
        ] {
            assert!(!is_mlflow_image(Some(image)), "{image}");
        }
        assert!(!is_mlflow_image(None));
    }
}
