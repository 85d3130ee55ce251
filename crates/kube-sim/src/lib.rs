//! A simulated Kubernetes API server, in-process, that the real `kubectl` and `helm` accept.
//!
//! [`SimCluster`] serves the Kubernetes REST API over HTTP on `127.0.0.1` at a free port:
//! discovery, OpenAPI v2/v3, get/list/watch/create/update/patch (JSON merge, JSON patch,
//! strategic merge, server-side apply)/delete for the built-in kinds an MLOps platform uses
//! and for any kind a CustomResourceDefinition adds. Objects are stored as JSON with
//! resourceVersions; errors are `Status` objects with the upstream codes (404, 409, 422,
//! 429). Simulated controllers (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, a
//! scheduler, a kubelet and the disruption controller) make workloads roll out, so
//! `helm upgrade --wait` and `kubectl drain` behave as on a real cluster.
//!
//! The simulated cloud around it: [`ADMIN_VERSION_PATH`] (`PUT {"version": "1.31"}`) changes
//! what `/version` reports, as an EKS control-plane upgrade does (the simulated AWS provider
//! calls it), and [`ControllerConfig::karpenter`] turns on a Karpenter-like provisioner that
//! launches a node at that version for pods that cannot be scheduled.
//!
//! ```no_run
//! # async fn demo() -> kube_sim::Result<()> {
//! use kube_sim::{ControllerConfig, SimCluster};
//!
//! let sim = SimCluster::builder()
//!     .server_version("v1.30.4-eks-a737599")
//!     .controllers(ControllerConfig::fast())
//!     .start()
//!     .await?;
//! sim.add_node("node-a", "v1.30.4-eks-a737599")?;
//! // Point kubectl or helm at it ...
//! println!("KUBECONFIG={}", sim.kubeconfig_path().display());
//! // ... or use kube-rs.
//! let client = sim.client()?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
//! # let _ = pods;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod backup;
pub mod controllers;
mod discovery;
mod eks;
pub mod error;
pub mod faults;
pub mod fixtures;
pub mod patch;
mod protobuf;
pub mod resources;
pub mod runtime;
pub mod schema;
pub mod selectors;
mod server;
pub mod store;
mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use crate::controllers::ControllerConfig;
pub use crate::error::{ApiError, Error, Result};
pub use crate::faults::{FaultConfig, FaultKind, FaultRule};
pub use crate::fixtures::ScaleSpec;
pub use crate::runtime::{ContainerRuntime, ContainerStart};
use crate::store::{Propagation, Store, Target, WriteOptions};

/// The Kubernetes version the simulator reports unless told otherwise.
pub const DEFAULT_SERVER_VERSION: &str = "v1.30.4-eks-a737599";

/// The simulator's admin endpoint for the control-plane version (see the crate docs): the
/// simulated AWS provider `PUT`s `{"version": "1.31"}` here when it upgrades `aws_eks_cluster`.
pub const ADMIN_VERSION_PATH: &str = "/kube-sim/v1/version";

/// The context (and cluster and user) name in the kubeconfig the simulator writes.
pub const CONTEXT_NAME: &str = "kube-sim";

/// Configures and starts a [`SimCluster`].
#[derive(Debug, Clone)]
pub struct SimClusterBuilder {
    server_version: String,
    controllers: ControllerConfig,
    port: u16,
    faults: FaultConfig,
    kubeconfig_path: Option<PathBuf>,
    runtime: Option<runtime::Runtime>,
}

impl SimClusterBuilder {
    /// The version `/version` reports (`v1.30.4-eks-a737599`).
    pub fn server_version(mut self, version: impl Into<String>) -> Self {
        self.server_version = version.into();
        self
    }

    /// Which controllers run, and kubelet timings.
    pub fn controllers(mut self, config: ControllerConfig) -> Self {
        self.controllers = config;
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Faults injected from the start.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Runs the containers of the images `runtime` claims for real (see [`runtime`]).
    pub fn container_runtime(mut self, runtime: Arc<dyn ContainerRuntime>) -> Self {
        self.runtime = Some(runtime::Runtime(runtime));
        self
    }

    /// Write the kubeconfig here instead of into the simulator's temp dir.
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig_path = Some(path.into());
        self
    }

