//! One exit-code policy for every command: the code comes from the flow's error variant
//! ([`upgrade_flows::error::FlowError::exit_code`]), never from message text. The codes and
//! their meanings are `upgrade_core::exit`'s (0 ok, 1 failed and rolled back, 2 bad input,
//! 3 warnings, 4 blockers, 5 failed with a recorded way back, 130 stopped by Ctrl-C).

use std::process::ExitCode;

use upgrade_flows::error::{EXIT_FAILED, EXIT_INVALID, FlowError, one_line};

/// How a command names the flow's fields: `--field-name` unless listed here.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    renamed: Vec<(&'static str, &'static str)>,
}

impl Flags {
    /// (chainable) The spec field `field` is the flag `flag`.
    pub fn rename(mut self, field: &'static str, flag: &'static str) -> Self {
        self.renamed.push((field, flag));
        self
    }

    /// The flag of `field`.
    pub fn flag(&self, field: &str) -> String {
        self.renamed
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, flag)| flag.to_string())
            .unwrap_or_else(|| format!("--{}", field.replace('_', "-")))
    }
}

/// An error that ends a command, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// What went wrong and the fix, naming the command's flags.
    pub message: String,
}

impl CliError {
    /// A bad-input error: exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }

    /// A failed operation: exit 1.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// A flow's error, its code from its variant and its fields named as `flags`.
    pub fn from_flow(err: FlowError, flags: &Flags) -> Self {
        let code = err.exit_code();
        let message = match &err {
            FlowError::Invalid(invalid) => invalid.render(&|field| flags.flag(field)),
            FlowError::Failed { .. } => {
                // The whole chain: the context says what was being done, the sources why.
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !text.contains(&cause_text) {
                        text.push_str(&format!(": {cause_text}"));
                    }
                    source = cause.source();
                }
                text
            }
            other => other.to_string(),
        };
        CliError { code, message }
    }
}

/// Prints the error on one line (causes and hints joined by `; `, so a pipeline's log keeps
/// it whole) and returns its code.
pub fn report(result: Result<u8, CliError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError { code, message }) => {
            eprintln!("error: {}", one_line(&message));
            ExitCode::from(code)
        }
    }
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

    #[test]
    fn fields_are_named_as_flags_and_codes_come_from_the_variant() {
        let flags = Flags::default().rename("addons", "--addon");
        let err = CliError::from_flow(
            FlowError::invalid(
                "addons",
                "`x` is not NAME=VARIABLE",
                "write it like coredns=coredns_version",
            ),
            &flags,
        );
        assert_eq!(err.code, 2);
        assert_eq!(
            err.message,
            "--addon: `x` is not NAME=VARIABLE; write it like coredns=coredns_version"
        );
        let err = CliError::from_flow(
            FlowError::invalid("batch_size", "0", "give 1 or more"),
            &flags,
        );
        assert!(
            err.message.starts_with("--batch-size: 0"),
            "{}",
            err.message
        );
    }
}
