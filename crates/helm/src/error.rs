//! The crate's error type and the classification of Helm's failures from its stderr.
//!
//! The exit status decides *whether* Helm failed (stderr alone never does: Helm 4 prints
//! deprecation warnings there). The stderr text only picks a [`FailureKind`], which is a
//! **hint**: matching is case-insensitive (Helm 4 lower-cased some messages), the raw stderr
//! is always kept, and an unrecognised message is [`FailureKind::Other`], never an error of
//! its own.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use upgrade_core::ProcessError;
use upgrade_core::process::ToolError;

use crate::types::{ReleaseRef, ReleaseStatus};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when driving Helm or reading its storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Helm could not be found or started, or its output could not be parsed.
    #[error(transparent)]
    Process(ProcessError),
    /// Helm was stopped on request (Ctrl-C or a lost upgrade lease) with one SIGINT, so it
    /// could mark the release failed rather than leave it pending.
    #[error(
        "`{command}` was stopped on request{}\nhint: check `helm history` on the release; a pending-* last revision is cleared by the run's rollback or `upgrade-rollback`",
        stderr_block(stderr)
    )]
    Stopped {
        /// The redacted command line.
        command: String,
        /// Stderr up to the stop, redacted.
        stderr: String,
    },
    /// Helm ran and exited non-zero; the kind and hint are read from its stderr.
    #[error("{0}")]
    Failed(Box<HelmFailure>),
    /// Helm outlived its timeout and was stopped (SIGINT first, so Helm could mark the
    /// release failed instead of leaving it pending).
    #[error(
        "`{command}` timed out after {after:?} and was stopped\nhint: {hint}{}",
        stderr_block(stderr)
    )]
    TimedOut {
        /// The redacted command line.
        command: String,
        /// The timeout that elapsed.
        after: Duration,
        /// Stderr up to the stop, redacted.
        stderr: String,
        /// What to check next.
        hint: String,
    },
    /// The Helm binary's version is not one the toolkit drives.
    #[error(
        "unsupported Helm version {found}: {reason}\nhint: install Helm 3.13+ or 4.x, or point HELM_BIN at one"
    )]
    UnsupportedVersion {
        /// The version text Helm printed.
        found: String,
        /// Why it is refused.
        reason: String,
    },
    /// An option needs a newer (or different major) Helm than the one in use.
    #[error(
        "{what} needs {requires}, but this Helm is {actual}\nhint: drop the option or use a Helm that has it"
    )]
    Unsupported {
        /// The option or command.
        what: String,
        /// The Helm it needs.
        requires: String,
        /// The Helm in use.
        actual: String,
    },
    /// The options contradict each other or are unsafe.
    #[error("invalid Helm options: {message}")]
    InvalidOptions {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A chart reference could not be understood.
    #[error("invalid chart reference `{reference}`: {reason}")]
    InvalidChartRef {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The release's last revision is `pending-*`: another Helm operation is running, or
    /// one died half-way. Nothing is changed until a policy says how to recover.
    #[error(
        "release {release} is stuck in {status} at revision {revision}: another Helm operation \
         is running or was killed half-way\nhint: {hint}"
    )]
    PendingOperation {
        /// The release.
        release: ReleaseRef,
        /// Its pending status.
        status: ReleaseStatus,
        /// The pending revision.
        revision: u32,
        /// How to recover, with the exact command.
        hint: String,
    },
    /// A restore cannot proceed (no revision to go back to, a mismatched snapshot, ...).
    #[error("cannot restore {release}: {reason}")]
    Restore {
        /// The release.
        release: ReleaseRef,
        /// Why, and what to do instead.
        reason: String,
    },
    /// Reading or writing a snapshot file failed.
    #[error("could not {action} snapshot {}: {source}", path.display())]
    SnapshotIo {
        /// "write", "read", ...
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is not a snapshot this version understands.
    #[error("snapshot {} is not valid: {source}", path.display())]
    SnapshotFormat {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A chart folder or archive could not be read.
    #[error("could not read chart {}: {message}", path.display())]
    Chart {
        /// The chart folder or file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A kubeVersion constraint or Kubernetes version could not be parsed.
    #[error(transparent)]
    Constraint(#[from] upgrade_core::constraint::ConstraintError),
    /// A Helm storage object could not be decoded.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The Kubernetes API failed while reading Helm's storage.
    #[cfg(feature = "kube")]
    #[error("Kubernetes API error while {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
}

impl From<ProcessError> for Error {
    fn from(err: ProcessError) -> Self {
        err.into_tool_error()
    }
}

impl ToolError for Error {
    fn exited(err: ProcessError) -> Self {
        let ProcessError::Exited {
            command,
            code,
            signal,
            stdout,
            stderr,
        } = err
        else {
            return Error::Process(err);
        };
        let kind = FailureKind::classify(&stderr);
        Error::Failed(Box::new(HelmFailure {
            command,
            code,
            signal,
            kind,
            stdout,
            stderr,
        }))
    }

    fn timed_out(err: ProcessError) -> Self {
        let ProcessError::TimedOut {
            command,
            after,
            stderr,
            ..
        } = err
        else {
            return Error::Process(err);
        };
        let hint = if ["upgrade", "install", "rollback", "uninstall"]
            .iter()
            .any(|sub| command.contains(&format!(" {sub} ")))
        {
            "Helm was interrupted mid-operation; run `helm history` on the release: \
             a pending-* last revision blocks further changes until it is rolled back \
             to an explicit revision (or use a PendingPolicy)"
        } else {
            "the cluster or registry is slow or unreachable; retry with a longer timeout"
        };
        Error::TimedOut {
            command,
            after,
            stderr,
            hint: hint.to_string(),
        }
    }

    fn stopped(err: ProcessError) -> Self {
        let ProcessError::Stopped {
            command, stderr, ..
        } = err
        else {
            return Error::Process(err);
        };
        Error::Stopped { command, stderr }
    }

    fn not_run(err: ProcessError) -> Self {
        Error::Process(err)
    }

    fn unparseable(err: ProcessError) -> Self {
        Error::Process(err)
    }
}

impl Error {
    /// Whether Helm was stopped on request (Ctrl-C, a lost lease) rather than failing.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Error::Stopped { .. })
    }

    /// The failure kind when Helm ran and failed, else `None`.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Error::Failed(failure) => Some(failure.kind),
            Error::TimedOut { .. } => Some(FailureKind::Timeout),
            Error::PendingOperation { .. } => Some(FailureKind::OperationInProgress),
            _ => None,
        }
    }

    /// Whether running the same command again may succeed: the API server failed a request
    /// for now, either as the failure itself or as the cause of a failure Helm rolled back
    /// (`--atomic` undoes an upgrade whose object write got a 503; the release is back, so
    /// the upgrade can simply run again).
    pub fn worth_running_again(&self) -> bool {
        match self.failure_kind() {
            Some(FailureKind::ApiTransient) => true,
            Some(FailureKind::RolledBack) => self
                .stderr()
                .is_some_and(FailureKind::names_transient_cause),
            _ => false,
        }
    }

    /// Helm's stderr (redacted) when it ran.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Error::Failed(failure) => Some(&failure.stderr),
            Error::TimedOut { stderr, .. } | Error::Stopped { stderr, .. } => Some(stderr),
            Error::Process(err) => err.stderr(),
            _ => None,
        }
    }
}

