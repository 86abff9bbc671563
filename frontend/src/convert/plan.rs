//! Resolving stages before converting them: global ARGs, what each FROM and each
//! `COPY --from` refers to, the target, and which stages the target needs.

use std::collections::BTreeMap;

use crate::instructions::{Dockerfile, Instruction, InstructionKind, Stage, parse_trigger};
use crate::lint::{Lint, Rule, Warning};
use crate::shell::{Lexer, Recording};
use crate::{Error, ErrorKind, Platform, Span};

use super::values::normalize_reference;
use super::{BaseConfigs, ConvertOptions, NamedContext, expansion_error};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    Scratch,
    Stage(usize),
    Image(String),
    /// The files of a local named context, by name.
    Local(String),
}

/// What a `COPY --from` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromSource {
    Stage(usize),
    Image(String),
    /// A local named context, by name.
    Local(String),
}

/// The named context `name` (as written in FROM or `--from`, after expansion) stands
/// for, if any: by the name itself, else (for an image name) by its familiar form without
/// `:latest`, so that a context named `alpine` serves `FROM alpine:latest` too.
fn named_context<'a>(
    contexts: &'a BTreeMap<String, NamedContext>,
    name: &str,
) -> Option<(&'a String, &'a NamedContext)> {
    if contexts.is_empty() {
        return None;
    }
    let familiar = normalize_reference(name)
        .ok()
        .map(|reference| reference.trim_end_matches(":latest").to_owned());
    [
        Some(name.to_owned()),
        Some(name.to_ascii_lowercase()),
        familiar,
    ]
    .into_iter()
    .flatten()
    .find_map(|candidate| contexts.get_key_value(&candidate))
}

#[derive(Debug)]
pub(crate) struct Plan {
    /// Global ARG values (after `--build-arg`) and the predefined platform ARGs: the
    /// variables of FROM lines and `COPY --from`.
    pub meta: BTreeMap<String, String>,
    pub bases: Vec<Base>,
    /// Each stage's platform: its `FROM --platform`, else its base stage's, else the
    /// target's.
    pub platforms: Vec<Platform>,
    pub named: BTreeMap<String, NamedContext>,
    pub target: usize,
    /// Stages the target needs, by index.
    pub needed: Vec<bool>,
}

