//! Moving a slice of one cluster into another: seed 001's Velero backup of the user
//! namespaces and its restore into the green cluster, with Velero's scope semantics and
//! without a Velero install.
//!
//! - **Scope.** The kinds asked for (Velero's `--include-resources`: singular, plural or
//!   `plural.group`, resolved by discovery on the source), their objects in the namespaces
//!   asked for, the namespaces themselves, the persistent volumes those namespaces' claims are
//!   bound to, and (Velero's `--include-cluster-resources`) every object of the other
//!   cluster-scoped kinds asked for, such as Kubeflow's profiles.
//! - **Left to the controllers.** A pod a controller owns is not copied: the controller
//!   recreates it from the copied custom resource, as seed 001 intends.
//! - **Volumes.** A volume on a shared file system (EFS, FSx) is re-bound on the target by
//!   its volume handle, with the `Retain` reclaim policy so that the target can never delete
//!   the source's data. Any other bound volume's data would not move: its claim is named, and
//!   copied unbound (a new, empty volume) only when the caller allows it.
//! - **Restore.** Velero's order (namespaces, volumes, claims, config maps, service accounts,
//!   pods, then the rest); metadata reset as Velero does (no uid, owner references, status);
//!   an object that exists on the target already is kept as it is and reported.
//!
//! Objects move a list page at a time with a bounded number of writes in flight, so memory
//! does not grow with the number of objects.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connect::Cluster;
use crate::error::{Error, Result, api_code};

/// Seed 001's `--include-resources` list.
pub const SEED_KINDS: &[&str] = &[
    "persistentvolume",
    "persistentvolumeclaim",
    "namespace",
    "image",
    "notebook",
    "profile",
    "inferenceservice",
    "configmap",
    "podvolumebackup",
    "pod",
    "serviceaccount",
];

/// CSI drivers of shared file systems: a volume on one is the same data from either cluster.
pub const SHARED_FILE_SYSTEM_DRIVERS: &[&str] = &["efs.csi.aws.com", "fsx.csi.aws.com"];

/// The annotation each copied object carries: where it came from.
pub const TRANSFERRED_FROM: &str = "upgrade.mlops.dev/transferred-from";

/// Seed 001's pod annotation naming the volumes Velero backs up with its file-system backup.
pub const VELERO_BACKUP_VOLUMES: &str = "backup.velero.io/backup-volumes";

/// How many objects a list page holds and how many writes are in flight.
const PAGE_SIZE: u32 = 500;
const WRITES_IN_FLIGHT: usize = 16;

/// What to move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferScope {
    /// The namespaces (the user namespaces).
    pub namespaces: Vec<String>,
    /// The kinds, as Velero's `--include-resources` names them.
    pub kinds: Vec<String>,
    /// Move every object of the cluster-scoped kinds asked for (Velero's
    /// `--include-cluster-resources`); namespaces and the claims' volumes move regardless.
    pub include_cluster_resources: bool,
    /// CSI drivers whose volumes are shared file systems (re-bound by handle).
    pub shared_drivers: Vec<String>,
}

/// A kind, resolved on the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferKind {
    /// API group (`""` for core).
    pub group: String,
    /// The version the source prefers.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl TransferKind {
    /// `plural.group`, or `plural` for the core group.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    fn api(&self, cluster: &Cluster, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = self.api_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &ar),
            None => Api::all_with(cluster.client().clone(), &ar),
        }
    }

    fn is_core(&self, plural: &str) -> bool {
        self.group.is_empty() && self.plural == plural
    }
}

/// The objects of one kind to move, each `namespace/name` (or `name` when cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSlice {
    /// The kind.
    pub kind: TransferKind,
    /// Its objects.
    pub objects: Vec<String>,
}

/// An object left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `resource namespace/name`.
    pub object: String,
    /// Why.
    pub reason: String,
}

