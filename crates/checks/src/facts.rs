//! What the checks look at: plain, serde-friendly facts about a cluster, its Helm releases,
//! its EKS add-ons and a Terraform plan review.
//!
//! A live cluster (through the `kube` crate), a simulator or a saved YAML/JSON dump fill the
//! same structs, so every check runs the same way on all three. Every list defaults to empty
//! and every optional field to "not known": a dump only needs what it has. A check never
//! treats "not known" as "fine" silently; it skips, and the report lists what was not checked.
//!
//! ```
//! use upgrade_checks::facts::Facts;
//!
//! let facts = Facts::from_yaml(r#"
//! cluster:
//!   name: mlops-platform-dev
//!   server_version: v1.30.2-eks-a5d2b1c
//! nodes:
//!   - name: ip-10-0-1-10.ec2.internal
//!     kubelet_version: v1.30.2-eks-a5d2b1c
//! "#).unwrap();
//! assert_eq!(facts.cluster.server_version.minor.to_string(), "1.30");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data::IsoDate;
use upgrade_core::version::{KubeMinor, KubeVersion};

/// Facts that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The text is not YAML (or JSON) of the facts' shape.
    #[error(
        "the cluster facts do not parse: {0} (see `fixtures/facts/healthy.yaml` for the shape)"
    )]
    Parse(#[source] serde_norway::Error),
}

/// Everything the checks know about one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// The cluster itself.
    pub cluster: ClusterFacts,
    /// Every node.
    #[serde(default)]
    pub nodes: Vec<NodeFacts>,
    /// The `kube-system/kube-proxy` DaemonSet, when present.
    #[serde(default)]
    pub kube_proxy: Option<KubeProxyFacts>,
    /// Deployments, StatefulSets, ReplicaSets without owner, DaemonSets.
    #[serde(default)]
    pub workloads: Vec<WorkloadFacts>,
    /// PodDisruptionBudgets.
    #[serde(default)]
    pub pdbs: Vec<PdbFacts>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<PodFacts>,
    /// PersistentVolumeClaims.
    #[serde(default)]
    pub pvcs: Vec<PvcFacts>,
    /// Services with `spec.externalIPs`.
    #[serde(default)]
    pub services: Vec<ServiceFacts>,
    /// cert-manager `Certificate`s.
    #[serde(default)]
    pub certificates: Vec<CertificateFacts>,
    /// Recent events of type `Warning`.
    #[serde(default)]
    pub warning_events: Vec<EventFacts>,
    /// Helm releases, with their rendered manifests.
    #[serde(default)]
    pub helm_releases: Vec<HelmReleaseFacts>,
    /// Manifests deployed without Helm (kustomize output, Argo CD apps), rendered.
    #[serde(default)]
    pub manifests: Vec<ManifestFacts>,
    /// EKS add-ons.
    #[serde(default)]
    pub addons: Vec<AddonFacts>,
    /// Platform components whose version is known without Helm (or overrides Helm's).
    #[serde(default)]
    pub components: Vec<ComponentFacts>,
    /// The review of the Terraform plan for the next hop, when one was made.
    #[serde(default)]
    pub terraform: Option<TerraformReview>,
    /// The major version of the Helm that will upgrade the releases (3 or 4), when known: the
    /// two evaluate a chart's `kubeVersion` differently for EKS versions. Unknown means both
    /// are considered.
    #[serde(default)]
    pub helm_major: Option<u64>,
}

impl Facts {
    /// Reads facts from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self, FactsError> {
        serde_norway::from_str(text).map_err(FactsError::Parse)
    }

    /// The control plane's minor.
    pub fn current_minor(&self) -> KubeMinor {
        self.cluster.server_version.minor
    }
}

/// The cluster as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFacts {
    /// The EKS cluster name (`mlops-platform-dev`).
    pub name: String,
    /// The AWS region, when known.
    #[serde(default)]
    pub region: Option<String>,
    /// What the API server reports (`/version` `gitVersion`, `v1.30.2-eks-a5d2b1c`).
    pub server_version: KubeVersion,
    /// The `kubectl` the operator will use, when known.
    #[serde(default)]
    pub kubectl_version: Option<KubeVersion>,
    /// The day the facts were collected (UTC); the EKS support-calendar check needs it.
    #[serde(default)]
    pub observed_on: Option<IsoDate>,
    /// The Terraform directory that owns the cluster (for the playbook's commands).
    #[serde(default)]
    pub terraform_dir: Option<String>,
}