/// A non-zero exit of Helm, classified.
#[derive(Debug, Clone)]
pub struct HelmFailure {
    /// The redacted command line.
    pub command: String,
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// What the stderr says happened (a hint, see [`FailureKind`]).
    pub kind: FailureKind,
    /// All of stdout, redacted.
    pub stdout: String,
    /// All of stderr, redacted.
    pub stderr: String,
}

impl fmt::Display for HelmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed", self.command)?;
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, " with exit code {code}")?,
            (None, Some(signal)) => write!(f, " (killed by signal {signal})")?,
            _ => {}
        }
        if self.kind != FailureKind::Other {
            write!(f, ": {}", self.kind)?;
        }
        f.write_str(&stderr_block(&self.stderr))?;
        write!(f, "\nhint: {}", self.kind.hint())
    }
}

fn stderr_block(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(12);
    format!("\n--- stderr\n{}", lines[start..].join("\n"))
}

/// What a Helm failure was about, read from its stderr. A hint, never a guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The release does not exist in that namespace.
    ReleaseNotFound,
    /// `upgrade` without `--install` on a release that has no deployed revision.
    NoDeployedReleases,
    /// The release's last revision is pending-install/upgrade/rollback.
    OperationInProgress,
    /// The chart (path, repository entry or OCI artifact) does not exist.
    ChartNotFound,
    /// The chart exists but not at that version.
    ChartVersionNotFound,
    /// The named repository is not configured.
    RepoNotFound,
    /// A wait or a Kubernetes request ran out of time.
    Timeout,
    /// Helm could not reach the Kubernetes API.
    ClusterUnreachable,
    /// The API server failed a request for now (500, 503, throttling Helm gave up on, a
    /// dropped connection): worth running the command again.
    ApiTransient,
    /// The rendered manifests were rejected (schema or API validation).
    ManifestValidation,
    /// The chart failed to render (template error, `fail`, nil pointer).
    RenderFailed,
    /// The chart's values failed its values.schema.json.
    ValuesSchema,
    /// The chart's kubeVersion excludes the cluster's Kubernetes version.
    KubeVersionIncompatible,
    /// The operation failed and Helm rolled it back (`--atomic` / `--rollback-on-failure`), or
    /// uninstalled it when it was the first install.
    RolledBack,
    /// A resource exists but belongs to no release (or another one).
    ResourceExists,
    /// Server-side apply found fields owned by another manager.
    SsaConflict,
    /// Helm did not know a flag: the Helm in use differs from the one the options were built for.
    UnknownFlag,
    /// None of the above.
    Other,
}

