//! The runbook's health checks in one call: pods not running, NotReady nodes, unbound
//! PersistentVolumeClaims, cert-manager Certificates not Ready, Deployments not available,
//! KServe InferenceServices not Ready, and Argo CD Applications not Synced and Healthy; with
//! [`check_with`], also Certificates expiring soon and failed Argo Workflows (seed 002's
//! daily check).
//!
//! Run it before an upgrade for the baseline and after each step to verify. Kinds the
//! cluster does not serve (no KServe, no Argo CD) are listed in
//! [`HealthReport::not_checked`], never counted as healthy silently.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::DynamicObject;
use serde::Serialize;

use crate::connect::Cluster;
use crate::error::Result;
use crate::retry::{list_all, list_if_served};

const PAGE: u32 = 500;
const INFERENCE_SERVICE: (&str, &str, &str, &str) = (
    "serving.kserve.io",
    "v1beta1",
    "InferenceService",
    "inferenceservices",
);
const ARGO_APPLICATION: (&str, &str, &str, &str) =
    ("argoproj.io", "v1alpha1", "Application", "applications");
const ARGO_WORKFLOW: (&str, &str, &str, &str) =
    ("argoproj.io", "v1alpha1", "Workflow", "workflows");

/// The checks beyond [`check`]'s, for the runbook's daily check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOptions {
    /// Report Certificates whose `status.notAfter` comes within this long.
    pub certificate_expiry: Option<std::time::Duration>,
    /// Report Argo Workflows that ended `Failed` or `Error`.
    pub failed_workflows: bool,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth a look (exit 3).
    Warning,
    /// Something is down (exit 4).
    Failure,
}

/// Which health check found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthCheck {
    /// A node whose Ready condition is not True.
    NodeNotReady,
    /// A pod not Running or Succeeded, or Running with a container stuck waiting.
    PodNotRunning,
    /// A PersistentVolumeClaim not Bound.
    PvcNotBound,
    /// A Deployment with fewer available replicas than desired.
    DeploymentUnavailable,
    /// A cert-manager Certificate not Ready.
    CertificateNotReady,
    /// A KServe InferenceService not Ready.
    InferenceServiceNotReady,
    /// An Argo CD Application not Synced or not Healthy.
    ApplicationNotHealthy,
    /// A cert-manager Certificate that expires soon (cert-manager renews 30 days before by
    /// default: one this close has not been renewed).
    CertificateExpiring,
    /// An Argo Workflow that ended Failed or Error.
    WorkflowFailed,
}

impl HealthCheck {
    /// How bad a finding of this check is: something down is a failure; a certificate
    /// still valid, a workflow's own failure and a claim still waiting are warnings.
    pub fn severity(self) -> Severity {
        match self {
            HealthCheck::CertificateExpiring
            | HealthCheck::WorkflowFailed
            | HealthCheck::PvcNotBound => Severity::Warning,
            _ => Severity::Failure,
        }
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthCheck::NodeNotReady => "node not ready",
            HealthCheck::PodNotRunning => "pod not running",
            HealthCheck::PvcNotBound => "PVC not bound",
            HealthCheck::DeploymentUnavailable => "deployment unavailable",
            HealthCheck::CertificateNotReady => "certificate not ready",
            HealthCheck::InferenceServiceNotReady => "InferenceService not ready",
            HealthCheck::ApplicationNotHealthy => "Argo CD application not synced/healthy",
            HealthCheck::CertificateExpiring => "certificate expiring",
            HealthCheck::WorkflowFailed => "workflow failed",
        })
    }
}

/// One unhealthy object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct HealthFinding {
    /// The check.
    pub check: HealthCheck,
    /// `Kind namespace/name` (or `Kind name`).
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthReport {
    /// Every unhealthy object, by check then subject.
    pub findings: Vec<HealthFinding>,
    /// Checks that could not run (their kind is not served), with why.
    pub not_checked: Vec<String>,
}

impl HealthReport {
    /// Whether nothing was found.
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings of one check.
    pub fn of(&self, check: HealthCheck) -> impl Iterator<Item = &HealthFinding> {
        self.findings.iter().filter(move |f| f.check == check)
    }

    /// Text for a terminal or a log.
    pub fn render(&self) -> String {
        let mut out = if self.healthy() {
            "healthy: no findings\n".to_string()
        } else {
            format!("{} health finding(s):\n", self.findings.len())
        };
        for f in &self.findings {
            out.push_str(&format!("  - [{}] {}: {}\n", f.check, f.subject, f.message));
        }
        for n in &self.not_checked {
            out.push_str(&format!("  not checked: {n}\n"));
        }
        out
    }
}