impl Default for ClusterFacts {
    fn default() -> Self {
        Self {
            name: String::new(),
            region: None,
            server_version: KubeMinor::new(1, 0).into(),
            kubectl_version: None,
            observed_on: None,
            terraform_dir: None,
        }
    }
}

/// How a node is provisioned, which decides who upgrades it and how strict EKS is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeProvisioner {
    /// An EKS managed node group (`eks.amazonaws.com/nodegroup` label).
    ManagedNodeGroup,
    /// A Fargate node.
    Fargate,
    /// A Karpenter node (`karpenter.sh/nodepool` label).
    Karpenter,
    /// A self-managed node (an ASG of our own).
    SelfManaged,
    /// Not known.
    #[default]
    Unknown,
}

impl fmt::Display for NodeProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeProvisioner::ManagedNodeGroup => "managed node group",
            NodeProvisioner::Fargate => "Fargate",
            NodeProvisioner::Karpenter => "Karpenter",
            NodeProvisioner::SelfManaged => "self-managed",
            NodeProvisioner::Unknown => "unknown provisioner",
        })
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFacts {
    /// The node name.
    pub name: String,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: KubeVersion,
    /// `status.nodeInfo.kubeProxyVersion` (deprecated field; often empty).
    #[serde(default)]
    pub kube_proxy_version: Option<KubeVersion>,
    /// `status.nodeInfo.osImage` (`Amazon Linux 2`, `Amazon Linux 2023.6.20250115`).
    #[serde(default)]
    pub os_image: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion` (`containerd://1.7.27`).
    #[serde(default)]
    pub container_runtime: Option<String>,
    /// Who provisions the node.
    #[serde(default)]
    pub provisioner: NodeProvisioner,
    /// The managed node group, Karpenter NodePool or ASG name, when known.
    #[serde(default)]
    pub group: Option<String>,
    /// Whether the `Ready` condition is `True`.
    #[serde(default = "yes")]
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    #[serde(default)]
    pub unschedulable: bool,
    /// Pressure conditions that are `True` (`MemoryPressure`, `DiskPressure`, `PIDPressure`).
    #[serde(default)]
    pub pressure: Vec<String>,
    /// `spec.taints` (pods that do not tolerate them cannot be rescheduled onto the node).
    #[serde(default)]
    pub taints: Vec<TaintFacts>,
}

/// One node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintFacts {
    /// The key, e.g. `nvidia.com/gpu`.
    pub key: String,
    /// The value, if any.
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

fn yes() -> bool {
    true
}

/// The kube-proxy DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeProxyFacts {
    /// The first container's image (`…/eks/kube-proxy:v1.30.7-minimal-eksbuild.2`).
    pub image: String,
    /// `mode` from the `kube-proxy-config` ConfigMap (`iptables`, `ipvs`, `nftables`).
    #[serde(default)]
    pub mode: Option<String>,
}

impl KubeProxyFacts {
    /// The version in the image tag, when the tag is a version.
    pub fn version(&self) -> Option<KubeVersion> {
        let tag = self.image.rsplit_once(':')?.1;
        // `v1.30.7-minimal-eksbuild.2` → `v1.30.7`: the suffix is not needed for the minor.
        let core = tag.split(['-', '@']).next()?;
        core.parse().ok()
    }
}

/// The kind of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet without an owning Deployment.
    ReplicaSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A container of a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFacts {
    /// The container name.
    pub name: String,
    /// The image.
    #[serde(default)]
    pub image: Option<String>,
    /// Whether it has a readiness probe.
    #[serde(default)]
    pub readiness_probe: bool,
}

