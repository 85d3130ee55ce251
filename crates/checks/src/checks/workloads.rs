//! What stalls or hurts node drains: disruption budgets, replicas, probes, pods, storage,
//! certificates and recent warnings.

use super::{Applies, Category, CheckInfo, Context, Issue, Outcome, Severity, Subject};
use crate::facts::{PodFacts, WorkloadKind};
use upgrade_core::version::KubeMinor;

const DRAIN_URL: &str = "https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-a-node/";
const MNG_URL: &str =
    "https://docs.aws.amazon.com/eks/latest/userguide/managed-node-update-behavior.html";

pub(super) const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        code: "PDB001",
        title: "PodDisruptionBudget allows no disruption",
        severity: Severity::Blocker,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "PodDisruptionBudgets with `status.disruptionsAllowed` 0 while they cover pods (minAvailable equal to the replicas, maxUnavailable 0, or pods already unhealthy). Every eviction is refused; an EKS managed node group update fails with PodEvictionFailure after 15 minutes.",
        remediation: "Scale the workload up or relax the budget (maxUnavailable: 1) for the upgrade, or fix the unhealthy pods it counts; restore the budget afterwards.",
        source: MNG_URL,
        run: pdb_no_disruption,
    },
    CheckInfo {
        code: "PDB002",
        title: "Replicated workload without a PodDisruptionBudget",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Deployments and StatefulSets with two or more replicas that no PodDisruptionBudget in their namespace selects (matchLabels and matchExpressions are evaluated): a drain may evict all replicas at once.",
        remediation: "Add a PodDisruptionBudget (policy/v1) with maxUnavailable: 1 selecting the workload's pods.",
        source: "https://kubernetes.io/docs/tasks/run-application/configure-pdb/",
        run: workloads_without_pdb,
    },
    CheckInfo {
        code: "WL001",
        title: "Workload with too few replicas",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Deployments and StatefulSets with fewer replicas than `thresholds.min_replicas` (default 2), but more than 0: draining their node interrupts the service.",
        remediation: "Run at least two replicas during the upgrade, or accept the interruption and ignore the workload in the configuration (leader-elected controllers).",
        source: DRAIN_URL,
        run: too_few_replicas,
    },
    CheckInfo {
        code: "WL002",
        title: "Container without a readiness probe",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Containers of Deployments, StatefulSets and ReplicaSets without a readiness probe: rescheduled pods receive traffic before they can serve it.",
        remediation: "Add a readinessProbe to each serving container.",
        source: "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/",
        run: missing_readiness,
    },
    CheckInfo {
        code: "WL003",
        title: "Replicas not spread across nodes",
        severity: Severity::Info,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Deployments and StatefulSets with two or more replicas and neither pod anti-affinity nor topology spread constraints: all replicas may sit on one node and leave together.",
        remediation: "Add a topologySpreadConstraint over `kubernetes.io/hostname` (or `topology.kubernetes.io/zone`).",
        source: "https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/",
        run: not_spread,
    },
    CheckInfo {
        code: "WL004",
        title: "gitRepo volume on a path to 1.36 or later",
        severity: Severity::Blocker,
        category: Category::Workloads,
        applies: Applies::from_minor(36),
        inspects: "The volumes of every pod: Kubernetes 1.36 disables the gitRepo volume plugin for good, and the kubelet refuses pods that use one (their controllers cannot start replacements).",
        remediation: "Clone the repository in an init container into an emptyDir volume shared with the app container, and roll the workload before the 1.36 hop.",
        source: "https://kubernetes.io/docs/concepts/storage/volumes/#gitrepo",
        run: git_repo_volumes,
    },
    CheckInfo {
        code: "SVC001",
        title: "Service with externalIPs on a path to 1.36 or later",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::from_minor(36),
        inspects: "Services that set `spec.externalIPs`: deprecated in Kubernetes 1.36 (the API server warns on every write), removal planned for 1.43; the field has been a known way to intercept cluster traffic (CVE-2020-8554).",
        remediation: "Move to a LoadBalancer Service or an ingress/Gateway, and restrict the field with an admission policy meanwhile.",
        source: "https://kubernetes.io/blog/2026/04/22/kubernetes-v1-36-release/",
        run: external_ips,
    },
    CheckInfo {
        code: "POD001",
        title: "Pod without a controller",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Running pods with no controlling owner: `kubectl drain` refuses them without `--force`, and with it they are deleted for good.",
        remediation: "Run them under a Deployment or Job, or delete them deliberately before the drain.",
        source: DRAIN_URL,
        run: bare_pods,
    },
    CheckInfo {
        code: "POD002",
        title: "Pod opts out of disruption",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Pods annotated `karpenter.sh/do-not-disrupt: \"true\"` (or the older `karpenter.sh/do-not-evict`): Karpenter will not replace their nodes, so drifted nodes stay on the old version.",
        remediation: "Let the pods finish, or remove the annotation for the upgrade window; Karpenter then replaces the nodes.",
        source: "https://karpenter.sh/docs/concepts/disruption/#pod-level-controls",
        run: do_not_disrupt,
    },
    CheckInfo {
        code: "POD003",
        title: "Pod with local storage",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Pods (other than DaemonSet pods) with emptyDir volumes: their data is lost when the node is drained, and `kubectl drain` needs `--delete-emptydir-data`.",
        remediation: "Move data that must survive to a PersistentVolumeClaim, or confirm it is scratch data.",
        source: DRAIN_URL,
        run: local_storage,
    },
    CheckInfo {
        code: "POD004",
        title: "Long-running batch pod",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Pods of Jobs and Argo Workflows running longer than `thresholds.long_running_pod_minutes` (default 15), or whose termination grace period exceeds it: EKS gives up evicting after 15 minutes, and a drain kills the work.",
        remediation: "Schedule the upgrade after the runs finish, or pause new runs (suspend CronJobs and CronWorkflows) and wait.",
        source: MNG_URL,
        run: long_running,
    },
    CheckInfo {
        code: "POD005",
        title: "Pods not running before the upgrade",
        severity: Severity::Info,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Pods in phase Pending, Failed or Unknown: the baseline to compare against after the upgrade.",
        remediation: "Fix them first, or note them so they are not mistaken for upgrade damage.",
        source: "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-phase",
        run: pods_not_running,
    },
    CheckInfo {
        code: "DRAIN001",
        title: "Node drain would be blocked",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Per node, the pods a drain (`kubectl drain --ignore-daemonsets`, or a node upgrade) would not evict, before anything is touched: pods a PodDisruptionBudget with 0 disruptions allowed protects, pods without a controller, pods with emptyDir volumes, and pods annotated `karpenter.sh/do-not-disrupt: \"true\"`. DaemonSet, mirror and finished pods are left out, as the drain leaves them. The node's upgrade stalls on these pods.",
        remediation: "For each pod named: relax the budget or scale its workload up, run it under a controller or delete it, confirm the emptyDir data is scratch (drain with --delete-emptydir-data), or let it finish; then check again.",
        source: DRAIN_URL,
        run: drain_blockers,
    },
    CheckInfo {
        code: "PVC001",
        title: "PersistentVolumeClaim not bound",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "PersistentVolumeClaims whose phase is not Bound: pods using them cannot be rescheduled after a drain.",
        remediation: "Find why the claim is pending or lost (`kubectl describe pvc`) and fix the storage class or volume.",
        source: "https://kubernetes.io/docs/concepts/storage/persistent-volumes/#phase",
        run: unbound_pvcs,
    },
    CheckInfo {
        code: "CERT001",
        title: "Certificate not ready or expiring soon",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "cert-manager Certificates that are not Ready, or that expire within `thresholds.certificate_expiry_days` (default 14) of `cluster.observed_on`: webhooks and ingresses behind them fail during the upgrade.",
        remediation: "Fix the issuer or renew (`cmctl renew <name> -n <namespace>`) before upgrading.",
        source: "https://cert-manager.io/docs/usage/certificate/",
        run: certificates,
    },
    CheckInfo {
        code: "EVT001",
        title: "Repeated warning events",
        severity: Severity::Info,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Warning events of one reason on one object seen at least `thresholds.warning_event_count` times (default 5): existing trouble that the upgrade would otherwise be blamed for.",
        remediation: "Look into them before the upgrade (`kubectl get events -A --field-selector type=Warning`).",
        source: "https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/",
        run: warning_events,
    },
];

