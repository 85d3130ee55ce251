//! Loading clusters from YAML, dumping them back, and generating large clusters.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::resources::ResourceType;
use crate::store::{Store, WriteOptions, now_rfc3339};

/// Parses multi-document YAML into objects (expanding `kind: List`).
pub fn parse_documents(text: &str, path: &Path) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| Error::Fixture {
            path: path.to_path_buf(),
            document: i + 1,
            message: e.to_string(),
        })?;
        match value {
            Value::Null => {}
            Value::Object(_)
                if value["kind"].as_str().is_some_and(|k| k.ends_with("List"))
                    && value["items"].is_array() =>
            {
                out.extend(value["items"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(_) => {
                if !value["kind"].is_string() || !value["apiVersion"].is_string() {
                    return Err(Error::Fixture {
                        path: path.to_path_buf(),
                        document: i + 1,
                        message: "apiVersion and kind are required".into(),
                    });
                }
                out.push(value);
            }
            _ => {
                return Err(Error::Fixture {
                    path: path.to_path_buf(),
                    document: i + 1,
                    message: "expected a mapping".into(),
                });
            }
        }
    }
    Ok(out)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads every `.yaml`, `.yml` and `.json` file under `dir` (recursively, in name order).
pub fn read_dir(dir: &Path) -> Result<Vec<Value>> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    let mut objects = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        objects.extend(parse_documents(&text, &f)?);
    }
    Ok(objects)
}