/// What a transfer would do, read from both clusters; nothing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferPlan {
    /// The objects to move, in restore order.
    pub slices: Vec<KindSlice>,
    /// Objects in scope that are not moved, with the reason.
    pub skipped: Vec<Skipped>,
    /// Kinds asked for that the source does not serve.
    pub not_served: Vec<String>,
    /// Kinds with objects to move that the target does not serve (blocks).
    pub missing_on_target: Vec<String>,
    /// Volumes re-bound on the target by their handle (`pv name: driver handle`).
    pub rebound_volumes: Vec<String>,
    /// Claims whose bound volume's data would not move (`namespace/name` → why).
    pub unshared_claims: BTreeMap<String, String>,
    /// Objects that exist on the target already (kept as they are).
    pub existing_on_target: usize,
}

impl TransferPlan {
    /// How many objects move.
    pub fn object_count(&self) -> usize {
        self.slices.iter().map(|s| s.objects.len()).sum()
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOutcome {
    /// Objects created on the target.
    pub created: usize,
    /// Objects kept because the target had them already.
    pub existed: Vec<String>,
    /// Objects that were gone from the source when copied.
    pub gone: Vec<String>,
}

/// `namespace/name` or `name`.
fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// Velero's restore priorities: these first, in this order; every other kind after them in
/// the order asked for.
const RESTORE_ORDER: &[&str] = &[
    "namespaces",
    "persistentvolumes",
    "persistentvolumeclaims",
    "configmaps",
    "serviceaccounts",
    "pods",
];

fn restore_rank(kind: &TransferKind) -> usize {
    RESTORE_ORDER
        .iter()
        .position(|p| kind.is_core(p))
        .unwrap_or(RESTORE_ORDER.len())
}

/// Resolves Velero-style kind names on `cluster`: each to its kind at the version the
/// cluster prefers; the names it does not serve are returned apart.
pub async fn resolve_kinds(
    cluster: &Cluster,
    names: &[String],
) -> Result<(Vec<TransferKind>, Vec<String>)> {
    let discovery = Discovery::new(cluster.client().clone())
        .run()
        .await
        .map_err(|e| Error::api("discover the served kinds", e))?;
    let mut resolved: Vec<TransferKind> = Vec::new();
    let mut not_served = Vec::new();
    for name in names {
        let wanted = name.trim().to_ascii_lowercase();
        let found = discovery.groups().find_map(|group| {
            group
                .recommended_resources()
                .into_iter()
                .find(|(ar, _)| {
                    let full = if ar.group.is_empty() {
                        ar.plural.clone()
                    } else {
                        format!("{}.{}", ar.plural, ar.group)
                    };
                    wanted == ar.plural
                        || wanted == ar.kind.to_ascii_lowercase()
                        || wanted == full
                        || wanted == format!("{}.{}", ar.kind.to_ascii_lowercase(), ar.group)
                })
                .map(|(ar, caps)| TransferKind {
                    group: ar.group,
                    version: ar.version,
                    kind: ar.kind,
                    plural: ar.plural,
                    namespaced: caps.scope == Scope::Namespaced,
                })
        });
        match found {
            Some(kind) if !resolved.contains(&kind) => resolved.push(kind),
            Some(_) => {}
            None => not_served.push(name.clone()),
        }
    }
    resolved.sort_by_key(restore_rank);
    Ok((resolved, not_served))
}

/// The owner that recreates `object`, when a controller owns it.
fn controller_of(object: &Value) -> Option<String> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .map(|r| {
            format!(
                "{} {}",
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            )
        })
}

/// The shared file system a volume is on (`driver handle`), when it is on one.
fn shared_volume(pv: &Value, shared_drivers: &[String]) -> Option<String> {
    let csi = &pv["spec"]["csi"];
    if let Some(driver) = csi["driver"].as_str()
        && shared_drivers.iter().any(|d| d == driver)
    {
        return Some(format!(
            "{driver} {}",
            csi["volumeHandle"].as_str().unwrap_or_default()
        ));
    }
    // EFS mounted over NFS (the in-tree way): the server is the file system.
    pv["spec"]["nfs"]["server"].as_str().map(|server| {
        format!(
            "nfs {server}:{}",
            pv["spec"]["nfs"]["path"].as_str().unwrap_or("/")
        )
    })
}

/// Lists every object of `kind` on `cluster` page by page, calling `each` with its JSON.
async fn for_each_object(
    cluster: &Cluster,
    kind: &TransferKind,
    mut each: impl FnMut(Value),
) -> Result<()> {
    let action = format!("list {}", kind.resource());
    let mut pages = crate::retry::Pages::new(
        kind.api(cluster, None),
        &ListParams::default(),
        PAGE_SIZE,
        &action,
    );
    let mut seen = BTreeSet::new();
    while let Some(page) = pages.next().await? {
        for object in page {
            let value = serde_json::to_value(object).expect("objects serialise");
            let key = object_key(
                value["metadata"]["namespace"].as_str(),
                value["metadata"]["name"].as_str().unwrap_or_default(),
            );
            // A list that started over hands out objects again.
            if seen.insert(key) {
                each(value);
            }
        }
    }
    Ok(())
}

/// The names of `kind`'s objects on `cluster` (empty when it does not serve the kind).
async fn names_on(cluster: &Cluster, kind: &TransferKind) -> Result<Option<BTreeSet<String>>> {
    let mut names = BTreeSet::new();
    let listed = for_each_object(cluster, kind, |o| {
        names.insert(object_key(
            o["metadata"]["namespace"].as_str(),
            o["metadata"]["name"].as_str().unwrap_or_default(),
        ));
    })
    .await;
    match listed {
        Ok(()) => Ok(Some(names)),
        Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads both clusters and decides what moves (nothing changes). Namespaces in scope must
/// exist on `source`.
pub async fn plan(
    source: &Cluster,
    target: &Cluster,
    scope: &TransferScope,
) -> Result<TransferPlan> {
    let (kinds, not_served) = resolve_kinds(source, &scope.kinds).await?;
    let in_scope: BTreeSet<&str> = scope.namespaces.iter().map(String::as_str).collect();
    let namespaces_kind = TransferKind {
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
        namespaced: false,
    };
    let live_namespaces = names_on(source, &namespaces_kind)
        .await?
        .unwrap_or_default();
    let missing: Vec<&str> = in_scope
        .iter()
        .filter(|ns| !live_namespaces.contains(**ns))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Backup(format!(
            "namespace {} does not exist on {}",
            missing.join(", "),
            source.identity().display_name()
        )));
    }

    let mut plan = TransferPlan {
        not_served,
        ..TransferPlan::default()
    };
    // Claims first: which volumes they are bound to, and which pods back which volumes up.
    let mut claimed_volumes: BTreeMap<String, String> = BTreeMap::new(); // pv -> ns/claim
    let claims_kind = kinds
        .iter()
        .find(|k| k.is_core("persistentvolumeclaims"))
        .cloned();
    if let Some(claims) = &claims_kind {
        for_each_object(source, claims, |c| {
            let ns = c["metadata"]["namespace"].as_str().unwrap_or_default();
            if let (true, Some(volume)) = (in_scope.contains(ns), c["spec"]["volumeName"].as_str())
                && !volume.is_empty()
            {
                claimed_volumes.insert(
                    volume.to_string(),
                    object_key(Some(ns), c["metadata"]["name"].as_str().unwrap_or_default()),
                );
            }
        })
        .await?;
    }
    let mut unshared: BTreeMap<String, String> = BTreeMap::new(); // ns/claim -> why
    for kind in &kinds {
        let mut objects = Vec::new();
        let resource = kind.resource();
        for_each_object(source, kind, |o| {
            let ns = o["metadata"]["namespace"].as_str();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let key = object_key(ns, name);
            let skip = |reason: String| Skipped {
                object: format!("{resource} {key}"),
                reason,
            };
            if kind.namespaced && !ns.is_some_and(|ns| in_scope.contains(ns)) {
                return;
            }
            if kind.is_core("namespaces") && !in_scope.contains(name) {
                return;
            }
            if kind.is_core("persistentvolumes") {
                let Some(claim) = claimed_volumes.get(name) else {
                    return;
                };
                match shared_volume(&o, &scope.shared_drivers) {
                    Some(handle) => plan
                        .rebound_volumes
                        .push(format!("{name} ({handle}) for claim {claim}")),
                    None => {
                        let driver = o["spec"]["csi"]["driver"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| volume_source(&o));
                        unshared.insert(
                            claim.clone(),
                            format!("bound to {name} on {driver}, whose data does not move"),
                        );
                        plan.skipped.push(skip(format!(
                            "not a shared file system ({driver}): its data does not move; claim {claim} gets a new, empty volume if allowed"
                        )));
                        return;
                    }
                }
            } else if !kind.namespaced
                && !kind.is_core("namespaces")
                && !scope.include_cluster_resources
            {
                plan.skipped.push(skip(
                    "cluster-scoped, and cluster resources are not included".into(),
                ));
                return;
            }
            if !o["metadata"]["deletionTimestamp"].is_null() {
                plan.skipped.push(skip("being deleted on the source".into()));
                return;
            }
            if kind.is_core("pods")
                && let Some(owner) = controller_of(&o)
            {
                let backed_up = o["metadata"]["annotations"][VELERO_BACKUP_VOLUMES]
                    .as_str()
                    .map(|v| format!("; its volumes {v} are moved with their claims"))
                    .unwrap_or_default();
                plan.skipped.push(skip(format!(
                    "owned by {owner}: its controller recreates it on the target{backed_up}"
                )));
                return;
            }
            if kind.group.ends_with(".services.k8s.aws") {
                plan.skipped.push(skip(
                    "an ACK resource: copying it would create a second AWS resource; adopt it on the target instead (upgrade-bluegreen ack)".into(),
                ));
                return;
            }
            objects.push(key);
        })
        .await?;
        if objects.is_empty() {
            continue;
        }
        match names_on(target, kind).await? {
            None => plan
                .missing_on_target
                .push(format!("{resource} ({} objects to move)", objects.len())),
            Some(existing) => {
                plan.existing_on_target += objects.iter().filter(|o| existing.contains(*o)).count();
            }
        }
        plan.slices.push(KindSlice {
            kind: kind.clone(),
            objects,
        });
    }
    plan.unshared_claims = unshared;
    Ok(plan)
}

fn volume_source(pv: &Value) -> String {
    pv["spec"]
        .as_object()
        .and_then(|spec| {
            spec.keys()
                .find(|k| {
                    !matches!(
                        k.as_str(),
                        "accessModes"
                            | "capacity"
                            | "claimRef"
                            | "persistentVolumeReclaimPolicy"
                            | "storageClassName"
                            | "volumeMode"
                            | "nodeAffinity"
                            | "mountOptions"
                    )
                })
                .cloned()
        })
        .unwrap_or_else(|| "an unknown volume source".into())
}

/// The object as it is created on the target: metadata reset as Velero does (name,
/// namespace, labels and annotations kept), volumes and pods adjusted for a new cluster.
pub fn prepare(
    mut object: Value,
    kind: &TransferKind,
    fresh_claims: &BTreeSet<String>,
    source: &str,
) -> Value {
    let meta = &object["metadata"];
    let mut kept = serde_json::Map::new();
    for field in ["name", "namespace", "labels", "annotations"] {
        if let Some(value) = meta.get(field).filter(|v| !v.is_null()) {
            kept.insert(field.into(), value.clone());
        }
    }
    let annotations = kept
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(map) = annotations.as_object_mut() {
        map.remove("pv.kubernetes.io/bind-completed");
        map.remove("pv.kubernetes.io/bound-by-controller");
        map.insert(TRANSFERRED_FROM.into(), Value::String(source.into()));
    }
    let key = object_key(
        kept.get("namespace").and_then(Value::as_str),
        kept.get("name").and_then(Value::as_str).unwrap_or_default(),
    );
    object["metadata"] = Value::Object(kept);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        map.insert(
            "apiVersion".into(),
            Value::String(kind.api_resource().api_version),
        );
        map.insert("kind".into(), Value::String(kind.kind.clone()));
    }
    let spec = &mut object["spec"];
    if kind.is_core("persistentvolumes") {
        // The claim it binds to is recreated with a new uid.
        if let Some(claim) = spec["claimRef"].as_object_mut() {
            claim.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "name" | "namespace"));
        }
        // The target must never delete the data the source still uses.
        spec["persistentVolumeReclaimPolicy"] = Value::String("Retain".into());
    } else if kind.is_core("persistentvolumeclaims") && fresh_claims.contains(&key) {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("volumeName");
        }
    } else if kind.is_core("pods") {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("nodeName");
        }
        // The API server mounts a new service-account token on the target.
        let token = |v: &Value| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        };
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.retain(|v| !token(v));
        }
        for list in ["containers", "initContainers"] {
            if let Some(containers) = spec[list].as_array_mut() {
                for container in containers {
                    if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                        mounts.retain(|m| !token(m));
                    }
                }
            }
        }
    } else if kind.is_core("serviceaccounts") {
        // Legacy token secrets belong to the source's token controller.
        let prefix = format!(
            "{}-token-",
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        if let Some(secrets) = object["secrets"].as_array_mut() {
            secrets.retain(|s| !s["name"].as_str().is_some_and(|n| n.starts_with(&prefix)));
        }
    }
    if object["spec"].is_null()
        && let Some(map) = object.as_object_mut()
    {
        map.remove("spec");
    }
    object
}

