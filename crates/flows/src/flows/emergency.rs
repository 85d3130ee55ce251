//! Seed 000's and seed 002's emergency mitigations for any Deployment of the platform, each a
//! planned, journaled, reversible run (`upgrade-rollback` puts the Deployment back): scale
//! to zero and back, restart its pods, put its previous revision back.

use serde::{Deserialize, Serialize};
use upgrade_core::executor::Step;
use upgrade_kube::mitigate::{Mitigation, MitigationSpec, MitigationStep, previous_revision};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};
use crate::report::Plan;
use crate::run::Planned;

/// The flow's name in run records.
pub const EMERGENCY_FLOW: &str = "emergency";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmergencyAction {
    /// Scale to this many replicas.
    Scale(i32),
    /// Restart the pods.
    Restart,
    /// Put the previous revision back.
    Undo,
}

/// The mitigation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencySpec {
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// What to do.
    pub action: EmergencyAction,
    /// How long its rollout may take (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    300
}

/// Plans the mitigation: the Deployment must exist; an undo needs a previous revision.
pub async fn plan_emergency(ctx: &FlowContext, spec: &EmergencySpec) -> Result<Planned> {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(ctx.cluster().client().clone(), &spec.namespace);
    let name = format!("{}/{}", spec.namespace, spec.deployment);
    let deployment = api
        .get_opt(&spec.deployment)
        .await
        .map_err(|e| FlowError::failed(format!("read deployment {name}"), e))?
        .ok_or_else(|| {
            FlowError::invalid(
                "deployment",
                format!("there is no deployment {name}"),
                "name it as NAMESPACE/NAME (kubectl get deployments -A)",
            )
        })?;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let (mitigation, change) = match &spec.action {
        EmergencyAction::Scale(to) if *to < 0 => {
            return Err(FlowError::invalid(
                "replicas",
                format!("{to} replicas"),
                "give 0 or more",
            ));
        }
        EmergencyAction::Scale(to) => (
            Mitigation::Scale { replicas: *to },
            format!(
                "deployment {name}: {replicas} -> {to} replicas (the rollback restores {replicas})"
            ),
        ),
        EmergencyAction::Restart => (
            Mitigation::Restart {
                at: jiff::Timestamp::now().to_string(),
            },
            format!(
                "deployment {name}: restart its {replicas} pods (a new pod template annotation; the rollback restores the template)"
            ),
        ),
        EmergencyAction::Undo => {
            let (revision, template) = previous_revision(ctx.cluster(), &spec.namespace, &deployment)
                .await
                .map_err(FlowError::from)?
                .ok_or_else(|| {
                    FlowError::invalid(
                        "deployment",
                        format!("deployment {name} has no previous revision to go back to"),
                        "undo a deployment that has been changed at least once (kubectl rollout history)",
                    )
                })?;
            let images: Vec<String> = template["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={}",
                        c["name"].as_str().unwrap_or("?"),
                        c["image"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            (
                Mitigation::Undo { revision, template },
                format!(
                    "deployment {name}: back to revision {revision} ({}); the rollback restores the current template",
                    images.join(", ")
                ),
            )
        }
    };
    let step = MitigationStep {
        spec: MitigationSpec {
            id: format!("emergency/{}/{}", spec.namespace, spec.deployment),
            namespace: spec.namespace.clone(),
            deployment: spec.deployment.clone(),
            mitigation,
            timeout: std::time::Duration::from_secs(spec.timeout_secs),
        },
        cluster: ctx.cluster().clone(),
    };
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-emergency",
        ctx.cluster_name(),
        ctx.new_run_id("emergency")?,
        &refs,
    );
    plan.changes = vec![change];
    Ok(Planned::new(
        EMERGENCY_FLOW,
        spec,
        plan,
        vec![Box::new(step)],
    ))
}

/// A cert-manager Certificate to renew now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewCertificateSpec {
    /// Its namespace.
    pub namespace: String,
    /// The Certificate.
    pub certificate: String,
    /// How long cert-manager may take to issue (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Plans the renewal: the Certificate and its secret must exist.
pub async fn plan_renew_certificate(
    ctx: &FlowContext,
    spec: &RenewCertificateSpec,
) -> Result<Planned> {
    use upgrade_kube::certificate::{self, RenewCertificateStep};
    let name = format!("{}/{}", spec.namespace, spec.certificate);
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        ctx.cluster().client().clone(),
        &spec.namespace,
        &certificate::certificate_resource(),
    );
    let missing = || {
        FlowError::invalid(
            "certificate",
            format!("there is no cert-manager Certificate {name}"),
            "name it as NAMESPACE/NAME (kubectl get certificates -A)",
        )
    };
    let cert = match api.get_opt(&spec.certificate).await {
        Ok(Some(cert)) => cert,
        Ok(None) => return Err(missing()),
        // cert-manager's kinds are not served at all.
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(missing()),
        Err(e) => return Err(FlowError::failed(format!("read certificate {name}"), e)),
    };
    let secret = cert.data["spec"]["secretName"]
        .as_str()
        .ok_or_else(|| {
            FlowError::invalid(
                "certificate",
                format!("{name} names no secretName"),
                "fix the Certificate",
            )
        })?
        .to_string();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(ctx.cluster().client().clone(), &spec.namespace);
    if secrets
        .get_opt(&secret)
        .await
        .map_err(|e| FlowError::failed(format!("read secret {secret}"), e))?
        .is_none()
    {
        return Err(FlowError::invalid(
            "certificate",
            format!(
                "{name}'s secret {secret} does not exist: cert-manager has not issued it (nothing to renew)"
            ),
            "see why: kubectl describe certificate",
        ));
    }
    let step = RenewCertificateStep {
        spec: upgrade_kube::certificate::RenewCertificateSpec {
            id: format!(
                "emergency/certificate/{}/{}",
                spec.namespace, spec.certificate
            ),
            namespace: spec.namespace.clone(),
            certificate: spec.certificate.clone(),
            secret: secret.clone(),
            timeout: std::time::Duration::from_secs(spec.timeout_secs),
        },
        cluster: ctx.cluster().clone(),
    };
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-emergency",
        ctx.cluster_name(),
        ctx.new_run_id("emergency")?,
        &refs,
    );
    plan.changes = vec![format!(
        "certificate {name}: delete secret {secret} so cert-manager issues a new one; the old one is put back if none comes within {} s",
        spec.timeout_secs
    )];
    Ok(Planned::new(
        EMERGENCY_FLOW,
        spec,
        plan,
        vec![Box::new(step)],
    ))
}

