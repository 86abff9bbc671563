//! What surrounds a build while it runs: the progress shown, the log kept for `rbuild
//! logs`, and the signals (Ctrl-C, SIGTERM) that cancel it.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use rbuild_builder::{Cancel, Progress};
use rbuild_store::{Digest, ImageName};

use super::ProgressArg;
use crate::progress::{
    BuildLog, BuildResult, JsonProgress, PlainProgress, QuietProgress, Tee, TtyProgress,
};

pub(super) struct Session {
    /// What the build reports to: the display chosen, and the log.
    pub progress: Arc<dyn Progress>,
    /// Cancelled by Ctrl-C and SIGTERM; the build stops its sandboxes and cleans up first.
    pub cancel: Cancel,
    log: Option<Arc<BuildLog>>,
    signals: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts listening for signals and opens the log under the store's `root`.
    pub fn start(shown: ProgressArg, root: &Path, tags: &[ImageName]) -> Session {
        let shown: Arc<dyn Progress> = match shown {
            ProgressArg::Quiet => Arc::new(QuietProgress),
            ProgressArg::Json => Arc::new(JsonProgress::new()),
            ProgressArg::Tty => Arc::new(TtyProgress::new()),
            ProgressArg::Auto if std::io::stderr().is_terminal() => Arc::new(TtyProgress::new()),
            ProgressArg::Auto | ProgressArg::Plain => Arc::new(PlainProgress::new()),
        };
        // The whole log, whatever is shown, for `rbuild logs`.
        let mut renderers = vec![shown];
        let log = BuildLog::create(root, tags).ok().map(Arc::new);
        if let Some(log) = &log {
            renderers.push(log.clone());
        }
        let cancel = Cancel::default();
        let signals = tokio::spawn(cancel_on_signals(cancel.clone()));
        Session {
            progress: Arc::new(Tee(renderers)),
            cancel,
            log,
            signals,
        }
    }

    /// Keeps the report of why the build failed in the log, without colors, as it was
    /// shown (`rbuild logs` shows it with the steps).
    pub fn note_failure(&self, report: &miette::Report) {
        let Some(log) = &self.log else {
            return;
        };
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        let mut text = String::new();
        if handler.render_report(&mut text, report.as_ref()).is_ok() {
            log.note(&text);
        }
    }

    /// The build is over: signals no longer cancel anything, and the log says how it ended.
    pub fn end(&self, result: BuildResult, image: Option<&Digest>) {
        self.signals.abort();
        if let Some(log) = &self.log {
            log.finish(result, image);
        }
    }
}

async fn cancel_on_signals(cancel: Cancel) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
    cancel.cancel();
}
