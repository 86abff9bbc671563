//! Progress renderers: plain text for logs and CI, and quiet.
//!
//! Plain output numbers the steps and prefixes each output line with its step and the time
//! since the step started, so interleaved logs stay attributable:
//!
//! ```text
//! #2 [2/4] RUN make
//! #2 0.214 cc -c main.c
//! #2 DONE 1.3s
//! ```

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbuild_builder::{Event, Progress};

pub struct PlainProgress {
    state: Mutex<PlainState>,
}

struct PlainState {
    steps: usize,
    started: Vec<(usize, Instant)>,
}

impl PlainProgress {
    pub fn new() -> PlainProgress {
        PlainProgress {
            state: Mutex::new(PlainState {
                steps: 0,
                started: Vec::new(),
            }),
        }
    }
}

impl Progress for PlainProgress {
    fn event(&self, event: Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stderr = std::io::stderr();
        let mut out = stderr.lock();
        // A closed stderr must not fail the build.
        let _ = match event {
            Event::Started { steps } => {
                state.steps = steps;
                Ok(())
            }
            Event::StepStarted { step, description } => {
                state.started.push((step, Instant::now()));
                writeln!(out, "#{step} [{step}/{}] {description}", state.steps)
            }
            Event::Log { step, line, .. } => {
                let elapsed = state
                    .started
                    .iter()
                    .find(|(s, _)| *s == step)
                    .map_or(Duration::ZERO, |(_, t)| t.elapsed());
                let _ = write!(out, "#{step} {:.3} ", elapsed.as_secs_f64());
                let _ = out.write_all(line);
                writeln!(out)
            }
            Event::StepCached { step } => writeln!(out, "#{step} CACHED"),
            Event::StepFinished { step, elapsed } => {
                writeln!(out, "#{step} DONE {:.1}s", elapsed.as_secs_f64())
            }
            Event::StepFailed { step, elapsed } => {
                writeln!(out, "#{step} ERROR after {:.1}s", elapsed.as_secs_f64())
            }
            Event::Exporting => writeln!(out, "exporting image"),
        };
    }
}

/// Shows nothing; errors are still reported when the build ends.
pub struct QuietProgress;

impl Progress for QuietProgress {
    fn event(&self, _event: Event<'_>) {}
}
