//! Plain progress for logs and CI: numbered steps, each step's output grouped under it and
//! in order even when stages run in parallel, never clipped, each line with the time since
//! its step started:
//!
//! ```text
//! #2 [2/4] RUN make
//! #2 0.214 cc -c main.c
//! #2 DONE 1.3s
//! ```
//!
//! The oldest unfinished step streams live; steps that run beside it are held back and
//! printed whole, in the order they started, as soon as everything before them is done.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use rbuild_builder::{Event, Progress};

use super::seconds;

pub struct PlainProgress<W: Write + Send = std::io::Stderr> {
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    steps: usize,
    /// Steps in the order they started; the front one is live.
    order: VecDeque<usize>,
    held: BTreeMap<usize, Held>,
}

#[derive(Default)]
struct Held {
    started: Option<Instant>,
    lines: Vec<Vec<u8>>,
    finished: bool,
}

impl PlainProgress {
    pub fn new() -> PlainProgress {
        PlainProgress::to(std::io::stderr())
    }
}

impl<W: Write + Send> PlainProgress<W> {
    pub fn to(out: W) -> PlainProgress<W> {
        PlainProgress {
            state: Mutex::new(State {
                out,
                steps: 0,
                order: VecDeque::new(),
                held: BTreeMap::new(),
            }),
        }
    }

    /// Writes `text` as it is, after what was written so far (a failed build's report).
    pub fn note(&self, text: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = state.out.write_all(text.as_bytes());
        let _ = state.out.flush();
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.state.into_inner().unwrap().out
    }
}

impl<W: Write> State<W> {
    fn emit(&mut self, step: usize, line: Vec<u8>) {
        if self.order.front() == Some(&step) {
            // A closed stderr must not fail the build.
            let _ = self.out.write_all(&line);
        } else if let Some(held) = self.held.get_mut(&step) {
            held.lines.push(line);
        }
    }

    fn finish(&mut self, step: usize, line: Vec<u8>) {
        self.emit(step, line);
        if let Some(held) = self.held.get_mut(&step) {
            held.finished = true;
        }
        // Release the steps that waited behind the live one.
        while let Some(&front) = self.order.front() {
            if !self.held.get(&front).is_some_and(|h| h.finished) {
                break;
            }
            self.order.pop_front();
            self.held.remove(&front);
            if let Some(&next) = self.order.front()
                && let Some(held) = self.held.get_mut(&next)
            {
                for line in std::mem::take(&mut held.lines) {
                    let _ = self.out.write_all(&line);
                }
            }
        }
        let _ = self.out.flush();
    }
}

impl<W: Write + Send> Progress for PlainProgress<W> {
    fn event(&self, event: Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started { steps } => state.steps = steps,
            Event::StepStarted { step, description } => {
                state.order.push_back(step);
                state.held.insert(
                    step,
                    Held {
                        started: Some(Instant::now()),
                        ..Default::default()
                    },
                );
                let line = format!("#{step} [{step}/{}] {description}\n", state.steps);
                state.emit(step, line.into_bytes());
            }
            Event::Log { step, line, .. } => {
                let elapsed = state
                    .held
                    .get(&step)
                    .and_then(|h| h.started)
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                let mut text = format!("#{step} {elapsed:.3} ").into_bytes();
                text.extend_from_slice(line);
                text.push(b'\n');
                state.emit(step, text);
            }
            Event::StepCached { step } => {
                state.finish(step, format!("#{step} CACHED\n").into_bytes())
            }
            Event::StepMiss { step, reason } => {
                state.emit(step, format!("#{step} cache miss: {reason}\n").into_bytes());
            }
            Event::StepFinished { step, elapsed } => {
                state.finish(
                    step,
                    format!("#{step} DONE {}\n", seconds(elapsed)).into_bytes(),
                );
            }
            Event::StepFailed { step, elapsed } => {
                state.finish(
                    step,
                    format!("#{step} ERROR after {}\n", seconds(elapsed)).into_bytes(),
                );
            }
            Event::Exporting => {
                let step = state.steps + 1;
                let _ = writeln!(state.out, "#{step} exporting image");
                let _ = state.out.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rbuild_builder::Stream;

    use super::*;

    #[test]
    fn parallel_steps_are_grouped_in_start_order() {
        let progress = PlainProgress::to(Vec::new());
        fn log(step: usize, line: &'static str) -> Event<'static> {
            Event::Log {
                step,
                stream: Stream::Stdout,
                line: line.as_bytes(),
            }
        }
        progress.event(Event::Started { steps: 3 });
        progress.event(Event::StepStarted {
            step: 1,
            description: "RUN a",
        });
        progress.event(Event::StepStarted {
            step: 2,
            description: "RUN b",
        });
        progress.event(log(2, "b1"));
        progress.event(log(1, "a1"));
        progress.event(Event::StepStarted {
            step: 3,
            description: "RUN c",
        });
        progress.event(log(3, "c1"));
        progress.event(Event::StepFinished {
            step: 3,
            elapsed: Default::default(),
        });
        progress.event(log(2, "b2"));
        progress.event(log(1, "a2"));
        progress.event(Event::StepFinished {
            step: 1,
            elapsed: Default::default(),
        });
        progress.event(log(2, "b3"));
        progress.event(Event::StepCached { step: 2 });
        let text = String::from_utf8(progress.into_inner()).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let step = parts.next().unwrap();
                let second = parts.next().unwrap();
                // Drop the timestamps of log lines.
                match second.parse::<f64>() {
                    Ok(_) => format!("{step} {}", parts.next().unwrap()),
                    Err(_) => l.to_owned(),
                }
            })
            .collect();
        assert_eq!(
            lines,
            [
                "#1 [1/3] RUN a",
                "#1 a1",
                "#1 a2",
                "#1 DONE 0.0s",
                "#2 [2/3] RUN b",
                "#2 b1",
                "#2 b2",
                "#2 b3",
                "#2 CACHED",
                "#3 [3/3] RUN c",
                "#3 c1",
                "#3 DONE 0.0s",
            ]
        );
    }
}