/// A workload controller and its pod template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFacts {
    /// The kind.
    pub kind: WorkloadKind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `spec.replicas` (None for DaemonSets).
    #[serde(default)]
    pub replicas: Option<i32>,
    /// `status.readyReplicas`.
    #[serde(default)]
    pub ready_replicas: Option<i32>,
    /// `spec.minReadySeconds`.
    #[serde(default)]
    pub min_ready_seconds: Option<i32>,
    /// The pod template's labels (what PDB selectors match).
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
    /// The pod template's containers.
    #[serde(default)]
    pub containers: Vec<ContainerFacts>,
    /// Whether the template has pod anti-affinity.
    #[serde(default)]
    pub pod_anti_affinity: bool,
    /// Whether the template has topology spread constraints.
    #[serde(default)]
    pub topology_spread: bool,
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be equal.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One set-based selector requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In`/`NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether the selector selects a pod with `labels` (an empty selector selects all, as in
    /// `policy/v1`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    // An unknown operator selects nothing, as the API server would refuse it.
                    _ => false,
                }
            })
    }
}

/// An integer or a percentage, as in `minAvailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    /// An absolute number.
    Int(i32),
    /// A string, normally `"50%"`.
    String(String),
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::String(s) => f.write_str(s),
        }
    }
}

/// A PodDisruptionBudget and its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdbFacts {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `spec.selector`.
    #[serde(default)]
    pub selector: LabelSelector,
    /// `spec.minAvailable`.
    #[serde(default)]
    pub min_available: Option<IntOrPercent>,
    /// `spec.maxUnavailable`.
    #[serde(default)]
    pub max_unavailable: Option<IntOrPercent>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `status.currentHealthy`.
    #[serde(default)]
    pub current_healthy: Option<i32>,
    /// `status.expectedPods`.
    #[serde(default)]
    pub expected_pods: Option<i32>,
}

/// The controller that owns a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerFacts {
    /// The owner's kind (`ReplicaSet`, `Job`, `Workflow`, `DaemonSet`…).
    pub kind: String,
    /// The owner's name.
    pub name: String,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodFacts {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The node it runs on.
    #[serde(default)]
    pub node: Option<String>,
    /// `status.phase` (`Running`, `Pending`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: String,
    /// The controlling owner; `None` = a bare pod that a drain deletes for good.
    #[serde(default)]
    pub controller: Option<OwnerFacts>,
    /// Annotations that matter (`karpenter.sh/do-not-disrupt`), or all of them.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Labels (Argo Workflows marks its pods with `workflows.argoproj.io/workflow`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether it mounts `emptyDir` volumes (their data is lost on drain).
    #[serde(default)]
    pub local_storage: bool,
    /// Seconds since the pod started, when running.
    #[serde(default)]
    pub running_seconds: Option<u64>,
    /// `spec.terminationGracePeriodSeconds`.
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
    /// The names of its `gitRepo` volumes (the kubelet refuses them from 1.36).
    #[serde(default)]
    pub git_repo_volumes: Vec<String>,
}

/// A Service that sets `spec.externalIPs` (the only Services the checks need).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFacts {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `spec.externalIPs`.
    pub external_ips: Vec<String>,
}

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvcFacts {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `status.phase` (`Bound`, `Pending`, `Lost`).
    pub phase: String,
    /// The storage class.
    #[serde(default)]
    pub storage_class: Option<String>,
}

/// A cert-manager Certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFacts {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// `status.notAfter`, as a day.
    #[serde(default)]
    pub not_after: Option<IsoDate>,
    /// The `Ready` condition's message when not ready.
    #[serde(default)]
    pub message: Option<String>,
}

/// A warning event, aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFacts {
    /// The namespace.
    pub namespace: String,
    /// The object it is about (`Pod/mlflow-7d9c`).
    pub object: String,
    /// The reason (`FailedScheduling`, `BackOff`, `FailedMount`…).
    pub reason: String,
    /// The message.
    #[serde(default)]
    pub message: String,
    /// How often it happened.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// A Helm release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmReleaseFacts {
    /// The release name.
    pub name: String,
    /// The release namespace.
    pub namespace: String,
    /// The chart name (`karpenter`).
    pub chart: String,
    /// The chart version.
    pub chart_version: String,
    /// The chart's `appVersion`.
    #[serde(default)]
    pub app_version: Option<String>,
    /// The release status (`deployed`, `failed`, `pending-upgrade`…).
    pub status: String,
    /// The chart's `kubeVersion` constraint, when it has one.
    #[serde(default)]
    pub kube_version: Option<String>,
    /// The rendered manifest (multi-document YAML).
    #[serde(default)]
    pub manifest: String,
    /// Where the chart comes from, for the playbook (`oci://public.ecr.aws/karpenter/karpenter`).
    #[serde(default)]
    pub chart_ref: Option<String>,
    /// The values file the platform upgrades it with, for the playbook.
    #[serde(default)]
    pub values_file: Option<String>,
}

