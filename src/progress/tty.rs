//! The live view on a terminal: each running step as a line with its elapsed time and, under
//! it, the last few lines of its output; a finished step scrolls up as one line with its
//! time (or CACHED). Every line is cut to the terminal's width: a line that wraps would
//! leave copies of itself behind at each redraw.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_builder::{Event, Progress};

use super::seconds;

/// Output lines shown under a running step.
const TAIL_LINES: usize = 3;

pub struct TtyProgress {
    multi: MultiProgress,
    state: Mutex<TtyState>,
}

struct TtyState {
    steps: usize,
    running: HashMap<usize, Running>,
}

struct Running {
    title: String,
    header: ProgressBar,
    /// The last output lines, one bar of several lines made when the first line arrives.
    /// It ticks on its own: indicatif drops a redraw that comes too soon after another,
    /// and a bar that only redraws when it changes would keep showing a dropped state
    /// (a line twice, one line missing) until its next line.
    tail: Option<ProgressBar>,
    lines: VecDeque<String>,
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
        if let Some(running) = state.running.remove(&step) {
            for bar in running.tail.iter().chain([&running.header]) {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            self.println(&running.title, &format!("  {outcome}"));
        }
    }

    /// Prints `text` then `suffix` above the live lines, `text` cut so that both fit.
    fn println(&self, text: &str, suffix: &str) {
        let room = width().saturating_sub(suffix.chars().count());
        let _ = self.multi.println(format!("{}{suffix}", cut(text, room)));
    }

    fn log(&self, running: &mut Running, line: &str) {
        // A carriage return redraws a line (progress bars of curl, pip): its last state.
        let line = line.rsplit('\r').next().unwrap_or(line).trim_end();
        if line.is_empty() {
            return;
        }
        running.lines.push_back(line.to_owned());
        while running.lines.len() > TAIL_LINES {
            running.lines.pop_front();
        }
        let header = &running.header;
        let tail = running.tail.get_or_insert_with(|| {
            let bar = self.multi.insert_after(header, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{msg:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        tail.set_message(tail_text(&running.lines, width()));
    }
}

/// The tail's lines, indented and each cut to the terminal's width.
fn tail_text(lines: &VecDeque<String>, width: usize) -> String {
    let room = width.saturating_sub(TAIL_INDENT.len());
    lines
        .iter()
        .map(|line| format!("{TAIL_INDENT}{}", cut(line, room)))
        .collect::<Vec<_>>()
        .join("\n")
}

const TAIL_INDENT: &str = "    ";

impl Progress for TtyProgress {
    fn event(&self, event: Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started { steps } => state.steps = steps,
            Event::StepStarted { step, description } => {
                let title = format!("[{step}/{}] {description}", state.steps);
                let header = self.multi.add(ProgressBar::new_spinner());
                // The elapsed time first, so that cutting a long title never hides it.
                header.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                header.set_message(title.clone());
                header.enable_steady_tick(Duration::from_millis(120));
                state.running.insert(
                    step,
                    Running {
                        title,
                        header,
                        tail: None,
                        lines: VecDeque::new(),
                    },
                );
            }
            Event::Log { step, line, .. } => {
                if let Some(running) = state.running.get_mut(&step) {
                    self.log(running, &String::from_utf8_lossy(line));
                }
            }
            Event::StepCached { step } => self.done(&mut state, step, "CACHED"),
            // The step's own line follows when it ends: the reason goes first here, so that
            // cutting to the width leaves it whole. What the user asked for (`--no-cache`)
            // needs no saying on every step.
            Event::StepMiss { step, reason } if !reason.starts_with("--no-cache") => {
                self.println(
                    &format!("[{step}/{}] cache miss: {reason}", state.steps),
                    "",
                );
            }
            Event::StepMiss { .. } => {}
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

/// The terminal's width (stderr's), 80 when it cannot be read.
fn width() -> usize {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0 {
            usize::from(size.ws_col)
        } else {
            80
        }
    }
}

/// `text` cut to `room` characters, the cut marked with `…`.
fn cut(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(room.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_with_a_mark() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("[2/9] RUN apt-get update", 12), "[2/9] RUN a…");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("x", 0), "…");
    }

    #[test]
    fn the_tail_is_indented_and_cut_line_by_line() {
        let lines: VecDeque<String> = ["Reading package lists...", "Unpacking libssh2-1:amd64"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            tail_text(&lines, 20),
            "    Reading package…\n    Unpacking libss…"
        );
        assert_eq!(tail_text(&VecDeque::new(), 20), "");
    }
}
