//! Object storage: JSON objects by resource, namespace and name, a global resourceVersion,
//! a bounded event history for watches and a broadcast channel for live watchers.
//!
//! All writes go through [`Store`], so HTTP handlers, controllers and fixture loading share
//! one set of rules: metadata bookkeeping, status-subresource separation, generation bumps,
//! optimistic concurrency, finalizers, owner-reference garbage collection and CRD serving.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

use crate::error::ApiError;
use crate::resources::{Registry, ResourceType, split_api_version, types_from_crd};

/// How many past events a watch can resume from.
const HISTORY_LIMIT: usize = 50_000;

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Storage key of the resource (`apps/deployments`).
    pub resource: String,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (before removal for `Deleted`).
    pub object: Arc<Value>,
    /// The object before a `Modified` change (lets selector watches see objects that
    /// start or stop matching).
    pub previous: Option<Arc<Value>>,
}

/// A live feed of every future event.
pub type EventReceiver = broadcast::Receiver<Arc<WatchEvent>>;

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The object itself; status is kept from storage when the kind has a status subresource.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
}

/// Per-write options.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Validate and compute, but do not store (`dryRun=All`).
    pub dry_run: bool,
    /// Field manager to record as an `Update` entry in managedFields (if any).
    pub manager: Option<String>,
    /// On create, keep the object's own `uid` and `creationTimestamp` (fixture loads of a
    /// dumped cluster); otherwise the server assigns them, as upstream.
    pub keep_identity: bool,
    /// On delete, the grace period asked for (`gracePeriodSeconds`; 0 removes a pod now).
    pub grace_period_seconds: Option<i64>,
    /// Strict field validation (`fieldValidation=Strict`): a custom resource's field its
    /// schema does not declare is an error.
    pub strict_fields: bool,
}

/// How dependents are handled on delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents are deleted (the default for most clients).
    #[default]
    Background,
    /// Dependents are deleted before the owner (simulated synchronously, like Background).
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

type ObjKey = (String, String);

/// The mutable state behind the lock.
pub struct Inner {
    rv: u64,
    registry: Registry,
    objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<WatchEvent>>,
    rng: StdRng,
    next_ip: u32,
    next_cluster_ip: u32,
}

/// The object store shared by the server and the controllers.
pub struct Store {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    changed: Arc<Notify>,
    /// Held by an eviction from its budget check to the pod's deletion. Upstream makes
    /// concurrent evictions of one budget's pods serial through the budget status's
    /// resourceVersion (the loser gets a conflict and retries); without this, two evictions
    /// could both see one disruption allowed and both go through.
    pub(crate) evictions: std::sync::Mutex<()>,
    /// Container logs, (namespace, pod, container) → text: what the tests set, and what a
    /// container runtime's runs printed.
    pub(crate) pod_logs:
        std::sync::Mutex<std::collections::HashMap<(String, String, String), String>>,
}

