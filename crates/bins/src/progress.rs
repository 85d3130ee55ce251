//! Progress on stderr: the flows' events as spinners with the elapsed time when stderr is a
//! terminal, as log lines otherwise (pipelines get those and the report).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use upgrade_flows::events::{Event, EventSink};

/// Shows each running step phase and wait as a spinner.
#[derive(Debug, Default)]
pub struct Spinners {
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl Spinners {
    fn start(&self, key: String, message: String) {
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
        if let Some(old) = self.bars().insert(key, bar) {
            old.finish_and_clear();
        }
    }

    fn update(&self, key: &str, message: String) {
        tracing::info!("{message}");
        if let Some(bar) = self.bars().get(key) {
            bar.set_message(message);
        }
    }

    fn finish(&self, key: &str, message: String) {
        tracing::info!("{message}");
        if let Some(bar) = self.bars().remove(key) {
            bar.finish_with_message(message);
        }
    }

    fn bars(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventSink for Spinners {
    fn event(&self, event: &Event) {
        match event {
            Event::StepStarted { step, phase } => self.start(
                format!("{step}:{}", phase.as_str()),
                format!("{step}: {}", phase.as_str()),
            ),
            Event::StepFinished { step, phase, error } => self.finish(
                &format!("{step}:{}", phase.as_str()),
                match error {
                    None => format!("{step}: {} done", phase.as_str()),
                    Some(e) => format!("{step}: {} failed: {e}", phase.as_str()),
                },
            ),
            Event::Waiting { what, detail: None } => self.start(what.clone(), what.clone()),
            Event::Waiting {
                what,
                detail: Some(detail),
            } => self.update(what, format!("{what} ({detail})")),
            Event::WaitEnded { what, done } => self.finish(
                what,
                format!("{what}: {}", if *done { "done" } else { "timed out" }),
            ),
            Event::Note { message } => tracing::warn!("{message}"),
        }
    }
}
