//! One error type for the crate, typed by *what failed*; hints come on top, best effort.
//!
//! The variant depends only on facts this crate controls (could not start, exit status,
//! timeout, JSON decoding, version gate, bad options). What Terraform itself said is kept
//! raw (stdout and stderr, redacted) and, where Terraform's `-json` diagnostics allow, a
//! [`FailureHint`] names the known situation and its fix. Nothing downstream may *require*
//! a hint: Terraform's wording is not covered by its compatibility promises.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use upgrade_core::ProcessError;
use upgrade_core::process::ToolError;

use crate::diagnostics::Diagnostic;
use crate::version::Feature;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when driving Terraform.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `terraform` binary was not found; the hint says how to install or point to it.
    #[error(transparent)]
    NotFound(ProcessError),

    /// `terraform` exists but could not be started.
    #[error("could not start `{command}`: {source}")]
    Start {
        /// The redacted command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// Terraform ran and failed: see [`Failure`] (boxed: it carries all of Terraform's output).
    #[error("{0}")]
    Failed(Box<Failure>),

    /// Terraform outlived its timeout and was stopped (`SIGINT` first, so it can release a
    /// state lock, then `SIGKILL` after the grace period).
    #[error("`{command}` timed out after {after:?} and was stopped ({how})")]
    TimedOut {
        /// The redacted command line.
        command: String,
        /// The timeout that elapsed.
        after: Duration,
        /// How it was stopped.
        how: String,
        /// Stdout up to the stop, redacted.
        stdout: String,
        /// Stderr up to the stop, redacted.
        stderr: String,
    },

    /// Terraform succeeded but its JSON could not be decoded.
    #[error("could not decode {what} from `{command}`: {source}\noutput starts with: {snippet}")]
    Json {
        /// The redacted command line.
        command: String,
        /// What was expected, e.g. "plan JSON".
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The first bytes of the output, redacted.
        snippet: String,
    },

    /// The detected Terraform lacks an option the call asked for.
    #[error(
        "{feature} needs Terraform {requirement}, but {path} is Terraform {actual}\n\
         hint: install a Terraform within {requirement} or drop that option"
    )]
    UnsupportedVersion {
        /// The option or command that is gated.
        feature: Feature,
        /// The detected version.
        actual: semver::Version,
        /// The versions that have it, e.g. `>= 0.15.4`.
        requirement: String,
        /// The binary that was asked.
        path: PathBuf,
    },

    /// A JSON document has a format major version this crate does not understand.
    #[error(
        "{what} has format_version {format_version}; this tool reads format 1.x only\n\
         hint: use a Terraform release whose {what} format is 1.x, or upgrade this tool"
    )]
    UnsupportedFormat {
        /// Which document, e.g. "plan JSON".
        what: &'static str,
        /// The version found.
        format_version: String,
    },

    /// The options given cannot work together or with this working directory.
    #[error("invalid options: {problem}\nhint: {fix}")]
    InvalidOptions {
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },

    /// An environment variable would change Terraform's behaviour behind the typed API.
    #[error("refusing to run terraform with {name} set: {reason}\nhint: {fix}")]
    ForbiddenEnv {
        /// The variable's name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
        /// How to proceed.
        fix: &'static str,
    },

    /// The plan review found blockers, so the plan was not approved for apply.
    #[error("the plan is not approved: {}\nhint: change the configuration, or allow the named addresses explicitly in the review rules", blockers.join("; "))]
    Blocked {
        /// One line per blocker.
        blockers: Vec<String>,
    },

    /// The saved plan file changed (or vanished) after it was reviewed.
    #[error(
        "the saved plan {} is not the one that was reviewed ({problem})\n\
         hint: plan and review again; only a reviewed plan file is applied",
        path.display()
    )]
    PlanFileChanged {
        /// The plan file.
        path: PathBuf,
        /// What differs.
        problem: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// An HCL file (tfvars, `versions.tf`, the lock file) could not be read or edited.
    #[error("{}: {problem}{}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<text>".into()), fix.as_ref().map(|f| format!("\nhint: {f}")).unwrap_or_default())]
    Hcl {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: String,
        /// How to fix it, when known.
        fix: Option<String>,
    },

    /// Terraform was stopped on request (Ctrl-C or a lost upgrade lease) with one SIGINT,
    /// so it could finish writing state and release its lock.
    #[error(
        "`{command}` was stopped on request ({how})\nhint: run `terraform plan` to see where it stopped; if it reports a held state lock, it is the interrupted run's"
    )]
    Stopped {
        /// The redacted command line.
        command: String,
        /// How it was stopped.
        how: String,
        /// Stdout up to the stop, redacted.
        stdout: String,
        /// Stderr up to the stop, redacted.
        stderr: String,
    },

    /// Another runner failure (reading the child's pipes, unparseable output).
    #[error(transparent)]
    Process(ProcessError),
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
        // Without the `-json` stream the diagnostics are unknown; stderr still names the
        // common situations.
        let hint = FailureHint::classify(&[], &stderr);
        Error::Failed(Box::new(Failure {
            subcommand: "terraform",
            command,
            code,
            signal,
            diagnostics: Vec::new(),
            hint,
            stdout,
            stderr,
        }))
    }

    fn timed_out(err: ProcessError) -> Self {
        let ProcessError::TimedOut {
            command,
            after,
            how,
            stdout,
            stderr,
        } = err
        else {
            return Error::Process(err);
        };
        Error::TimedOut {
            command,
            after,
            how: how.to_string(),
            stdout,
            stderr,
        }
    }

    fn stopped(err: ProcessError) -> Self {
        let ProcessError::Stopped {
            command,
            how,
            stdout,
            stderr,
            ..
        } = err
        else {
            return Error::Process(err);
        };
        Error::Stopped {
            command,
            how: how.to_string(),
            stdout,
            stderr,
        }
    }

    fn not_run(err: ProcessError) -> Self {
        match err {
            ProcessError::NotFound { .. } => Error::NotFound(err),
            ProcessError::Start { command, source } => Error::Start { command, source },
            other => Error::Process(other),
        }
    }

    fn unparseable(err: ProcessError) -> Self {
        Error::Process(err)
    }
}

