//! Errors as the user sees them: Dockerfile problems with file, line, column and a caret
//! under the instruction; failed RUN steps with their exit code and output tail.

use std::fmt;
use std::path::Path;

use miette::{Diagnostic, LabeledSpan, NamedSource, Report, SourceCode};
use rbuild_builder::BuildError;

/// A problem located in the Dockerfile.
#[derive(Debug)]
struct DockerfileDiagnostic {
    message: String,
    code: Option<String>,
    help: Option<String>,
    label: String,
    span: miette::SourceSpan,
    source: NamedSource<String>,
}

impl fmt::Display for DockerfileDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DockerfileDiagnostic {}

impl Diagnostic for DockerfileDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code
            .as_ref()
            .map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span,
        ))))
    }
}

/// Turns a build failure into a report; for a failed step, prints its output tail first.
pub fn build_error(err: BuildError, dockerfile_path: &Path, dockerfile: &str) -> Report {
    let Some(span) = err.span() else {
        return match err {
            BuildError::BaseImageNotFound { reference } => miette::miette!(
                help = "load it with `rbuild load -i IMAGE.tar` or make one with `rbuild import ROOTFS.tar NAME`",
                "base image `{reference}` is not in the store"
            ),
            other => Report::from_err(other),
        };
    };
    let tail = err.output_tail();
    if !tail.is_empty() {
        eprintln!("------");
        for line in tail {
            eprintln!(" > {line}");
        }
        eprintln!("------");
    }
    let (code, help, label) = match &err {
        BuildError::Dockerfile(inner) => (
            Some(inner.code().to_string()),
            inner.help().map(str::to_owned),
            "here".to_owned(),
        ),
        BuildError::RunFailed { code, .. } => (
            Some("build::run_failed".to_owned()),
            None,
            format!("exit code {code}"),
        ),
        BuildError::OutOfMemory { .. } => (
            Some("build::out_of_memory".to_owned()),
            Some("raise the limit with `--memory`".to_owned()),
            "killed: out of memory".to_owned(),
        ),
        _ => (
            Some("build::step_failed".to_owned()),
            None,
            "this step".to_owned(),
        ),
    };
    let mut message = err.to_string();
    // Name the cause too: "`COPY x /` failed: `x` not found in the build context".
    let mut cause = std::error::Error::source(&err);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    let start = span.start.min(dockerfile.len());
    let end = span.end.clamp(start, dockerfile.len());
    Report::new(DockerfileDiagnostic {
        message,
        code,
        help,
        label,
        span: (start, end - start).into(),
        source: NamedSource::new(dockerfile_path.display().to_string(), dockerfile.to_owned()),
    })
}
