//! The logs the seeds read after an upgrade (`kubectl logs --tail=50/100` of Karpenter, the
//! KServe controller, the Argo Workflows controller, MLflow, Argo CD and cert-manager), read
//! through the Kubernetes API and scanned for trouble: panics (Go and Python), error-level
//! lines (logfmt, JSON, klog, Python logging) and repeated reconcile errors. Compared with a
//! baseline read before the upgrade, only what grew counts (see [`super::health`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde::{Deserialize, Serialize};

use crate::context::FlowContext;
use crate::error::{FlowError, Result};

/// Where one component's logs come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSource {
    /// The component, e.g. `karpenter`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The label selector of its pods.
    pub selector: String,
    /// How many of the last lines of each container to read.
    pub tail: i64,
}

impl LogSource {
    /// `NAME=NAMESPACE/SELECTOR[:TAIL]`, e.g. `karpenter=karpenter/app.kubernetes.io/name=karpenter:100`.
    pub fn parse(text: &str) -> std::result::Result<LogSource, String> {
        let usage = "NAME=NAMESPACE/SELECTOR[:TAIL], e.g. karpenter=karpenter/app.kubernetes.io/name=karpenter:100";
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not {usage}"))?;
        let (namespace, selector) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not {usage}"))?;
        let (selector, tail) = match selector.rsplit_once(':') {
            Some((s, t)) if t.parse::<i64>().is_ok() => (s, t.parse().unwrap_or(50)),
            _ => (selector, 50),
        };
        if name.is_empty() || namespace.is_empty() || selector.is_empty() || tail <= 0 {
            return Err(format!("`{text}` is not {usage}"));
        }
        Ok(LogSource {
            name: name.into(),
            namespace: namespace.into(),
            selector: selector.into(),
            tail,
        })
    }
}

/// The seeds' sources with their charts' default namespaces and labels (seed 002 reads
/// `--tail=100` of Karpenter, 50 of the others).
pub fn seed_sources() -> Vec<LogSource> {
    [
        (
            "karpenter",
            "karpenter",
            "app.kubernetes.io/name=karpenter",
            100,
        ),
        (
            "kserve-controller",
            "kserve",
            "control-plane=kserve-controller-manager",
            50,
        ),
        (
            "argo-workflows-controller",
            "argo",
            "app.kubernetes.io/component=workflow-controller",
            50,
        ),
        ("mlflow", "mlops", "app.kubernetes.io/name=mlflow", 50),
        ("argocd", "argocd", "app.kubernetes.io/part-of=argocd", 50),
        (
            "cert-manager",
            "cert-manager",
            "app.kubernetes.io/instance=cert-manager",
            50,
        ),
    ]
    .into_iter()
    .map(|(name, namespace, selector, tail)| LogSource {
        name: name.into(),
        namespace: namespace.into(),
        selector: selector.into(),
        tail,
    })
    .collect()
}

/// A kind of trouble in a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogPattern {
    /// A Go panic or fatal error, or a Python traceback.
    Panic,
    /// A controller-runtime `Reconciler error` or an `error syncing` line.
    ReconcileError,
    /// Any other error-level line.
    ErrorLine,
}

impl LogPattern {
    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            LogPattern::Panic => "panic",
            LogPattern::ReconcileError => "reconcile error",
            LogPattern::ErrorLine => "error-level",
        }
    }

    /// How many in one read count: one panic, three reconcile errors (one is a retry
    /// controllers make all the time), one error line.
    pub fn threshold(self) -> usize {
        match self {
            LogPattern::ReconcileError => 3,
            _ => 1,
        }
    }
}

/// What one source's logs held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogScan {
    /// The source's name.
    pub source: String,
    /// The pods read (`pod/container`).
    pub read: Vec<String>,
    /// Lines per pattern.
    pub counts: BTreeMap<LogPattern, usize>,
    /// The first line of each pattern.
    pub samples: BTreeMap<LogPattern, String>,
    /// Why nothing was read, when nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_read: Option<String>,
}