impl Error {
    /// The hint, when the failure is a known situation.
    pub fn hint(&self) -> Option<&FailureHint> {
        match self {
            Error::Failed(f) => f.hint.as_ref(),
            _ => None,
        }
    }

    /// Terraform's diagnostics for a failed command (empty otherwise).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Failed(f) => &f.diagnostics,
            _ => &[],
        }
    }

    /// The raw (redacted) stderr, when Terraform ran.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Error::Failed(f) => Some(&f.stderr),
            Error::TimedOut { stderr, .. } | Error::Stopped { stderr, .. } => Some(stderr),
            _ => None,
        }
    }

    /// Whether Terraform was stopped on request (Ctrl-C, a lost lease) rather than failing.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Error::Stopped { .. })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::InvalidOptions {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A Terraform command that ran and failed. `stdout`/`stderr` are kept whole (redacted);
/// `diagnostics` are Terraform's own `-json` diagnostics when the command produced them.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// The subcommand, e.g. `plan`.
    pub subcommand: &'static str,
    /// The redacted command line.
    pub command: String,
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Terraform's error and warning diagnostics, in order.
    pub diagnostics: Vec<Diagnostic>,
    /// A known situation and its fix, when the diagnostics identify one.
    pub hint: Option<FailureHint>,
    /// All of stdout, redacted (the `-json` stream for commands run with `-json`).
    pub stdout: String,
    /// All of stderr, redacted.
    pub stderr: String,
}

impl Failure {
    /// For a failed `apply`: whether it changed nothing, i.e. its `-json` stream reports no
    /// resource change completed (the provider refused the first one, as EKS refuses
    /// `UpdateClusterVersion` on readiness insights). A stream without any `apply_start`
    /// is not taken as proof: nothing is known then.
    pub fn applied_nothing(&self) -> bool {
        if self.subcommand != "apply" {
            return false;
        }
        let kinds: Vec<String> = self
            .stdout
            .lines()
            .filter_map(
                |line| match crate::diagnostics::UiMessage::parse_line(line) {
                    crate::diagnostics::UiMessage::Other { kind, .. } => Some(kind),
                    _ => None,
                },
            )
            .collect();
        kinds.iter().any(|k| k == "apply_start") && !kinds.iter().any(|k| k == "apply_complete")
    }

    /// The error diagnostics' summaries, joined (what the provider said).
    pub fn error_summaries(&self) -> String {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == "error")
            .map(|d| d.summary.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_failed(
            &self.command,
            self.code,
            self.signal,
            &self.diagnostics,
            self.hint.as_ref(),
            &self.stderr,
        ))
    }
}

/// A known failure situation, recognised from Terraform's diagnostics, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureHint {
    /// Another Terraform run holds the state lock.
    StateLocked {
        /// The lock's ID, for `terraform force-unlock` once the holder is known to be gone.
        lock_id: Option<String>,
        /// Who holds it (`user@host`), when Terraform says.
        who: Option<String>,
        /// The operation holding it, e.g. `OperationTypeApply`.
        operation: Option<String>,
    },
    /// The working directory needs `terraform init` (providers, modules or backend).
    NotInitialized,
    /// No provider version satisfies the configuration's constraints.
    NoMatchingProviderVersion {
        /// Terraform's explanation.
        detail: String,
    },
    /// `init -lockfile=readonly` found that the lock file would have to change.
    LockFileWouldChange,
    /// The configuration's `required_version` excludes this Terraform.
    UnsupportedTerraformVersion,
    /// A provider package does not match the checksums in the lock file.
    ChecksumMismatch,
    /// A saved plan no longer matches the state it was made against.
    StalePlan,
}

