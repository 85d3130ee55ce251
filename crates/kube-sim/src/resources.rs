//! The resource table: every kind the server serves, built-in or from a CRD.
//!
//! The HTTP layer, discovery, OpenAPI and storage are all driven by this table, so serving a
//! new kind is one row (or one CustomResourceDefinition), never a new code path.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// A printer column for `kubectl get` tables: header and a simple JSON path (`.status.phase`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `date`, ...
    pub column_type: String,
    /// A dotted path into the object (`.spec.replicas`).
    pub json_path: String,
}

/// One served resource (kind) at one group/version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// API version within the group (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name used in URLs (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// `kubectl` short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether a `/status` subresource exists (then the main resource ignores status writes).
    pub status_subresource: bool,
    /// Whether a `/scale` subresource exists, with the replica paths.
    pub scale: Option<ScalePaths>,
    /// Served from a CustomResourceDefinition (strategic merge patch is refused, as upstream).
    pub custom: bool,
    /// Extra columns for table output.
    pub columns: Vec<PrinterColumn>,
}

/// Where a scalable kind keeps its replica counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// `.spec.replicas`
    pub spec_replicas: String,
    /// `.status.replicas`
    pub status_replicas: String,
    /// `.status.selector` or empty (then the selector is read from `.spec.selector`).
    pub label_selector: String,
}

impl ResourceType {
    /// The storage key: group and plural (all versions of a kind share one store).
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `apps/v1`, or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// Builder for the built-in rows.
struct Row {
    ty: ResourceType,
}

impl Row {
    fn new(gv: &str, kind: &str, plural: &str, namespaced: bool) -> Row {
        let (group, version) = match gv.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), gv.to_string()),
        };
        Row {
            ty: ResourceType {
                group,
                version,
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: kind.to_lowercase(),
                namespaced,
                short_names: Vec::new(),
                categories: Vec::new(),
                status_subresource: false,
                scale: None,
                custom: false,
                columns: Vec::new(),
            },
        }
    }
    fn short(mut self, names: &[&str]) -> Row {
        self.ty.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn all(mut self) -> Row {
        self.ty.categories = vec!["all".to_string()];
        self
    }
    fn status(mut self) -> Row {
        self.ty.status_subresource = true;
        self
    }
    fn scale(mut self) -> Row {
        self.ty.scale = Some(ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: String::new(),
        });
        self
    }
    fn col(mut self, name: &str, column_type: &str, path: &str) -> Row {
        self.ty.columns.push(PrinterColumn {
            name: name.into(),
            column_type: column_type.into(),
            json_path: path.into(),
        });
        self
    }
}

