//! `--progress json`: one JSON object per event and line, on stderr, for tools.

use std::io::Write;
use std::sync::Mutex;

use rbuild_builder::{Event, Progress, Stream};

pub struct JsonProgress {
    out: Mutex<std::io::Stderr>,
}

impl JsonProgress {
    pub fn new() -> JsonProgress {
        JsonProgress {
            out: Mutex::new(std::io::stderr()),
        }
    }
}

impl Progress for JsonProgress {
    fn event(&self, event: Event<'_>) {
        let time = rbuild_store::time::rfc3339(rbuild_store::time::now_unix());
        let value = match event {
            Event::Started { steps } => {
                serde_json::json!({"event": "started", "time": time, "steps": steps})
            }
            Event::StepStarted { step, description } => {
                serde_json::json!({"event": "step_started", "time": time, "step": step, "description": description})
            }
            Event::Log { step, stream, line } => serde_json::json!({
                "event": "log",
                "time": time,
                "step": step,
                "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
                "line": String::from_utf8_lossy(line),
            }),
            Event::StepCached { step } => {
                serde_json::json!({"event": "step_cached", "time": time, "step": step})
            }
            Event::StepMiss { step, reason } => {
                serde_json::json!({"event": "step_miss", "time": time, "step": step, "reason": reason})
            }
            Event::StepFinished { step, elapsed } => serde_json::json!({
                "event": "step_finished", "time": time, "step": step, "seconds": elapsed.as_secs_f64(),
            }),
            Event::StepFailed { step, elapsed } => serde_json::json!({
                "event": "step_failed", "time": time, "step": step, "seconds": elapsed.as_secs_f64(),
            }),
            Event::Exporting => serde_json::json!({"event": "exporting", "time": time}),
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{value}");
    }
}
