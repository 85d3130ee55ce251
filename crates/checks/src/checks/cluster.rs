//! Versions, the EKS calendar, the skew policy and node health.

use std::collections::BTreeMap;

use super::{Applies, Category, CheckInfo, Context, Issue, Outcome, Severity, Subject};
use crate::facts::NodeProvisioner;
use crate::plan::PlanNote;
use crate::skew::{self, Component, SKEW_POLICY_URL, SkewViolation};
use upgrade_core::version::KubeMinor;

const EKS_UPDATE_URL: &str = "https://docs.aws.amazon.com/eks/latest/userguide/update-cluster.html";
const EKS_VERSIONS_URL: &str =
    "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions-standard.html";

pub(super) const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        code: "VER001",
        title: "Target beyond the version data",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "Whether the target minor is newer than the newest minor in the embedded EKS calendar. Removed APIs, support dates and compatibility for newer minors are unknown, so their checks cannot pass or fail on facts they do not have.",
        remediation: "Give newer data files with `--data DIR` (the format of `crates/checks/data/`; `upgrade-preflight --show-data` prints what is in use and its sources), or choose a target the data covers.",
        source: "crates/checks/data/eks.yaml",
        run: beyond_data,
    },
    CheckInfo {
        code: "VER002",
        title: "Current version below the supported range",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "Whether the control plane is older than 1.28, the oldest minor the platform's procedures cover.",
        remediation: "Upgrade to 1.28 with the procedure that was valid for your version, then use this plan.",
        source: "seeds: upgrade procedures (supported versions 1.28 through 1.34)",
        run: below_supported,
    },
    CheckInfo {
        code: "EKS001",
        title: "Version outside EKS standard support",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "The EKS calendar for the current minor and the target, on the day the facts were observed (`cluster.observed_on`): extended support costs extra, and at its end EKS upgrades the control plane by itself (nodes stay behind).",
        remediation: "Plan the upgrade before the end-of-support date; if the target itself is already in extended support, consider a newer target.",
        source: "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html",
        run: support_calendar,
    },
    CheckInfo {
        code: "EKS002",
        title: "Amazon Linux 2 nodes on a path to 1.33 or later",
        severity: Severity::Blocker,
        category: Category::Versions,
        applies: Applies::from_minor(33),
        inspects: "Nodes whose OS image is Amazon Linux 2. EKS publishes no AL2 AMIs from 1.33 on (1.32 is the last).",
        remediation: "Move the node groups to AL2023 (or Bottlerocket) AMIs before the 1.33 hop: change the AMI type in Terraform and roll the node groups.",
        source: EKS_VERSIONS_URL,
        run: al2_nodes,
    },
    CheckInfo {
        code: "EKS003",
        title: "kube-proxy in IPVS mode on a path to 1.35 or later",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::from_minor(35),
        inspects: "The `mode` of the kube-proxy configuration. IPVS mode is deprecated in 1.35, with removal planned for 1.36.",
        remediation: "Switch kube-proxy to `iptables` or `nftables` mode (kube-proxy add-on configuration) and restart it.",
        source: EKS_VERSIONS_URL,
        run: ipvs_mode,
    },
    CheckInfo {
        code: "EKS004",
        title: "containerd 1.x nodes on a path to 1.36 or later",
        severity: Severity::Blocker,
        category: Category::Versions,
        applies: Applies::from_minor(36),
        inspects: "The container runtime of each node. Kubernetes 1.35 is the last release that supports containerd 1.x.",
        remediation: "Roll the nodes to an AMI with containerd 2.x (AL2023 and Bottlerocket AMIs for 1.34+ ship it) before the 1.36 hop.",
        source: EKS_VERSIONS_URL,
        run: containerd_1,
    },
    CheckInfo {
        code: "EKS005",
        title: "EKS changes in a version on the path",
        severity: Severity::Info,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "The EKS per-version notes (embedded data) of every minor the control plane reaches: default AMI changes, removed flags and APIs, deprecations.",
        remediation: "Read the notes for each hop and the linked EKS page; adjust node groups and workloads before the hop where a change applies.",
        source: EKS_VERSIONS_URL,
        run: version_notes,
    },
    CheckInfo {
        code: "SKEW001",
        title: "kubelet outside the version skew policy",
        severity: Severity::Blocker,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "Each node's kubelet against the API server now and after the first hop: never newer, at most three minors older (two for kubelets older than 1.25).",
        remediation: "Upgrade (or replace) the nodes to the control plane's minor before the control-plane upgrade; a kubelet newer than the API server must be replaced by an older node.",
        source: SKEW_POLICY_URL,
        run: kubelet_skew,
    },
    CheckInfo {
        code: "SKEW002",
        title: "Managed node group or Fargate nodes behind the control plane",
        severity: Severity::Blocker,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "Nodes of EKS managed node groups and Fargate whose kubelet minor differs from the control plane's. EKS refuses to update the control plane until they match.",
        remediation: "Update the node groups to the control plane's minor (`aws eks update-nodegroup-version` or the node group version in Terraform); restart Fargate pods so they land on new nodes.",
        source: EKS_UPDATE_URL,
        run: managed_nodes_behind,
    },
    CheckInfo {
        code: "SKEW003",
        title: "Self-managed or Karpenter nodes behind the control plane",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "Nodes not in managed node groups (self-managed, Karpenter, unknown) whose kubelet minor is behind the control plane's. EKS recommends, but does not enforce, matching minors before an upgrade, and every hop widens the skew.",
        remediation: "Roll the nodes to the control plane's minor first (for Karpenter: update the EC2NodeClass AMI and let drift replace the nodes).",
        source: EKS_UPDATE_URL,
        run: other_nodes_behind,
    },
    CheckInfo {
        code: "SKEW004",
        title: "kube-proxy outside the version skew policy",
        severity: Severity::Blocker,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "The kube-proxy DaemonSet image version against the API server now and after the first hop: never newer, at most three minors older (two before 1.25). Where nodes report their kube-proxy version, also against the kubelet on the same node: at most three minors older or newer (two before 1.25).",
        remediation: "Update the kube-proxy add-on to the control plane's minor (`aws eks update-addon --addon-name kube-proxy`).",
        source: SKEW_POLICY_URL,
        run: kube_proxy_skew,
    },
    CheckInfo {
        code: "SKEW005",
        title: "kubectl more than one minor from the control plane",
        severity: Severity::Warning,
        category: Category::Versions,
        applies: Applies::ALWAYS,
        inspects: "The operator's kubectl against every minor the control plane passes through: kubectl is supported within one minor, older or newer.",
        remediation: "Use a kubectl within one minor of each hop (for example one kubectl per hop, or the hop's minor).",
        source: SKEW_POLICY_URL,
        run: kubectl_skew,
    },
    CheckInfo {
        code: "NODE001",
        title: "Node not ready or under pressure",
        severity: Severity::Blocker,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Nodes whose Ready condition is not True, or with MemoryPressure, DiskPressure or PIDPressure. Pods drained from other nodes cannot land there, and the upgrade hides the cause.",
        remediation: "Fix or replace the node before upgrading (`kubectl describe node <name>`).",
        source: "https://kubernetes.io/docs/concepts/architecture/nodes/#condition",
        run: unhealthy_nodes,
    },
    CheckInfo {
        code: "NODE002",
        title: "Node cordoned",
        severity: Severity::Warning,
        category: Category::Workloads,
        applies: Applies::ALWAYS,
        inspects: "Nodes marked unschedulable before the upgrade starts: less room for drained pods, and maybe an unfinished earlier attempt.",
        remediation: "Uncordon the node (`kubectl uncordon <name>`) or remove it, and find out who cordoned it.",
        source: "https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-a-node/",
        run: cordoned_nodes,
    },
];