fn key(namespace: Option<&str>, name: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{}", name.unwrap_or_default()),
        None => name.unwrap_or_default().to_string(),
    }
}

/// Every KServe InferenceService (`namespace`, `name`); none when KServe is not installed.
pub async fn inference_services(cluster: &Cluster) -> Result<Vec<(String, String)>> {
    let listed = list_if_served(cluster.client(), INFERENCE_SERVICE, PAGE).await?;
    Ok(listed
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            (
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default(),
            )
        })
        .collect())
}

/// Runs every health check concurrently and returns all findings.
pub async fn check(cluster: &Cluster) -> Result<HealthReport> {
    check_with(cluster, &HealthOptions::default()).await
}

/// [`check`] plus the checks `options` turn on.
pub async fn check_with(cluster: &Cluster, options: &HealthOptions) -> Result<HealthReport> {
    let client = cluster.client();
    let (nodes, pods, pvcs, deployments, certificates, isvcs, apps) = tokio::try_join!(
        list_all::<Node, _>(client, PAGE, "list nodes", |n| node_finding(&n)),
        list_all::<Pod, _>(client, PAGE, "list pods", |p| pod_finding(&p)),
        list_all::<PersistentVolumeClaim, _>(client, PAGE, "list PersistentVolumeClaims", |c| {
            pvc_finding(&c)
        }),
        list_all::<Deployment, _>(client, PAGE, "list Deployments", |d| deployment_finding(&d)),
        list_if_served(client, crate::facts::CERTIFICATE, PAGE),
        list_if_served(client, INFERENCE_SERVICE, PAGE),
        list_if_served(client, ARGO_APPLICATION, PAGE),
    )?;
    let mut report = HealthReport::default();
    report.findings.extend(nodes);
    report.findings.extend(pods);
    report.findings.extend(pvcs);
    report.findings.extend(deployments);
    let mut custom = |list: Option<Vec<DynamicObject>>,
                      what: &str,
                      finding: fn(&DynamicObject) -> Option<HealthFinding>| {
        match list {
            Some(list) => report.findings.extend(list.iter().filter_map(finding)),
            None => report
                .not_checked
                .push(format!("{what}: the kind is not served by this cluster")),
        }
    };
    let certificates_listed = certificates.clone();
    custom(
        certificates,
        "cert-manager Certificates",
        certificate_finding,
    );
    custom(isvcs, "KServe InferenceServices", inference_service_finding);
    custom(apps, "Argo CD Applications", application_finding);
    if let Some(within) = options.certificate_expiry {
        let now = jiff::Timestamp::now();
        for certificate in certificates_listed.iter().flatten() {
            report
                .findings
                .extend(certificate_expiry_finding(certificate, now, within));
        }
    }
    if options.failed_workflows {
        match list_if_served(client, ARGO_WORKFLOW, PAGE).await? {
            Some(list) => report
                .findings
                .extend(list.iter().filter_map(workflow_finding)),
            None => report
                .not_checked
                .push("Argo Workflows: the kind is not served by this cluster".into()),
        }
    }
    report.findings.sort();
    Ok(report)
}

/// A Certificate whose `status.notAfter` comes within `within` of `now` (or is past).
fn certificate_expiry_finding(
    o: &DynamicObject,
    now: jiff::Timestamp,
    within: std::time::Duration,
) -> Option<HealthFinding> {
    let not_after: jiff::Timestamp = o
        .data
        .get("status")?
        .get("notAfter")?
        .as_str()?
        .parse()
        .ok()?;
    let left = not_after.duration_since(now);
    let within = jiff::SignedDuration::try_from(within).ok()?;
    if left > within {
        return None;
    }
    let days = left.as_secs() / 86_400;
    Some(HealthFinding {
        check: HealthCheck::CertificateExpiring,
        subject: format!(
            "Certificate {}",
            key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref())
        ),
        message: if left.is_negative() {
            format!("expired at {not_after}")
        } else {
            format!("expires at {not_after} (in {days} days) and has not been renewed")
        },
    })
}

