//! One exit-code policy for every command.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; no blockers or warnings |
//! | 1 | the operation failed (it was rolled back, or stopped with a recorded way back) |
//! | 2 | bad input: flags, files, tools or cluster context; nothing was changed |
//! | 3 | done, with warnings |
//! | 4 | blockers found; nothing was changed |

use std::process::ExitCode;

/// Success codes a command can end with.
pub const OK: u8 = 0;
/// The operation failed after starting.
pub const FAILED: u8 = 1;
/// Bad input; nothing changed.
pub const USAGE: u8 = upgrade_core::checks::EXIT_USAGE;

/// An error that ends a command, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// What went wrong (its Display names the fix).
    pub error: anyhow::Error,
}

impl CliError {
    /// A bad-input error: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: USAGE,
            error: error.into(),
        }
    }

    /// A failed operation: exit 1.
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: FAILED,
            error: error.into(),
        }
    }
}

/// Prints the error on one line (its causes, then the hint) and returns its code.
pub fn report(result: Result<u8, CliError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError { code, error }) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line: a multi-line message (a library's `hint:` line)
/// is joined with `; ` so logs and CI annotations keep it whole.
pub fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line() {
        let error = anyhow::anyhow!("refusing to change cluster `a`\nhint: pass --kube-context")
            .context("connect");
        assert_eq!(
            one_line(&error),
            "connect: refusing to change cluster `a`; hint: pass --kube-context"
        );
    }
}
