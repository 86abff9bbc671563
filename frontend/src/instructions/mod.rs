//! Typed instructions: the syntax nodes given their meaning, validated (argument counts,
//! known flags, ONBUILD triggers) and grouped into stages. Values are kept as written;
//! variable expansion happens during conversion, where the variables are known.

pub(crate) mod duration;
mod flags;
pub(crate) mod mount;
mod parse;

use crate::lint::{CheckConfig, Warning, syntax::parse_warnings};
use crate::syntax::{self, Directives, Heredoc, Keyword};
use crate::{Error, ErrorKind, HealthConfig, NetworkMode, Span};

pub use mount::RunMount;
pub(crate) use parse::instruction_from_node;

/// A parsed Dockerfile: its directives, the ARGs before the first FROM, and its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// `ARG`s before the first `FROM`: usable in FROM lines, and in stages that redeclare
    /// them with a value-less `ARG name`.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Parse-time build-check findings, before `# check=` filtering.
    pub(crate) warnings: Vec<Warning>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 0-based position in the Dockerfile.
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The base as written (before expansion): an image reference, a stage name or `scratch`.
    pub base: String,
    pub base_span: Span,
    /// `--platform`, as written.
    pub platform: Option<String>,
    /// The FROM instruction.
    pub span: Span,
    /// The FROM line, keyword upper-cased.
    pub text: String,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub kind: InstructionKind,
    pub span: Span,
    pub keyword_span: Span,
    /// Where the arguments (after the flags) are.
    pub args_span: Span,
    /// The instruction text with continuations joined, keyword upper-cased: `RUN echo $A`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// SHELL's JSON array.
    Shell(Vec<String>),
    Env(Vec<Pair>),
    Label(Vec<Pair>),
    Arg(Vec<ArgDecl>),
    Copy(Copy),
    Add(Copy),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    Expose(Vec<String>),
    StopSignal(String),
    Maintainer(String),
    Healthcheck(HealthConfig),
    Onbuild(Onbuild),
}

/// RUN, CMD and ENTRYPOINT arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// JSON form: the argv, used as is.
    Exec(Vec<String>),
    /// Shell form: run with the stage's SHELL.
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
    pub network: NetworkMode,
    /// `--security=insecure`.
    pub insecure: bool,
    /// `--mount`s, in order.
    pub mounts: Vec<RunMount>,
}

/// An ENV or LABEL `key=value`, both still to be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form (the `LegacyKeyValueFormat` check).
    pub legacy: bool,
}

/// An `ARG name[=default]`; the default is still to be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// `--from`, as written, and where it is.
    pub from: Option<(String, Span)>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// `--link`: the layer is made on an empty filesystem and stacked on the parent.
    pub link: bool,
    /// `--parents`: sources keep their parent directories (below a `/./` pivot, if any).
    pub parents: bool,
    /// `--exclude` patterns, as written.
    pub excludes: Vec<String>,
    /// ADD `--checksum`, as written, and where the flag is.
    pub checksum: Option<(String, Span)>,
    /// ADD `--unpack`: `None` when not given (local archives are unpacked, downloads not).
    pub unpack: Option<bool>,
    /// ADD `--keep-git-dir`: a git source keeps its `.git` directory.
    pub keep_git_dir: bool,
    /// Source paths as written (heredoc sources are in `inline`).
    pub sources: Vec<String>,
    pub inline: Vec<InlineSource>,
    pub destination: String,
}

/// A `COPY <<EOF dest` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    pub name: String,
    /// The body, `<<-` tab stripping applied.
    pub content: String,
    /// Variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as stored in the image config: the text after `ONBUILD`, with any
    /// heredoc bodies appended.
    pub expression: String,
    pub trigger: Box<Instruction>,
}

/// What one syntax node turns into.
pub(crate) enum Parsed {
    From(Stage),
    Instruction(Instruction),
}

