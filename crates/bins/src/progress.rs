//! Progress on waits: a spinner with the elapsed time on stderr when stderr is a terminal,
//! nothing otherwise (pipelines get the log lines and the report instead).

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use upgrade_core::executor::{Step, StepFuture};
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

/// A spinner for one wait; hidden when stderr is not a terminal.
#[derive(Debug)]
pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    /// Starts a spinner showing `message`.
    pub fn start(message: impl Into<String>) -> Spinner {
        let message = message.into();
        tracing::info!("{message}");
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(message);
        Spinner { bar }
    }

    /// Replaces the message.
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Ends the spinner, leaving `message` on the line (on a terminal).
    pub fn finish(self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        self.bar.finish_with_message(message);
    }
}

/// Why [`wait_until`] gave up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: not done after {after:?} (last: {last})")]
pub struct WaitTimedOut {
    /// What was waited for.
    pub what: String,
    /// How long it waited.
    pub after: Duration,
    /// The last thing the probe said.
    pub last: String,
}

/// Polls `probe` every `interval` until it returns `Ok(true)` or `timeout` passes, showing a
/// spinner with `what`. The probe returns `Ok(false)` with a reason via `Err` to keep waiting
/// and to show why; a probe error does not end the wait (the API may blip during an upgrade).
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<(), WaitTimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let spinner = Spinner::start(what.to_string());
    let started = Instant::now();
    let mut last = String::from("not checked yet");
    loop {
        match probe().await {
            Ok(true) => {
                spinner.finish(format!("{what}: done"));
                return Ok(());
            }
            Ok(false) => {}
            Err(reason) => {
                spinner.set_message(format!("{what} ({reason})"));
                last = reason;
            }
        }
        if started.elapsed() >= timeout {
            spinner.finish(format!("{what}: timed out"));
            return Err(WaitTimedOut {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// A step shown with a spinner while it applies, verifies or rolls back (the waits of an
/// upgrade: Helm's `--wait`, rollouts, readiness); everything else is the step's own.
pub struct Progressed<'a> {
    step: &'a dyn Step,
}

impl<'a> Progressed<'a> {
    /// Wraps `step`.
    pub fn new(step: &'a dyn Step) -> Self {
        Progressed { step }
    }

    fn shown<'f>(&'f self, doing: &'static str, work: StepFuture<'f>) -> StepFuture<'f> {
        Box::pin(async move {
            let id = self.step.id();
            let spinner = Spinner::start(format!("{id}: {doing}"));
            let result = work.await;
            spinner.finish(match &result {
                Ok(()) => format!("{id}: {doing} done"),
                Err(e) => format!("{id}: {doing} failed: {e}"),
            });
            result
        })
    }
}

impl Step for Progressed<'_> {
    fn id(&self) -> &str {
        self.step.id()
    }
    fn component(&self) -> &str {
        self.step.component()
    }
    fn description(&self) -> String {
        self.step.description()
    }
    fn irreversible(&self) -> Option<String> {
        self.step.irreversible()
    }
    fn capture<'s>(&'s self, snapshot: &'s mut SnapshotWriter) -> StepFuture<'s> {
        self.shown("snapshot", self.step.capture(snapshot))
    }
    fn apply(&self) -> StepFuture<'_> {
        self.shown("apply", self.step.apply())
    }
    fn verify(&self) -> StepFuture<'_> {
        self.shown("verify", self.step.verify())
    }
    fn rollback<'s>(&'s self, snapshot: &'s Snapshot) -> StepFuture<'s> {
        self.shown("rollback", self.step.rollback(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_probe_passes_or_names_the_last_reason() {
        let mut calls = 0;
        wait_until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                let done = calls >= 3;
                async move {
                    if done {
                        Ok(true)
                    } else {
                        Err("not yet".into())
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(calls, 3);

        let err = wait_until(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Err::<bool, _>("still 1.30".to_string()) },
        )
        .await
        .unwrap_err();
        assert_eq!(err.last, "still 1.30");
        assert!(
            err.to_string().starts_with("never: not done after"),
            "{err}"
        );
    }

    struct Fails;

    impl Step for Fails {
        fn id(&self) -> &str {
            "x/fails"
        }
        fn component(&self) -> &str {
            "x"
        }
        fn description(&self) -> String {
            "fails to apply".into()
        }
        fn irreversible(&self) -> Option<String> {
            Some("it is a test".into())
        }
        fn capture<'a>(&'a self, _: &'a mut SnapshotWriter) -> StepFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        fn apply(&self) -> StepFuture<'_> {
            Box::pin(async { Err("no such thing".into()) })
        }
        fn verify(&self) -> StepFuture<'_> {
            Box::pin(async { Ok(()) })
        }
        fn rollback<'a>(&'a self, _: &'a Snapshot) -> StepFuture<'a> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_shown_step_is_the_step_itself() {
        let shown = Progressed::new(&Fails);
        assert_eq!(
            (shown.id(), shown.component(), shown.description()),
            ("x/fails", "x", "fails to apply".to_string())
        );
        assert_eq!(shown.irreversible().as_deref(), Some("it is a test"));
        assert_eq!(
            shown.apply().await.unwrap_err().to_string(),
            "no such thing"
        );
        shown.verify().await.unwrap();
    }
}