/// Rendered manifests that did not come from Helm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFacts {
    /// Where they came from (a path, an Argo CD application).
    pub source: String,
    /// Multi-document YAML.
    pub content: String,
}

/// An EKS add-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonFacts {
    /// The add-on name (`vpc-cni`, `coredns`, `kube-proxy`, `aws-ebs-csi-driver`).
    pub name: String,
    /// The installed version (`v1.19.0-eksbuild.1`).
    pub version: String,
    /// `health.issues[].message`.
    #[serde(default)]
    pub health_issues: Vec<String>,
}

/// A platform component's version, when it does not come from a Helm release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentFacts {
    /// `karpenter`, `kserve`, `argo-workflows`, `argo-cd`, `cert-manager`.
    pub component: String,
    /// The version (`1.0.5`, `v0.14.1`).
    pub version: String,
}

/// What a Terraform plan will do to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformChange {
    /// The resource address (`module.eks.aws_eks_cluster.this[0]`).
    pub address: String,
    /// The resource type (`aws_eks_cluster`).
    pub resource_type: String,
    /// The plan's actions (`["update"]`, `["delete", "create"]` for a replacement).
    pub actions: Vec<String>,
}

impl TerraformChange {
    /// Whether Terraform destroys the resource (a delete, or a replacement).
    pub fn destroys(&self) -> bool {
        self.actions.iter().any(|a| a == "delete")
    }
}

/// A Terraform plan, reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformReview {
    /// The directory planned in.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// The cluster version the plan sets, when it changes it.
    #[serde(default)]
    pub cluster_version_change: Option<VersionChange>,
    /// Every resource with a non-no-op action.
    #[serde(default)]
    pub changes: Vec<TerraformChange>,
}

/// A version attribute changing from one minor to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionChange {
    /// Before.
    pub from: KubeMinor,
    /// After.
    pub to: KubeMinor,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let pod = labels(&[("app", "mlflow"), ("tier", "web")]);
        let mut s = LabelSelector::default();
        assert!(s.matches(&pod), "empty selects all");
        s.match_labels = labels(&[("app", "mlflow")]);
        assert!(s.matches(&pod));
        s.match_expressions.push(LabelRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: vec!["web".into(), "api".into()],
        });
        assert!(s.matches(&pod));
        s.match_expressions.push(LabelRequirement {
            key: "canary".into(),
            operator: "DoesNotExist".into(),
            values: vec![],
        });
        assert!(s.matches(&pod));
        s.match_expressions.push(LabelRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: vec!["web".into()],
        });
        assert!(!s.matches(&pod));
        let exists = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelRequirement {
                key: "app".into(),
                operator: "Exists".into(),
                values: vec![],
            }],
        };
        assert!(exists.matches(&pod));
        assert!(!exists.matches(&labels(&[])));
    }

    #[test]
    fn kube_proxy_version_from_the_image_tag() {
        let kp = |image: &str| {
            KubeProxyFacts {
                image: image.into(),
                mode: None,
            }
            .version()
            .map(|v| v.to_string())
        };
        assert_eq!(
            kp("602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/kube-proxy:v1.30.7-minimal-eksbuild.2").as_deref(),
            Some("1.30.7")
        );
        assert_eq!(
            kp("registry.k8s.io/kube-proxy:v1.31.0").as_deref(),
            Some("1.31.0")
        );
        assert_eq!(kp("kube-proxy:latest"), None);
        assert_eq!(kp("kube-proxy"), None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            Facts::from_yaml("cluster: {name: x, server_version: \"1.30\", sever: 1}").unwrap_err();
        assert!(err.to_string().contains("unknown field `sever`"), "{err}");
    }
}