/// Current time in the Kubernetes timestamp format (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Current time with microseconds (`MicroTime`, used by leases and managedFields).
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// Whether `obj` is being deleted (has a deletionTimestamp).
pub fn is_terminating(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Defaults an update strategy as the API server does: type `RollingUpdate` when unset, and
/// for `RollingUpdate` each of `numbers` the `rollingUpdate` block leaves out.
fn default_update_strategy(strategy: &mut Value, numbers: &[(&str, Value)]) {
    if !strategy.is_object() {
        *strategy = json!({});
    }
    if strategy["type"].is_null() {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] != "RollingUpdate" {
        return;
    }
    if !strategy["rollingUpdate"].is_object() {
        strategy["rollingUpdate"] = json!({});
    }
    for (field, value) in numbers {
        if strategy["rollingUpdate"][*field].is_null() {
            strategy["rollingUpdate"][*field] = value.clone();
        }
    }
}

/// Whether `name` is valid for an object of `group`: RBAC objects take any path segment
/// name (`system:controller:…`, as the real API server's `ValidateRBACName`), the rest a
/// DNS subdomain.
fn valid_name_for(group: &str, name: &str) -> bool {
    if group == "rbac.authorization.k8s.io" {
        return !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('%');
    }
    valid_name(name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Everything but metadata and status: a change there bumps `metadata.generation`.
fn spec_of(obj: &Value) -> Vec<(&String, &Value)> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store with the built-in kinds and the standard namespaces.
    pub fn new() -> Store {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let (events, _) = broadcast::channel(65_536);
        let store = Store {
            inner: RwLock::new(Inner {
                rv: 1,
                registry: Registry::builtin(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                rng: StdRng::seed_from_u64(seed),
                next_ip: 0,
                next_cluster_ip: 0,
            }),
            events,
            changed: Arc::new(Notify::new()),
            evictions: std::sync::Mutex::new(()),
            pod_logs: Default::default(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ty = store
                .registry()
                .lookup("", "v1", "namespaces")
                .expect("builtin");
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store
                .create(&ty, None, obj, &WriteOptions::default())
                .expect("standard namespaces");
        }
        store
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the served kinds.
    pub fn registry(&self) -> Registry {
        self.read().registry.clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    /// Notified after every committed change (controllers wait on it).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// A receiver of every future event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Atomically lists the objects of a resource and subscribes to later events, so a
    /// watch that starts from the list misses nothing.
    pub fn list_and_subscribe(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.read();
        let rx = self.events.subscribe();
        (inner.list(ty, namespace), inner.rv, rx)
    }

    /// Events of `resource` after `rv` from the history, and a receiver for later ones; 410
    /// when `rv` is older than the history.
    pub fn events_since(
        &self,
        resource: &str,
        rv: u64,
    ) -> Result<(Vec<Arc<WatchEvent>>, EventReceiver), ApiError> {
        let inner = self.read();
        let rx = self.events.subscribe();
        if rv > inner.rv {
            // A version from the future (another server's) is treated as "now".
            return Ok((Vec::new(), rx));
        }
        if let Some(oldest) = inner.history.front()
            && rv + 1 < oldest.rv
            && inner.history.len() >= HISTORY_LIMIT
        {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                oldest.rv - 1
            )));
        }
        let start = inner.history.partition_point(|e| e.rv <= rv);
        let events = inner
            .history
            .range(start..)
            .filter(|e| e.resource == resource)
            .cloned()
            .collect();
        Ok((events, rx))
    }

    /// One object.
    pub fn get(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.read().get(ty, namespace, name)
    }

    /// Objects of a resource, in one namespace or all, in name order, with the list's
    /// resourceVersion.
    pub fn list(&self, ty: &ResourceType, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.read();
        (inner.list(ty, namespace), inner.rv)
    }

    /// Creates an object.
    pub fn create(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let (out, events) = inner.create(ty, namespace, obj, opts)?;
        drop(inner);
        self.publish(events);
        Ok(out)
    }

    /// Replaces an object (PUT). A non-empty `metadata.resourceVersion` must match (409).
    pub fn update(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        target: Target,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let old = inner.get(ty, namespace, name)?;
        let sent_rv = meta_str(&obj, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&ty.group, &ty.plural, name));
        }
        let (out, events) = inner.commit_update(ty, &old, obj, target, opts)?;
        drop(inner);
        self.publish(events);
        Ok(out)
    }

    /// Read-modify-write under the lock (patches and controllers). `f` gets a copy of the
    /// stored object; an error from it aborts the write.
    pub fn mutate(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        target: Target,
        opts: &WriteOptions,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let old = inner.get(ty, namespace, name)?;
        let mut new = (*old).clone();
        f(&mut new)?;
        let (out, events) = inner.commit_update(ty, &old, new, target, opts)?;
        drop(inner);
        self.publish(events);
        Ok(out)
    }

    /// Creates the object if it does not exist, else read-modify-writes it (server-side
    /// apply). `f` gets `None` on create.
    pub fn upsert(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        f: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let mut inner = self.write();
        let (out, events, created) = match inner.get(ty, namespace, name) {
            Ok(old) => {
                let new = f(Some(&old))?;
                let (out, events) = inner.commit_update(ty, &old, new, Target::Main, opts)?;
                (out, events, false)
            }
            Err(e) if e.code == 404 => {
                let new = f(None)?;
                let (out, events) = inner.create(ty, namespace, new, opts)?;
                (out, events, true)
            }
            Err(e) => return Err(e),
        };
        drop(inner);
        self.publish(events);
        Ok((out, created))
    }

    /// Deletes an object: marks it terminating when it has finalizers, else removes it and
    /// handles its dependents per `propagation`.
    pub fn delete(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        propagation: Propagation,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.write();
        let (out, events) = inner.delete(ty, namespace, name, propagation, opts)?;
        drop(inner);
        self.publish(events);
        Ok(out)
    }

    /// Runs `f` with read access to every object (dumps, controllers, benchmarks).
    pub fn with_objects<R>(
        &self,
        f: impl FnOnce(&Registry, &dyn Fn(&str) -> Vec<Arc<Value>>) -> R,
    ) -> R {
        let inner = self.read();
        let lookup = |key: &str| -> Vec<Arc<Value>> {
            inner
                .objects
                .get(key)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        };
        f(&inner.registry, &lookup)
    }

    /// Sets the log text of a pod's container.
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.pod_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (
                    namespace.to_string(),
                    pod.to_string(),
                    container.to_string(),
                ),
                text.to_string(),
            );
    }

    /// The log text of a pod's container, when one was set or printed.
    pub fn pod_log(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        self.pod_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            ))
            .cloned()
    }

    /// A random lowercase suffix for generated names (`-x7k2p`).
    pub fn random_suffix(&self, len: usize) -> String {
        self.write().random_suffix(len)
    }

    fn publish(&self, events: Vec<Arc<WatchEvent>>) {
        if events.is_empty() {
            return;
        }
        for e in events {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(e);
        }
        self.changed.notify_one();
    }
}