impl Plan {
    pub fn new(
        df: &Dockerfile,
        opts: &ConvertOptions,
        configs: Option<&dyn BaseConfigs>,
    ) -> Result<Plan, Error> {
        let lexer = Lexer::new(df.directives.escape);
        let meta = meta_args(df, opts, &lexer)?;
        let mut bases = Vec::new();
        let mut platforms: Vec<Platform> = Vec::new();
        for stage in &df.stages {
            let base = resolve_base(df, stage, &meta, &lexer, &opts.named_contexts)?;
            let chosen = match &stage.platform {
                Some(flag) => stage_platform(flag, stage, &meta, &lexer)?,
                None => None,
            };
            let platform = match (chosen, &base) {
                (Some(platform), _) => platform,
                (None, Base::Stage(index)) => platforms[*index].clone(),
                (None, _) => opts.platform.clone(),
            };
            bases.push(base);
            platforms.push(platform);
        }
        let target = match &opts.target {
            None => df.stages.len().saturating_sub(1),
            Some(target) => df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(target.to_ascii_lowercase().as_str()))
                .ok_or_else(|| unknown_target(df, target))?,
        };
        let mut plan = Plan {
            meta,
            bases,
            platforms,
            named: opts.named_contexts.clone(),
            target,
            needed: vec![false; df.stages.len()],
        };
        let mut stack = vec![target];
        while let Some(index) = stack.pop() {
            if std::mem::replace(&mut plan.needed[index], true) {
                continue;
            }
            for dependency in plan.dependencies(df, index, configs)? {
                if !plan.needed[dependency] {
                    stack.push(dependency);
                }
            }
        }
        Ok(plan)
    }

    /// The stages stage `index` reads from: its base and its `COPY --from` stages
    /// (including those of ONBUILD triggers of its base image, when configs are known).
    fn dependencies(
        &self,
        df: &Dockerfile,
        index: usize,
        configs: Option<&dyn BaseConfigs>,
    ) -> Result<Vec<usize>, Error> {
        let stage = &df.stages[index];
        let mut dependencies = Vec::new();
        let mut triggers = Vec::new();
        match &self.bases[index] {
            Base::Stage(base) => {
                dependencies.push(*base);
                // The base stage's own ONBUILD instructions run in this stage.
                for instruction in &df.stages[*base].instructions {
                    if let InstructionKind::Onbuild(onbuild) = &instruction.kind {
                        triggers.push((*onbuild.trigger).clone());
                    }
                }
            }
            Base::Image(reference) => {
                let on_build = configs
                    .and_then(|c| c.config(reference, &self.platforms[index]))
                    .map(|c| c.on_build.as_slice());
                for trigger in on_build.unwrap_or_default() {
                    triggers.push(parse_trigger(trigger, stage.span)?);
                }
            }
            Base::Scratch | Base::Local(_) => {}
        }
        for instruction in triggers.iter().chain(&stage.instructions) {
            for (from, span, verb) in froms(instruction) {
                if let FromSource::Stage(source) = self.copy_source(df, index, from, span, verb)? {
                    dependencies.push(source);
                }
            }
        }
        Ok(dependencies)
    }

    /// Resolves `--from=<from>` in stage `current`: a stage name, a stage index, or else
    /// an image. Only stages defined before the current one can be used. `verb` (`copy`,
    /// `mount`) is for messages.
    pub fn copy_source(
        &self,
        df: &Dockerfile,
        current: usize,
        from: &str,
        span: Span,
        verb: &str,
    ) -> Result<FromSource, Error> {
        let lexer = Lexer::new(df.directives.escape);
        let value = lexer
            .process_word(from, &self.meta)
            .map_err(|e| expansion_error(e, from, span))?;
        // A named context replaces a stage or an image of its name.
        match named_context(&self.named, &value) {
            Some((_, NamedContext::Image(reference))) => {
                return Ok(FromSource::Image(reference.clone()));
            }
            Some((name, NamedContext::Local)) => return Ok(FromSource::Local(name.clone())),
            None => {}
        }
        let index = if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
            match value.parse::<usize>().ok().filter(|&i| i < df.stages.len()) {
                Some(index) => Some(index),
                None => {
                    return Err(Error::new(
                        ErrorKind::StageOrder,
                        span,
                        format!("invalid stage index `{value}`"),
                    )
                    .with_help(format!("the dockerfile has {} stages", df.stages.len())));
                }
            }
        } else {
            // With duplicate names the last stage of that name wins, as in BuildKit.
            let name = value.to_ascii_lowercase();
            df.stages
                .iter()
                .rposition(|s| s.name.as_deref() == Some(name.as_str()))
        };
        match index {
            Some(index) if index >= current => {
                let current_name = df.stages[current].name.as_deref().unwrap_or("");
                let help = if index == current {
                    format!(
                        "a stage cannot {verb} from itself; {verb} from an earlier stage or an image"
                    )
                } else {
                    format!(
                        "a stage can {verb} only from stages above it: move stage `{value}` before this one"
                    )
                };
                Err(Error::new(
                    ErrorKind::StageOrder,
                    span,
                    format!(
                        "cannot {verb} from stage `{value}`, it needs to be defined before current stage `{}`",
                        if current_name.is_empty() {
                            current.to_string()
                        } else {
                            current_name.to_string()
                        }
                    ),
                )
                .with_help(help))
            }
            Some(index) => Ok(FromSource::Stage(index)),
            None => normalize_reference(&value)
                .map(FromSource::Image)
                .map_err(|message| Error::new(ErrorKind::InvalidReference, span, message)),
        }
    }
}

/// The `--from`s an instruction reads, with where they are and what it does with them:
/// COPY's, and those of RUN's mounts that read one.
pub(crate) fn froms(instruction: &Instruction) -> Vec<(&str, Span, &'static str)> {
    match &instruction.kind {
        InstructionKind::Copy(copy) => copy
            .from
            .iter()
            .map(|(from, span)| (from.as_str(), *span, "copy"))
            .collect(),
        InstructionKind::Run(run) => run
            .mounts
            .iter()
            .filter(|mount| mount.reads_from())
            .filter_map(|mount| Some((mount.from()?, mount.span, "mount")))
            .collect(),
        _ => Vec::new(),
    }
}