impl FailureHint {
    /// What the user should do.
    pub fn advice(&self) -> String {
        match self {
            FailureHint::StateLocked {
                lock_id,
                who,
                operation,
            } => {
                let holder = match (who, operation) {
                    (Some(w), Some(o)) => format!(" by {w} ({o})"),
                    (Some(w), None) => format!(" by {w}"),
                    _ => String::new(),
                };
                format!(
                    "the state is locked{holder}; wait for that run to finish and retry. If it \
                     crashed, release the lock with `terraform force-unlock {}`",
                    lock_id.as_deref().unwrap_or("<LOCK_ID>")
                )
            }
            FailureHint::NotInitialized => {
                "run `terraform init` in this working directory first".into()
            }
            FailureHint::NoMatchingProviderVersion { .. } => {
                "no available provider version satisfies the constraints: check `version` in \
                 required_providers and the provider mirror or registry"
                    .into()
            }
            FailureHint::LockFileWouldChange => {
                "the configuration needs different providers than .terraform.lock.hcl records; \
                 run `terraform init -upgrade` deliberately, review the lock diff, and commit it"
                    .into()
            }
            FailureHint::UnsupportedTerraformVersion => {
                "the configuration's required_version excludes this Terraform; use a matching \
                 Terraform binary"
                    .into()
            }
            FailureHint::ChecksumMismatch => {
                "a provider package does not match .terraform.lock.hcl; restore the lock file \
                 from version control or re-run `terraform providers lock` for every platform"
                    .into()
            }
            FailureHint::StalePlan => {
                "the state changed since this plan was made; plan and review again".into()
            }
        }
    }

    /// Recognises a known situation from Terraform's diagnostics (preferred) or, for
    /// commands without `-json`, from stderr.
    pub fn classify(diagnostics: &[Diagnostic], stderr: &str) -> Option<FailureHint> {
        let errors = diagnostics.iter().filter(|d| d.is_error());
        for diag in errors {
            if let Some(hint) = Self::from_text(&diag.summary, diag.detail.as_deref().unwrap_or(""))
            {
                return Some(hint);
            }
        }
        // Human-readable stderr: `Error: <summary>` followed by the detail.
        for block in stderr.split("Error: ").skip(1) {
            let (summary, detail) = block.split_once('\n').unwrap_or((block, ""));
            if let Some(hint) = Self::from_text(summary.trim(), detail) {
                return Some(hint);
            }
        }
        None
    }

    fn from_text(summary: &str, detail: &str) -> Option<FailureHint> {
        let s = summary.to_ascii_lowercase();
        let d = detail.to_ascii_lowercase();
        if s.contains("error acquiring the state lock") || s.contains("state lock") {
            let field = |name: &str| {
                detail.lines().find_map(|line| {
                    let rest = line.trim().strip_prefix(name)?.trim();
                    (!rest.is_empty()).then(|| rest.to_string())
                })
            };
            return Some(FailureHint::StateLocked {
                lock_id: field("ID:"),
                who: field("Who:"),
                operation: field("Operation:"),
            });
        }
        if s.contains("provider dependency changes detected") {
            return Some(FailureHint::LockFileWouldChange);
        }
        if d.contains("does not match configured version constraint") {
            // `-lockfile=readonly` (or a lock older than the constraints) pins a version the
            // configuration no longer allows.
            return Some(FailureHint::LockFileWouldChange);
        }
        if s.contains("failed to query available provider packages")
            && (d.contains("no available releases match") || d.contains("no available version"))
        {
            return Some(FailureHint::NoMatchingProviderVersion {
                detail: detail.lines().next().unwrap_or_default().to_string(),
            });
        }
        if s.contains("unsupported terraform core version") {
            return Some(FailureHint::UnsupportedTerraformVersion);
        }
        if d.contains("doesn't match any of the checksums") {
            return Some(FailureHint::ChecksumMismatch);
        }
        if s.contains("saved plan is stale") {
            return Some(FailureHint::StalePlan);
        }
        const NOT_INIT: &[&str] = &[
            "inconsistent dependency lock file",
            "missing required provider",
            "required plugins are not installed",
            "module not installed",
            "backend initialization required",
            "could not load plugin",
        ];
        if NOT_INIT.iter().any(|p| s.contains(p)) {
            return Some(FailureHint::NotInitialized);
        }
        None
    }
}

impl fmt::Display for FailureHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.advice())
    }
}

fn render_failed(
    command: &str,
    code: Option<i32>,
    signal: Option<i32>,
    diagnostics: &[Diagnostic],
    hint: Option<&FailureHint>,
    stderr: &str,
) -> String {
    let status = match (code, signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended without an exit code".into(),
    };
    let mut out = format!("`{command}` {status}");
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    for diag in &errors {
        out.push_str(&format!("\nError: {}", diag.summary));
        if let Some(address) = &diag.address {
            out.push_str(&format!(" (at {address})"));
        }
        if let Some(detail) = diag.detail.as_deref().filter(|d| !d.trim().is_empty()) {
            out.push_str(&format!("\n  {}", detail.trim().replace('\n', "\n  ")));
        }
    }
    if let Some(hint) = hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    if errors.is_empty() && !stderr.trim().is_empty() {
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        let start = lines.len().saturating_sub(20);
        out.push_str("\n--- stderr\n");
        out.push_str(&lines[start..].join("\n"));
    }
    out
}
