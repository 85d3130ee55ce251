//! Progress, as events: the library never prints. A command line shows them as spinners,
//! a pipeline as log lines, a test collects them, an embedding tool does what it likes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use upgrade_core::executor::{Step, StepFuture, StepRecord};
use upgrade_core::process::StopSignal;
use upgrade_core::snapshot::{Snapshot, SnapshotWriter};

/// A phase of a step, as the executor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Capturing what the rollback needs.
    Snapshot,
    /// Making the change.
    Apply,
    /// Checking it took effect.
    Verify,
    /// Undoing it.
    Rollback,
}

impl Phase {
    /// `snapshot`, `apply`, `verify` or `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Snapshot => "snapshot",
            Phase::Apply => "apply",
            Phase::Verify => "verify",
            Phase::Rollback => "rollback",
        }
    }
}

/// Something a flow wants its caller to know while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A step's phase began.
    StepStarted {
        /// The step id.
        step: String,
        /// The phase.
        phase: Phase,
    },
    /// A step's phase ended; `error` says why it failed.
    StepFinished {
        /// The step id.
        step: String,
        /// The phase.
        phase: Phase,
        /// The failure, when it failed.
        error: Option<String>,
    },
    /// A wait began or its state changed (`detail`: what the last probe said).
    Waiting {
        /// What is awaited.
        what: String,
        /// The latest reason it is not done.
        detail: Option<String>,
    },
    /// A wait ended.
    WaitEnded {
        /// What was awaited.
        what: String,
        /// Whether it was satisfied (false: it timed out).
        done: bool,
    },
    /// Something worth saying that is not a finding (a fact that could not be read, ...).
    Note {
        /// The message.
        message: String,
    },
}

/// Where a flow's events go. Implementations must be cheap and must not block.
pub trait EventSink: Send + Sync {
    /// Receives one event.
    fn event(&self, event: &Event);
}

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: &Event) {}
}

/// Logs every event through `tracing` (info level; failures at warn).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogEvents;

impl EventSink for LogEvents {
    fn event(&self, event: &Event) {
        match event {
            Event::StepFinished {
                step,
                phase,
                error: Some(error),
            } => tracing::warn!(step, phase = phase.as_str(), %error, "failed"),
            Event::Note { message } => tracing::warn!("{message}"),
            other => tracing::info!(?other),
        }
    }
}

/// Keeps every event in memory (tests, and tools that show them afterwards).
#[derive(Debug, Clone, Default)]
pub struct CollectEvents(Arc<Mutex<Vec<Event>>>);

impl CollectEvents {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl EventSink for CollectEvents {
    fn event(&self, event: &Event) {
        self.0.lock().expect("not poisoned").push(event.clone());
    }
}

/// A step that reports its phases to an [`EventSink`]; everything else is the step's own.
pub struct Observed<'a> {
    step: &'a dyn Step,
    events: &'a dyn EventSink,
}

impl<'a> Observed<'a> {
    /// Wraps `step`.
    pub fn new(step: &'a dyn Step, events: &'a dyn EventSink) -> Self {
        Observed { step, events }
    }

    fn observed<'f>(&'f self, phase: Phase, work: StepFuture<'f>) -> StepFuture<'f> {
        Box::pin(async move {
            let step = self.step.id().to_string();
            self.events.event(&Event::StepStarted {
                step: step.clone(),
                phase,
            });
            let result = work.await;
            self.events.event(&Event::StepFinished {
                step,
                phase,
                error: result.as_ref().err().map(|e| e.to_string()),
            });
            result
        })
    }
}

