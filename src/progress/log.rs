//! Every build's full log, kept in the store (`logs/`) whatever was shown on the terminal,
//! for `rbuild logs`, with a summary beside it (`<name>.json`: the names it was to give its
//! image, the image, how it ended) for `rbuild logs --list`. The newest 50 are kept.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_builder::{Event, Progress};
use rbuild_store::{Digest, ImageName};
use serde::{Deserialize, Serialize};

use super::PlainProgress;

const KEEP: usize = 50;

/// What a build log is of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSummary {
    /// The names the build was to give its image (`-t`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The config digest (IMAGE ID) of the image it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How the command ended; none while it runs, or when it was killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<BuildResult>,
}

/// How `rbuild build` ended: its exit status, so a build whose image was made but whose
/// push failed is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildResult {
    Succeeded,
    Failed,
    Cancelled,
}

/// Writes a build's log in the plain format to a new file under `<root>/logs`.
pub struct BuildLog {
    inner: PlainProgress<BufWriter<File>>,
    summary_path: PathBuf,
    summary: Mutex<LogSummary>,
}

impl BuildLog {
    pub fn create(root: &Path, tags: &[ImageName]) -> std::io::Result<BuildLog> {
        let dir = root.join("logs");
        fs::create_dir_all(&dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Names sort by time: `<seconds>.<nanos>-<pid>.log`.
        let path = dir.join(format!(
            "{:012}.{:09}-{}.log",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        ));
        let file = File::create(&path)?;
        let log = BuildLog {
            inner: PlainProgress::to(BufWriter::new(file)),
            summary_path: path.with_extension("json"),
            summary: Mutex::new(LogSummary {
                tags: tags.iter().map(ToString::to_string).collect(),
                ..Default::default()
            }),
        };
        log.write_summary();
        prune(&dir);
        Ok(log)
    }

    /// Adds `text` (the report of why the build failed) to the log.
    pub fn note(&self, text: &str) {
        self.inner.note(text);
    }

    /// Records how the build ended, and the image it made if it made one.
    pub fn finish(&self, result: BuildResult, image: Option<&Digest>) {
        {
            let mut summary = self.summary.lock().unwrap_or_else(|e| e.into_inner());
            summary.result = Some(result);
            summary.image = image.map(ToString::to_string);
        }
        self.write_summary();
    }

    /// Best effort, as the log itself: a build does not fail for want of its log.
    fn write_summary(&self) {
        let summary = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(bytes) = serde_json::to_vec(&*summary) else {
            return;
        };
        // Renamed into place: `logs --list` never reads half a summary.
        let partial = self.summary_path.with_extension("json.partial");
        if fs::write(&partial, bytes).is_ok() {
            let _ = fs::rename(&partial, &self.summary_path);
        }
    }
}

/// The summary kept beside the log at `log`; none for a log an older rbuild wrote.
pub fn read_summary(log: &Path) -> Option<LogSummary> {
    let bytes = fs::read(log.with_extension("json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Progress for BuildLog {
    fn event(&self, event: Event<'_>) {
        self.inner.event(event);
    }
}

fn prune(dir: &Path) {
    let mut logs = list_logs(dir);
    if logs.len() > KEEP {
        logs.truncate(logs.len() - KEEP);
        for old in logs {
            let _ = fs::remove_file(old.with_extension("json"));
            let _ = fs::remove_file(old);
        }
    }
}

/// The build logs under `dir`, oldest first.
pub fn list_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

pub fn latest_log(dir: &Path) -> Option<PathBuf> {
    list_logs(dir).pop()
}