enum Created {
    Created,
    Existed,
}

async fn create(target: &Cluster, kind: &TransferKind, object: Value) -> Result<Created> {
    let api = kind.api(target, object["metadata"]["namespace"].as_str());
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let object: DynamicObject = serde_json::from_value(object)
        .map_err(|e| Error::Backup(format!("{} {name}: {e}", kind.resource())))?;
    let action = format!("create {} {name}", kind.resource());
    // A create whose answer was lost and is sent again meets its own object: 409.
    let params = PostParams::default();
    match crate::retry::idempotent_write(&action, || api.create(&params, &object)).await {
        Ok(_) => Ok(Created::Created),
        Err(Error::Api { source, .. }) if api_code(&source) == Some(409) => Ok(Created::Existed),
        Err(e) => Err(e),
    }
}

/// Copies the objects of `slices` from `source` to `target` in order, a page and a bounded
/// number of writes at a time; an object the target has is kept as it is.
pub async fn copy(
    source: &Cluster,
    target: &Cluster,
    slices: &[KindSlice],
    fresh_claims: &BTreeSet<String>,
) -> Result<CopyOutcome> {
    target.guard()?;
    let source_name = source.identity().display_name();
    let mut outcome = CopyOutcome::default();
    for slice in slices {
        let wanted: BTreeSet<&str> = slice.objects.iter().map(String::as_str).collect();
        let mut found = BTreeSet::new();
        let action = format!("list {}", slice.kind.resource());
        let mut pages = crate::retry::Pages::new(
            slice.kind.api(source, None),
            &ListParams::default(),
            PAGE_SIZE,
            &action,
        );
        while let Some(page) = pages.next().await? {
            if target.stop_signal().is_stopped() {
                return Err(Error::Stopped);
            }
            let objects: Vec<(String, Value)> = page
                .into_iter()
                .filter_map(|o| {
                    let key =
                        object_key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref()?);
                    (wanted.contains(key.as_str()) && found.insert(key.clone()))
                        .then(|| (key, serde_json::to_value(o).expect("objects serialise")))
                })
                .collect();
            let results: Vec<(String, Result<Created>)> = futures::stream::iter(objects)
                .map(|(key, object)| {
                    let prepared = prepare(object, &slice.kind, fresh_claims, &source_name);
                    async move { (key, create(target, &slice.kind, prepared).await) }
                })
                .buffer_unordered(WRITES_IN_FLIGHT)
                .collect()
                .await;
            for (key, result) in results {
                match result? {
                    Created::Created => outcome.created += 1,
                    Created::Existed => outcome
                        .existed
                        .push(format!("{} {key}", slice.kind.resource())),
                }
            }
        }
        outcome.gone.extend(
            wanted
                .iter()
                .filter(|k| !found.contains(**k))
                .map(|k| format!("{} {k}", slice.kind.resource())),
        );
    }
    outcome.existed.sort();
    Ok(outcome)
}