impl Step for Observed<'_> {
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
    fn status_part(&self) -> upgrade_core::executor::StatusPart {
        self.step.status_part()
    }
    fn record(&self) -> StepRecord {
        self.step.record()
    }
    fn capture<'s>(&'s self, snapshot: &'s mut SnapshotWriter) -> StepFuture<'s> {
        self.observed(Phase::Snapshot, self.step.capture(snapshot))
    }
    fn apply(&self) -> StepFuture<'_> {
        self.observed(Phase::Apply, self.step.apply())
    }
    fn verify(&self) -> StepFuture<'_> {
        self.observed(Phase::Verify, self.step.verify())
    }
    fn rollback<'s>(&'s self, snapshot: &'s Snapshot) -> StepFuture<'s> {
        self.observed(Phase::Rollback, self.step.rollback(snapshot))
    }
}

/// Why [`wait_until`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The time ran out.
    #[error("{what}: not done after {after:?} (last: {last})")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long it waited.
        after: Duration,
        /// The last thing the probe said.
        last: String,
    },
    /// A stop was asked for (Ctrl-C, a lost upgrade lock).
    #[error("{what}: stopped on request (last: {last})")]
    Stopped {
        /// What was waited for.
        what: String,
        /// The last thing the probe said.
        last: String,
    },
}

/// Polls `probe` every `interval` until it returns `Ok(true)` or `timeout` passes, reporting
/// to `events`. The probe returns `Err(reason)` to keep waiting and say why; a probe error
/// does not end the wait (the API may blip during an upgrade). A stop request on `stop`
/// ends it at once.
pub async fn wait_until<F, Fut>(
    events: &dyn EventSink,
    stop: &StopSignal,
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    events.event(&Event::Waiting {
        what: what.to_string(),
        detail: None,
    });
    let started = Instant::now();
    let mut last = String::from("not checked yet");
    loop {
        match probe().await {
            Ok(true) => {
                events.event(&Event::WaitEnded {
                    what: what.to_string(),
                    done: true,
                });
                return Ok(());
            }
            Ok(false) => {}
            Err(reason) => {
                if reason != last {
                    events.event(&Event::Waiting {
                        what: what.to_string(),
                        detail: Some(reason.clone()),
                    });
                }
                last = reason;
            }
        }
        if started.elapsed() >= timeout {
            events.event(&Event::WaitEnded {
                what: what.to_string(),
                done: false,
            });
            return Err(WaitError::TimedOut {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        if stop.pause(interval).await.is_err() {
            events.event(&Event::WaitEnded {
                what: what.to_string(),
                done: false,
            });
            return Err(WaitError::Stopped {
                what: what.to_string(),
                last,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_probe_passes_or_names_the_last_reason() {
        let events = CollectEvents::default();
        let mut calls = 0;
        wait_until(
            &events,
            &StopSignal::new(),
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
        assert_eq!(
            events.events().last(),
            Some(&Event::WaitEnded {
                what: "three calls".into(),
                done: true
            })
        );

        let err = wait_until(
            &NoEvents,
            &StopSignal::new(),
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Err::<bool, _>("still 1.30".to_string()) },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, WaitError::TimedOut { last, .. } if last == "still 1.30"),
            "{err:?}"
        );
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
        fn record(&self) -> StepRecord {
            StepRecord {
                kind: "test-fails".into(),
                spec: serde_json::json!({}),
            }
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
    async fn an_observed_step_is_the_step_itself_and_reports_its_phases() {
        let events = CollectEvents::default();
        let shown = Observed::new(&Fails, &events);
        assert_eq!(
            (shown.id(), shown.component(), shown.description()),
            ("x/fails", "x", "fails to apply".to_string())
        );
        assert_eq!(shown.irreversible().as_deref(), Some("it is a test"));
        assert_eq!(shown.record().kind, "test-fails");
        assert_eq!(
            shown.apply().await.unwrap_err().to_string(),
            "no such thing"
        );
        assert_eq!(
            events.events(),
            [
                Event::StepStarted {
                    step: "x/fails".into(),
                    phase: Phase::Apply
                },
                Event::StepFinished {
                    step: "x/fails".into(),
                    phase: Phase::Apply,
                    error: Some("no such thing".into())
                }
            ]
        );
    }
}