    /// Binds the port, writes the kubeconfig and starts serving and the controllers on the
    /// current tokio runtime.
    pub async fn start(self) -> Result<SimCluster> {
        let addr = format!("127.0.0.1:{}", self.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let dir = tempfile::Builder::new()
            .prefix("kube-sim-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let kubeconfig = self
            .kubeconfig_path
            .clone()
            .unwrap_or_else(|| dir.path().join("kubeconfig"));
        let url = format!("http://{local}");
        write_kubeconfig(&kubeconfig, &url)?;
        let store = Arc::new(Store::new());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let git_version = Arc::new(std::sync::RwLock::new(self.server_version.clone()));
        let state = Arc::new(server::AppState {
            store: store.clone(),
            git_version: git_version.clone(),
            server_address: local.to_string(),
            faults: faults::Faults::new(self.faults),
            shutdown: shutdown_rx.clone(),
            control_plane_update: std::sync::Mutex::new(std::time::Duration::ZERO),
            eks: eks::EksState::default(),
            backup: backup::BackupState::default(),
        });
        let app = server::router(state.clone());
        let mut server_shutdown = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = server_shutdown.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "kube-sim server stopped");
            }
        });
        let controllers = controllers::Controllers::new(
            store.clone(),
            self.controllers.clone(),
            git_version,
            self.runtime.clone(),
        );
        let controller_task = tokio::spawn(controllers.run(shutdown_rx));
        tracing::info!(%url, kubeconfig = %kubeconfig.display(), "kube-sim listening");
        Ok(SimCluster {
            store,
            state,
            addr: local,
            url,
            kubeconfig,
            _dir: dir,
            shutdown: shutdown_tx,
            tasks: vec![server, controller_task],
        })
    }
}

/// A running simulated cluster. Dropping it stops serving (use [`SimCluster::shutdown`] to
/// wait for that).
pub struct SimCluster {
    store: Arc<Store>,
    state: Arc<server::AppState>,
    addr: SocketAddr,
    url: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("url", &self.url)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A kubeconfig with a context per `(name, server URL)`, each named so, the first current:
/// what a fleet of simulated clusters looks like to tools (one file, many contexts).
pub fn kubeconfig_for(clusters: &[(&str, &str)]) -> Value {
    let entries = |f: &dyn Fn(&str, &str) -> Value| -> Vec<Value> {
        clusters.iter().map(|(name, url)| f(name, url)).collect()
    };
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": entries(&|name, url| json!({"name": name, "cluster": {"server": url}})),
        "users": entries(&|name, _| json!({"name": name, "user": {"username": "kube-sim", "password": "kube-sim"}})),
        "contexts": entries(&|name, _| json!({"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}})),
        "current-context": clusters.first().map(|c| c.0).unwrap_or(CONTEXT_NAME),
        "preferences": {},
    })
}

fn write_kubeconfig(path: &Path, url: &str) -> Result<()> {
    let doc = kubeconfig_for(&[(CONTEXT_NAME, url)]);
    let text = serde_norway::to_string(&doc).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A Ready node object with EKS-like labels (managed node group `default`), 8 cpu / 32Gi /
/// 110 pods allocatable.
pub fn node_object(name: &str, kubelet_version: &str, index: usize) -> Value {
    let zone = ["a", "b", "c"][index % 3];
    let ip = format!("192.168.{}.{}", (index / 250) % 250, index % 250 + 10);
    let now = store::now_rfc3339();
    let capacity =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m5.2xlarge", "topology.kubernetes.io/region": "us-east-1",
            "topology.kubernetes.io/zone": format!("us-east-1{zone}"), "eks.amazonaws.com/nodegroup": "default",
        }},
        "spec": {"providerID": format!("aws:///us-east-1{zone}/i-{index:017x}")},
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": kubelet_version, "kubeProxyVersion": kubelet_version,
                "containerRuntimeVersion": "containerd://1.7.22", "osImage": "Amazon Linux 2023",
                "kernelVersion": "6.1.109-118.189.amzn2023.x86_64", "operatingSystem": "linux", "architecture": "amd64",
                "machineID": format!("{index:032x}"), "systemUUID": format!("ec2{index:029x}"), "bootID": format!("{index:032x}"),
            },
        },
    })
}

/// Makes a node Karpenter's: the label of NodePool `pool`, and no managed node group.
pub(crate) fn karpenter_labels(node: &mut Value, pool: &str) {
    if let Some(labels) = node["metadata"]["labels"].as_object_mut() {
        labels.remove("eks.amazonaws.com/nodegroup");
        labels.insert("karpenter.sh/nodepool".into(), json!(pool));
    }
}