/// The pattern a line shows, if any (the worst first).
pub fn classify(line: &str) -> Option<LogPattern> {
    let lower = line.to_ascii_lowercase();
    if line.starts_with("panic:")
        || line.starts_with("fatal error:")
        || (line.starts_with("goroutine ") && line.contains("[running]"))
        || line.starts_with("Traceback (most recent call last)")
    {
        return Some(LogPattern::Panic);
    }
    if line.contains("Reconciler error") || lower.contains("error syncing") {
        return Some(LogPattern::ReconcileError);
    }
    let klog_error = line.len() > 5
        && line.starts_with('E')
        && line[1..5].chars().all(|c| c.is_ascii_digit())
        && line[5..].starts_with(' ');
    if klog_error
        || lower.contains("level=error")
        || lower.contains("\"level\":\"error\"")
        || line.contains(" ERROR ")
        || line.contains("[ERROR]")
        || line.starts_with("ERROR")
    {
        return Some(LogPattern::ErrorLine);
    }
    None
}

/// Reads and scans every source's pods (each container's last `tail` lines).
pub async fn scan(ctx: &FlowContext, sources: &[LogSource]) -> Result<Vec<LogScan>> {
    let mut scans = Vec::new();
    for source in sources {
        let pods: Api<Pod> = Api::namespaced(ctx.cluster().client().clone(), &source.namespace);
        let listed = pods
            .list(&ListParams::default().labels(&source.selector))
            .await
            .map_err(|e| FlowError::failed(format!("list the pods of {}", source.name), e))?;
        let mut scan = LogScan {
            source: source.name.clone(),
            ..LogScan::default()
        };
        if listed.items.is_empty() {
            scan.not_read = Some(format!(
                "no pod in {} matches {}",
                source.namespace, source.selector
            ));
        }
        for pod in &listed.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let params = LogParams {
                    container: Some(container.name.clone()),
                    tail_lines: Some(source.tail),
                    ..LogParams::default()
                };
                // A container that has not started has no log yet: nothing to scan.
                let Ok(text) = pods.logs(&name, &params).await else {
                    continue;
                };
                scan.read.push(format!("{name}/{}", container.name));
                for line in text.lines() {
                    if let Some(pattern) = classify(line) {
                        *scan.counts.entry(pattern).or_default() += 1;
                        scan.samples
                            .entry(pattern)
                            .or_insert_with(|| line.chars().take(300).collect());
                    }
                }
            }
        }
        scans.push(scan);
    }
    Ok(scans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified_as_the_seeds_grep_them() {
        for (line, want) in [
            (
                "panic: runtime error: invalid memory address or nil pointer dereference",
                Some(LogPattern::Panic),
            ),
            ("goroutine 1 [running]:", Some(LogPattern::Panic)),
            (
                "Traceback (most recent call last):",
                Some(LogPattern::Panic),
            ),
            (
                r#"{"level":"error","msg":"Reconciler error","controller":"nodeclaim"}"#,
                Some(LogPattern::ReconcileError),
            ),
            (
                "E1203 10:01:02.123456       1 controller.go:114] error syncing 'argo/wf': boom",
                Some(LogPattern::ReconcileError),
            ),
            (
                "E1203 10:01:02.123456       1 reflector.go:147] failed to list",
                Some(LogPattern::ErrorLine),
            ),
            (
                r#"time="2026-12-03T10:00:00Z" level=error msg="failed to save artifact""#,
                Some(LogPattern::ErrorLine),
            ),
            (
                "2026/12/03 10:00:00 ERROR mlflow.server: database is locked",
                Some(LogPattern::ErrorLine),
            ),
            (r#"{"level":"info","msg":"starting"}"#, None),
            ("Error handling is documented", None),
        ] {
            assert_eq!(classify(line), want, "{line}");
        }
        assert!(
            LogSource::parse("karpenter=karpenter/app.kubernetes.io/name=karpenter:100")
                .is_ok_and(|s| s.tail == 100 && s.selector == "app.kubernetes.io/name=karpenter")
        );
        assert!(LogSource::parse("mlflow=mlops/app=mlflow").is_ok_and(|s| s.tail == 50));
        assert!(LogSource::parse("mlflow").is_err());
    }
}