/// A Helm release to roll back (seed 000's `helm rollback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmRollbackSpec {
    /// Its namespace.
    pub namespace: String,
    /// The release.
    pub release: String,
    /// The revision to go back to (default: the one before the current).
    #[serde(default)]
    pub revision: Option<u32>,
    /// Helm's wait (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Plans the rollback: the release must exist and the revision be an earlier one in its
/// history; a chart version that differs gets the CRD note (Helm does not roll CRDs back).
pub async fn plan_helm_rollback(ctx: &FlowContext, spec: &HelmRollbackSpec) -> Result<Planned> {
    use upgrade_helm::step::{HelmRollbackSpec as StepSpecOf, HelmRollbackStep};
    let release = upgrade_helm::ReleaseRef::new(&spec.release, &spec.namespace);
    let helm = ctx.helm()?;
    let history = helm
        .history(&release)
        .await
        .map_err(|e| match e.failure_kind() {
            Some(upgrade_helm::FailureKind::ReleaseNotFound) => FlowError::invalid(
                "release",
                format!("there is no release {release}"),
                "name it as NAMESPACE/NAME (helm list -A)",
            ),
            _ => FlowError::failed(format!("read the history of {release}"), e),
        })?;
    let current = history.last().ok_or_else(|| {
        FlowError::invalid(
            "release",
            format!("there is no release {release}"),
            "name it as NAMESPACE/NAME (helm list -A)",
        )
    })?;
    let target = match spec.revision {
        Some(r) => history
            .iter()
            .find(|h| h.revision == r && r < current.revision),
        None => history
            .iter()
            .rev()
            .find(|h| h.revision < current.revision && h.status.was_deployed()),
    }
    .ok_or_else(|| {
        FlowError::invalid(
            "revision",
            match spec.revision {
                Some(r) => format!(
                    "{release} has no revision {r} before its current {}",
                    current.revision
                ),
                None => format!("{release} has no earlier deployed revision to go back to"),
            },
            format!(
                "name one of {} (helm history)",
                history
                    .iter()
                    .filter(|h| h.revision < current.revision)
                    .map(|h| h.revision.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let mut findings = Vec::new();
    if target.chart != current.chart {
        findings.push(format!(
            "{} -> {}: Helm does not roll CRDs back; custom resources stay stored at the newer CRD versions (check the old chart still reads them: upgrade-preflight, kubectl get crd)",
            current.chart, target.chart
        ));
    }
    let timeout = std::time::Duration::from_secs(spec.timeout_secs);
    let step = HelmRollbackStep {
        spec: StepSpecOf {
            id: format!(
                "emergency/helm-rollback/{}/{}",
                spec.namespace, spec.release
            ),
            component: "emergency".into(),
            release: release.clone(),
            revision: target.revision,
            chart: target.chart.clone(),
            options: upgrade_helm::RollbackOptions {
                wait: upgrade_helm::WaitMode::ReadyLegacy,
                timeout,
                ..upgrade_helm::RollbackOptions::default()
            },
        },
        helm,
    };
    let refs: [&dyn Step; 1] = [&step];
    let mut plan = Plan::new(
        "upgrade-emergency",
        ctx.cluster_name(),
        ctx.new_run_id("emergency")?,
        &refs,
    );
    plan.changes = vec![format!(
        "release {release}: revision {} ({}) -> back to revision {} ({}); the undo restores revision {}",
        current.revision, current.chart, target.revision, target.chart, current.revision
    )];
    plan.findings = findings;
    Ok(Planned::new(
        EMERGENCY_FLOW,
        spec,
        plan,
        vec![Box::new(step)],
    ))
}
