//! The live view on a terminal: one line per running step with its elapsed time and latest
//! output; finished steps scroll up as one line each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_builder::{Event, Progress};

use super::seconds;

pub struct TtyProgress {
    multi: MultiProgress,
    state: Mutex<TtyState>,
}

struct TtyState {
    steps: usize,
    running: HashMap<usize, (ProgressBar, String)>,
}

impl TtyProgress {
    pub fn new() -> TtyProgress {
        TtyProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new(TtyState {
                steps: 0,
                running: HashMap::new(),
            }),
        }
    }

    fn done(&self, state: &mut TtyState, step: usize, outcome: &str) {
        if let Some((bar, title)) = state.running.remove(&step) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
            let _ = self.multi.println(format!("{title}  {outcome}"));
        }
    }
}

impl Progress for TtyProgress {
    fn event(&self, event: Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started { steps } => state.steps = steps,
            Event::StepStarted { step, description } => {
                let title = format!("[{step}/{}] {description}", state.steps);
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg:.dim}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(title.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                state.running.insert(step, (bar, title));
            }
            Event::Log { step, line, .. } => {
                if let Some((bar, _)) = state.running.get(&step) {
                    bar.set_message(String::from_utf8_lossy(line).trim_end().to_owned());
                }
            }
            Event::StepCached { step } => self.done(&mut state, step, "CACHED"),
            Event::StepMiss { step, reason } => {
                if let Some((_, title)) = state.running.get(&step) {
                    let _ = self.multi.println(format!("{title}  cache miss: {reason}"));
                }
            }
            Event::StepFinished { step, elapsed } => self.done(&mut state, step, &seconds(elapsed)),
            Event::StepFailed { step, elapsed } => {
                self.done(
                    &mut state,
                    step,
                    &format!("ERROR after {}", seconds(elapsed)),
                );
            }
            Event::Exporting => {
                let _ = self.multi.println("exporting image");
            }
        }
    }
}