/// Which objects of `slices` exist on `cluster`, as `resource namespace/name`.
pub async fn present(cluster: &Cluster, slices: &[KindSlice]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let resource = slice.kind.resource();
        let live = names_on(cluster, &slice.kind).await?.unwrap_or_default();
        out.extend(
            slice
                .objects
                .iter()
                .filter(|o| live.contains(*o))
                .map(|o| format!("{resource} {o}")),
        );
    }
    Ok(out)
}

/// Deletes from `target`, in reverse restore order, the objects of `slices` not in `keep`
/// (the ones the target had before); returns how many were deleted.
pub async fn remove(
    target: &Cluster,
    slices: &[KindSlice],
    keep: &BTreeSet<String>,
) -> Result<usize> {
    target.guard()?;
    let mut deleted = 0;
    for slice in slices.iter().rev() {
        let resource = slice.kind.resource();
        let doomed: Vec<(Api<DynamicObject>, String, String)> = slice
            .objects
            .iter()
            .filter(|o| !keep.contains(&format!("{resource} {o}")))
            .map(|key| {
                let (ns, name) = split_key(key);
                (
                    slice.kind.api(target, ns),
                    name.to_string(),
                    format!("delete {resource} {key}"),
                )
            })
            .collect();
        let results: Vec<Result<bool>> = futures::stream::iter(doomed)
            .map(|(api, name, action)| async move {
                let params = DeleteParams::background();
                match crate::retry::idempotent_write(&action, || api.delete(&name, &params)).await {
                    Ok(_) => Ok(true),
                    Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        for result in results {
            deleted += usize::from(result?);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core(kind: &str, plural: &str, namespaced: bool) -> TransferKind {
        TransferKind {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    #[test]
    fn metadata_is_reset_as_velero_does_and_volumes_never_reclaimed_by_the_target() {
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-1", "uid": "u", "resourceVersion": "7",
                "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"},
                "ownerReferences": [{"kind": "X", "name": "x", "uid": "u2"}]},
            "spec": {"persistentVolumeReclaimPolicy": "Delete",
                "csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1::fsap-2"},
                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "u", "name": "c",
                    "uid": "old", "resourceVersion": "3"}},
            "status": {"phase": "Bound"}
        });
        let out = prepare(
            pv,
            &core("PersistentVolume", "persistentvolumes", false),
            &BTreeSet::new(),
            "blue",
        );
        assert_eq!(
            out,
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pv-1", "annotations": {TRANSFERRED_FROM: "blue"}},
                "spec": {"persistentVolumeReclaimPolicy": "Retain",
                    "csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1::fsap-2"},
                    "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "u", "name": "c"}}
            })
        );
    }

    #[test]
    fn pods_lose_their_node_and_token_volume_and_fresh_claims_their_volume() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "u"},
            "spec": {"nodeName": "n1",
                "volumes": [{"name": "kube-api-access-x1"}, {"name": "data"}],
                "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-x1"}, {"name": "data"}]}]}
        });
        let out = prepare(pod, &core("Pod", "pods", true), &BTreeSet::new(), "blue");
        assert_eq!(out["spec"]["volumes"], json!([{"name": "data"}]));
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "data"}])
        );
        assert!(out["spec"].get("nodeName").is_none());

        let claim =
            json!({"metadata": {"name": "c", "namespace": "u"}, "spec": {"volumeName": "pv-9"}});
        let kind = core("PersistentVolumeClaim", "persistentvolumeclaims", true);
        let fresh = BTreeSet::from(["u/c".to_string()]);
        assert!(
            prepare(claim.clone(), &kind, &fresh, "b")["spec"]
                .get("volumeName")
                .is_none()
        );
        assert_eq!(
            prepare(claim, &kind, &BTreeSet::new(), "b")["spec"]["volumeName"],
            "pv-9"
        );
    }

    #[test]
    fn shared_file_systems_are_told_by_driver_or_nfs() {
        let shared = vec!["efs.csi.aws.com".to_string()];
        let efs = json!({"spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}}});
        let ebs = json!({"spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}});
        let nfs = json!({"spec": {"nfs": {"server": "fs-1.efs.amazonaws.com", "path": "/"}}});
        assert_eq!(
            shared_volume(&efs, &shared).as_deref(),
            Some("efs.csi.aws.com fs-1")
        );
        assert_eq!(shared_volume(&ebs, &shared), None);
        assert!(shared_volume(&nfs, &shared).is_some());
        assert_eq!(
            volume_source(&json!({"spec": {"hostPath": {}, "capacity": {}}})),
            "hostPath"
        );
    }
}
