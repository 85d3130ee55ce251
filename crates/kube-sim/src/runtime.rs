//! Containers run for real: a [`ContainerRuntime`] the simulated kubelet hands the
//! containers of the images it claims, so a test can run the real program behind an image
//! (a schema migration, a server's start-up check) instead of a timer.
//!
//! A pod whose first container's image the runtime claims starts Running and not Ready, and
//! its container runs on a thread of its own. A pod that runs to completion (`restartPolicy`
//! Never or OnFailure) ends Succeeded or Failed with the exit code. A server (`Always`)
//! becomes Ready when its run returns 0; any other code is a crash: the container is shown
//! in `CrashLoopBackOff` and run again after a back-off, as the kubelet restarts it, so a
//! server that cannot start yet (its database not migrated) recovers once it can.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A container as the kubelet starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStart {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The container's image.
    pub image: String,
    /// `command` then `args`, with `$(VAR)` expanded from the environment as the kubelet does.
    pub argv: Vec<String>,
    /// The container's environment as the kubelet builds it: `envFrom` (Secrets and
    /// ConfigMaps, with their prefix), then `env` (literal values, `secretKeyRef`,
    /// `configMapKeyRef`, and the pod's name, namespace and service account); a reference to
    /// something missing is left out.
    pub env: BTreeMap<String, String>,
    /// The pod's service account.
    pub service_account: String,
    /// Whether the pod restarts its containers always (a server) rather than running them to
    /// completion (a job).
    pub restarts: bool,
}

impl ContainerStart {
    /// The first container of `pod`, its environment resolved from `store`.
    pub(crate) fn of(pod: &Value, store: &crate::store::Store) -> Option<ContainerStart> {
        let container = pod["spec"]["containers"].get(0)?;
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let registry = store.registry();
        let data = |kind: &str, name: &str| -> BTreeMap<String, String> {
            let Some(ty) = registry.lookup_kind("v1", kind) else {
                return BTreeMap::new();
            };
            let Ok(obj) = store.get(&ty, Some(namespace), name) else {
                return BTreeMap::new();
            };
            let mut out = BTreeMap::new();
            for (key, value) in obj["data"].as_object().into_iter().flatten() {
                let Some(text) = value.as_str() else { continue };
                let text = if kind == "Secret" {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                } else {
                    Some(text.to_string())
                };
                if let Some(text) = text {
                    out.insert(key.clone(), text);
                }
            }
            if kind == "Secret" {
                for (key, value) in obj["stringData"].as_object().into_iter().flatten() {
                    if let Some(text) = value.as_str() {
                        out.insert(key.clone(), text.to_string());
                    }
                }
            }
            out
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let prefix = source["prefix"].as_str().unwrap_or_default();
            let (kind, reference) = if source["secretRef"].is_object() {
                ("Secret", &source["secretRef"])
            } else {
                ("ConfigMap", &source["configMapRef"])
            };
            if let Some(name) = reference["name"].as_str() {
                for (key, value) in data(kind, name) {
                    env.insert(format!("{prefix}{key}"), value);
                }
            }
        }
        for e in container["env"].as_array().into_iter().flatten() {
            let Some(name) = e["name"].as_str() else {
                continue;
            };
            let from = &e["valueFrom"];
            let value = if let Some(value) = e["value"].as_str() {
                Some(expand(value, &env))
            } else if from["secretKeyRef"].is_object() {
                let r = &from["secretKeyRef"];
                data("Secret", r["name"].as_str().unwrap_or_default())
                    .remove(r["key"].as_str().unwrap_or_default())
            } else if from["configMapKeyRef"].is_object() {
                let r = &from["configMapKeyRef"];
                data("ConfigMap", r["name"].as_str().unwrap_or_default())
                    .remove(r["key"].as_str().unwrap_or_default())
            } else {
                match from["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.name") => pod["metadata"]["name"].as_str().map(Into::into),
                    Some("metadata.namespace") => Some(namespace.to_string()),
                    Some("spec.serviceAccountName") => {
                        pod["spec"]["serviceAccountName"].as_str().map(Into::into)
                    }
                    _ => None,
                }
            };
            if let Some(value) = value {
                env.insert(name.to_string(), value);
            }
        }
        let argv = ["command", "args"]
            .iter()
            .flat_map(|key| container[*key].as_array().cloned().unwrap_or_default())
            .filter_map(|arg| arg.as_str().map(|a| expand(a, &env)))
            .collect();
        Some(ContainerStart {
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .into(),
            pod: pod["metadata"]["name"].as_str().unwrap_or_default().into(),
            container: container["name"].as_str().unwrap_or_default().into(),
            image: container["image"].as_str().unwrap_or_default().into(),
            argv,
            env,
            service_account: pod["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .into(),
            restarts: pod["spec"]["restartPolicy"].as_str().unwrap_or("Always") == "Always",
        })
    }
}

