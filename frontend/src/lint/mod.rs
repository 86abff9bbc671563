//! Build checks: BuildKit's Dockerfile lint rules (same names, same semantics), found
//! while parsing (casing, stage names, deprecated forms) and while converting (undefined
//! variables, relative WORKDIR, EXPOSE formats, ...), filtered by `# check=`.

mod rules;
pub(crate) mod syntax;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::convert::lint_stages;
use crate::instructions::{Dockerfile, parse};
use crate::{ConvertOptions, Error, ErrorKind, Span};

pub(crate) use rules::{is_secret_name, port_warnings};

/// A build-check rule, named as in BuildKit (`docker build --check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    JsonArgsRecommended,
    ConsistentInstructionCasing,
    UndefinedVar,
    UndefinedArgInFrom,
    DuplicateStageName,
    ReservedStageName,
    StageNameCasing,
    WorkdirRelativePath,
    ExposeInvalidFormat,
    ExposeProtoCasing,
    LegacyKeyValueFormat,
    FromAsCasing,
    NoEmptyContinuation,
    MaintainerDeprecated,
    MultipleInstructionsDisallowed,
    InvalidDefaultArgInFrom,
    SecretsUsedInArgOrEnv,
    RedundantTargetPlatform,
    FromPlatformFlagConstDisallowed,
    CopyIgnoredFile,
    InvalidBaseImagePlatform,
}

impl Rule {
    pub const ALL: [Rule; 21] = [
        Rule::JsonArgsRecommended,
        Rule::ConsistentInstructionCasing,
        Rule::UndefinedVar,
        Rule::UndefinedArgInFrom,
        Rule::DuplicateStageName,
        Rule::ReservedStageName,
        Rule::StageNameCasing,
        Rule::WorkdirRelativePath,
        Rule::ExposeInvalidFormat,
        Rule::ExposeProtoCasing,
        Rule::LegacyKeyValueFormat,
        Rule::FromAsCasing,
        Rule::NoEmptyContinuation,
        Rule::MaintainerDeprecated,
        Rule::MultipleInstructionsDisallowed,
        Rule::InvalidDefaultArgInFrom,
        Rule::SecretsUsedInArgOrEnv,
        Rule::RedundantTargetPlatform,
        Rule::FromPlatformFlagConstDisallowed,
        Rule::CopyIgnoredFile,
        Rule::InvalidBaseImagePlatform,
    ];

    /// BuildKit's name for the rule, as used in `# check=skip=...`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::JsonArgsRecommended => "JSONArgsRecommended",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::ReservedStageName => "ReservedStageName",
            Rule::StageNameCasing => "StageNameCasing",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::ExposeInvalidFormat => "ExposeInvalidFormat",
            Rule::ExposeProtoCasing => "ExposeProtoCasing",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
            Rule::RedundantTargetPlatform => "RedundantTargetPlatform",
            Rule::FromPlatformFlagConstDisallowed => "FromPlatformFlagConstDisallowed",
            Rule::CopyIgnoredFile => "CopyIgnoredFile",
            Rule::InvalidBaseImagePlatform => "InvalidBaseImagePlatform",
        }
    }

    /// The rule's page in Docker's build-check reference.
    pub fn url(self) -> String {
        let mut slug = String::new();
        let name = self.name().replace("JSON", "Json");
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                slug.push('-');
            }
            slug.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
    }

    /// Case-sensitive lookup by BuildKit name.
    pub fn parse(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.name() == name)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A build-check finding: the Dockerfile works, but probably not as its author meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub rule: Rule,
    /// Lowercase, no trailing period, literals in backticks.
    pub message: String,
    pub span: Span,
    /// What to do about it.
    pub help: Option<String>,
}

impl Warning {
    pub(crate) fn new(rule: Rule, span: Span, message: impl Into<String>) -> Self {
        Warning {
            rule,
            message: message.into(),
            span,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The `# check=skip=Rule1,Rule2;error=true` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rule names not to report (unknown names are ignored, as BuildKit does).
    pub skip: Vec<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// `error=true`: warnings fail the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parses the value of a `check` directive (or of the `BUILDKIT_DOCKERFILE_CHECK`
    /// build argument), e.g. `skip=JSONArgsRecommended;error=true`.
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.splitn(2, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("invalid check option `{part}`"));
            };
            match key.trim() {
                "skip" => {
                    let value = value.trim();
                    if value == "all" {
                        config.skip_all = true;
                    } else {
                        config.skip = value.split(',').map(|r| r.trim().to_string()).collect();
                    }
                }
                "error" => {
                    config.error = match value.trim() {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                        other => {
                            return Err(format!(
                                "invalid check option `error={other}`: expected `true` or `false`"
                            ));
                        }
                    }
                }
                other => return Err(format!("invalid check option `{other}`")),
            }
        }
        Ok(config)
    }

    fn reports(&self, rule: Rule) -> bool {
        !self.skip_all && !self.skip.iter().any(|name| name == rule.name())
    }
}

/// What the build checks found, after `# check=` filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    /// In the order found: parse-time findings, then stage by stage.
    pub warnings: Vec<Warning>,
    pub config: CheckConfig,
    /// The source paths COPY and ADD read from the context, with their instructions.
    pub context_sources: Vec<(String, Span)>,
    /// The base images of the stages checked, with the platform each should have.
    pub base_images: Vec<BaseImageUse>,
}

/// A stage's base image and the platform the build expects of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImageUse {
    /// As the FROM line names it, variables expanded.
    pub reference: String,
    /// `os/arch[/variant]`: the stage's `--platform`, else the target platform.
    pub platform: String,
    pub span: Span,
}