impl SimCluster {
    /// A builder with defaults: version [`DEFAULT_SERVER_VERSION`], all controllers on, a
    /// free port, no faults.
    pub fn builder() -> SimClusterBuilder {
        SimClusterBuilder {
            server_version: DEFAULT_SERVER_VERSION.into(),
            controllers: ControllerConfig::default(),
            port: 0,
            faults: FaultConfig::default(),
            kubeconfig_path: None,
            runtime: None,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig for this cluster (context [`CONTEXT_NAME`], namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The version `/version` reports.
    pub fn server_version(&self) -> String {
        self.state.version()
    }

    /// Changes the version `/version` reports, as an upgraded control plane does (an EKS
    /// control-plane upgrade from `v1.30.4-eks-...` to `v1.31.2-eks-...`). Nodes keep their
    /// kubelet versions until they are replaced.
    pub fn set_server_version(&self, version: impl Into<String>) {
        *self
            .state
            .git_version
            .write()
            .unwrap_or_else(|e| e.into_inner()) = version.into();
    }

    /// The simulated EKS API's endpoint, for `aws eks ... --endpoint-url` (or
    /// `AWS_ENDPOINT_URL_EKS`): `<url>/eks`. The cluster is named `kube-sim` unless
    /// [`SimCluster::set_eks`] names it otherwise.
    pub fn eks_endpoint(&self) -> String {
        format!("{}/eks", self.url)
    }

    /// Sets what the simulated AWS knows about the cluster besides the API server (merged
    /// into what it knows): `name`, `createdVersion`, `insights` (as `DescribeInsight`
    /// returns them), `addons` (name → `{addonVersion, configurationValues}`),
    /// `addonVersions` (`DescribeAddonVersions`' `addons`), `nodegroups` (name → version),
    /// `lastUpgrade` (`{"at": <epoch seconds>, "version": "1.31"}`), `autoUpgraded`. The
    /// same as `PUT /kube-sim/v1/eks`.
    pub fn set_eks(&self, state: serde_json::Value) {
        let body = axum::body::Bytes::from(serde_json::to_vec(&state).unwrap_or_default());
        let _ = eks::admin(&self.state, &axum::http::Method::PUT, &body);
    }

    /// The simulated AWS Backup's endpoint (the on-demand backup jobs moto lacks, and their
    /// vaults), for `aws backup ... --endpoint-url`: `<url>/backup`.
    pub fn backup_endpoint(&self) -> String {
        format!("{}/backup", self.url)
    }

    /// Sets how the simulated AWS Backup behaves: `failResources` (ARNs whose jobs fail),
    /// `jobSeconds` (how long a job runs, default 1). The same as `PUT /kube-sim/v1/backup`.
    pub fn set_backup(&self, settings: serde_json::Value) {
        let body = axum::body::Bytes::from(serde_json::to_vec(&settings).unwrap_or_default());
        let _ = backup::admin(&self.state, &axum::http::Method::PUT, &body);
    }

    /// Every backup job the simulated AWS Backup ran, as `DescribeBackupJob` answers now.
    pub fn backup_jobs(&self) -> Vec<serde_json::Value> {
        backup::jobs(&self.state)
    }

    /// How long a control-plane version update (`PUT /kube-sim/v1/version`, what the
    /// simulated Terraform provider sends) takes before it answers; zero by default. EKS's
    /// takes many minutes, which is what a Terraform timeout must cope with.
    pub fn set_control_plane_update_time(&self, takes: std::time::Duration) {
        *self
            .state
            .control_plane_update
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = takes;
    }

    /// A kube-rs client for this cluster (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client> {
        // Built from a socket address, so always a valid URI.
        let uri: axum::http::Uri = self.url.parse().expect("kube-sim URL is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// The underlying store (for direct reads and writes that bypass HTTP).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Loads every YAML/JSON file under `dir` (multi-document, `kind: List` expanded);
    /// namespaces and CRDs first, missing namespaces created, status kept. Returns how many
    /// objects were stored.
    pub fn load_fixtures(&self, dir: impl AsRef<Path>) -> Result<usize> {
        let dir = dir.as_ref();
        let objects = fixtures::read_dir(dir)?;
        fixtures::load(&self.store, objects, dir)
    }

    /// Loads multi-document YAML from a string.
    pub fn load_yaml(&self, yaml: &str) -> Result<usize> {
        let origin = Path::new("<string>");
        let objects = fixtures::parse_documents(yaml, origin)?;
        fixtures::load(&self.store, objects, origin)
    }

    /// Every object as multi-document YAML (loadable with [`SimCluster::load_yaml`]).
    pub fn dump_yaml(&self) -> String {
        fixtures::dump(&self.store)
    }

    /// Writes a generated cluster (nodes, workloads, PDBs, Helm releases) into the store.
    pub fn generate(&self, spec: &ScaleSpec) -> Result<()> {
        fixtures::generate(&self.store, spec)
    }

    /// Replaces the fault configuration (and reseeds).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.set(faults);
    }

    fn ty(&self, api_version: &str, kind: &str) -> Arc<resources::ResourceType> {
        self.store
            .registry()
            .lookup_kind(api_version, kind)
            .expect("built-in kind")
    }

    /// Reads one object by `apiVersion`, `kind`, namespace and name.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let ty = self
            .store
            .registry()
            .lookup_kind(api_version, kind)
            .ok_or_else(|| ApiError::not_found("", kind, name))?;
        Ok((*self.store.get(&ty, namespace, name)?).clone())
    }

    /// Lists objects of a kind (all namespaces when `namespace` is `None`).
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        match self.store.registry().lookup_kind(api_version, kind) {
            Some(ty) => self
                .store
                .list(&ty, namespace)
                .0
                .iter()
                .map(|o| (**o).clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Sets what `GET .../pods/NAME/log?container=C` answers for one container (it honours
    /// `tailLines`; a container the pod does not have is a 400, as upstream).
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.store.set_pod_log(namespace, pod, container, text);
    }

    /// Sets an object's `.status` (what a controller kube-sim does not run, such as KServe's,
    /// would write), through the status subresource's rules.
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<()> {
        let ty = self
            .store
            .registry()
            .lookup_kind(api_version, kind)
            .ok_or_else(|| error::ApiError::not_found(api_version, kind, name))?;
        self.store.mutate(
            &ty,
            namespace,
            name,
            Target::Status,
            &WriteOptions::default(),
            |o| {
                o["status"] = status;
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Adds a Ready node with this kubelet (and kube-proxy) version.
    pub fn add_node(&self, name: &str, kubelet_version: &str) -> Result<Value> {
        let ty = self.ty("v1", "Node");
        let index = self.store.list(&ty, None).0.len();
        let node = node_object(name, kubelet_version, index);
        Ok((*self
            .store
            .create(&ty, None, node, &WriteOptions::default())?)
        .clone())
    }

    /// Sets a node's Ready condition (a kubelet that stopped posting status, or came back).
    /// Pods on a NotReady node lose readiness, and the scheduler avoids the node.
    pub fn set_node_ready(&self, name: &str, ready: bool) -> Result<()> {
        let ty = self.ty("v1", "Node");
        self.store.mutate(
            &ty,
            None,
            name,
            Target::Status,
            &WriteOptions::default(),
            |n| {
                let now = store::now_rfc3339();
                let (status, reason, message) = if ready {
                    ("True", "KubeletReady", "kubelet is posting ready status")
                } else {
                    (
                        "Unknown",
                        "NodeStatusUnknown",
                        "Kubelet stopped posting node status.",
                    )
                };
                for c in n["status"]["conditions"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if c["type"] == "Ready" {
                        if c["status"] != status {
                            c["lastTransitionTime"] = json!(now);
                        }
                        c["status"] = json!(status);
                        c["reason"] = json!(reason);
                        c["message"] = json!(message);
                    }
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Makes a node one that Karpenter launched: `karpenter.sh/nodepool=<pool>` instead of the
    /// managed node group label `add_node` gives it (so a node-group roll leaves it alone).
    /// When Karpenter's NodeClaim kind is served (its CRD loaded), the node also gets its
    /// NodeClaim, which Karpenter's simulation terminates the node for when it is deleted.
    pub fn make_karpenter_node(&self, name: &str, pool: &str) -> Result<()> {
        self.edit_node(name, |n| karpenter_labels(n, pool))?;
        let node = self.store.get(&self.ty("v1", "Node"), None, name)?;
        controllers::claim_node(&self.store, &node)?;
        Ok(())
    }

    /// Sets a node's `spec.providerID` (`aws:///ZONE/INSTANCE_ID`): ties it to an instance
    /// of a simulated or moto-held Auto Scaling group.
    pub fn set_provider_id(&self, name: &str, provider_id: &str) -> Result<()> {
        self.edit_node(name, |n| n["spec"]["providerID"] = json!(provider_id))
    }

    /// Makes a node self-managed: no managed node group label (as a node of a site's own
    /// Auto Scaling group, which neither EKS nor Karpenter replaces).
    pub fn make_self_managed_node(&self, name: &str) -> Result<()> {
        self.edit_node(name, |n| {
            if let Some(labels) = n["metadata"]["labels"].as_object_mut() {
                labels.remove("eks.amazonaws.com/nodegroup");
            }
        })
    }

    /// Marks a node (un)schedulable, as `kubectl cordon`/`uncordon` do.
    pub fn set_unschedulable(&self, name: &str, unschedulable: bool) -> Result<()> {
        self.edit_node(name, |n| {
            if unschedulable {
                n["spec"]["unschedulable"] = json!(true);
            } else if let Some(spec) = n["spec"].as_object_mut() {
                spec.remove("unschedulable");
            }
        })
    }

    /// Changes the Node `name` in place with `edit`.
    fn edit_node(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Result<()> {
        let ty = self.ty("v1", "Node");
        self.store.mutate(
            &ty,
            None,
            name,
            Target::Main,
            &WriteOptions::default(),
            |n| {
                edit(n);
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Replaces `old` by a new node at another kubelet version, the way a managed node group
    /// rolls (see [`SimCluster::replace_node_within`]), waiting at most 5 minutes for
    /// PodDisruptionBudgets to allow the evictions.
    pub async fn replace_node(
        &self,
        old: &str,
        new_name: &str,
        kubelet_version: &str,
    ) -> Result<()> {
        self.replace_node_within(old, new_name, kubelet_version, Duration::from_secs(300))
            .await
    }

    /// Replaces `old` by a new node at another kubelet version, the way a managed node group
    /// rolls: the new node joins (with the old node's labels and taints), the old one is
    /// cordoned, its pods are evicted through the eviction API (so PodDisruptionBudgets are
    /// honoured, retrying until `timeout`), then it is deleted. DaemonSet pods are left to
    /// their controller.
    pub async fn replace_node_within(
        &self,
        old: &str,
        new_name: &str,
        kubelet_version: &str,
        timeout: Duration,
    ) -> Result<()> {
        replace_node(&self.store, old, new_name, kubelet_version, timeout).await
    }

    /// Stops serving and the controllers, and waits for both.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

fn kind(store: &Store, kind: &str) -> Arc<resources::ResourceType> {
    store
        .registry()
        .lookup_kind("v1", kind)
        .expect("built-in kind")
}

/// Replaces `old` by `new_name` at `kubelet_version` (see [`SimCluster::replace_node_within`]).
pub(crate) async fn replace_node(
    store: &Store,
    old: &str,
    new_name: &str,
    kubelet_version: &str,
    timeout: Duration,
) -> Result<()> {
    let node_ty = kind(store, "Node");
    let pod_ty = kind(store, "Pod");
    let old_node = store.get(&node_ty, None, old)?;
    let index = store.list(&node_ty, None).0.len();
    let mut node = node_object(new_name, kubelet_version, index);
    if let Some(labels) = old_node["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if k != "kubernetes.io/hostname" {
                node["metadata"]["labels"][k] = v.clone();
            }
        }
    }
    if old_node["spec"]["taints"].is_array() {
        node["spec"]["taints"] = old_node["spec"]["taints"].clone();
    }
    store.create(&node_ty, None, node, &WriteOptions::default())?;
    store.mutate(
        &node_ty,
        None,
        old,
        Target::Main,
        &WriteOptions::default(),
        |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        },
    )?;
    let deadline = Instant::now() + timeout;
    loop {
        let (pods, _) = store.list(&pod_ty, None);
        let remaining: Vec<Arc<Value>> = pods
            .into_iter()
            .filter(|p| p["spec"]["nodeName"].as_str() == Some(old))
            .filter(|p| {
                !p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["kind"] == "DaemonSet"))
            })
            .collect();
        if remaining.is_empty() {
            break;
        }
        let mut blocked = None;
        for p in &remaining {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            match controllers::evict(store, ns, name, None) {
                Ok(_) => {}
                Err(e) if e.code == 429 => {
                    blocked = Some(format!("evicting {ns}/{name}: {}", e.message))
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: blocked.unwrap_or_else(|| format!("draining node {old}")),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.delete(
        &node_ty,
        None,
        old,
        Propagation::Background,
        &WriteOptions::default(),
    )?;
    // DaemonSet pods of a deleted node go with it (the node lifecycle controller's job).
    let (pods, _) = store.list(&pod_ty, None);
    for p in pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str() == Some(old))
    {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
        let _ = store.delete(
            &pod_ty,
            Some(ns),
            p["metadata"]["name"].as_str().unwrap_or_default(),
            Propagation::Background,
            &WriteOptions::default(),
        );
    }
    Ok(())
}