/// Expands `$(VAR)` from `env` as Kubernetes does: an undefined reference stays as written,
/// `$$` is a literal `$`.
pub(crate) fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Runs the containers of the images it claims.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Whether this runtime runs containers of `image` (others behave as the pod's
    /// annotations say).
    fn runs(&self, image: &str) -> bool;
    /// Runs `container` (on a thread of its own) and returns its exit code. For a server
    /// ([`ContainerStart::restarts`]), 0 means it started and serves; anything else that it
    /// exited, and it is run again after a back-off.
    fn run(&self, container: &ContainerStart) -> i32;
    /// [`run`](Self::run), with what the container printed: kube-sim serves it as the
    /// container's log (`pods/log`). The default prints nothing.
    fn run_logged(&self, container: &ContainerStart) -> (i32, String) {
        (self.run(container), String::new())
    }
}

/// The runtime as the builder and the kubelet hold it.
#[derive(Clone)]
pub(crate) struct Runtime(pub(crate) Arc<dyn ContainerRuntime>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContainerRuntime")
    }
}

/// How long a crashed server waits before it is run again.
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// What the kubelet knows of one pod's container run.
pub(crate) enum Run {
    /// Running on its thread.
    Running(JoinHandle<i32>),
    /// A server that started and serves.
    Serving,
    /// A server that exited with a code; run again at the instant.
    Crashed { again_at: Instant },
}

/// The runs, by pod uid, and how often each server was restarted.
#[derive(Default)]
pub(crate) struct Runs {
    pub(crate) by_pod: HashMap<String, Run>,
    pub(crate) restarts: HashMap<String, u32>,
}

impl Runs {
    /// Starts `container` for the pod `uid` on a thread.
    pub(crate) fn start(
        &mut self,
        runtime: &Runtime,
        store: &Arc<crate::store::Store>,
        uid: &str,
        container: ContainerStart,
    ) {
        let runtime = Arc::clone(&runtime.0);
        let store = Arc::clone(store);
        let handle = std::thread::spawn(move || {
            let (code, log) = runtime.run_logged(&container);
            if !log.is_empty() {
                store.set_pod_log(
                    &container.namespace,
                    &container.pod,
                    &container.container,
                    &log,
                );
            }
            code
        });
        self.by_pod.insert(uid.to_string(), Run::Running(handle));
    }

    /// The exit code of a finished run of `uid` (taken, so it is reported once).
    pub(crate) fn finished(&mut self, uid: &str) -> Option<i32> {
        match self.by_pod.get(uid) {
            Some(Run::Running(handle)) if handle.is_finished() => {}
            _ => return None,
        }
        let Some(Run::Running(handle)) = self.by_pod.remove(uid) else {
            unreachable!("checked above")
        };
        // A runtime that panics is a crashed container.
        Some(handle.join().unwrap_or(137))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_like_the_kubelet() {
        let env = BTreeMap::from([("DB".to_string(), "sqlite:///x.db".to_string())]);
        assert_eq!(expand("$(DB)", &env), "sqlite:///x.db");
        assert_eq!(expand("a$(DB)b", &env), "asqlite:///x.dbb");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("$$(DB)", &env), "$(DB)");
        assert_eq!(expand("cost: $5", &env), "cost: $5");
        assert_eq!(expand("$(DB", &env), "$(DB");
    }
}