/// The kinds every simulated cluster serves.
pub fn builtin_types() -> Vec<ResourceType> {
    let rows = vec![
        Row::new("v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .status()
            .col("Status", "string", ".status.phase"),
        Row::new("v1", "Node", "nodes", false)
            .short(&["no"])
            .status()
            .col("Version", "string", ".status.nodeInfo.kubeletVersion"),
        Row::new("v1", "Pod", "pods", true)
            .short(&["po"])
            .all()
            .status()
            .col("Status", "string", ".status.phase")
            .col("Node", "string", ".spec.nodeName"),
        Row::new("v1", "Service", "services", true)
            .short(&["svc"])
            .all()
            .status()
            .col("Type", "string", ".spec.type")
            .col("Cluster-IP", "string", ".spec.clusterIP"),
        Row::new("v1", "Endpoints", "endpoints", true).short(&["ep"]),
        Row::new("v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        Row::new("v1", "Secret", "secrets", true).col("Type", "string", ".type"),
        Row::new("v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        Row::new("v1", "Event", "events", true)
            .short(&["ev"])
            .col("Reason", "string", ".reason")
            .col("Message", "string", ".message"),
        Row::new("v1", "PersistentVolume", "persistentvolumes", false)
            .short(&["pv"])
            .status(),
        Row::new(
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .short(&["pvc"])
        .status(),
        Row::new("v1", "ResourceQuota", "resourcequotas", true)
            .short(&["quota"])
            .status(),
        Row::new("v1", "LimitRange", "limitranges", true).short(&["limits"]),
        Row::new("apps/v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .all()
            .status()
            .scale()
            .col("Ready", "integer", ".status.readyReplicas")
            .col("Up-to-date", "integer", ".status.updatedReplicas")
            .col("Available", "integer", ".status.availableReplicas"),
        Row::new("apps/v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .all()
            .status()
            .scale()
            .col("Desired", "integer", ".spec.replicas")
            .col("Ready", "integer", ".status.readyReplicas"),
        Row::new("apps/v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .all()
            .status()
            .scale()
            .col("Ready", "integer", ".status.readyReplicas"),
        Row::new("apps/v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .all()
            .status()
            .col("Desired", "integer", ".status.desiredNumberScheduled")
            .col("Ready", "integer", ".status.numberReady"),
        Row::new("apps/v1", "ControllerRevision", "controllerrevisions", true),
        Row::new("batch/v1", "Job", "jobs", true)
            .all()
            .status()
            .col("Succeeded", "integer", ".status.succeeded"),
        Row::new("batch/v1", "CronJob", "cronjobs", true)
            .short(&["cj"])
            .all()
            .status()
            .col("Schedule", "string", ".spec.schedule"),
        Row::new(
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .short(&["pdb"])
        .status()
        .col("Min Available", "string", ".spec.minAvailable")
        .col("Max Unavailable", "string", ".spec.maxUnavailable")
        .col(
            "Allowed Disruptions",
            "integer",
            ".status.disruptionsAllowed",
        ),
        Row::new("coordination.k8s.io/v1", "Lease", "leases", true).col(
            "Holder",
            "string",
            ".spec.holderIdentity",
        ),
        Row::new("rbac.authorization.k8s.io/v1", "Role", "roles", true),
        Row::new(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        Row::new(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        Row::new(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        Row::new("networking.k8s.io/v1", "Ingress", "ingresses", true)
            .short(&["ing"])
            .status(),
        Row::new(
            "networking.k8s.io/v1",
            "IngressClass",
            "ingressclasses",
            false,
        ),
        Row::new(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .short(&["netpol"]),
        Row::new("storage.k8s.io/v1", "StorageClass", "storageclasses", false).short(&["sc"]),
        Row::new(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            "priorityclasses",
            false,
        )
        .short(&["pc"]),
        Row::new(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .all()
        .status(),
        // Same group and plural as v2: one store, served at both versions.
        Row::new(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .short(&["hpa"])
        .status(),
        Row::new(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        Row::new("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", false),
        Row::new("storage.k8s.io/v1", "CSIDriver", "csidrivers", false),
        Row::new(
            "apiregistration.k8s.io/v1",
            "APIService",
            "apiservices",
            false,
        )
        .status(),
        Row::new(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        Row::new(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        Row::new(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .status(),
    ];
    rows.into_iter().map(|r| r.ty).collect()
}

/// The served kinds, built-in plus CRD-defined.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    by_path: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// The built-in table.
    pub fn builtin() -> Registry {
        let mut reg = Registry {
            types: Vec::new(),
            by_path: BTreeMap::new(),
        };
        for ty in builtin_types() {
            reg.add(ty);
        }
        reg
    }

    /// Adds or replaces a row.
    pub fn add(&mut self, ty: ResourceType) {
        let ty = Arc::new(ty);
        self.types
            .retain(|t| !(t.group == ty.group && t.version == ty.version && t.plural == ty.plural));
        self.by_path.insert(
            (ty.group.clone(), ty.version.clone(), ty.plural.clone()),
            ty.clone(),
        );
        self.types.push(ty);
    }

    /// Removes every version of a CRD-served resource.
    pub fn remove_custom(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.custom && t.group == group && t.plural == plural));
        self.by_path
            .retain(|(g, _, p), t| !(t.custom && g == group && p == plural));
    }

    /// All rows in registration order.
    pub fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The row for a URL (`group`, `version`, `plural`).
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The row for an object's `apiVersion` and `kind`.
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    /// Any served version of `group`/`kind` (used when an object is read at another version).
    pub fn lookup_group_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    /// Served groups with their versions, in first-seen order (`""` is core).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The rows a CustomResourceDefinition serves (one per served version).
pub fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(name) = version["name"].as_str() else {
            continue;
        };
        let sub = &version["subresources"];
        let scale = sub
            .get("scale")
            .filter(|s| s.is_object())
            .map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .into(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .into(),
                label_selector: s["labelSelectorPath"].as_str().unwrap_or_default().into(),
            });
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["jsonPath"].as_str() != Some(".metadata.creationTimestamp"))
            .map(|c| PrinterColumn {
                name: c["name"].as_str().unwrap_or_default().into(),
                column_type: c["type"].as_str().unwrap_or("string").into(),
                json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
            })
            .collect();
        out.push(ResourceType {
            group: group.clone(),
            version: name.to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: sub.get("status").is_some_and(Value::is_object),
            scale,
            custom: true,
            columns,
        });
    }
    out
}

/// Reads a simple JSON path (`.status.phase`, `.spec.containers[0].image`) from an object.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}