fn workflow_finding(o: &DynamicObject) -> Option<HealthFinding> {
    let status = o.data.get("status")?;
    let phase = status.get("phase")?.as_str()?;
    if !matches!(phase, "Failed" | "Error") {
        return None;
    }
    Some(HealthFinding {
        check: HealthCheck::WorkflowFailed,
        subject: format!(
            "Workflow {}",
            key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref())
        ),
        message: format!(
            "{phase}{}",
            status
                .get("message")
                .and_then(|m| m.as_str())
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    })
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a StatefulSet has fewer ready replicas than it wants (`Ok` when it has them all).
pub fn statefulset_ready(
    set: &k8s_openapi::api::apps::v1::StatefulSet,
) -> std::result::Result<(), String> {
    let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready < desired {
        Err(format!("{ready}/{desired} replicas ready"))
    } else {
        Ok(())
    }
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_finding(n: &Node) -> Option<HealthFinding> {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    if ready.is_some_and(|c| c.status == "True") {
        return None;
    }
    Some(HealthFinding {
        check: HealthCheck::NodeNotReady,
        subject: format!("Node {}", n.metadata.name.as_deref().unwrap_or_default()),
        message: match ready {
            Some(c) => format!(
                "Ready is {} ({})",
                c.status,
                c.reason.as_deref().unwrap_or("no reason given")
            ),
            None => "no Ready condition reported".into(),
        },
    })
}

fn pod_finding(p: &Pod) -> Option<HealthFinding> {
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let stuck = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
            matches!(
                reason.as_str(),
                "CrashLoopBackOff"
                    | "ImagePullBackOff"
                    | "ErrImagePull"
                    | "CreateContainerConfigError"
            )
            .then(|| format!("container {} is {reason}", c.name))
        })
        .collect::<Vec<_>>();
    let message = match phase {
        "Succeeded" => return None,
        "Running" if stuck.is_empty() => return None,
        "Running" => stuck.join("; "),
        other => format!(
            "phase {other}{}",
            status
                .and_then(|s| s.reason.as_deref())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    };
    Some(HealthFinding {
        check: HealthCheck::PodNotRunning,
        subject: format!(
            "Pod {}",
            key(p.metadata.namespace.as_deref(), p.metadata.name.as_deref())
        ),
        message,
    })
}

fn pvc_finding(c: &PersistentVolumeClaim) -> Option<HealthFinding> {
    let phase = c
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    (phase != "Bound").then(|| HealthFinding {
        check: HealthCheck::PvcNotBound,
        subject: format!(
            "PersistentVolumeClaim {}",
            key(c.metadata.namespace.as_deref(), c.metadata.name.as_deref())
        ),
        message: format!("phase {phase}"),
    })
}

/// Whether a Deployment has all its desired replicas available (and is not mid-rollout
/// with fewer). Used by the node rollout's validation too.
pub fn deployment_available(d: &Deployment) -> std::result::Result<(), String> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if available >= desired {
        Ok(())
    } else {
        Err(format!("{available}/{desired} replicas available"))
    }
}

fn deployment_finding(d: &Deployment) -> Option<HealthFinding> {
    let message = deployment_available(d).err()?;
    Some(HealthFinding {
        check: HealthCheck::DeploymentUnavailable,
        subject: format!(
            "Deployment {}",
            key(d.metadata.namespace.as_deref(), d.metadata.name.as_deref())
        ),
        message,
    })
}

/// How the objects of a kind say they are healthy, for the post-upgrade verification
/// ([`crate::step::WorkloadsReadyStep`]). A status that is not there yet is never taken as
/// healthy for a kind that always reports one: the controller that should write it may be
/// the one the upgrade just broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The controller always writes a `Ready` condition (KServe InferenceServices, Knative
    /// Services, cert-manager Certificates): it must be there and `True`.
    ReadyCondition,
    /// Argo Workflows: the workflow controller sets `status.phase` on every Workflow it has
    /// seen; one without a phase was never picked up. A Workflow that failed is the
    /// workflow's own outcome, not the controller's health, so any phase passes.
    WorkflowPhase,
    /// Kinds with no status contract (templates, runtimes, unknown kinds): when a `Ready`
    /// condition is reported it must be `True`; without one there is nothing to check.
    WhenReported,
}

impl Readiness {
    /// The readiness contract of `kind` in API `group`.
    pub fn of(group: &str, kind: &str) -> Readiness {
        match (group, kind) {
            ("serving.kserve.io", "InferenceService")
            | ("serving.knative.dev", "Service" | "Route" | "Configuration")
            | ("cert-manager.io", "Certificate" | "Issuer" | "ClusterIssuer") => {
                Readiness::ReadyCondition
            }
            ("argoproj.io", "Workflow") => Readiness::WorkflowPhase,
            _ => Readiness::WhenReported,
        }
    }

