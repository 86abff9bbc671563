//! Errors as the user sees them: Dockerfile problems with file, line, column and a caret
//! under the instruction; failed RUN steps with their exit code and output tail; build-check
//! warnings the same way, with the rule name as the code.

use std::fmt;
use std::path::Path;

use miette::{Diagnostic, LabeledSpan, NamedSource, Report, Severity, SourceCode};
use rbuild_builder::BuildError;
use rbuild_frontend::{ErrorKind, Span, Warning};

/// The causes of an error, innermost last, as one message (a cause already said by an
/// outer one is not repeated).
pub fn message_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(current) = source {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

/// A problem located in the Dockerfile.
#[derive(Debug)]
struct DockerfileDiagnostic {
    message: String,
    code: Option<String>,
    help: Option<String>,
    url: Option<String>,
    severity: Severity,
    label: String,
    span: miette::SourceSpan,
    source: NamedSource<String>,
}

impl DockerfileDiagnostic {
    fn new(message: String, span: Span, path: &Path, text: &str) -> Self {
        let start = span.start.min(text.len());
        let end = span.end.clamp(start, text.len());
        DockerfileDiagnostic {
            message,
            code: None,
            help: None,
            url: None,
            severity: Severity::Error,
            label: "here".to_owned(),
            span: (start, end - start).into(),
            source: NamedSource::new(path.display().to_string(), text.to_owned()),
        }
    }
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

    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.url
            .as_ref()
            .map(|u| Box::new(u) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
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

/// A frontend error (parse or conversion) with the Dockerfile's line, column and caret.
pub fn dockerfile_error(err: &rbuild_frontend::Error, path: &Path, text: &str) -> Report {
    if err.kind() == ErrorKind::UnknownTarget {
        // Not about a place in the file.
        return match err.help() {
            Some(help) => miette::miette!(code = err.code(), help = help.to_owned(), "{err}"),
            None => miette::miette!(code = err.code(), "{err}"),
        };
    }
    let mut diagnostic = DockerfileDiagnostic::new(err.to_string(), err.span(), path, text);
    diagnostic.code = Some(err.code().to_owned());
    diagnostic.help = err.help().map(str::to_owned);
    Report::new(diagnostic)
}

/// An error about a place of the Dockerfile that the CLI found (not the frontend).
pub fn dockerfile_message(
    message: String,
    help: Option<String>,
    span: Span,
    path: &Path,
    text: &str,
) -> Report {
    let mut diagnostic = DockerfileDiagnostic::new(message, span, path, text);
    diagnostic.help = help;
    Report::new(diagnostic)
}

/// A build-check warning, rendered like an error with the rule name as its code.
pub fn warning(warning: &Warning, path: &Path, text: &str) -> Report {
    let mut diagnostic =
        DockerfileDiagnostic::new(warning.message.clone(), warning.span, path, text);
    diagnostic.code = Some(warning.rule.name().to_owned());
    diagnostic.help = warning.help.clone();
    diagnostic.url = Some(warning.rule.url());
    diagnostic.severity = Severity::Warning;
    Report::new(diagnostic)
}

/// Turns a build failure into a report; for a failed step, prints its output tail first.
pub fn build_error(err: BuildError, dockerfile_path: &Path, dockerfile: &str) -> Report {
    if let BuildError::Dockerfile(inner) = &err {
        return dockerfile_error(inner, dockerfile_path, dockerfile);
    }
    let Some(span) = err.span() else {
        return match err {
            BuildError::BasePlatform {
                reference,
                wanted,
                found,
            } => miette::miette!(
                help = format!(
                    "build for {} (`--platform {}`), or use a base image that has {wanted}: a multi-platform image from a registry, or one made with `rbuild import --platform {wanted} ROOTFS.tar NAME`",
                    found.join(", "),
                    found.first().map_or("", String::as_str)
                ),
                "base image `{reference}` is for {}, and the build needs {wanted}",
                found.join(", ")
            ),
            BuildError::BaseImageNotFound { reference } => miette::miette!(
                help = "pull it with `rbuild pull REF`, load it with `rbuild load -i IMAGE.tar` or make one with `rbuild import ROOTFS.tar NAME`",
                "base image `{reference}` is not in the store"
            ),
            BuildError::Pull {
                reference,
                missing: true,
                source,
            } => {
                crate::commands::registry::report_with(
                    *source,
                    format!("base image `{reference}` is not in the store and pulling it failed"),
                    "load it with `rbuild load -i IMAGE.tar`, make one with `rbuild import ROOTFS.tar NAME`, or check the registry (`rbuild pull`)".to_owned(),
                )
            }
            other => crate::rootless::report(other),
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
        BuildError::RunFailed { code, .. } => (
            "build::run_failed",
            crate::rootless::run_failed_help(tail),
            format!("exit code {code}"),
        ),
        BuildError::OutOfMemory { .. } => (
            "build::out_of_memory",
            Some("raise the limit with `--memory`".to_owned()),
            "killed: out of memory".to_owned(),
        ),
        BuildError::Emulation {
            source, platform, ..
        } => (
            "build::emulation",
            Some(source.help().to_owned()),
            format!("a step for {platform}"),
        ),
        BuildError::InsecureNotAllowed { .. } => (
            "build::insecure_not_allowed",
            Some(
                "if you trust this Dockerfile, allow it with `--allow security.insecure`: the step \
                 then runs with every capability and the host's devices, like `docker run --privileged`"
                    .to_owned(),
            ),
            "`--security=insecure`".to_owned(),
        ),
        BuildError::SecretRequired { id, .. } => (
            "build::secret_required",
            Some(format!(
                "pass it with `--secret id={id},src=FILE` or `--secret id={id},env=VARIABLE`"
            )),
            "this step needs it".to_owned(),
        ),
        _ => (
            "build::step_failed",
            crate::rootless::help_for(std::iter::successors(
                Some(&err as &(dyn std::error::Error + 'static)),
                |err| err.source(),
            )),
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
    let mut diagnostic = DockerfileDiagnostic::new(message, span, dockerfile_path, dockerfile);
    diagnostic.code = Some(code.to_owned());
    diagnostic.help = help;
    diagnostic.label = label;
    Report::new(diagnostic)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use miette::{GraphicalReportHandler, GraphicalTheme};
    use rbuild_frontend::{ConvertOptions, ImageConfig, convert, image_references, parse};

    use super::*;

    fn render(report: &Report) -> String {
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false)
            .render_report(&mut out, report.as_ref())
            .expect("rendering to a string cannot fail");
        out
    }

    /// Every `fixtures/dockerfiles/invalid/*.Dockerfile` fails to convert (with empty base
    /// configs) and renders with file:line:col, a caret, the code and a help line.
    #[test]
    fn invalid_fixtures_render() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfiles/invalid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the fixtures directory")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= 20);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a fixture");
            let name = file.file_stem().expect("a name").to_string_lossy();
            let error = parse(&text)
                .and_then(|df| {
                    let opts = ConvertOptions::default();
                    let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)?
                        .into_iter()
                        .map(|reference| (reference, ImageConfig::default()))
                        .collect();
                    convert(&df, &opts, &bases)
                })
                .expect_err(&name);
            let path = Path::new("invalid").join(file.file_name().expect("a name"));
            let rendered = render(&dockerfile_error(&error, &path, &text));
            assert!(rendered.contains("dockerfile::"), "{rendered}");
            insta::assert_snapshot!(name.to_string(), rendered);
        }
    }

    #[test]
    fn warnings_render_with_rule_and_url() {
        let text = "FROM alpine\nCMD echo hi\n";
        let checks = rbuild_frontend::check(text).expect("valid");
        let rendered = render(&warning(&checks.warnings[0], Path::new("Dockerfile"), text));
        insta::assert_snapshot!(rendered, @r#"
        JSONArgsRecommended (https://docs.docker.com/go/dockerfile/rule/json-args-recommended/)

          ⚠ JSON arguments recommended for `CMD` to prevent unintended behavior related to OS signals
           ╭─[Dockerfile:2:1]
         1 │ FROM alpine
         2 │ CMD echo hi
           · ─────┬─────
           ·      ╰── here
           ╰────
          help: write `CMD ["echo", "hi"]`, or set the shell explicitly with `SHELL` if a shell is wanted
        "#);
    }
}
