//! The flows' one error type. Its variants map one-to-one to the documented exit codes
//! ([`FlowError::exit_code`]); nothing decides an exit code from message text.
//!
//! | variant | exit | meaning |
//! |---|---|---|
//! | [`Invalid`](FlowError::Invalid) | 2 | bad input: a field of the spec, a file, a tool, the cluster context; nothing was changed |
//! | [`Blocked`](FlowError::Blocked) | 4 | a check found blockers; nothing was changed |
//! | [`RolledBack`](FlowError::RolledBack) | 1 | a step failed and every applied step was undone |
//! | [`Unfinished`](FlowError::Unfinished) | 5 | a step failed and the run stopped with a recorded way back (a step that cannot be undone, or a rollback that failed) |
//! | [`Stopped`](FlowError::Stopped) | 130 | stopped on request (Ctrl-C, a lost upgrade lease); the report says what was undone |
//! | [`Failed`](FlowError::Failed) | 1 | something failed before any change (the API server, the journal) |
//!
//! A run that completes is `Ok`: exit 0, or 3 when it found warnings
//! ([`RunReport::exit_code`](crate::report::RunReport::exit_code)).

use std::fmt;

use crate::report::{Plan, RunReport};

pub use upgrade_core::exit::{
    BLOCKED as EXIT_BLOCKED, FAILED as EXIT_FAILED, INVALID as EXIT_INVALID, OK as EXIT_OK,
    STOPPED as EXIT_STOPPED, UNFINISHED as EXIT_UNFINISHED, WARNINGS as EXIT_WARNINGS,
};

/// The flows' result type.
pub type Result<T, E = FlowError> = std::result::Result<T, E>;

/// Why a flow did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// A spec field, file, tool or the cluster context is not usable; nothing was changed.
    #[error("{}", .0)]
    Invalid(Box<Invalid>),
    /// A check found blockers; nothing was changed. The plan lists them.
    #[error("blocked by {} finding(s); nothing was changed: {}", .0.blockers.len(), .0.blockers.join("; "))]
    Blocked(Box<Plan>),
    /// A step failed and every step applied before it was undone.
    #[error("{}", .0.outcome)]
    RolledBack(Box<RunReport>),
    /// A step failed and the run stopped with a recorded way back: a step that cannot be
    /// undone, or a rollback that failed. `upgrade-rollback` or a resume continues from here.
    #[error("{}", .0.outcome)]
    Unfinished(Box<RunReport>),
    /// Stopped on request (Ctrl-C, a lost upgrade lease).
    #[error("{}", .0.outcome)]
    Stopped(Box<RunReport>),
    /// Something failed before any change was made.
    #[error("{context}: {source}")]
    Failed {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A spec field (or file, tool, context) that is not usable, with the fix.
///
/// `problem` and `fix` name other fields through [`field`]; [`Invalid::render`] writes them
/// the way the caller's users know them (`--field-name` for a command line), and `Display`
/// as the spec's field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The spec field, e.g. `target` (empty when the problem is not one field's).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// Marks a field name inside a message (see [`Invalid::render`]).
const FIELD_MARK: char = '\u{1f}';

/// A reference to spec field `name` inside an [`Invalid`] message, rendered for the audience:
/// `` `name` `` for a library caller, `--name` for a command line.
pub fn field(name: &str) -> String {
    format!("{FIELD_MARK}{name}{FIELD_MARK}")
}

impl Invalid {
    /// The message with field names written by `name` (e.g. `|f| format!("--{}", f.replace('_', "-"))`).
    pub fn render(&self, name: &dyn Fn(&str) -> String) -> String {
        let fill = |text: &str| {
            text.split(FIELD_MARK)
                .enumerate()
                .map(|(i, part)| {
                    if i % 2 == 1 {
                        name(part)
                    } else {
                        part.to_string()
                    }
                })
                .collect::<String>()
        };
        let problem = fill(&self.problem);
        let fix = fill(&self.fix);
        match (self.field.is_empty(), fix.is_empty()) {
            (true, true) => problem,
            (true, false) => format!("{problem}; {fix}"),
            (false, true) => format!("{}: {problem}", name(&self.field)),
            (false, false) => format!("{}: {problem}; {fix}", name(&self.field)),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&|field| format!("`{field}`")))
    }
}