/// Patterns per kind, in priority order (a rolled-back upgrade also mentions its cause).
const PATTERNS: &[(FailureKind, &[&str])] = &[
    (
        FailureKind::RolledBack,
        // A failed first install is uninstalled instead.
        &["has been rolled back due to", "has been uninstalled due to"],
    ),
    (
        FailureKind::OperationInProgress,
        &["another operation (install/upgrade/rollback) is in progress"],
    ),
    (
        FailureKind::ApiTransient,
        // What client-go prints for the API server's 503 and 500 Status, for throttling it
        // stopped retrying, and for connections that broke mid-request.
        &[
            "the server is currently unable to handle the request",
            "internal error occurred",
            "an error on the server",
            "the server has received too many requests",
            "connection reset by peer",
            "http2: client connection lost",
            "unexpected eof",
            // Go's HTTP client when the server closed the connection before answering:
            // `Post "https://…/secrets": EOF`.
            "\": eof",
        ],
    ),
    (
        FailureKind::ClusterUnreachable,
        &["kubernetes cluster unreachable"],
    ),
    (
        FailureKind::KubeVersionIncompatible,
        &["which is incompatible with kubernetes"],
    ),
    (
        FailureKind::NoDeployedReleases,
        &["has no deployed releases"],
    ),
    (
        FailureKind::ReleaseNotFound,
        &["release: not found", "release not loaded"],
    ),
    (
        FailureKind::RepoNotFound,
        &["no repositories configured", "no repo named"],
    ),
    (
        FailureKind::ValuesSchema,
        &["values don't meet the specifications of the schema"],
    ),
    (
        FailureKind::RenderFailed,
        &[
            "parse error at",
            "execution error at",
            "nil pointer evaluating",
            "template: ",
        ],
    ),
    (
        FailureKind::ManifestValidation,
        &[
            "unable to build kubernetes objects",
            "error validating data",
            "error validating \"",
            " is invalid: ",
            "unable to recognize",
        ],
    ),
    (
        FailureKind::ResourceExists,
        &["exists and cannot be imported into the current release"],
    ),
    (
        FailureKind::SsaConflict,
        &["conflict occurred while applying", "apply failed with"],
    ),
    (
        FailureKind::UnknownFlag,
        &["unknown flag:", "unknown shorthand flag"],
    ),
    (
        FailureKind::Timeout,
        &[
            "context deadline exceeded",
            "timed out waiting",
            "timeout waiting",
        ],
    ),
];

