//! Conversion: a parsed Dockerfile, the build options and the base images' configs →
//! a [`BuildGraph`] holding only what the target stage needs, in topological order.

mod digest;
mod dispatch;
mod dump;
mod mounts;
mod ops;
mod plan;
mod values;

pub use dump::dump_graph;
pub use values::normalize_reference;

use std::collections::BTreeMap;

use crate::instructions::{Dockerfile, parse_trigger};
use crate::lint::{Lint, LintScope, Warning};
use crate::shell::ShellError;
use crate::{
    BuildGraph, CopyKind, CopyOp, CopySource, Error, ErrorKind, HistoryEntry, ImageConfig,
    ImageOutput, Op, OpId, OpKind, Span, StageId,
};

use plan::{Base, FromSource, Plan};

/// The default `PATH` a stage gets when its base sets none (as BuildKit does on Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How to convert a Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// `--build-arg` values; they apply only to ARGs the Dockerfile declares.
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (case-insensitive name); the last stage when `None`.
    pub target: Option<String>,
    /// The platform the image is for (`TARGETPLATFORM`): the platform of every stage that
    /// does not choose one with `FROM --platform`.
    pub platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`): this machine's.
    pub build_platform: Platform,
    /// `--build-context NAME=...`: what `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` read instead of an image or a stage of that name (a stage of
    /// that name is replaced).
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// What a named build context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`: that image, by normalized reference.
    Image(String),
    /// A local directory (the builder knows where): its files, as the build context's.
    Local,
}

/// The configs of the base images a conversion reads, by reference and the platform a
/// stage uses the image for (a `FROM --platform=$BUILDPLATFORM` stage and the target's
/// may use two platforms' images of one reference).
pub trait BaseConfigs {
    fn config(&self, reference: &str, platform: &Platform) -> Option<&ImageConfig>;
}

/// One config per reference, whatever the platform.
impl BaseConfigs for BTreeMap<String, ImageConfig> {
    fn config(&self, reference: &str, _: &Platform) -> Option<&ImageConfig> {
        self.get(reference)
    }
}

/// The platform the image is built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The machine rbuild was built for: rbuild builds for the platform it runs on.
impl Default for Platform {
    fn default() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }
}

/// Operating systems by Go's names (`GOOS`), to tell `os/arch` from `arch/variant`.
const KNOWN_OS: [&str; 14] = [
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "android",
    "ios",
    "aix",
    "dragonfly",
    "plan9",
    "wasip1",
];

/// Architectures by Go's names (`GOARCH`), as OCI images name them.
const KNOWN_ARCHITECTURES: [&str; 15] = [
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64",
    "ppc64le", "riscv64", "s390x", "sparc64", "wasm",
];