fn beyond_data(ctx: &Context<'_>) -> Outcome {
    Outcome::Checked(
        ctx.plan
            .notes
            .iter()
            .filter(|n| matches!(n, PlanNote::BeyondData { .. }))
            .map(|n| Issue::new(None, n.to_string()).at_hop(ctx.target()))
            .collect(),
    )
}

fn below_supported(ctx: &Context<'_>) -> Outcome {
    Outcome::Checked(
        ctx.plan
            .notes
            .iter()
            .filter(|n| matches!(n, PlanNote::BelowSupportedRange { .. }))
            .map(|n| Issue::new(None, n.to_string()))
            .collect(),
    )
}

fn support_calendar(ctx: &Context<'_>) -> Outcome {
    let Some(today) = &ctx.facts.cluster.observed_on else {
        return Outcome::Skipped(
            "`cluster.observed_on` is not set, so support dates cannot be compared".into(),
        );
    };
    let mut issues = Vec::new();
    let cluster = Subject::cluster("Cluster", &ctx.facts.cluster.name);
    if let Some(row) = ctx.data.eks_release(ctx.current()) {
        match &row.end_of_extended_support {
            Some(end) if end <= today => issues.push(Issue::new(
                Some(cluster.clone()),
                format!(
                    "{} left EKS extended support on {end}; EKS upgrades such control planes by itself (nodes and add-ons stay behind)",
                    row.minor
                ),
            )),
            _ if row.end_of_standard_support <= *today => issues.push(Issue::new(
                Some(cluster.clone()),
                format!(
                    "{} is in EKS extended support since {} (billed extra){}",
                    row.minor,
                    row.end_of_standard_support,
                    row.end_of_extended_support
                        .as_ref()
                        .map(|e| format!("; it ends on {e}"))
                        .unwrap_or_default()
                ),
            )),
            _ => {}
        }
    }
    if let Some(row) = ctx.data.eks_release(ctx.target())
        && row.end_of_standard_support <= *today
    {
        issues.push(
            Issue::new(
                Some(cluster),
                format!(
                    "the target {} is itself in EKS extended support since {}; the cluster will still be billed for extended support after the upgrade",
                    row.minor, row.end_of_standard_support
                ),
            )
            .at_hop(ctx.target()),
        );
    }
    Outcome::Checked(issues)
}