/// Parses a Dockerfile into stages.
pub fn parse(text: &str) -> Result<Dockerfile, Error> {
    let tree = syntax::parse(text)?;
    if let Some(check) = &tree.directives.check {
        // As BuildKit: a `check` directive that does not parse fails the build.
        CheckConfig::parse(check).map_err(|message| {
            Error::new(ErrorKind::Syntax, tree.directives.check_span, message)
                .with_help("write `# check=skip=<Rule>,<Rule>;error=<true|false>`")
        })?;
    }
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &tree.nodes {
        match instruction_from_node(node, stages.len())? {
            Parsed::From(stage) => {
                stages.push(stage);
            }
            Parsed::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None if matches!(instruction.kind, InstructionKind::Arg(_)) => {
                    global_args.push(instruction)
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::InstructionBeforeFrom,
                        instruction.keyword_span,
                        format!("`{}` comes before the first `FROM`", node.keyword),
                    )
                    .with_help("only `ARG` may come before the first `FROM`"));
                }
            },
        }
    }
    if stages.is_empty() {
        let span = tree.nodes.first().map_or(Span::default(), |n| n.span);
        return Err(Error::new(
            ErrorKind::NoStages,
            span,
            "the dockerfile has no `FROM` instruction",
        )
        .with_help("start a stage with `FROM <image>` or `FROM scratch`"));
    }
    Ok(Dockerfile {
        warnings: parse_warnings(&tree.nodes),
        directives: tree.directives,
        global_args,
        stages,
    })
}

/// Parses the text of one ONBUILD trigger from a base image's config.
pub(crate) fn parse_trigger(text: &str, span: Span) -> Result<Instruction, Error> {
    let tree = syntax::parse(text).map_err(|e| at_trigger(e, text, span))?;
    let [node] = tree.nodes.as_slice() else {
        return Err(Error::new(
            ErrorKind::InvalidOnbuild,
            span,
            format!("the base image's `ONBUILD` trigger `{text}` is not a single instruction"),
        ));
    };
    if matches!(
        node.keyword,
        Keyword::Onbuild | Keyword::From | Keyword::Maintainer
    ) {
        return Err(forbidden_trigger(node.keyword, span));
    }
    match instruction_from_node(node, 1).map_err(|e| at_trigger(e, text, span))? {
        Parsed::Instruction(instruction) => Ok(Instruction {
            span,
            keyword_span: span,
            args_span: span,
            ..instruction
        }),
        Parsed::From(_) => Err(forbidden_trigger(Keyword::From, span)),
    }
}

fn at_trigger(error: Error, text: &str, span: Span) -> Error {
    Error::new(
        error.kind(),
        span,
        format!("in the base image's `ONBUILD {text}`: {}", error.message()),
    )
}

pub(crate) fn forbidden_trigger(keyword: Keyword, span: Span) -> Error {
    let message = if keyword == Keyword::Onbuild {
        "chaining `ONBUILD` via `ONBUILD ONBUILD` isn't allowed".to_string()
    } else {
        format!("`{keyword}` isn't allowed as an `ONBUILD` trigger")
    };
    Error::new(ErrorKind::InvalidOnbuild, span, message)
        .with_help("`ONBUILD` can wrap any instruction except `FROM`, `MAINTAINER` and `ONBUILD`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stages() {
        let df = parse("ARG V=1\nFROM a:$V AS Build\nRUN x\nFROM build\nCMD y\n").unwrap();
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].base, "a:$V");
        assert_eq!(df.stages[1].instructions.len(), 1);
    }

    #[test]
    fn no_from_is_an_error() {
        let error = parse("ARG a\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoStages);
        let error = parse("RUN x\nFROM a\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InstructionBeforeFrom);
        assert_eq!(error.span(), Span::new(0, 3));
    }

    #[test]
    fn duplicate_stage_names_are_a_check_not_an_error() {
        let df = parse("FROM a AS x\nFROM b AS X\n").unwrap();
        assert_eq!(df.stages[1].name.as_deref(), Some("x"));
        assert_eq!(df.warnings.len(), 2, "{:?}", df.warnings);
    }

    #[test]
    fn env_without_value() {
        let error = parse("FROM busybox\nENV PATH\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Syntax);
        assert_eq!(error.span(), Span::new(17, 21));
    }

    #[test]
    fn forbidden_triggers() {
        for text in [
            "FROM a\nONBUILD FROM b\n",
            "FROM a\nONBUILD MAINTAINER me\n",
            "FROM a\nONBUILD ONBUILD RUN x\n",
        ] {
            assert_eq!(
                parse(text).unwrap_err().kind(),
                ErrorKind::InvalidOnbuild,
                "{text}"
            );
        }
        assert!(parse_trigger("FROM x", Span::default()).is_err());
        assert!(parse_trigger("RUN echo hi", Span::default()).is_ok());
    }
}