impl Platform {
    /// Parses `os/arch[/variant]` (or `arch` alone, on Linux) and normalizes it as
    /// containerd's matcher does: the architecture's other names (`x86_64`, `aarch64`,
    /// `armhf`) become the OCI ones, `arm` is `arm/v7`, and the default variants
    /// (`amd64/v1`, `arm64/v8`) are left out.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let lower = text.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if valid(arch) => ("linux", *arch, None),
            // `os/arch`, or `arch/variant` when the first is no operating system's name.
            [os, arch] if valid(os) && valid(arch) && KNOWN_OS.contains(os) => (*os, *arch, None),
            [arch, variant] if valid(arch) && valid(variant) => ("linux", *arch, Some(*variant)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                (*os, *arch, Some(*variant))
            }
            _ => {
                return Err(format!(
                    "`{text}` is not a platform: give `os/architecture[/variant]`, e.g. `linux/arm64`"
                ));
            }
        };
        let (architecture, implied) = match arch {
            "x86_64" | "x86-64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "armhf" => ("arm", Some("v7")),
            "armel" => ("arm", Some("v6")),
            "i386" | "i686" => ("386", None),
            other => (other, None),
        };
        if !KNOWN_ARCHITECTURES.contains(&architecture) {
            return Err(format!(
                "`{text}` is not a platform: `{architecture}` is no architecture (they are {})",
                KNOWN_ARCHITECTURES.join(", ")
            ));
        }
        let variant = match (architecture, variant.or(implied)) {
            ("amd64", Some("v1")) | ("arm64", Some("v8") | Some("8")) => None,
            ("arm", None) => Some("v7".to_owned()),
            ("arm", Some(v)) if !v.starts_with('v') => Some(format!("v{v}")),
            (_, variant) => variant.map(str::to_owned),
        };
        Ok(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// The external images (normalized references, e.g. `busybox:latest`,
/// `reg:5000/a/b:t`, `x@sha256:..`) the build needs: FROM bases, `COPY --from=<image>`
/// and `RUN --mount=from=<image>`,
/// only for stages the target needs, in order of first use.
///
/// `COPY --from` in ONBUILD triggers of base images cannot be known before the base
/// configs are loaded; `convert` reports such an image if its config is missing.
pub fn image_references(df: &Dockerfile, opts: &ConvertOptions) -> Result<Vec<String>, Error> {
    let plan = Plan::new(df, opts, None)?;
    let mut references: Vec<String> = Vec::new();
    let mut add = |reference: &str| {
        if !references.iter().any(|r| r == reference) {
            references.push(reference.to_string());
        }
    };
    for stage in df.stages.iter().filter(|s| plan.needed[s.index]) {
        if let Base::Image(reference) = &plan.bases[stage.index] {
            add(reference);
        }
        for instruction in &stage.instructions {
            for (from, span, verb) in plan::froms(instruction) {
                if let FromSource::Image(reference) =
                    plan.copy_source(df, stage.index, from, span, verb)?
                {
                    add(&reference);
                }
            }
        }
    }
    Ok(references)
}

/// The external images the build needs (see [`image_references`]), each with the
/// platforms it is needed for: a stage's own (`FROM --platform`), else the target's.
pub fn image_uses(
    df: &Dockerfile,
    opts: &ConvertOptions,
) -> Result<Vec<(String, Platform)>, Error> {
    let plan = Plan::new(df, opts, None)?;
    let mut uses: Vec<(String, Platform)> = Vec::new();
    let mut add = |reference: &str, platform: &Platform| {
        if !uses.iter().any(|(r, p)| r == reference && p == platform) {
            uses.push((reference.to_string(), platform.clone()));
        }
    };
    for stage in df.stages.iter().filter(|s| plan.needed[s.index]) {
        let platform = &plan.platforms[stage.index];
        if let Base::Image(reference) = &plan.bases[stage.index] {
            add(reference, platform);
        }
        for instruction in &stage.instructions {
            for (from, span, verb) in plan::froms(instruction) {
                if let FromSource::Image(reference) =
                    plan.copy_source(df, stage.index, from, span, verb)?
                {
                    add(&reference, platform);
                }
            }
        }
    }
    Ok(uses)
}

/// Converts `df` into a build graph. `bases` maps each reference [`image_references`]
/// returned to that image's config.
pub fn convert(
    df: &Dockerfile,
    opts: &ConvertOptions,
    bases: &dyn BaseConfigs,
) -> Result<BuildGraph, Error> {
    let plan = Plan::new(df, opts, Some(bases))?;
    let mut converter = Converter::new(df, opts, bases, &plan);
    converter.convert_stages(|index| plan.needed[index])?;
    Ok(converter.finish())
}

/// What converting for the build checks finds besides warnings: what the caller checks
/// with I/O the frontend does not do.
pub(crate) struct LintFindings {
    pub warnings: Vec<Warning>,
    /// The context paths COPY/ADD read, each with where it is named.
    pub context_sources: Vec<(String, Span)>,
    /// The base images of the stages converted, with the platform each should have.
    pub base_images: Vec<crate::lint::BaseImageUse>,
}

/// Converts for the build checks: every stage (or the ones the target needs), base
/// images without a config taken as empty images, and the warnings found on the way.
pub(crate) fn lint_stages(
    df: &Dockerfile,
    opts: &ConvertOptions,
    bases: &dyn BaseConfigs,
    scope: LintScope,
) -> Result<LintFindings, Error> {
    let plan = Plan::new(df, opts, Some(bases))?;
    let mut lint = Lint::default();
    plan::lint_from_lines(df, opts, &mut lint);
    let mut converter = Converter::new(df, opts, bases, &plan);
    converter.lint = Some(lint);
    converter.convert_stages(|index| scope == LintScope::AllStages || plan.needed[index])?;
    // What COPY/ADD read from the context, for `CopyIgnoredFile` (the caller has the
    // `.dockerignore`; the frontend does no I/O).
    let context_sources = converter
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Copy(copy) if matches!(copy.source, CopySource::Context) => Some(
                copy.sources
                    .iter()
                    .filter(|source| !crate::CopyOp::is_url(source))
                    .map(|source| (source.clone(), op.span))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    // The platform each base image should have: the stage's `--platform` when it expands
    // to one, else the target's.
    let lexer = crate::shell::Lexer::new(df.directives.escape);
    let base_images = df
        .stages
        .iter()
        .zip(&plan.bases)
        .enumerate()
        .filter(|(index, _)| scope == LintScope::AllStages || plan.needed[*index])
        .filter_map(|(_, (stage, base))| {
            let plan::Base::Image(reference) = base else {
                return None;
            };
            let platform = stage
                .platform
                .as_ref()
                .and_then(|p| lexer.process_word(p, &plan.meta).ok())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| opts.platform.to_string());
            Some(crate::lint::BaseImageUse {
                reference: reference.clone(),
                platform,
                span: stage.base_span,
            })
        })
        .collect();
    let warnings = converter.lint.map(|lint| lint.warnings).unwrap_or_default();
    Ok(LintFindings {
        warnings,
        context_sources,
        base_images,
    })
}

/// A stage being converted: the last op of its FROM chain and the image so far.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub id: StageId,
    pub root: OpId,
    pub config: ImageConfig,
    pub history: Vec<HistoryEntry>,
    /// The last `MAINTAINER` along the FROM chain (the image's `author`).
    pub author: Option<String>,
    /// The external image at the bottom of the chain.
    pub base: Option<String>,
    /// ARGs in scope, in declaration order: `None` for declared but unset.
    pub args: Vec<(String, Option<String>)>,
    /// The variables expansion sees: ARGs with a value, overridden by the config's Env.
    /// Kept up to date by `set_env` and `declare_arg`.
    pub vars: BTreeMap<String, String>,
    /// Whether CMD was set in this stage (an inherited CMD is cleared by ENTRYPOINT).
    pub cmd_set: bool,
    /// A WORKDIR was set in this Dockerfile along the FROM chain (`WorkdirRelativePath`).
    pub workdir_set: bool,
    /// The last CMD, ENTRYPOINT and HEALTHCHECK of this stage
    /// (`MultipleInstructionsDisallowed`).
    pub last_cmd: Option<Span>,
    pub last_entrypoint: Option<Span>,
    pub last_healthcheck: Option<Span>,
}