/// Stores objects as they are (status included): namespaces and CRDs first, missing
/// namespaces created. Returns how many objects were stored.
pub fn load(store: &Store, mut objects: Vec<Value>, origin: &Path) -> Result<usize> {
    let rank = |o: &Value| match o["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        Some("Node") => 2,
        _ => 3,
    };
    objects.sort_by_key(rank);
    let mut count = 0;
    for (i, mut obj) in objects.into_iter().enumerate() {
        let registry = store.registry();
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let ty: Arc<ResourceType> = registry.lookup_kind(&api_version, &kind).ok_or_else(|| Error::Fixture {
            path: origin.to_path_buf(),
            document: i + 1,
            message: format!("{api_version} {kind} is not served; add its CustomResourceDefinition to the fixtures"),
        })?;
        let ns = if ty.namespaced {
            Some(
                obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(ns) = &ns {
            ensure_namespace(store, ns)?;
        }
        if let Some(m) = obj["metadata"].as_object_mut() {
            // Versions from another cluster mean nothing here.
            m.remove("resourceVersion");
        }
        let keep = WriteOptions {
            keep_identity: true,
            ..WriteOptions::default()
        };
        match store.create(&ty, ns.as_deref(), obj, &keep) {
            Ok(_) => count += 1,
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count)
}

/// Creates a namespace if it does not exist.
pub fn ensure_namespace(store: &Store, ns: &str) -> Result<()> {
    let ty = store
        .registry()
        .lookup("", "v1", "namespaces")
        .expect("built-in");
    if store.get(&ty, None, ns).is_err() {
        match store.create(
            &ty,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &WriteOptions::default(),
        ) {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Every object as multi-document YAML, grouped by kind, in name order.
pub fn dump(store: &Store) -> String {
    let mut out = Vec::new();
    store.with_objects(|registry, lookup| {
        let mut seen = std::collections::HashSet::new();
        for t in registry.types() {
            if !seen.insert(t.key()) {
                continue;
            }
            for obj in lookup(&t.key()) {
                let _ = writeln!(out, "---");
                let _ = serde_norway::to_writer(&mut out, &*obj);
            }
        }
    });
    String::from_utf8(out).unwrap_or_default()
}

/// The shape of a generated cluster (for benchmarks and demos).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSpec {
    /// Nodes.
    pub nodes: usize,
    /// Pods, spread over Deployments of `pods_per_deployment` replicas.
    pub pods: usize,
    /// Replicas per generated Deployment.
    pub pods_per_deployment: usize,
    /// PodDisruptionBudgets (one per Deployment, up to this many).
    pub pdbs: usize,
    /// Helm releases (stored as Helm's Secrets).
    pub helm_releases: usize,
    /// Revisions per Helm release.
    pub revisions_per_release: usize,
    /// Namespaces the workloads are spread over.
    pub namespaces: usize,
    /// Kubelet version of the nodes.
    pub kubelet_version: String,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        ScaleSpec {
            nodes: 10,
            pods: 100,
            pods_per_deployment: 10,
            pdbs: 5,
            helm_releases: 5,
            revisions_per_release: 3,
            namespaces: 5,
            kubelet_version: "v1.30.4-eks-a737599".into(),
        }
    }
}

/// Helm's release encoding: base64 of gzip of the release JSON (inside the Secret's data,
/// which is base64 again).
pub fn helm_release_payload(release: &Value) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(release.to_string().as_bytes());
    let compressed = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

/// Writes a generated cluster straight into the store: nodes Ready, Deployments with their
/// ReplicaSets and Running pods bound round-robin, PDBs and Helm release Secrets.
pub fn generate(store: &Store, spec: &ScaleSpec) -> Result<()> {
    let registry = store.registry();
    let ty = |g: &str, p: &str| registry.lookup(g, "v1", p).expect("built-in");
    let (nodes_t, pods_t, deps_t, rs_t, pdb_t, sec_t) = (
        ty("", "nodes"),
        ty("", "pods"),
        ty("apps", "deployments"),
        ty("apps", "replicasets"),
        ty("policy", "poddisruptionbudgets"),
        ty("", "secrets"),
    );
    let opts = WriteOptions::default();
    for i in 0..spec.nodes {
        store.create(
            &nodes_t,
            None,
            crate::node_object(&format!("node-{i:04}"), &spec.kubelet_version, i),
            &opts,
        )?;
    }
    let namespaces: Vec<String> = (0..spec.namespaces.max(1))
        .map(|i| format!("team-{i:02}"))
        .collect();
    for ns in &namespaces {
        ensure_namespace(store, ns)?;
    }
    let per = spec.pods_per_deployment.max(1);
    let deployments = spec.pods.div_ceil(per);
    let mut pod_index = 0usize;
    let now = now_rfc3339();
    for d in 0..deployments {
        let ns = &namespaces[d % namespaces.len()];
        let app = format!("app-{d:04}");
        let replicas = per.min(spec.pods - d * per);
        let labels = json!({"app": app});
        let template = json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": format!("registry.example/{app}:1.0.0"), "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
        let dep = store.create(&deps_t, Some(ns), json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": ns, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}}), &opts)?;
        let hash = crate::controllers::template_hash(&template);
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let owner = |o: &Value| json!([{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let rs = store.create(&rs_t, Some(ns), json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{app}-{hash}"), "namespace": ns, "labels": rs_template["metadata"]["labels"], "ownerReferences": owner(&dep),
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": rs_template["metadata"]["labels"]}, "template": rs_template}}), &opts)?;
        for r in 0..replicas {
            let node = format!("node-{:04}", pod_index % spec.nodes.max(1));
            pod_index += 1;
            let ip = format!(
                "10.{}.{}.{}",
                (pod_index / 62_500) % 250,
                (pod_index / 250) % 250,
                pod_index % 250 + 1
            );
            let ready = json!([{"type": "Ready", "status": "True", "lastTransitionTime": now}, {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                               {"type": "Initialized", "status": "True", "lastTransitionTime": now}, {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]);
            store.create(&pods_t, Some(ns), json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{app}-{hash}-{r:05}"), "namespace": ns, "labels": rs_template["metadata"]["labels"], "ownerReferences": owner(&rs)},
                "spec": {"nodeName": if spec.nodes > 0 { json!(node) } else { Value::Null }, "containers": template["spec"]["containers"]},
                "status": {"phase": "Running", "podIP": ip, "startTime": now, "conditions": ready,
                           "containerStatuses": [{"name": "main", "ready": true, "started": true, "restartCount": 0, "image": template["spec"]["containers"][0]["image"], "imageID": "", "state": {"running": {"startedAt": now}}}]}}), &opts)?;
        }
        if d < spec.pdbs {
            store.create(&pdb_t, Some(ns), json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": app, "namespace": ns},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}), &opts)?;
        }
    }
    for r in 0..spec.helm_releases {
        let ns = &namespaces[r % namespaces.len()];
        let release = format!("release-{r:03}");
        for v in 1..=spec.revisions_per_release.max(1) {
            let last = v == spec.revisions_per_release.max(1);
            let status = if last { "deployed" } else { "superseded" };
            let payload = json!({"name": release, "namespace": ns, "version": v,
                "info": {"first_deployed": now, "last_deployed": now, "deleted": "", "description": if v == 1 { "Install complete" } else { "Upgrade complete" }, "status": status},
                "chart": {"metadata": {"name": "generated", "version": format!("1.{v}.0"), "appVersion": "1.0.0", "apiVersion": "v2"}, "lock": null, "templates": [], "values": {}, "schema": null, "files": []},
                "config": {}, "manifest": "", "hooks": []});
            let data =
                base64::engine::general_purpose::STANDARD.encode(helm_release_payload(&payload));
            store.create(&sec_t, Some(ns), json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                "metadata": {"name": format!("sh.helm.release.v1.{release}.v{v}"), "namespace": ns,
                             "labels": {"name": release, "owner": "helm", "status": status, "version": v.to_string()}},
                "data": {"release": data}}), &opts)?;
        }
    }
    Ok(())
}
