//! Every build's full log, kept in the store (`logs/`) whatever was shown on the terminal,
//! for `rbuild logs`. The newest 50 are kept.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rbuild_builder::{Event, Progress};

use super::PlainProgress;

const KEEP: usize = 50;

/// Writes a build's log in the plain format to a new file under `<root>/logs`.
pub struct BuildLog {
    inner: PlainProgress<BufWriter<File>>,
}

impl BuildLog {
    pub fn create(root: &Path) -> std::io::Result<BuildLog> {
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
        prune(&dir);
        Ok(BuildLog {
            inner: PlainProgress::to(BufWriter::new(file)),
        })
    }
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