    /// Why `object` is not ready under this contract, or `None` when it is.
    pub fn problem(self, object: &DynamicObject) -> Option<String> {
        if self == Readiness::WorkflowPhase {
            let phase = object
                .data
                .get("status")
                .and_then(|s| s.get("phase"))
                .and_then(|p| p.as_str())
                .filter(|p| !p.is_empty());
            return phase
                .is_none()
                .then(|| "no phase yet: the workflow controller has not picked it up".to_string());
        }
        match ready_condition(object) {
            Some(c) if c["status"] == "True" => None,
            Some(c) => Some(format!(
                "Ready is {}{}",
                c["status"].as_str().unwrap_or("Unknown"),
                c["message"]
                    .as_str()
                    .or(c["reason"].as_str())
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )),
            None if self == Readiness::ReadyCondition => {
                Some("no Ready condition yet: its controller has not reported it".to_string())
            }
            None => None,
        }
    }
}

/// The object's `Ready` condition, when its status has one.
pub(crate) fn ready_condition(o: &DynamicObject) -> Option<&serde_json::Value> {
    o.data
        .get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

fn not_ready(o: &DynamicObject, kind: &str, check: HealthCheck) -> Option<HealthFinding> {
    let message = Readiness::ReadyCondition.problem(o)?;
    Some(HealthFinding {
        check,
        subject: format!(
            "{kind} {}",
            key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref())
        ),
        message,
    })
}

fn certificate_finding(o: &DynamicObject) -> Option<HealthFinding> {
    not_ready(o, "Certificate", HealthCheck::CertificateNotReady)
}

fn inference_service_finding(o: &DynamicObject) -> Option<HealthFinding> {
    not_ready(o, "InferenceService", HealthCheck::InferenceServiceNotReady)
}

fn application_finding(o: &DynamicObject) -> Option<HealthFinding> {
    let status = o.data.get("status");
    let sync = status
        .and_then(|s| s["sync"]["status"].as_str())
        .unwrap_or("Unknown");
    let health = status
        .and_then(|s| s["health"]["status"].as_str())
        .unwrap_or("Unknown");
    if sync == "Synced" && health == "Healthy" {
        return None;
    }
    Some(HealthFinding {
        check: HealthCheck::ApplicationNotHealthy,
        subject: format!(
            "Application {}",
            key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref())
        ),
        message: format!("sync {sync}, health {health}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(yaml: &str) -> DynamicObject {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn custom_resources_are_judged_by_ready_or_sync_and_health() {
        let isvc = dynamic(
            "{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: iris, namespace: mlops}, status: {conditions: [{type: Ready, status: 'False', reason: RevisionMissing, message: 'Revision iris-predictor-00002 failed'}]}}",
        );
        let f = inference_service_finding(&isvc).unwrap();
        assert_eq!(f.subject, "InferenceService mlops/iris");
        assert_eq!(
            f.message,
            "Ready is False (Revision iris-predictor-00002 failed)"
        );
        let ok = dynamic(
            "{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: iris, namespace: mlops}, status: {conditions: [{type: Ready, status: 'True'}]}}",
        );
        assert_eq!(inference_service_finding(&ok), None);

        let app = dynamic(
            "{apiVersion: argoproj.io/v1alpha1, kind: Application, metadata: {name: kserve, namespace: argocd}, status: {sync: {status: OutOfSync}, health: {status: Healthy}}}",
        );
        assert_eq!(
            application_finding(&app).unwrap().message,
            "sync OutOfSync, health Healthy"
        );
    }

    #[test]
    fn pods_stuck_in_crash_loops_count_even_when_running() {
        let pod: Pod = serde_norway::from_str(
            "{metadata: {name: mlflow-0, namespace: mlops}, status: {phase: Running, containerStatuses: [{name: mlflow, image: x, imageID: '', ready: false, restartCount: 7, state: {waiting: {reason: CrashLoopBackOff}}}]}}",
        )
        .unwrap();
        assert_eq!(
            pod_finding(&pod).unwrap().message,
            "container mlflow is CrashLoopBackOff"
        );
        let done: Pod = serde_norway::from_str(
            "{metadata: {name: j, namespace: a}, status: {phase: Succeeded}}",
        )
        .unwrap();
        assert_eq!(pod_finding(&done), None);
    }
}
