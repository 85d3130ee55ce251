//! Connecting to a cluster, with a safety interlock.
//!
//! The caller names the context explicitly (never "whatever is current" by accident) and,
//! for any change, the cluster it expects: an EKS cluster name or an API server URL. The
//! interlock compares it with what the context really points at, and every mutating call
//! in this crate goes through [`Cluster::guard`], so a wrong context can read but never change.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use upgrade_core::process::StopSignal;

use crate::error::{Error, Result};

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The kubeconfig file (default: `KUBECONFIG` or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The context (default: the kubeconfig's current context).
    pub context: Option<String>,
    /// The cluster changes are allowed on: EKS cluster name, kubeconfig cluster name or API server URL.
    pub expect_cluster: Option<String>,
}

/// What a context points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// The kubeconfig context.
    pub context: String,
    /// The API server URL.
    pub server_url: String,
    /// The kubeconfig's cluster entry name (an ARN for `aws eks update-kubeconfig`).
    pub kubeconfig_cluster: String,
    /// The EKS cluster name, when the kubeconfig reveals it (ARN or `--cluster-name`).
    pub eks_cluster_name: Option<String>,
}

impl ClusterIdentity {
    /// Whether `expected` names this cluster.
    pub fn matches(&self, expected: &str) -> bool {
        let expected = expected.trim();
        let norm = |url: &str| url.trim_end_matches('/').to_ascii_lowercase();
        norm(expected) == norm(&self.server_url)
            || expected == self.kubeconfig_cluster
            || self.eks_cluster_name.as_deref() == Some(expected)
    }

    /// The most telling name, for messages.
    pub fn display_name(&self) -> String {
        match &self.eks_cluster_name {
            Some(name) => format!("{name} ({})", self.server_url),
            None => self.server_url.clone(),
        }
    }
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    identity: ClusterIdentity,
    expected: Option<String>,
    stop: StopSignal,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("identity", &self.identity)
            .field("expected", &self.expected)
            .finish()
    }
}

impl Cluster {
    /// Connects; fails at once when an expected cluster is named and the context points elsewhere.
    pub async fn connect(options: &ConnectOptions) -> Result<Cluster> {
        let kubeconfig = match &options.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|source| Error::Kubeconfig {
            path: options.kubeconfig.clone(),
            source: Box::new(source),
        })?;
        let identity = identity_of(
            &kubeconfig,
            options.context.as_deref(),
            options.kubeconfig.as_deref(),
        )?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &KubeConfigOptions {
                context: Some(identity.context.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|source| Error::Kubeconfig {
            path: options.kubeconfig.clone(),
            source: Box::new(source),
        })?;
        // kube-rs's own stack, with one retry policy under every caller
        // ([`crate::client_retry`]); the buffer makes the stack cloneable, as retrying needs.
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(|source| Error::Client {
                context: identity.context.clone(),
                source: Box::new(source),
            })?
            .with_layer(&tower::buffer::BufferLayer::new(1024))
            .with_layer(&tower::retry::RetryLayer::new(
                crate::client_retry::TransientRetry::default(),
            ))
            .build();
        let cluster = Cluster {
            client,
            identity,
            expected: options.expect_cluster.clone(),
            stop: StopSignal::global().clone(),
        };
        if cluster.expected.is_some() {
            cluster.guard()?;
        }
        Ok(cluster)
    }

    /// The client, for reads (and writes after [`guard`](Self::guard)).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// (chainable) The stop signal this crate's waits (drains, rollouts, jobs) and the
    /// commands it runs watch (default: the process-wide one).
    pub fn with_stop_signal(mut self, stop: StopSignal) -> Cluster {
        self.stop = stop;
        self
    }

    /// The stop signal waits on this cluster watch.
    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Waits `duration` between polls; a stop request ends the wait with [`Error::Stopped`]
    /// at once, so no wait ever has to run out its timeout after Ctrl-C.
    pub async fn pause(&self, duration: std::time::Duration) -> Result<()> {
        self.stop.pause(duration).await.map_err(|_| Error::Stopped)
    }

    /// What the context points at.
    pub fn identity(&self) -> &ClusterIdentity {
        &self.identity
    }

