//! The crate's error type: one enum, each variant with what to do about it.

use std::path::PathBuf;

/// A Kubernetes-side failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kubeconfig could not be read or has no such context.
    #[error("could not load the kubeconfig{}: {source}\nhint: pass --kubeconfig and --kube-context explicitly; list contexts with `kubectl config get-contexts`", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Kubeconfig {
        /// The kubeconfig file, when one was named.
        path: Option<PathBuf>,
        /// kube-rs's reason.
        #[source]
        source: Box<kube::config::KubeconfigError>,
    },
    /// A client could not be built from the kubeconfig.
    #[error("could not build a Kubernetes client for context `{context}`: {source}")]
    Client {
        /// The context.
        context: String,
        /// kube-rs's reason.
        #[source]
        source: Box<kube::Error>,
    },
    /// The safety interlock: the connected cluster is not the one the caller named.
    #[error(
        "refusing to change cluster `{actual}` (context `{context}`): expected `{expected}`\nhint: switch to the right context with --kube-context, or correct --expect-cluster"
    )]
    WrongCluster {
        /// What the caller expected.
        expected: String,
        /// What the kubeconfig context points at.
        actual: String,
        /// The context used.
        context: String,
    },
    /// A change was asked for without naming the expected cluster.
    #[error(
        "refusing to change cluster `{actual}` because no expected cluster was named\nhint: pass --expect-cluster <EKS cluster name or API server URL> so a wrong kube context can never be changed by mistake"
    )]
    NoExpectedCluster {
        /// The cluster the context points at.
        actual: String,
    },
    /// A wait was ended by a stop request (Ctrl-C, a lost upgrade lock).
    #[error("stopped on request")]
    Stopped,
    /// An API call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, e.g. "cordon node ip-10-0-1-5".
        action: String,
        /// kube-rs's error (the API server's Status for API errors).
        #[source]
        source: Box<kube::Error>,
    },
    /// A drain could not finish; names every pod still on the node and why.
    #[error("{}", crate::drain::render_blocked(node, blocked))]
    DrainBlocked {
        /// The node.
        node: String,
        /// The pods that did not leave, with the reason and the budget involved.
        blocked: Vec<crate::drain::BlockedPod>,
    },
    /// The upgrade lock is held by someone else.
    #[error(
        "the upgrade lock {namespace}/{name} is held by `{holder}` (step: {step}) until {expires}\nhint: wait for that run to finish; if it died, the lock frees itself at the time shown"
    )]
    LockHeld {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The holder's identity.
        holder: String,
        /// The step the holder recorded.
        step: String,
        /// When the lease expires unless renewed.
        expires: String,
    },
    /// We lost the upgrade lock (it expired and someone else took it).
    #[error(
        "lost the upgrade lock {namespace}/{name}: it is now held by `{holder}`\nhint: stop; another run owns the cluster now"
    )]
    LockLost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The new holder.
        holder: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        seconds: u64,
    },
    /// An object the facts need could not be understood.
    #[error("cannot read {object}: {problem}")]
    Facts {
        /// The object (`the API server's /version`, `node ip-10-0-1-5`).
        object: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A node rollout stopped; the report says where and why, and what state it left.
    #[error("{}", .0.render())]
    RolloutStopped(Box<crate::rollout::RolloutReport>),
    /// A backup file or object could not be used.
    #[error("{0}")]
    Backup(String),
}

impl Error {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The API server's HTTP code for an API error, if it is one.
pub(crate) fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