fn pdb_no_disruption(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pdbs
        .iter()
        .filter(|p| p.disruptions_allowed <= 0 && p.expected_pods.is_none_or(|n| n > 0))
        .map(|p| {
            let spec = match (&p.min_available, &p.max_unavailable) {
                (Some(min), _) => format!("minAvailable {min}"),
                (None, Some(max)) => format!("maxUnavailable {max}"),
                (None, None) => "no minAvailable or maxUnavailable".to_owned(),
            };
            let health = match (p.current_healthy, p.expected_pods) {
                (Some(h), Some(e)) => format!(", {h}/{e} pods healthy"),
                _ => String::new(),
            };
            Issue::new(
                Some(Subject::namespaced(
                    "PodDisruptionBudget",
                    &p.namespace,
                    &p.name,
                )),
                format!(
                    "allows 0 disruptions ({spec}{health}); every eviction from its pods is refused"
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn replicated<'a>(
    ctx: &Context<'a>,
) -> impl Iterator<Item = &'a crate::facts::WorkloadFacts> + use<'a> {
    ctx.facts
        .workloads
        .iter()
        .filter(|w| matches!(w.kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet))
}

fn workload_issue(w: &crate::facts::WorkloadFacts, message: String) -> Issue {
    Issue::new(
        Some(Subject::namespaced(
            &w.kind.to_string(),
            &w.namespace,
            &w.name,
        )),
        message,
    )
}

fn workloads_without_pdb(ctx: &Context<'_>) -> Outcome {
    let issues = replicated(ctx)
        .filter(|w| w.replicas.unwrap_or(0) >= 2)
        .filter(|w| {
            !ctx.facts
                .pdbs
                .iter()
                .any(|p| p.namespace == w.namespace && p.selector.matches(&w.pod_labels))
        })
        .map(|w| {
            workload_issue(
                w,
                format!(
                    "{} replicas and no PodDisruptionBudget selects its pods",
                    w.replicas.unwrap_or(0)
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn too_few_replicas(ctx: &Context<'_>) -> Outcome {
    let min = ctx.config.thresholds.min_replicas;
    let issues = replicated(ctx)
        .filter(|w| w.replicas.is_some_and(|r| r > 0 && r < min))
        .map(|w| {
            workload_issue(
                w,
                format!(
                    "{} replica(s), fewer than {min}: draining its node interrupts it",
                    w.replicas.unwrap_or(0)
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn missing_readiness(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .workloads
        .iter()
        .filter(|w| w.kind != WorkloadKind::DaemonSet)
        .filter_map(|w| {
            let missing: Vec<&str> = w
                .containers
                .iter()
                .filter(|c| !c.readiness_probe)
                .map(|c| c.name.as_str())
                .collect();
            (!missing.is_empty()).then(|| {
                workload_issue(
                    w,
                    format!("no readiness probe on container(s) {}", missing.join(", ")),
                )
            })
        })
        .collect();
    Outcome::Checked(issues)
}

fn not_spread(ctx: &Context<'_>) -> Outcome {
    let issues = replicated(ctx)
        .filter(|w| w.replicas.unwrap_or(0) >= 2 && !w.pod_anti_affinity && !w.topology_spread)
        .map(|w| {
            workload_issue(
                w,
                format!(
                    "{} replicas without pod anti-affinity or topology spread",
                    w.replicas.unwrap_or(0)
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn pod_subject(pod: &PodFacts) -> Option<Subject> {
    Some(Subject::namespaced("Pod", &pod.namespace, &pod.name))
}

fn on_node(pod: &PodFacts) -> String {
    pod.node
        .as_deref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default()
}

fn is_active(pod: &PodFacts) -> bool {
    matches!(pod.phase.as_str(), "Running" | "Pending")
}

fn bare_pods(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pods
        .iter()
        .filter(|p| p.controller.is_none() && is_active(p))
        .map(|p| {
            Issue::new(
                pod_subject(p),
                format!(
                    "no controller{}: a forced drain deletes it for good",
                    on_node(p)
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn do_not_disrupt(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pods
        .iter()
        .filter(|p| is_active(p))
        .filter_map(|p| {
            let key = ["karpenter.sh/do-not-disrupt", "karpenter.sh/do-not-evict"]
                .into_iter()
                .find(|k| p.annotations.get(*k).is_some_and(|v| v == "true"))?;
            Some(Issue::new(
                pod_subject(p),
                format!(
                    "annotated {key}=true{}: Karpenter will not replace this node",
                    on_node(p)
                ),
            ))
        })
        .collect();
    Outcome::Checked(issues)
}

fn local_storage(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pods
        .iter()
        .filter(|p| p.local_storage && is_active(p))
        .filter(|p| p.controller.as_ref().is_none_or(|c| c.kind != "DaemonSet"))
        .map(|p| {
            Issue::new(
                pod_subject(p),
                format!("uses emptyDir{}: its data is lost on drain", on_node(p)),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn is_batch(pod: &PodFacts) -> bool {
    pod.controller
        .as_ref()
        .is_some_and(|c| matches!(c.kind.as_str(), "Job" | "Workflow"))
        || pod.labels.contains_key("workflows.argoproj.io/workflow")
}

fn long_running(ctx: &Context<'_>) -> Outcome {
    let limit_minutes = ctx.config.thresholds.long_running_pod_minutes;
    let limit = limit_minutes * 60;
    let issues = ctx
        .facts
        .pods
        .iter()
        .filter(|p| p.phase == "Running" && is_batch(p))
        .filter_map(|p| {
            let running = p.running_seconds.unwrap_or(0);
            let grace = p.termination_grace_period_seconds.unwrap_or(0);
            let owner = p
                .controller
                .as_ref()
                .map(|c| format!("{} {}", c.kind, c.name))
                .unwrap_or_else(|| "an Argo workflow".into());
            if running >= limit {
                Some(format!("{owner} pod running for {} min (limit {limit_minutes} min){}", running / 60, on_node(p)))
            } else if u64::try_from(grace).is_ok_and(|g| g > limit) {
                Some(format!("{owner} pod with a {grace} s termination grace period, longer than {limit_minutes} min"))
            } else {
                None
            }
            .map(|message| Issue::new(pod_subject(p), message))
        })
        .collect();
    Outcome::Checked(issues)
}

fn pods_not_running(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pods
        .iter()
        .filter(|p| matches!(p.phase.as_str(), "Pending" | "Failed" | "Unknown"))
        .map(|p| Issue::new(pod_subject(p), format!("phase {}{}", p.phase, on_node(p))))
        .collect();
    Outcome::Checked(issues)
}

fn unbound_pvcs(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .pvcs
        .iter()
        .filter(|c| c.phase != "Bound")
        .map(|c| {
            Issue::new(
                Some(Subject::namespaced(
                    "PersistentVolumeClaim",
                    &c.namespace,
                    &c.name,
                )),
                format!(
                    "phase {}{}",
                    c.phase,
                    c.storage_class
                        .as_deref()
                        .map(|s| format!(" (storage class {s})"))
                        .unwrap_or_default()
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn certificates(ctx: &Context<'_>) -> Outcome {
    let days = i64::from(ctx.config.thresholds.certificate_expiry_days);
    let today = ctx.facts.cluster.observed_on.as_ref();
    let issues = ctx
        .facts
        .certificates
        .iter()
        .filter_map(|c| {
            let subject = Some(Subject::namespaced("Certificate", &c.namespace, &c.name));
            if !c.ready {
                let why = c
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                return Some(Issue::new(subject, format!("not Ready{why}")));
            }
            let (today, not_after) = (today?, c.not_after.as_ref()?);
            let left = today.days_until(not_after);
            (left <= days).then(|| {
                Issue::new(
                    subject,
                    format!("expires on {not_after}, in {left} day(s) (threshold {days})"),
                )
            })
        })
        .collect();
    Outcome::Checked(issues)
}

fn warning_events(ctx: &Context<'_>) -> Outcome {
    let min = ctx.config.thresholds.warning_event_count;
    let issues = ctx
        .facts
        .warning_events
        .iter()
        .filter(|e| e.count >= min)
        .map(|e| {
            let (kind, name) = e
                .object
                .split_once('/')
                .unwrap_or(("Object", e.object.as_str()));
            Issue::new(
                Some(Subject::namespaced(kind, &e.namespace, name)),
                format!("{} ×{}: {}", e.reason, e.count, e.message),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

/// Why a drain would not evict `pod` (`None` = it evicts, or the drain leaves it alone).
fn drain_blocker(ctx: &Context<'_>, pod: &PodFacts) -> Option<String> {
    let controller = pod.controller.as_ref().map(|c| c.kind.as_str());
    if controller == Some("DaemonSet")
        || pod.annotations.contains_key("kubernetes.io/config.mirror")
        || !is_active(pod)
    {
        return None;
    }
    if controller.is_none() {
        return Some("no controller".into());
    }
    if pod.local_storage {
        return Some("emptyDir data".into());
    }
    if pod
        .annotations
        .get("karpenter.sh/do-not-disrupt")
        .is_some_and(|v| v == "true")
    {
        return Some("do-not-disrupt".into());
    }
    // Only a running pod counts as healthy; a budget does not protect the others.
    if pod.phase != "Running" {
        return None;
    }
    ctx.facts
        .pdbs
        .iter()
        .find(|b| {
            b.disruptions_allowed <= 0
                && b.namespace == pod.namespace
                && b.selector.matches(&pod.labels)
        })
        .map(|b| format!("budget {}/{} allows 0 disruptions", b.namespace, b.name))
}

fn drain_blockers(ctx: &Context<'_>) -> Outcome {
    const SHOWN: usize = 10;
    let mut by_node: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for pod in &ctx.facts.pods {
        let Some(node) = pod.node.as_deref() else {
            continue;
        };
        if let Some(why) = drain_blocker(ctx, pod) {
            by_node
                .entry(node)
                .or_default()
                .push(format!("{}/{} ({why})", pod.namespace, pod.name));
        }
    }
    let issues = by_node
        .into_iter()
        .map(|(node, pods)| {
            let more = pods.len().saturating_sub(SHOWN);
            let mut list = pods
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            Issue::new(
                Some(Subject::cluster("Node", node)),
                format!(
                    "a drain would stop on {} pod{}: {list}",
                    pods.len(),
                    if pods.len() == 1 { "" } else { "s" }
                ),
            )
        })
        .collect();
    Outcome::Checked(issues)
}

fn git_repo_volumes(ctx: &Context<'_>) -> Outcome {
    let hop = super::cluster::first_hop_from(ctx, KubeMinor::new(1, 36));
    // One finding per controller (its pods share the template), else per pod.
    let mut seen = std::collections::BTreeSet::new();
    let mut issues = Vec::new();
    for pod in ctx
        .facts
        .pods
        .iter()
        .filter(|p| !p.git_repo_volumes.is_empty())
    {
        let subject = match &pod.controller {
            Some(owner) => Subject::namespaced(&owner.kind, &pod.namespace, &owner.name),
            None => Subject::namespaced("Pod", &pod.namespace, &pod.name),
        };
        if !seen.insert(subject.clone()) {
            continue;
        }
        let issue = Issue::new(
            Some(subject),
            format!(
                "mounts gitRepo volume(s) {} (pod {}); from 1.36 the kubelet refuses such pods",
                pod.git_repo_volumes.join(", "),
                pod.name
            ),
        );
        issues.push(match hop {
            Some(hop) => issue.at_hop(hop),
            None => issue,
        });
    }
    Outcome::Checked(issues)
}

fn external_ips(ctx: &Context<'_>) -> Outcome {
    let hop = super::cluster::first_hop_from(ctx, KubeMinor::new(1, 36));
    let issues = ctx
        .facts
        .services
        .iter()
        .map(|svc| {
            let issue = Issue::new(
                Some(Subject::namespaced("Service", &svc.namespace, &svc.name)),
                format!(
                    "sets spec.externalIPs ({}), deprecated from 1.36",
                    svc.external_ips.join(", ")
                ),
            );
            match hop {
                Some(hop) => issue.at_hop(hop),
                None => issue,
            }
        })
        .collect();
    Outcome::Checked(issues)
}