    /// Succeeds only when an expected cluster was named and it is this one. Every mutating
    /// call in this crate calls it first.
    pub fn guard(&self) -> Result<()> {
        match &self.expected {
            None => Err(Error::NoExpectedCluster {
                actual: self.identity.display_name(),
            }),
            Some(expected) if self.identity.matches(expected) => Ok(()),
            Some(expected) => Err(Error::WrongCluster {
                expected: expected.clone(),
                actual: self.identity.display_name(),
                context: self.identity.context.clone(),
            }),
        }
    }
}

fn identity_of(
    kubeconfig: &Kubeconfig,
    context: Option<&str>,
    path: Option<&Path>,
) -> Result<ClusterIdentity> {
    let missing = |what: String| Error::Kubeconfig {
        path: path.map(Path::to_path_buf),
        source: Box::new(kube::config::KubeconfigError::LoadContext(what)),
    };
    let context_name = context
        .map(str::to_string)
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or_else(|| {
            missing("no context named and the kubeconfig has no current-context".into())
        })?;
    let ctx = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| missing(format!("no context `{context_name}` in the kubeconfig")))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| {
            missing(format!(
                "context `{context_name}` names cluster `{}`, which is not in the kubeconfig",
                ctx.cluster
            ))
        })?;
    let server_url = cluster
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .unwrap_or_default();
    let user_args: Vec<String> = ctx
        .user
        .as_ref()
        .and_then(|user| kubeconfig.auth_infos.iter().find(|a| &a.name == user))
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| a.exec.as_ref())
        .and_then(|e| e.args.clone())
        .unwrap_or_default();
    Ok(ClusterIdentity {
        context: context_name,
        server_url,
        kubeconfig_cluster: cluster.name.clone(),
        eks_cluster_name: eks_name(&cluster.name, &user_args),
    })
}

/// The EKS cluster name from an ARN (`arn:aws:eks:REGION:ACCOUNT:cluster/NAME`) or from the
/// exec plugin's `--cluster-name NAME` (aws eks get-token) / `-i NAME` (aws-iam-authenticator).
fn eks_name(kubeconfig_cluster: &str, exec_args: &[String]) -> Option<String> {
    if kubeconfig_cluster.starts_with("arn:aws")
        && let Some((_, name)) = kubeconfig_cluster.rsplit_once(":cluster/")
    {
        return Some(name.to_string());
    }
    exec_args
        .windows(2)
        .find(|w| w[0] == "--cluster-name" || w[0] == "-i" || w[0] == "--cluster-id")
        .map(|w| w[1].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: arn:aws:eks:eu-west-1:111122223333:cluster/mlops-platform-dev
  cluster: { server: "https://ABC.gr7.eu-west-1.eks.amazonaws.com" }
- name: prod
  cluster: { server: "https://PROD.eks.amazonaws.com/" }
users:
- name: dev
  user: { token: x }
- name: prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: ["eks", "get-token", "--cluster-name", "mlops-platform-prod"]
contexts:
- name: dev
  context: { cluster: "arn:aws:eks:eu-west-1:111122223333:cluster/mlops-platform-dev", user: dev }
- name: prod
  context: { cluster: prod, user: prod }
"#;

    fn kubeconfig() -> Kubeconfig {
        Kubeconfig::from_yaml(KUBECONFIG).unwrap()
    }

    #[test]
    fn identity_reads_the_eks_name_from_the_arn_or_the_exec_args() {
        let dev = identity_of(&kubeconfig(), None, None).unwrap();
        assert_eq!(dev.context, "dev");
        assert_eq!(dev.eks_cluster_name.as_deref(), Some("mlops-platform-dev"));
        let prod = identity_of(&kubeconfig(), Some("prod"), None).unwrap();
        assert_eq!(
            prod.eks_cluster_name.as_deref(),
            Some("mlops-platform-prod")
        );
        assert!(
            prod.matches("https://prod.eks.amazonaws.com"),
            "URL compare ignores case and the trailing slash"
        );
        assert!(prod.matches("mlops-platform-prod"));
        assert!(!prod.matches("mlops-platform-dev"));
    }

    #[test]
    fn an_unknown_context_is_a_clear_error() {
        let err =
            identity_of(&kubeconfig(), Some("staging"), Some(Path::new("/k/config"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no context `staging`"), "{text}");
        assert!(text.contains("--kube-context"), "{text}");
    }
}