impl FailureKind {
    /// Whether `stderr` names a transient API failure anywhere (also as the cause of a
    /// rolled-back operation, which [`classify`](Self::classify) reports as [`RolledBack`](Self::RolledBack)).
    pub fn names_transient_cause(stderr: &str) -> bool {
        let text = stderr.to_lowercase();
        PATTERNS
            .iter()
            .filter(|(kind, _)| *kind == FailureKind::ApiTransient)
            .any(|(_, needles)| needles.iter().any(|needle| text.contains(needle)))
    }

    /// Classifies Helm's stderr (case-insensitive).
    pub fn classify(stderr: &str) -> FailureKind {
        let text = stderr.to_lowercase();
        for (kind, needles) in PATTERNS {
            if needles.iter().any(|needle| text.contains(needle)) {
                return *kind;
            }
        }
        // An OCI tag that is not there: `registry/path/chart:9.9.9: not found` at the end of
        // the line (Helm 4 prefixes `failed to perform "FetchReference" on source: `).
        let oci_tag_missing = text.lines().any(|line| {
            line.trim_end()
                .strip_suffix(": not found")
                .and_then(|before| before.split_whitespace().last())
                .and_then(|reference| reference.rsplit_once('/'))
                .is_some_and(|(_, last)| last.contains(':'))
        });
        if oci_tag_missing {
            return FailureKind::ChartVersionNotFound;
        }
        // Chart lookups fail with many phrasings; all say which chart and "not found".
        if text.contains("not found") {
            let names_chart = text.contains("chart \"")
                || text.contains("path \"")
                || text.contains("oci://")
                || text.contains("/manifests/")
                || text.contains("failed to fetch")
                || text.contains("failed to download");
            if names_chart {
                // `matching 9.9.9 not found`; without a version Helm prints `matching  not found`.
                let names_version = text.contains(" version \"")
                    || (text.contains("matching ") && !text.contains("matching  not found"))
                    || text.contains("/manifests/");
                return if names_version && !text.contains("path \"") {
                    FailureKind::ChartVersionNotFound
                } else {
                    FailureKind::ChartNotFound
                };
            }
            if text.contains("repo ") {
                return FailureKind::RepoNotFound;
            }
        }
        FailureKind::Other
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            FailureKind::ReleaseNotFound => {
                "check the release name and namespace (`helm list -A`); Helm looks only in the namespace given with -n"
            }
            FailureKind::NoDeployedReleases => {
                "the release has no deployed revision: install it (upgrade with install enabled), or roll back to an explicit earlier revision from `helm history`"
            }
            FailureKind::OperationInProgress => {
                "the last revision is pending-*; if no other Helm is running, roll back to the last deployed revision explicitly (`helm history`, then `helm rollback NAME REV`), or uninstall a release stuck in pending-install"
            }
            FailureKind::ChartNotFound => {
                "check the chart reference: a local path must exist, repo/name needs `helm repo add` and `helm repo update`, OCI needs the full oci:// URL"
            }
            FailureKind::ChartVersionNotFound => {
                "the chart exists but not at that version: list the versions the repository offers (`helm search repo NAME --versions`) after `helm repo update`"
            }
            FailureKind::RepoNotFound => {
                "add the repository first (`helm repo add NAME URL`), then `helm repo update`"
            }
            FailureKind::Timeout => {
                "resources did not become ready in time: check the pods and events of the release's namespace, then retry with a longer timeout or fix the values"
            }
            FailureKind::ClusterUnreachable => {
                "Helm could not reach the Kubernetes API: check the kubeconfig, the context and your credentials (`kubectl --context CONTEXT get ns`)"
            }
            FailureKind::ManifestValidation => {
                "the rendered manifests were rejected by the API server: render them with `helm template` and fix the field named in the message (often a value of the wrong type or a removed apiVersion)"
            }
            FailureKind::RenderFailed => {
                "the chart failed to render with these values: run `helm template` with the same values to see the template error"
            }
            FailureKind::ValuesSchema => {
                "the values do not match the chart's values.schema.json: fix the values named in the message"
            }
            FailureKind::KubeVersionIncompatible => {
                "the chart's kubeVersion excludes this cluster: pick a chart version whose kubeVersion allows it (note: EKS versions like v1.30.4-eks-x are pre-releases, which only constraints ending in -0 accept)"
            }
            FailureKind::RolledBack => {
                "the operation failed and Helm undid it (an upgrade was rolled back to the previous revision, a first install was uninstalled); the cause is in the message above"
            }
            FailureKind::ResourceExists => {
                "a resource in the chart already exists outside this release: adopt it (Helm 3.17+/4 `--take-ownership`) or delete it first"
            }
            FailureKind::SsaConflict => {
                "server-side apply found fields changed outside Helm (e.g. kubectl scale/edit): revert the out-of-band change or force conflicts on a release applied server-side"
            }
            FailureKind::UnknownFlag => {
                "the Helm binary does not know a flag the toolkit passed: the detected Helm version and the binary differ; check HELM_BIN"
            }
            FailureKind::ApiTransient => {
                "the Kubernetes API server failed the request for now (5xx, throttling or a dropped connection); the toolkit ran the command again a few times; check the API server's health, then retry"
            }
            FailureKind::Other => "see Helm's message above",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::ReleaseNotFound => "release not found",
            FailureKind::NoDeployedReleases => "release has no deployed revision",
            FailureKind::OperationInProgress => "another operation is in progress",
            FailureKind::ChartNotFound => "chart not found",
            FailureKind::ChartVersionNotFound => "chart version not found",
            FailureKind::RepoNotFound => "repository not found",
            FailureKind::Timeout => "timed out",
            FailureKind::ClusterUnreachable => "cluster unreachable",
            FailureKind::ApiTransient => "the API server failed the request for now",
            FailureKind::ManifestValidation => "manifest validation failed",
            FailureKind::RenderFailed => "chart rendering failed",
            FailureKind::ValuesSchema => "values failed the chart's schema",
            FailureKind::KubeVersionIncompatible => {
                "chart incompatible with the Kubernetes version"
            }
            FailureKind::RolledBack => "failed and rolled back",
            FailureKind::ResourceExists => "resource exists outside the release",
            FailureKind::SsaConflict => "server-side apply conflict",
            FailureKind::UnknownFlag => "unknown flag",
            FailureKind::Other => "failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_majors_spellings() {
        let cases = [
            (
                "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:1/version\": dial tcp",
                FailureKind::ClusterUnreachable,
            ),
            (
                "Error: kubernetes cluster unreachable: Get \"https://127.0.0.1:1/version\"",
                FailureKind::ClusterUnreachable,
            ),
            ("Error: release: not found", FailureKind::ReleaseNotFound),
            (
                "Error: uninstall: Release not loaded: mlflow: release: not found",
                FailureKind::ReleaseNotFound,
            ),
            (
                "Error: UPGRADE FAILED: \"kserve\" has no deployed releases",
                FailureKind::NoDeployedReleases,
            ),
            (
                "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
                FailureKind::OperationInProgress,
            ),
            (
                "Error: path \"./nochart\" not found",
                FailureKind::ChartNotFound,
            ),
            (
                "Error: chart \"kserve\" matching  not found in fixtures index. (try 'helm repo update'): no chart name found",
                FailureKind::ChartNotFound,
            ),
            (
                "Error: chart \"karpenter\" matching 9.9.9 not found in fixtures index. (try 'helm repo update')",
                FailureKind::ChartVersionNotFound,
            ),
            (
                "Error: chart \"karpenter\" version \"9.9.9\" not found in https://charts.example repository",
                FailureKind::ChartVersionNotFound,
            ),
            (
                "Error: repo nosuchrepo not found",
                FailureKind::RepoNotFound,
            ),
            (
                "Error: UPGRADE FAILED: context deadline exceeded",
                FailureKind::Timeout,
            ),
            (
                "Error: UPGRADE FAILED: release karpenter failed, and has been rolled back due to atomic being set: context deadline exceeded",
                FailureKind::RolledBack,
            ),
            (
                "Error: UPGRADE FAILED: release karpenter failed, and has been rolled back due to rollback-on-failure being set: timed out",
                FailureKind::RolledBack,
            ),
            (
                "Error: UPGRADE FAILED: unable to build kubernetes objects from new release manifest: error validating \"\": error validating data: ValidationError(Deployment.spec.replicas): invalid type",
                FailureKind::ManifestValidation,
            ),
            (
                "Error: UPGRADE FAILED: cannot patch \"x\" with kind Service: Service \"x\" is invalid: spec.ports[0].port: Invalid value: 0",
                FailureKind::ManifestValidation,
            ),
            (
                "Error: template: mlflow/templates/configmap.yaml:9:37: executing \"mlflow/templates/configmap.yaml\" at <.Values.logging.level>: nil pointer evaluating interface {}.level",
                FailureKind::RenderFailed,
            ),
            (
                "Error: chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v1.28.0",
                FailureKind::KubeVersionIncompatible,
            ),
            (
                "Error: UPGRADE FAILED: Unable to continue with update: ConfigMap \"x\" in namespace \"y\" exists and cannot be imported into the current release",
                FailureKind::ResourceExists,
            ),
            (
                "Error: UPGRADE FAILED: conflict occurred while applying object /x apps/v1, Kind=Deployment: Apply failed with 1 conflict",
                FailureKind::SsaConflict,
            ),
            (
                "Error: unknown flag: --rollback-on-failure",
                FailureKind::UnknownFlag,
            ),
            ("Error: something new went wrong", FailureKind::Other),
        ];
        for (stderr, kind) in cases {
            assert_eq!(FailureKind::classify(stderr), kind, "{stderr}");
        }
    }

