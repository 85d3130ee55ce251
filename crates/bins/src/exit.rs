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
pub const USAGE: u8 = upgrade_checks::checks::EXIT_USAGE;

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

/// Prints the error on one line (causes and the hint joined by `; `, so a pipeline's log
/// keeps it whole) and returns its code.
pub fn report(result: Result<u8, CliError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError { code, error }) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::from(code)
        }
    }
}

/// `text` with its lines joined by `; ` (blank lines dropped).
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line() {
        assert_eq!(
            one_line("refusing to change cluster `a`\nhint: pass --expect-cluster a\n"),
            "refusing to change cluster `a`; hint: pass --expect-cluster a"
        );
    }
}