/// `text` with its lines trimmed and joined by `; ` (blank lines dropped): a multi-line
/// message (a tool's error with its hint) kept whole on one line of a log or report.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl FlowError {
    /// Bad input in `field`: `problem`, and how to `fix` it (see [`Invalid`]).
    pub fn invalid(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> FlowError {
        FlowError::Invalid(Box::new(Invalid {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }))
    }

    /// Bad input that is not one field's (a tool, the cluster context, a journal state).
    pub fn input(problem: impl fmt::Display) -> FlowError {
        FlowError::invalid("", problem.to_string(), "")
    }

    /// A failure before any change: `context` says what was being done.
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> FlowError {
        FlowError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The documented exit code of this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            FlowError::Invalid(_) => EXIT_INVALID,
            FlowError::Blocked(_) => EXIT_BLOCKED,
            FlowError::RolledBack(_) | FlowError::Failed { .. } => EXIT_FAILED,
            FlowError::Unfinished(_) => EXIT_UNFINISHED,
            FlowError::Stopped(_) => EXIT_STOPPED,
        }
    }

    /// The run's report, when steps ran.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            FlowError::RolledBack(report)
            | FlowError::Unfinished(report)
            | FlowError::Stopped(report) => Some(report),
            _ => None,
        }
    }

    /// The plan, when blockers stopped it.
    pub fn blocked_plan(&self) -> Option<&Plan> {
        match self {
            FlowError::Blocked(plan) => Some(plan),
            _ => None,
        }
    }
}

impl From<upgrade_kube::Error> for FlowError {
    /// The Kubernetes side's errors: a wrong or unnamed cluster and an unreadable kubeconfig
    /// are bad input; the rest failed before any change.
    fn from(err: upgrade_kube::Error) -> Self {
        match err {
            upgrade_kube::Error::Kubeconfig { .. }
            | upgrade_kube::Error::WrongCluster { .. }
            | upgrade_kube::Error::NoExpectedCluster { .. }
            | upgrade_kube::Error::LockHeld { .. } => FlowError::input(err),
            other => FlowError::failed("Kubernetes", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_rendered_for_their_audience() {
        let err = Invalid {
            field: "batch_size".into(),
            problem: "0: a batch needs at least one node".into(),
            fix: format!(
                "set {} to 1 or more, or drop {}; {{node}} stays",
                field("batch_size"),
                field("surge_command")
            ),
        };
        assert_eq!(
            err.to_string(),
            "`batch_size`: 0: a batch needs at least one node; set `batch_size` to 1 or more, or drop `surge_command`; {node} stays"
        );
        let flag = |f: &str| format!("--{}", f.replace('_', "-"));
        assert_eq!(
            err.render(&flag),
            "--batch-size: 0: a batch needs at least one node; set --batch-size to 1 or more, or drop --surge-command; {node} stays"
        );
    }

    #[test]
    fn every_variant_has_its_own_exit_code() {
        assert_eq!(FlowError::input("x").exit_code(), EXIT_INVALID);
        assert_eq!(
            FlowError::failed("read", std::io::Error::other("x")).exit_code(),
            EXIT_FAILED
        );
        assert_eq!(FlowError::Blocked(Box::default()).exit_code(), EXIT_BLOCKED);
        let report = || Box::<RunReport>::default();
        assert_eq!(FlowError::RolledBack(report()).exit_code(), EXIT_FAILED);
        assert_eq!(FlowError::Unfinished(report()).exit_code(), EXIT_UNFINISHED);
        assert_eq!(FlowError::Stopped(report()).exit_code(), EXIT_STOPPED);
    }
}