    #[test]
    fn a_failure_renders_command_kind_stderr_and_hint() {
        let err = Error::from(ProcessError::Exited {
            command: "helm status kserve --namespace kserve --output json".into(),
            code: Some(1),
            signal: None,
            stdout: String::new(),
            stderr: "Error: release: not found\n".into(),
        });
        assert_eq!(err.failure_kind(), Some(FailureKind::ReleaseNotFound));
        assert_eq!(err.stderr(), Some("Error: release: not found\n"));
        assert_eq!(
            err.to_string(),
            "`helm status kserve --namespace kserve --output json` failed with exit code 1: release not found\n\
             --- stderr\nError: release: not found\n\
             hint: check the release name and namespace (`helm list -A`); Helm looks only in the namespace given with -n"
        );
    }

    #[test]
    fn a_timed_out_write_points_at_pending_revisions() {
        let err = Error::from(ProcessError::TimedOut {
            command: "helm upgrade mlflow ./mlflow --namespace mlops".into(),
            after: Duration::from_secs(5),
            how: upgrade_core::process::StopMethod::Kill,
            stdout: String::new(),
            stderr: String::new(),
        });
        assert_eq!(err.failure_kind(), Some(FailureKind::Timeout));
        assert!(err.to_string().contains("pending-* last revision"), "{err}");
    }
}
