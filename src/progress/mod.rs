//! Progress renderers: grouped plain text for CI, a live view for terminals, JSON events
//! for tools, and a full log of every build kept in the store.

mod json;
mod log;
mod plain;
mod tty;

use std::sync::Arc;
use std::time::Duration;

pub use json::JsonProgress;
pub use log::{BuildLog, BuildResult, LogSummary, latest_log, list_logs, read_summary};
pub use plain::PlainProgress;
use rbuild_builder::{Event, Progress};
pub use tty::TtyProgress;

/// Shows nothing; errors are still reported when the build ends.
pub struct QuietProgress;

impl Progress for QuietProgress {
    fn event(&self, _event: Event<'_>) {}
}

/// Passes every event to each of several renderers.
pub struct Tee(pub Vec<Arc<dyn Progress>>);

impl Progress for Tee {
    fn event(&self, event: Event<'_>) {
        for progress in &self.0 {
            progress.event(clone_event(&event));
        }
    }
}

fn clone_event<'a>(event: &Event<'a>) -> Event<'a> {
    match *event {
        Event::Started { steps } => Event::Started { steps },
        Event::StepStarted { step, description } => Event::StepStarted { step, description },
        Event::Log { step, stream, line } => Event::Log { step, stream, line },
        Event::StepFinished { step, elapsed } => Event::StepFinished { step, elapsed },
        Event::StepCached { step } => Event::StepCached { step },
        Event::StepMiss { step, reason } => Event::StepMiss { step, reason },
        Event::StepFailed { step, elapsed } => Event::StepFailed { step, elapsed },
        Event::Exporting => Event::Exporting,
    }
}

/// `1.2s`, `3m04s`.
pub(crate) fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", secs as u64 / 60, secs as u64 % 60)
    }
}