/// The predefined ARGs of the global scope: the platform ARGs (`TARGET*` of the image's
/// platform, `BUILD*` of the machine's) and `TARGETSTAGE`. `--build-arg` overrides them,
/// as in BuildKit.
fn predefined_args(df: &Dockerfile, opts: &ConvertOptions) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, platform) in [("TARGET", &opts.platform), ("BUILD", &opts.build_platform)] {
        args.insert(format!("{prefix}PLATFORM"), platform.to_string());
        args.insert(format!("{prefix}OS"), platform.os.clone());
        args.insert(format!("{prefix}OSVERSION"), String::new());
        args.insert(format!("{prefix}ARCH"), platform.architecture.clone());
        args.insert(
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        );
    }
    let target = match &opts.target {
        Some(target) => target.clone(),
        None => df
            .stages
            .last()
            .and_then(|stage| stage.name.clone())
            // As BuildKit: an unnamed last stage is the target `default`.
            .unwrap_or_else(|| "default".to_string()),
    };
    args.insert("TARGETSTAGE".to_string(), target);
    for value in args.iter_mut() {
        if let Some(overridden) = opts.build_args.get(value.0) {
            *value.1 = overridden.clone();
        }
    }
    args
}

fn meta_args(
    df: &Dockerfile,
    opts: &ConvertOptions,
    lexer: &Lexer,
) -> Result<BTreeMap<String, String>, Error> {
    let mut meta = predefined_args(df, opts);
    for instruction in &df.global_args {
        let InstructionKind::Arg(decls) = &instruction.kind else {
            continue;
        };
        for decl in decls {
            let value = match (opts.build_args.get(&decl.name), &decl.default) {
                (Some(value), _) => Some(value.clone()),
                (None, Some(default)) => Some(
                    lexer
                        .process_word(default, &meta)
                        .map_err(|e| expansion_error(e, default, instruction.args_span))?,
                ),
                (None, None) => None,
            };
            if let Some(value) = value {
                meta.insert(decl.name.clone(), value);
            }
        }
    }
    Ok(meta)
}