impl Inner {
    fn key_of(ty: &ResourceType, namespace: Option<&str>, name: &str) -> ObjKey {
        let ns = if ty.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        (ns.to_string(), name.to_string())
    }

    fn get(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&ty.key())
            .and_then(|m| m.get(&Self::key_of(ty, namespace, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))
    }

    fn list(&self, ty: &ResourceType, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(map) = self.objects.get(&ty.key()) else {
            return Vec::new();
        };
        match namespace.filter(|_| ty.namespaced) {
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => map.values().cloned().collect(),
        }
    }

    fn random_suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn new_uid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_be_bytes([b[4], b[5]]),
            u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
            (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
            u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
        )
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(
        &mut self,
        ty: &ResourceType,
        event_type: EventType,
        object: Arc<Value>,
    ) -> Arc<WatchEvent> {
        self.record_change(ty, event_type, object, None)
    }

    fn record_change(
        &mut self,
        ty: &ResourceType,
        event_type: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) -> Arc<WatchEvent> {
        let event = Arc::new(WatchEvent {
            rv: meta_str(&object, "resourceVersion")
                .parse()
                .unwrap_or(self.rv),
            resource: ty.key(),
            event_type,
            object,
            previous,
        });
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
        event
    }

    fn namespace_type(&self) -> Arc<ResourceType> {
        self.registry
            .lookup("", "v1", "namespaces")
            .expect("builtin")
    }