fn version_notes(ctx: &Context<'_>) -> Outcome {
    let cluster = Subject::cluster("Cluster", &ctx.facts.cluster.name);
    let issues = ctx
        .hop_targets()
        .filter_map(|minor| ctx.data.eks_release(minor))
        .flat_map(|row| {
            row.notes.iter().map(|note| {
                Issue::new(Some(cluster.clone()), format!("EKS {}: {note}", row.minor))
                    .at_hop(row.minor)
            })
        })
        .collect();
    Outcome::Checked(issues)
}

/// The first hop at or after `minor`, where an issue that starts there belongs.
pub(super) fn first_hop_from(ctx: &Context<'_>, minor: KubeMinor) -> Option<KubeMinor> {
    ctx.hop_targets().find(|m| *m >= minor)
}

fn al2_nodes(ctx: &Context<'_>) -> Outcome {
    let hop = first_hop_from(ctx, KubeMinor::new(1, 33));
    let issues = ctx
        .facts
        .nodes
        .iter()
        .filter(|n| {
            n.os_image.as_deref().is_some_and(|os| {
                os.starts_with("Amazon Linux 2") && !os.starts_with("Amazon Linux 2023")
            })
        })
        .map(|n| {
            let issue = Issue::new(
                Some(Subject::cluster("Node", &n.name)),
                format!(
                    "runs {} ({}); no EKS AL2 AMI exists for 1.33 or later",
                    n.os_image.as_deref().unwrap_or_default(),
                    group_label(n.group.as_deref(), n.provisioner)
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

fn group_label(group: Option<&str>, provisioner: NodeProvisioner) -> String {
    match group {
        Some(g) => format!("{provisioner} `{g}`"),
        None => provisioner.to_string(),
    }
}

fn ipvs_mode(ctx: &Context<'_>) -> Outcome {
    let Some(kube_proxy) = &ctx.facts.kube_proxy else {
        return Outcome::Skipped("no kube-proxy DaemonSet in the facts".into());
    };
    let Some(mode) = &kube_proxy.mode else {
        return Outcome::Skipped("the kube-proxy mode is not in the facts".into());
    };
    let mut issues = Vec::new();
    if mode.eq_ignore_ascii_case("ipvs") {
        let issue = Issue::new(
            Some(Subject::namespaced(
                "DaemonSet",
                "kube-system",
                "kube-proxy",
            )),
            "kube-proxy runs in IPVS mode, deprecated in 1.35 and planned for removal in 1.36",
        );
        issues.push(match first_hop_from(ctx, KubeMinor::new(1, 35)) {
            Some(hop) => issue.at_hop(hop),
            None => issue,
        });
    }
    Outcome::Checked(issues)
}

fn containerd_1(ctx: &Context<'_>) -> Outcome {
    let hop = first_hop_from(ctx, KubeMinor::new(1, 36));
    let issues = ctx
        .facts
        .nodes
        .iter()
        .filter_map(|n| {
            let runtime = n.container_runtime.as_deref()?;
            let version = runtime.strip_prefix("containerd://")?;
            version.starts_with("1.").then(|| {
                let issue = Issue::new(
                    Some(Subject::cluster("Node", &n.name)),
                    format!("runs containerd {version}; Kubernetes 1.36 no longer supports containerd 1.x"),
                );
                match hop {
                    Some(hop) => issue.at_hop(hop),
                    None => issue,
                }
            })
        })
        .collect();
    Outcome::Checked(issues)
}

fn kubelet_skew(ctx: &Context<'_>) -> Outcome {
    if ctx.facts.nodes.is_empty() {
        return Outcome::Skipped("no nodes in the facts".into());
    }
    let current = ctx.current();
    let next = ctx.first_hop();
    let mut issues = Vec::new();
    for node in &ctx.facts.nodes {
        let kubelet = node.kubelet_version.minor;
        let subject = Some(Subject::cluster("Node", &node.name));
        if let Err(violation) = skew::evaluate(Component::Kubelet, current, kubelet) {
            issues.push(Issue::new(
                subject,
                format!(
                    "kubelet {} is {violation} at {current} now",
                    node.kubelet_version
                ),
            ));
        } else if let Err(violation) = skew::evaluate(Component::Kubelet, next, kubelet) {
            issues.push(
                Issue::new(
                    subject,
                    format!(
                        "kubelet {} would be {violation} once the control plane is at {next}",
                        node.kubelet_version
                    ),
                )
                .at_hop(next),
            );
        }
    }
    Outcome::Checked(issues)
}

/// (whether it names a node group, the group name or else the node name).
type GroupKey = (bool, String);

/// Nodes behind the control plane grouped by (group, kubelet minor), for one message per group.
fn nodes_behind(ctx: &Context<'_>, strict: bool) -> Outcome {
    if ctx.facts.nodes.is_empty() {
        return Outcome::Skipped("no nodes in the facts".into());
    }
    let current = ctx.current();
    let mut groups: BTreeMap<(GroupKey, KubeMinor), (NodeProvisioner, Vec<&str>)> = BTreeMap::new();
    for node in &ctx.facts.nodes {
        let is_strict = matches!(
            node.provisioner,
            NodeProvisioner::ManagedNodeGroup | NodeProvisioner::Fargate
        );
        if is_strict != strict || node.kubelet_version.minor >= current {
            continue;
        }
        let group = match &node.group {
            Some(group) => (true, group.clone()),
            None => (false, node.name.clone()),
        };
        groups
            .entry((group, node.kubelet_version.minor))
            .or_insert((node.provisioner, Vec::new()))
            .1
            .push(&node.name);
    }
    let issues = groups
        .into_iter()
        .map(|(((is_group, group), minor), (provisioner, nodes))| {
            let kind = match (is_group, provisioner) {
                (false, _) => "Node",
                (true, NodeProvisioner::Karpenter) => "NodePool",
                (true, _) => "NodeGroup",
            };
            Issue::new(
                Some(Subject::cluster(kind, &group)),
                format!(
                    "{} {provisioner} node(s) run kubelet {minor}, the control plane runs {current}{}",
                    nodes.len(),
                    if strict {
                        "; EKS refuses the control-plane update until they match"
                    } else {
                        ""
                    }
                ),
            )
            .at_hop(ctx.first_hop())
        })
        .collect();
    Outcome::Checked(issues)
}

fn managed_nodes_behind(ctx: &Context<'_>) -> Outcome {
    nodes_behind(ctx, true)
}

fn other_nodes_behind(ctx: &Context<'_>) -> Outcome {
    nodes_behind(ctx, false)
}

/// kube-proxy versions nodes report (`nodeInfo.kubeProxyVersion`) against their kubelet.
fn per_node_kube_proxy(ctx: &Context<'_>) -> Vec<Issue> {
    ctx.facts
        .nodes
        .iter()
        .filter_map(|n| {
            let proxy = n.kube_proxy_version.as_ref()?;
            let violation =
                skew::evaluate_proxy_with_kubelet(n.kubelet_version.minor, proxy.minor).err()?;
            let relation = match violation {
                SkewViolation::TooNew { ahead, allowed } => {
                    format!("{ahead} minor(s) newer than (allowed: {allowed})")
                }
                SkewViolation::TooOld { behind, allowed } => {
                    format!("{behind} minor(s) older than (allowed: {allowed})")
                }
                SkewViolation::MajorMismatch => "a different major version than".to_owned(),
            };
            Some(Issue::new(
                Some(Subject::cluster("Node", &n.name)),
                format!(
                    "kube-proxy {proxy} is {relation} the kubelet {} on the same node",
                    n.kubelet_version
                ),
            ))
        })
        .collect()
}

fn kube_proxy_skew(ctx: &Context<'_>) -> Outcome {
    let per_node = per_node_kube_proxy(ctx);
    let Some(kube_proxy) = &ctx.facts.kube_proxy else {
        if ctx
            .facts
            .nodes
            .iter()
            .any(|n| n.kube_proxy_version.is_some())
        {
            return Outcome::Checked(per_node);
        }
        return Outcome::Skipped(
            "no kube-proxy DaemonSet or node kube-proxy versions in the facts".into(),
        );
    };
    let subject = Some(Subject::namespaced(
        "DaemonSet",
        "kube-system",
        "kube-proxy",
    ));
    let Some(version) = kube_proxy.version() else {
        return Outcome::Checked(vec![Issue::new(
            subject,
            format!(
                "the image tag of `{}` is not a version, so its skew cannot be checked",
                kube_proxy.image
            ),
        )]);
    };
    let (current, next) = (ctx.current(), ctx.first_hop());
    let mut issues = per_node;
    if let Err(violation) = skew::evaluate(Component::KubeProxy, current, version.minor) {
        issues.push(Issue::new(
            subject,
            format!("kube-proxy {version} is {violation} at {current} now"),
        ));
    } else if let Err(violation) = skew::evaluate(Component::KubeProxy, next, version.minor) {
        issues.push(
            Issue::new(
                subject,
                format!(
                    "kube-proxy {version} would be {violation} once the control plane is at {next}"
                ),
            )
            .at_hop(next),
        );
    }
    Outcome::Checked(issues)
}

fn kubectl_skew(ctx: &Context<'_>) -> Outcome {
    let Some(kubectl) = &ctx.facts.cluster.kubectl_version else {
        return Outcome::Skipped("`cluster.kubectl_version` is not set".into());
    };
    let outside: Vec<KubeMinor> = std::iter::once(ctx.current())
        .chain(ctx.hop_targets())
        .filter(|api| skew::evaluate(Component::Kubectl, *api, kubectl.minor).is_err())
        .collect();
    if outside.is_empty() {
        return Outcome::Checked(Vec::new());
    }
    let list = outside
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Outcome::Checked(vec![Issue::new(
        Some(Subject::cluster("Client", "kubectl")),
        format!("kubectl {kubectl} is more than one minor away from the control plane at {list}"),
    )])
}

fn unhealthy_nodes(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .nodes
        .iter()
        .filter(|n| !n.ready || !n.pressure.is_empty())
        .map(|n| {
            let mut problems = Vec::new();
            if !n.ready {
                problems.push("not Ready".to_owned());
            }
            problems.extend(n.pressure.iter().cloned());
            Issue::new(Some(Subject::cluster("Node", &n.name)), problems.join(", "))
        })
        .collect();
    Outcome::Checked(issues)
}

fn cordoned_nodes(ctx: &Context<'_>) -> Outcome {
    let issues = ctx
        .facts
        .nodes
        .iter()
        .filter(|n| n.unschedulable)
        .map(|n| {
            Issue::new(
                Some(Subject::cluster("Node", &n.name)),
                "cordoned (spec.unschedulable) before the upgrade starts",
            )
        })
        .collect();
    Outcome::Checked(issues)
}
