//! One harness for tests that run a command: its exit code and both streams, and one
//! snapshot form for them (as uv's `uv_snapshot!`): an `exit_code: N (success|failure)`
//! header, then `----- stdout -----` and `----- stderr -----` blocks, through the context's
//! path filters.

use upgrade_core::{ProcessBuilder, ProcessOutput};

/// What a finished command printed, and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code (`-1` when a signal ended it).
    pub code: i32,
    /// Stdout, lossily decoded.
    pub stdout: String,
    /// Stderr, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// The output of a finished process.
    pub fn of(output: &ProcessOutput) -> CommandOutput {
        CommandOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout_lossy(),
            stderr: output.stderr_lossy(),
        }
    }

    /// Runs `cmd` to its end (any exit code); a program that cannot start fails the test.
    pub fn run(cmd: &ProcessBuilder) -> CommandOutput {
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("`{cmd}` did not run: {e}"));
        CommandOutput::of(&output)
    }

    /// [`run`](Self::run) on tokio's blocking pool.
    pub async fn run_async(cmd: &ProcessBuilder) -> CommandOutput {
        let output = cmd
            .output_async()
            .await
            .unwrap_or_else(|e| panic!("`{cmd}` did not run: {e}"));
        CommandOutput::of(&output)
    }

    /// `(code, stdout, stderr)`.
    pub fn parts(self) -> (i32, String, String) {
        (self.code, self.stdout, self.stderr)
    }

    /// The text a snapshot keeps.
    pub fn snapshot_text(&self) -> String {
        format!(
            "exit_code: {} ({})\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code,
            if self.code == 0 { "success" } else { "failure" },
            with_newline(&self.stdout),
            with_newline(&self.stderr)
        )
    }
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// Snapshots a [`CommandOutput`] as [`CommandOutput::snapshot_text`] under `settings`
/// (e.g. [`TestContext::insta_settings`](crate::TestContext::insta_settings)).
///
/// ```no_run
/// use upgrade_test::{CommandOutput, TestContext, assert_command_snapshot};
///
/// let ctx = TestContext::new();
/// let out = CommandOutput::run(ctx.command("helm4").arg("version"));
/// assert_command_snapshot!(ctx.insta_settings(), "helm_version", out);
/// ```
#[macro_export]
macro_rules! assert_command_snapshot {
    ($settings:expr, $name:expr, $output:expr) => {
        $settings.bind(|| ::insta::assert_snapshot!($name, $output.snapshot_text()))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_form_has_the_code_and_both_streams() {
        let mut cmd = ProcessBuilder::new("/bin/sh");
        cmd.args(["-c", "echo report; echo 'error: bad --x' >&2; exit 2"]);
        let out = CommandOutput::run(&cmd);
        assert_eq!(
            out.snapshot_text(),
            "exit_code: 2 (failure)\n----- stdout -----\nreport\n----- stderr -----\nerror: bad --x\n"
        );
        assert_eq!(out.parts().0, 2);
    }
}
