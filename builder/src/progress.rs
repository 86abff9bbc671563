//! Build events for whoever shows progress: the CLI's plain or TTY renderer, a JSON stream.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub enum Event<'a> {
    /// The graph is known: `steps` ops will run.
    Started {
        steps: usize,
    },
    StepStarted {
        step: usize,
        description: &'a str,
    },
    /// One line of a RUN step's output, without its newline.
    Log {
        step: usize,
        stream: Stream,
        line: &'a [u8],
    },
    StepFinished {
        step: usize,
        elapsed: Duration,
    },
    /// The step's result came from the cache.
    StepCached {
        step: usize,
    },
    /// The step runs: why it missed the cache (after `StepStarted`).
    StepMiss {
        step: usize,
        reason: &'a str,
    },
    StepFailed {
        step: usize,
        elapsed: Duration,
    },
    /// Writing config and manifest, naming the image.
    Exporting,
}

/// Receives build events, in order, from the task running the build.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Discards every event.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _event: Event<'_>) {}
}