impl StageState {
    fn new(id: StageId, root: OpId, config: ImageConfig, base: Option<String>) -> StageState {
        let vars = config
            .env
            .iter()
            .map(|entry| {
                let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                (key.to_string(), value.to_string())
            })
            .collect();
        StageState {
            id,
            root,
            config,
            history: Vec::new(),
            author: None,
            base,
            args: Vec::new(),
            vars,
            cmd_set: false,
            workdir_set: false,
            last_cmd: None,
            last_entrypoint: None,
            last_healthcheck: None,
        }
    }

    /// The environment of a RUN: the config's Env, then ARGs in scope not overridden by ENV.
    pub fn exec_env(&self) -> Vec<String> {
        let mut env = self.config.env.clone();
        let keys: std::collections::BTreeSet<&str> = self
            .config
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
            .collect();
        for (name, value) in self.args.iter().filter_map(|(n, v)| Some((n, v.as_ref()?))) {
            if !keys.contains(name.as_str()) {
                env.push(format!("{name}={value}"));
            }
        }
        env
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.config.set_env(key, value);
        self.vars.insert(key.to_string(), value.to_string());
    }

    pub fn declare_arg(&mut self, name: &str, value: Option<String>) {
        if self.config.env_value(name).is_none() {
            match &value {
                Some(value) => self.vars.insert(name.to_string(), value.clone()),
                None => self.vars.remove(name),
            };
        }
        match self.args.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = value,
            None => self.args.push((name.to_string(), value)),
        }
    }

    pub fn commit(&mut self, created_by: String, empty_layer: bool) {
        self.history.push(HistoryEntry {
            created_by,
            comment: Some("rbuild.dockerfile.v0".to_string()),
            empty_layer,
        });
    }
}