impl Checks {
    /// `CopyIgnoredFile`: a COPY/ADD source the context's ignore file excludes (the copy
    /// then fails or silently copies less). Wildcard sources are left out: that some
    /// matches are ignored is what the ignore file is for. `is_excluded` takes the path
    /// relative to the context root, `/`-separated.
    pub fn check_ignored_sources(&mut self, is_excluded: impl Fn(&str) -> bool) {
        if !self.config.reports(Rule::CopyIgnoredFile) {
            return;
        }
        for (source, span) in &self.context_sources {
            if source.contains(['*', '?', '[']) {
                continue;
            }
            let path = source.trim_start_matches("./").trim_matches('/');
            if path.is_empty() || path == "." || !is_excluded(path) {
                continue;
            }
            self.warnings.push(
                Warning::new(
                    Rule::CopyIgnoredFile,
                    *span,
                    format!("`{source}` is excluded by .dockerignore"),
                )
                .with_help("remove its pattern from `.dockerignore`, or do not copy it"),
            );
        }
    }

    /// `InvalidBaseImagePlatform`: a base image whose platform is not the one the stage
    /// is built for (its programs would not run, or run emulated). `platform_of` gives the
    /// platform (`os/arch[/variant]`) of a base image the caller has, `None` otherwise.
    pub fn check_base_platforms(&mut self, platform_of: impl Fn(&str) -> Option<String>) {
        if !self.config.reports(Rule::InvalidBaseImagePlatform) {
            return;
        }
        for base in &self.base_images {
            let Some(actual) = platform_of(&base.reference) else {
                continue;
            };
            if same_platform(&actual, &base.platform) {
                continue;
            }
            self.warnings.push(
                Warning::new(
                    Rule::InvalidBaseImagePlatform,
                    base.span,
                    format!(
                        "base image `{}` is for platform {actual}, expected {} for this build",
                        base.reference, base.platform
                    ),
                )
                .with_help(format!(
                    "use an image (or a manifest of a multi-platform image) for {}",
                    base.platform
                )),
            );
        }
    }

    /// `error=true` and something was found: the build must fail.
    pub fn fail(&self) -> bool {
        self.config.error && !self.warnings.is_empty()
    }
}

/// Whether two `os/arch[/variant]` platforms are the same; a variant given on one side
/// only is the architecture's default (`linux/arm64` is `linux/arm64/v8`).
fn same_platform(a: &str, b: &str) -> bool {
    let split = |p: &str| -> (String, String, Option<String>) {
        let mut parts = p.split('/').map(str::to_ascii_lowercase);
        (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next(),
        )
    };
    let (a, b) = (split(a), split(b));
    a.0 == b.0 && a.1 == b.1 && (a.2.is_none() || b.2.is_none() || a.2 == b.2)
}

/// Which stages [`lint`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LintScope {
    /// Every stage, as `docker build --check` does when no target is given.
    #[default]
    AllStages,
    /// Only the stages the target needs, as a build does.
    Target,
}

/// Parses, converts and lints `text` without any base image config (bases are taken as
/// empty images), every stage included: what `rbuild check` does.
///
/// ```
/// let checks = rbuild_frontend::check("FROM busybox\nCMD echo hi\n")?;
/// assert_eq!(checks.warnings[0].rule.name(), "JSONArgsRecommended");
/// # Ok::<(), rbuild_frontend::Error>(())
/// ```
pub fn check(text: &str) -> Result<Checks, Error> {
    let df = parse(text)?;
    lint(
        &df,
        &ConvertOptions::default(),
        &BTreeMap::new(),
        LintScope::AllStages,
    )
}

/// Lints a parsed Dockerfile. Base images missing from `bases` are taken as empty images
/// (so variables their config would define may be reported as undefined). Fails like
/// [`crate::convert`] on an invalid file, and on an invalid `# check=` directive.
pub fn lint(
    df: &Dockerfile,
    opts: &ConvertOptions,
    bases: &dyn crate::BaseConfigs,
    scope: LintScope,
) -> Result<Checks, Error> {
    let config = check_config(df, opts)?;
    let mut warnings = df.warnings.clone();
    let findings = lint_stages(df, opts, bases, scope)?;
    warnings.extend(findings.warnings);
    warnings.retain(|warning| config.reports(warning.rule));
    Ok(Checks {
        warnings,
        config,
        context_sources: findings.context_sources,
        base_images: findings.base_images,
    })
}

/// The `# check=` directive, overridden by a `BUILDKIT_DOCKERFILE_CHECK` build argument.
fn check_config(df: &Dockerfile, opts: &ConvertOptions) -> Result<CheckConfig, Error> {
    if let Some(value) = opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        return CheckConfig::parse(value).map_err(|message| {
            Error::new(
                ErrorKind::InvalidValue,
                Span::default(),
                format!("build argument `BUILDKIT_DOCKERFILE_CHECK`: {message}"),
            )
        });
    }
    let Some(value) = &df.directives.check else {
        return Ok(CheckConfig::default());
    };
    CheckConfig::parse(value).map_err(|message| {
        Error::new(ErrorKind::Syntax, df.directives.check_span, message)
            .with_help("write `# check=skip=<Rule>,<Rule>;error=<true|false>`")
    })
}

/// Collects warnings while converting; does nothing when linting is off.
#[derive(Debug, Default)]
pub(crate) struct Lint {
    pub warnings: Vec<Warning>,
}

impl Lint {
    pub fn push(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }
}

#[cfg(test)]
mod tests;