/// The build checks of FROM lines: `UndefinedArgInFrom` (a variable that is neither a
/// global ARG nor predefined), `InvalidDefaultArgInFrom` (without `--build-arg`s the
/// base name is empty or invalid) and the two `--platform` checks. Expansion errors are
/// left to the conversion.
pub(crate) fn lint_from_lines(df: &Dockerfile, opts: &ConvertOptions, lint: &mut Lint) {
    let lexer = Lexer::new(df.directives.escape);
    let declared: Vec<&str> = df
        .global_args
        .iter()
        .filter_map(|instruction| match &instruction.kind {
            InstructionKind::Arg(decls) => Some(decls.iter().map(|d| d.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    let Ok(meta) = meta_args(df, opts, &lexer) else {
        return;
    };
    let defaults_only = ConvertOptions {
        build_args: BTreeMap::new(),
        ..opts.clone()
    };
    let defaults = meta_args(df, &defaults_only, &lexer).ok();
    let mut known: Vec<&str> = meta.keys().map(String::as_str).collect();
    known.extend(&declared);
    for stage in &df.stages {
        if let Some(platform) = &stage.platform {
            lint_platform_flag(stage, platform, lint);
        }
        let words = std::iter::once((&stage.base, stage.base_span))
            .chain(stage.platform.iter().map(|p| (p, stage.span)));
        for (word, span) in words {
            let recording = Recording::new(&meta);
            if lexer.process_word(word, &recording).is_err() {
                continue;
            }
            for name in recording.missing.into_inner() {
                if declared.contains(&name.as_str()) {
                    continue;
                }
                let warning = Warning::new(
                    Rule::UndefinedArgInFrom,
                    span,
                    format!("`FROM` argument `{name}` is not declared"),
                );
                lint.push(match crate::error::suggest(&name, &known) {
                    Some(known) => warning.with_help(format!("did you mean `{known}`?")),
                    None => warning.with_help(format!(
                        "declare it with `ARG {name}=<default>` before the first `FROM`"
                    )),
                });
            }
        }
        let Some(defaults) = &defaults else { continue };
        let Ok(name) = lexer.process_word(&stage.base, defaults) else {
            continue;
        };
        if name.is_empty()
            || (!name.eq_ignore_ascii_case("scratch") && normalize_reference(&name).is_err())
        {
            lint.push(
                Warning::new(
                    Rule::InvalidDefaultArgInFrom,
                    stage.base_span,
                    format!(
                        "without build arguments, `{}` expands to the invalid base name `{name}`",
                        stage.base
                    ),
                )
                .with_help(
                    "give the global `ARG`s it uses default values that make a valid image name",
                ),
            );
        }
    }
}

/// `RedundantTargetPlatform`: `--platform=$TARGETPLATFORM` is what FROM does anyway.
/// `FromPlatformFlagConstDisallowed`: a constant platform pins the stage to one platform,
/// which is fine only for a stage whose name says so (`AS build_arm64`), the way
/// per-architecture stages are picked with `FROM build_${TARGETARCH}`.
fn lint_platform_flag(stage: &Stage, platform: &str, lint: &mut Lint) {
    let unquoted = platform.trim_matches('"');
    if unquoted == "$TARGETPLATFORM" || unquoted == "${TARGETPLATFORM}" {
        lint.push(
            Warning::new(
                Rule::RedundantTargetPlatform,
                stage.span,
                format!("setting the platform to the predefined `{unquoted}` in `FROM` is redundant: it is the default"),
            )
            .with_help("remove the `--platform` flag"),
        );
        return;
    }
    if platform.contains('$') {
        return;
    }
    let name = stage.name.as_deref().unwrap_or_default();
    let named_for_it = unquoted
        .to_ascii_lowercase()
        .split('/')
        .filter(|part| !part.is_empty())
        .any(|part| name.contains(part));
    if !named_for_it {
        lint.push(
            Warning::new(
                Rule::FromPlatformFlagConstDisallowed,
                stage.span,
                format!("the `FROM --platform` flag should not use the constant value `{unquoted}`"),
            )
            .with_help(
                "leave `--platform` out (or use `$BUILDPLATFORM`), or name the stage after the platform, e.g. `AS build_arm64`",
            ),
        );
    }
}

/// A stage's `FROM --platform`, expanded with the global ARGs and parsed; `None` when it
/// expands to nothing (an undefined variable, which the build checks report), as if it
/// were not given.
fn stage_platform(
    flag: &str,
    stage: &Stage,
    meta: &BTreeMap<String, String>,
    lexer: &Lexer,
) -> Result<Option<Platform>, Error> {
    let expanded = lexer
        .process_word(flag, meta)
        .map_err(|e| expansion_error(e, flag, stage.span))?;
    if expanded.trim().is_empty() {
        return Ok(None);
    }
    Platform::parse(&expanded).map(Some).map_err(|message| {
        Error::new(
            ErrorKind::InvalidFlag,
            stage.span,
            format!("FROM --platform: {message}"),
        )
    })
}

fn resolve_base(
    df: &Dockerfile,
    stage: &Stage,
    meta: &BTreeMap<String, String>,
    lexer: &Lexer,
    named: &BTreeMap<String, NamedContext>,
) -> Result<Base, Error> {
    let name = lexer
        .process_word(&stage.base, meta)
        .map_err(|e| expansion_error(e, &stage.base, stage.base_span))?;
    if name.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidReference,
            stage.base_span,
            format!("base name `{}` expands to an empty string", stage.base),
        )
        .with_help("set the variable with `ARG` before the first `FROM`, or with `--build-arg`"));
    }
    if name.eq_ignore_ascii_case("scratch") {
        return Ok(Base::Scratch);
    }
    // A named context replaces a stage or an image of its name.
    match named_context(named, &name) {
        Some((_, NamedContext::Image(reference))) => return Ok(Base::Image(reference.clone())),
        Some((name, NamedContext::Local)) => return Ok(Base::Local(name.clone())),
        None => {}
    }
    let lower = name.to_ascii_lowercase();
    // Only earlier stages can be a base; a later stage of that name is an image name.
    if let Some(index) = df.stages[..stage.index]
        .iter()
        .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Ok(Base::Stage(index));
    }
    normalize_reference(&name)
        .map(Base::Image)
        .map_err(|message| Error::new(ErrorKind::InvalidReference, stage.base_span, message))
}

fn unknown_target(df: &Dockerfile, target: &str) -> Error {
    let names: Vec<String> = df
        .stages
        .iter()
        .filter_map(|s| s.name.as_ref().map(|n| format!("`{n}`")))
        .collect();
    let error = Error::new(
        ErrorKind::UnknownTarget,
        Span::default(),
        format!("target stage `{target}` could not be found"),
    );
    if names.is_empty() {
        error
            .with_help("the dockerfile has no named stages; name one with `FROM <image> AS <name>`")
    } else {
        error.with_help(format!("named stages are {}", names.join(", ")))
    }
}