    fn create(
        &mut self,
        ty: &ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, Vec<Arc<WatchEvent>>), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &ty.kind,
                    &ty.group,
                    "",
                    &[(
                        "metadata.name",
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            name = format!("{prefix}{}", self.random_suffix(5));
        }
        if !valid_name_for(&ty.group, &name) {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                &name,
                &[(
                    "metadata.name",
                    if ty.group == "rbac.authorization.k8s.io" {
                        format!(
                            "Invalid value: {name:?}: may not be '.' or '..' and may not contain '/' or '%'"
                        )
                    } else {
                        format!(
                            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
                             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                        )
                    },
                )],
            ));
        }
        let ns = if ty.namespaced {
            let body_ns = meta_str(&obj, "namespace");
            let ns = namespace
                .map(str::to_string)
                .or_else(|| (!body_ns.is_empty()).then(|| body_ns.to_string()))
                .unwrap_or_else(|| "default".to_string());
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            let nst = self.namespace_type();
            match self.get(&nst, None, &ns) {
                Ok(n) if is_terminating(&n) => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            crate::error::qualified(&ty.group, &ty.plural)
                        ),
                    ));
                }
                Ok(_) => {}
                Err(_) => return Err(ApiError::not_found("", "namespaces", &ns)),
            }
            Some(ns)
        } else {
            None
        };
        let key = Self::key_of(ty, ns.as_deref(), &name);
        if self
            .objects
            .get(&ty.key())
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::already_exists(&ty.group, &ty.plural, &name));
        }
        obj["apiVersion"] = json!(ty.api_version());
        obj["kind"] = json!(ty.kind);
        let uid = self.new_uid();
        {
            let meta = obj["metadata"].as_object_mut().expect("object");
            meta.insert("name".into(), json!(name));
            match &ns {
                Some(ns) => meta.insert("namespace".into(), json!(ns)),
                None => meta.remove("namespace"),
            };
            if !(opts.keep_identity && meta.get("uid").is_some_and(Value::is_string)) {
                meta.insert("uid".into(), json!(uid));
            }
            if !(opts.keep_identity && meta.get("creationTimestamp").is_some_and(Value::is_string))
            {
                meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            }
            meta.remove("deletionTimestamp");
            meta.insert("generation".into(), json!(1));
        }
        self.apply_defaults(ty, &mut obj);
        crate::validation::normalize(ty, &mut obj);
        crate::validation::validate(ty, None, &obj)?;
        self.check_schema(ty, &obj, opts)?;
        if let Some(manager) = &opts.manager
            && obj["metadata"]["managedFields"].is_null()
        {
            let set = crate::patch::field_set(&obj);
            crate::patch::record_manager(
                &mut obj,
                manager,
                "Update",
                &ty.api_version(),
                &now_rfc3339(),
                set,
            );
        }
        if opts.dry_run {
            return Ok((Arc::new(obj), Vec::new()));
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        self.objects
            .entry(ty.key())
            .or_default()
            .insert(key, obj.clone());
        let mut events = vec![self.record(ty, EventType::Added, obj.clone())];
        if ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions" {
            self.serve_crd(&obj);
        }
        events.shrink_to_fit();
        Ok((obj, events))
    }

    /// Defaults and allocations a real API server (or its admission chain) fills in.
    fn apply_defaults(&mut self, ty: &ResourceType, obj: &mut Value) {
        match (ty.group.as_str(), ty.kind.as_str()) {
            ("", "Namespace") if obj["status"]["phase"].is_null() => {
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "Service") => {
                if !obj["spec"].is_object() {
                    obj["spec"] = json!({});
                }
                let spec = &mut obj["spec"];
                if spec["type"].is_null() {
                    spec["type"] = json!("ClusterIP");
                }
                if spec["clusterIP"].is_null() {
                    self.next_cluster_ip += 1;
                    let n = self.next_cluster_ip;
                    let ip = format!("10.100.{}.{}", (n / 250) % 250, n % 250 + 1);
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                }
                if spec["sessionAffinity"].is_null() {
                    spec["sessionAffinity"] = json!("None");
                }
            }
            ("", "Pod") => {
                if obj["status"]["phase"].is_null() {
                    obj["status"]["phase"] = json!("Pending");
                }
                if obj["spec"]["restartPolicy"].is_null() {
                    obj["spec"]["restartPolicy"] = json!("Always");
                }
                if obj["spec"]["schedulerName"].is_null() {
                    obj["spec"]["schedulerName"] = json!("default-scheduler");
                }
            }
            ("apps", "Deployment") => {
                let spec = &mut obj["spec"];
                if spec["replicas"].is_null() {
                    spec["replicas"] = json!(1);
                }
                // As SetDefaults_Deployment: a strategy given only by type still gets its
                // rolling-update numbers (Helm 3's --wait dereferences maxUnavailable).
                default_update_strategy(
                    &mut spec["strategy"],
                    &[("maxSurge", json!("25%")), ("maxUnavailable", json!("25%"))],
                );
                if spec["revisionHistoryLimit"].is_null() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
                if spec["progressDeadlineSeconds"].is_null() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
            }
            ("apps", "DaemonSet") => {
                let spec = &mut obj["spec"];
                default_update_strategy(
                    &mut spec["updateStrategy"],
                    &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
                );
                if spec["revisionHistoryLimit"].is_null() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
            }
            ("apps", "StatefulSet") => {
                let spec = &mut obj["spec"];
                if spec["replicas"].is_null() {
                    spec["replicas"] = json!(1);
                }
                if spec["podManagementPolicy"].is_null() {
                    spec["podManagementPolicy"] = json!("OrderedReady");
                }
                default_update_strategy(&mut spec["updateStrategy"], &[("partition", json!(0))]);
                if spec["revisionHistoryLimit"].is_null() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
            }
            ("apps", "ReplicaSet") if obj["spec"]["replicas"].is_null() => {
                obj["spec"]["replicas"] = json!(1);
            }
            ("batch", "Job") => {
                let spec = &mut obj["spec"];
                for (field, value) in [("completions", 1), ("parallelism", 1), ("backoffLimit", 6)]
                {
                    if spec[field].is_null() {
                        spec[field] = json!(value);
                    }
                }
                // Jobs select their pods by controller-uid, as upstream.
                let uid = obj["metadata"]["uid"].clone();
                if obj["spec"]["selector"].is_null() {
                    obj["spec"]["selector"] =
                        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                    obj["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] =
                        uid.clone();
                    obj["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] =
                        obj["metadata"]["name"].clone();
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                obj["status"] = json!({
                    "acceptedNames": obj["spec"]["names"].clone(),
                    "storedVersions": obj["spec"]["versions"].as_array().into_iter().flatten()
                        .filter(|v| v["storage"].as_bool() == Some(true))
                        .map(|v| v["name"].clone()).collect::<Vec<_>>(),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
                    ],
                });
            }
            _ => {}
        }
    }

    /// Allocates a pod IP (used by the kubelet simulation).
    pub fn allocate_pod_ip(&mut self) -> String {
        self.next_ip += 1;
        let n = self.next_ip;
        format!("10.0.{}.{}", (n / 250) % 250, n % 250 + 1)
    }

    fn serve_crd(&mut self, crd: &Value) {
        let types = types_from_crd(crd);
        if let Some(first) = types.first() {
            let (group, plural) = (first.group.clone(), first.plural.clone());
            self.registry.remove_custom(&group, &plural);
        }
        for t in types {
            self.registry.add(t);
        }
    }

    fn commit_update(
        &mut self,
        ty: &ResourceType,
        old: &Arc<Value>,
        mut new: Value,
        target: Target,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, Vec<Arc<WatchEvent>>), ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let name = meta_str(old, "name").to_string();
        let sent_name = meta_str(&new, "name");
        if !sent_name.is_empty() && sent_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({sent_name}) does not match the name on the URL ({name})"
            )));
        }
        if target == Target::Status {
            let status = new["status"].take();
            new = (**old).clone();
            new["status"] = status;
        } else if ty.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        {
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            let meta = new["metadata"].as_object_mut().expect("object");
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            if meta.get("managedFields").is_none_or(Value::is_null)
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        if target == Target::Main {
            if ty.group.is_empty() && ty.kind == "Service" && new["spec"]["clusterIP"].is_null() {
                // A replace without the allocated IP keeps it (clients rarely send it back).
                new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
            crate::validation::normalize(ty, &mut new);
            crate::validation::validate(ty, Some(old), &new)?;
            self.check_schema(ty, &new, opts)?;
            if ty.group == "apiextensions.k8s.io" && ty.kind == "CustomResourceDefinition" {
                crd_status_after_update(&mut new);
            }
        }
        if spec_of(old) != spec_of(&new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        if let Some(manager) = &opts.manager {
            // An Update manager owns what it changed, added to what it owned before.
            let changed = crate::patch::changed_field_set(old, &new);
            if changed.as_object().is_some_and(|m| !m.is_empty()) {
                let before = old["metadata"]["managedFields"]
                    .as_array()
                    .and_then(|entries| {
                        entries.iter().find(|e| {
                            e["manager"].as_str() == Some(manager.as_str())
                                && e["operation"] == "Update"
                        })
                    });
                let mut set = before
                    .map(|b| b["fieldsV1"].clone())
                    .unwrap_or_else(|| json!({}));
                json_patch::merge(&mut set, &changed);
                crate::patch::record_manager(
                    &mut new,
                    manager,
                    "Update",
                    &ty.api_version(),
                    &now_rfc3339(),
                    set,
                );
            }
        }
        if new == **old {
            return Ok((old.clone(), Vec::new()));
        }
        if opts.dry_run {
            return Ok((Arc::new(new), Vec::new()));
        }
        let ns = ty
            .namespaced
            .then(|| meta_str(old, "namespace").to_string());
        let finalizers_done = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if is_terminating(&new) && finalizers_done {
            let (out, events) = self.remove(ty, ns.as_deref(), &name, Propagation::Background)?;
            return Ok((out, events));
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let new = Arc::new(new);
        self.objects
            .entry(ty.key())
            .or_default()
            .insert(Self::key_of(ty, ns.as_deref(), &name), new.clone());
        let event = self.record_change(ty, EventType::Modified, new.clone(), Some(old.clone()));
        if ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions" {
            self.serve_crd(&new);
        }
        Ok((new, vec![event]))
    }

    fn delete(
        &mut self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        propagation: Propagation,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, Vec<Arc<WatchEvent>>), ApiError> {
        let old = self.get(ty, namespace, name)?;
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let is_namespace = ty.group.is_empty() && ty.plural == "namespaces";
        if opts.dry_run {
            return Ok((old, Vec::new()));
        }
        // Graceful deletion waits for the pod's kubelet to confirm it stopped: a pod on a
        // node whose kubelet is not answering stays Terminating until it is deleted with a
        // zero grace period or pod GC removes it once its node is gone, as upstream. (On a
        // Ready node the simulated kubelet would confirm at once, so it is removed now.)
        if ty.group.is_empty()
            && ty.plural == "pods"
            && opts.grace_period_seconds != Some(0)
            && !has_finalizers
            && self.on_unresponsive_node(&old)
        {
            if is_terminating(&old) {
                return Ok((old, Vec::new()));
            }
            let grace = opts
                .grace_period_seconds
                .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            let mut new = (*old).clone();
            // As upstream: the time the grace period ends.
            let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            new["metadata"]["deletionTimestamp"] =
                json!(ends.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            let rv = self.next_rv();
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            let new = Arc::new(new);
            self.objects
                .entry(ty.key())
                .or_default()
                .insert(Self::key_of(ty, namespace, name), new.clone());
            let event = self.record_change(ty, EventType::Modified, new.clone(), Some(old));
            return Ok((new, vec![event]));
        }
        if has_finalizers {
            if is_terminating(&old) {
                return Ok((old, Vec::new()));
            }
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let rv = self.next_rv();
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            let new = Arc::new(new);
            self.objects
                .entry(ty.key())
                .or_default()
                .insert(Self::key_of(ty, namespace, name), new.clone());
            let event = self.record_change(ty, EventType::Modified, new.clone(), Some(old));
            return Ok((new, vec![event]));
        }
        let mut events = Vec::new();
        if is_namespace {
            // Namespace deletion removes everything in it first.
            let types: Vec<Arc<ResourceType>> = self
                .registry
                .types()
                .iter()
                .filter(|t| t.namespaced)
                .cloned()
                .collect();
            let mut seen = std::collections::HashSet::new();
            for t in types {
                if !seen.insert(t.key()) {
                    continue;
                }
                let names: Vec<String> = self
                    .list(&t, Some(name))
                    .iter()
                    .map(|o| meta_str(o, "name").to_string())
                    .collect();
                for n in names {
                    if let Ok((_, mut ev)) =
                        self.remove(&t, Some(name), &n, Propagation::Background)
                    {
                        events.append(&mut ev);
                    }
                }
            }
        }
        let (out, mut ev) = self.remove(ty, namespace, name, propagation)?;
        events.append(&mut ev);
        Ok((out, events))
    }

    /// A custom resource against its CRD's schema for its version (see [`crate::schema`]).
    fn check_schema(
        &self,
        ty: &ResourceType,
        obj: &Value,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        if !ty.custom {
            return Ok(());
        }
        let Some(crds) =
            self.registry
                .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        else {
            return Ok(());
        };
        let Ok(crd) = self.get(&crds, None, &format!("{}.{}", ty.plural, ty.group)) else {
            return Ok(());
        };
        let Some(schema) = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == ty.version.as_str())
            .map(|v| &v["schema"]["openAPIV3Schema"])
            .filter(|s| s.is_object())
        else {
            return Ok(());
        };
        let violations = crate::schema::check(schema, obj);
        let unknown: Vec<String> = violations
            .iter()
            .filter(|v| v.unknown_field)
            .map(|v| format!("unknown field \"{}\"", v.path))
            .collect();
        let invalid: Vec<(&str, String)> = violations
            .iter()
            .filter(|v| !v.unknown_field)
            .map(|v| (v.path.as_str(), v.message.clone()))
            .collect();
        if !invalid.is_empty() {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                meta_str(obj, "name"),
                &invalid,
            ));
        }
        if opts.strict_fields && !unknown.is_empty() {
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                unknown.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether `pod` is bound to a node that exists and is not Ready.
    fn on_unresponsive_node(&self, pod: &Value) -> bool {
        let Some(node) = pod["spec"]["nodeName"].as_str() else {
            return false;
        };
        let Some(nodes) = self.registry.lookup("", "v1", "nodes") else {
            return false;
        };
        self.get(&nodes, None, node)
            .is_ok_and(|n| !crate::controllers::node_ready(&n))
    }

    /// Removes an object now, then its dependents (or orphans them).
    fn remove(
        &mut self,
        ty: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        propagation: Propagation,
    ) -> Result<(Arc<Value>, Vec<Arc<WatchEvent>>), ApiError> {
        let key = Self::key_of(ty, namespace, name);
        let removed = self
            .objects
            .get_mut(&ty.key())
            .and_then(|m| m.remove(&key))
            .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
        let rv = self.next_rv();
        let mut last = (*removed).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        let last = Arc::new(last);
        let mut events = vec![self.record(ty, EventType::Deleted, last.clone())];
        if ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions" {
            let served = types_from_crd(&removed);
            if let Some(t) = served.first() {
                if let Some(objs) = self.objects.remove(&t.key()) {
                    for o in objs.into_values() {
                        let rv = self.next_rv();
                        let mut o = (*o).clone();
                        o["metadata"]["resourceVersion"] = json!(rv.to_string());
                        events.push(self.record(t, EventType::Deleted, Arc::new(o)));
                    }
                }
                self.registry.remove_custom(&t.group, &t.plural);
            }
        }
        // Pods and events own nothing; skipping them keeps mass pod deletion linear.
        if !(ty.group.is_empty() && matches!(ty.plural.as_str(), "pods" | "events")) {
            let uid = meta_str(&removed, "uid").to_string();
            let mut ev = self.handle_dependents(&uid, namespace, propagation);
            events.append(&mut ev);
        }
        Ok((last, events))
    }

    fn handle_dependents(
        &mut self,
        owner_uid: &str,
        namespace: Option<&str>,
        propagation: Propagation,
    ) -> Vec<Arc<WatchEvent>> {
        let mut dependents = Vec::new();
        let types: Vec<Arc<ResourceType>> = self.registry.types().to_vec();
        let mut seen = std::collections::HashSet::new();
        for t in types {
            if !seen.insert(t.key()) {
                continue;
            }
            let Some(map) = self.objects.get(&t.key()) else {
                continue;
            };
            for obj in map.values() {
                let owned = obj["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(owner_uid)));
                if owned
                    && (namespace.is_none()
                        || !t.namespaced
                        || Some(meta_str(obj, "namespace")) == namespace)
                {
                    dependents.push((
                        t.clone(),
                        meta_str(obj, "namespace").to_string(),
                        meta_str(obj, "name").to_string(),
                    ));
                }
            }
        }
        let mut events = Vec::new();
        for (t, ns, name) in dependents {
            let ns = (!ns.is_empty()).then_some(ns);
            if propagation == Propagation::Orphan {
                let Ok(old) = self.get(&t, ns.as_deref(), &name) else {
                    continue;
                };
                let mut new = (*old).clone();
                if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                }
                if let Ok((_, mut ev)) =
                    self.commit_update(&t, &old, new, Target::Main, &WriteOptions::default())
                {
                    events.append(&mut ev);
                }
            } else {
                let Ok(obj) = self.get(&t, ns.as_deref(), &name) else {
                    continue;
                };
                if obj["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
                {
                    if let Ok((_, mut ev)) = self.delete(
                        &t,
                        ns.as_deref(),
                        &name,
                        propagation,
                        &WriteOptions::default(),
                    ) {
                        events.append(&mut ev);
                    }
                } else if let Ok((_, mut ev)) = self.remove(&t, ns.as_deref(), &name, propagation) {
                    events.append(&mut ev);
                }
            }
        }
        events
    }
}

/// Allocates a pod IP under the store lock.
pub fn allocate_pod_ip(store: &Store) -> String {
    store.write().allocate_pod_ip()
}

/// The group of an `apiVersion` (`apps` of `apps/v1`).
pub fn group_of(api_version: &str) -> &str {
    split_api_version(api_version).0
}

/// A definition's status after an update, as the API server keeps it: the names it now
/// accepts, and its storage version added to the versions objects were ever stored at.
fn crd_status_after_update(crd: &mut Value) {
    let storage = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone());
    crd["status"]["acceptedNames"] = crd["spec"]["names"].clone();
    let stored = &mut crd["status"]["storedVersions"];
    if !stored.is_array() {
        *stored = json!([]);
    }
    if let (Some(storage), Some(list)) = (storage, stored.as_array_mut())
        && !list.contains(&storage)
    {
        list.push(storage);
    }
}