pub(crate) struct Converter<'a> {
    pub df: &'a Dockerfile,
    pub opts: &'a ConvertOptions,
    bases: &'a dyn BaseConfigs,
    pub plan: &'a Plan,
    ops: Vec<Op>,
    /// Converted stages, by index.
    pub stages: Vec<Option<StageState>>,
    /// Set when linting: warnings go here, and a base image without a config is taken as
    /// an empty image instead of failing.
    pub lint: Option<Lint>,
}

impl<'a> Converter<'a> {
    fn new(
        df: &'a Dockerfile,
        opts: &'a ConvertOptions,
        bases: &'a dyn BaseConfigs,
        plan: &'a Plan,
    ) -> Self {
        Converter {
            df,
            opts,
            bases,
            plan,
            ops: Vec::new(),
            stages: vec![None; df.stages.len()],
            lint: None,
        }
    }

    /// Converts the stages `wanted` selects, in index order: dependencies are always
    /// earlier stages, so that is a topological order.
    fn convert_stages(&mut self, wanted: impl Fn(usize) -> bool) -> Result<(), Error> {
        for index in 0..self.df.stages.len() {
            if wanted(index) {
                let state = self.convert_stage(index)?;
                self.stages[index] = Some(state);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> BuildGraph {
        let target = self
            .stages
            .get_mut(self.plan.target)
            .and_then(Option::take)
            .expect("the target stage is always converted");
        BuildGraph {
            ops: self.ops,
            output: ImageOutput {
                root: target.root,
                config: target.config,
                history: target.history,
                author: target.author,
                base: target.base,
            },
        }
    }

    pub fn warn(&mut self, warning: Warning) {
        if let Some(lint) = &mut self.lint {
            lint.push(warning);
        }
    }

    /// Appends an op; its inputs must already be in the graph.
    pub fn add_op(
        &mut self,
        kind: OpKind,
        span: Span,
        stage: &StageId,
        description: String,
    ) -> OpId {
        // The stage's platform: ops of a `FROM --platform=$BUILDPLATFORM` stage are the same
        // ops whatever the target.
        let platform = self.plan.platforms[stage.index].clone();
        let digest = digest::op_digest(&kind, &self.ops, &platform);
        self.ops.push(Op {
            kind,
            span,
            stage: stage.clone(),
            description,
            digest,
            platform,
        });
        OpId(self.ops.len() - 1)
    }

    fn convert_stage(&mut self, index: usize) -> Result<StageState, Error> {
        let df = self.df;
        let stage = &df.stages[index];
        let id = StageId {
            index,
            name: stage.name.clone(),
        };
        let mut triggers = Vec::new();
        let mut state = match &self.plan.bases[index] {
            Base::Scratch => {
                let root = self.add_op(OpKind::Scratch, stage.span, &id, stage.text.clone());
                StageState::new(id, root, ImageConfig::default(), None)
            }
            Base::Image(reference) => {
                let platform = &self.plan.platforms[index];
                let config = match self.bases.config(reference, platform) {
                    Some(config) => config.clone(),
                    None if self.lint.is_some() => ImageConfig::default(),
                    None => {
                        return Err(Error::new(
                            ErrorKind::MissingBaseConfig,
                            stage.base_span,
                            format!("no config was given for base image `{reference}`"),
                        )
                        .with_help(
                            "pass the configs of all references `image_references` returns",
                        ));
                    }
                };
                let kind = OpKind::Image {
                    reference: reference.clone(),
                };
                let root = self.add_op(kind, stage.span, &id, stage.text.clone());
                StageState::new(id, root, config, Some(reference.clone()))
            }
            // `FROM NAME` of a local named context: its files as the filesystem (as BuildKit
            // does), copied onto an empty one: one layer, owned by root.
            Base::Local(name) => {
                let scratch = self.add_op(OpKind::Scratch, stage.span, &id, stage.text.clone());
                let copy = OpKind::Copy(CopyOp {
                    rootfs: scratch,
                    source: CopySource::Named(name.clone()),
                    kind: CopyKind::Copy,
                    sources: vec![".".to_owned()],
                    destination: "/".to_owned(),
                    chown: None,
                    chmod: None,
                    link: false,
                    parents: false,
                    excludes: Vec::new(),
                    checksum: None,
                    unpack: None,
                    inline: Vec::new(),
                });
                let root = self.add_op(copy, stage.span, &id, stage.text.clone());
                let mut state = StageState::new(id, root, ImageConfig::default(), None);
                state.commit(format!("FROM {name} (build context)"), false);
                state
            }
            Base::Stage(base) => {
                let mut state = self.stages[*base]
                    .clone()
                    .expect("base stages are converted before the stages using them");
                state.id = id;
                state.cmd_set = false;
                state.last_cmd = None;
                state.last_entrypoint = None;
                state.last_healthcheck = None;
                state
            }
        };
        // Triggers run now and are not passed on: those of a base image's config, or the
        // ONBUILD instructions of a base stage (as BuildKit does).
        triggers.append(&mut state.config.on_build);
        if state.config.env_value("PATH").is_none() {
            state.set_env("PATH", DEFAULT_PATH);
        }
        for trigger in &triggers {
            let instruction = parse_trigger(trigger, stage.span)?;
            self.dispatch(&mut state, &instruction)?;
        }
        for instruction in &stage.instructions {
            self.dispatch(&mut state, instruction)?;
        }
        Ok(state)
    }

    /// The final state of a stage a `COPY --from` reads.
    pub fn stage_root(&self, index: usize) -> OpId {
        self.stages[index]
            .as_ref()
            .expect("stages a needed stage copies from are converted before it")
            .root
    }
}

/// The error for a word that failed to expand.
pub(crate) fn expansion_error(error: ShellError, word: &str, span: Span) -> Error {
    let kind = ErrorKind::Expansion;
    match &error {
        ShellError::Required { name, .. } => Error::new(kind, span, error.to_string())
            .with_help(format!(
                "set `{name}` before this instruction: `--build-arg {name}=<value>` for an `ARG`, or `ENV {name}=<value>`"
            )),
        ShellError::UnterminatedQuote { kind: quote } => {
            let quote = if *quote == "single" { "'" } else { "\"" };
            Error::new(kind, span, format!("failed to expand `{word}`: {error}"))
                .with_help(format!("close the `{quote}`, or escape it with a backslash"))
        }
        ShellError::TooDeep => Error::new(kind, span, error.to_string()),
        _ => Error::new(kind, span, format!("failed to expand `{word}`: {error}")),
    }
}

#[cfg(test)]
mod semantics_tests;
#[cfg(test)]
mod tests;
