//! One syntax node → one typed instruction (or a stage start), with BuildKit's argument
//! and flag rules.

use crate::syntax::{Args, Keyword, Node, parse_heredoc_word};
use crate::{Error, ErrorKind, HealthConfig, NetworkMode, Span};

use super::duration::parse_duration;
use super::flags::Flags;
use super::mount::RunMount;
use super::{
    ArgDecl, Command, Copy, InlineSource, Instruction, InstructionKind, Onbuild, Pair, Parsed, Run,
    Stage, forbidden_trigger,
};

/// Gives `node` its meaning. `stage_index` is the index the stage would get if the node
/// is a FROM.
pub(crate) fn instruction_from_node(node: &Node, stage_index: usize) -> Result<Parsed, Error> {
    let mut flags = Flags::new(node);
    let keyword = node.keyword;
    let invalid =
        |message: String| Error::new(ErrorKind::InvalidArguments, node.args_span, message);
    let exactly_one = || -> Result<String, Error> {
        match &node.args {
            Args::Words(words) if words.len() == 1 => Ok(words[0].clone()),
            _ => Err(invalid(format!(
                "`{keyword}` requires exactly one argument"
            ))),
        }
    };
    let list = || -> Vec<String> {
        match &node.args {
            Args::Words(words) | Args::Json(words) => words.clone(),
            Args::Shell(text) => vec![text.clone()],
            _ => Vec::new(),
        }
    };
    let kind = match keyword {
        Keyword::From => {
            let platform = flags.string("platform")?.map(|(value, _)| value);
            flags.finish()?;
            return from(node, stage_index, platform).map(Parsed::From);
        }
        Keyword::Run => {
            let network = match flags.string("network")? {
                None => NetworkMode::Default,
                Some((value, span)) => match value.as_str() {
                    "default" => NetworkMode::Default,
                    "none" => NetworkMode::None,
                    "host" => NetworkMode::Host,
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidFlag,
                            span,
                            format!("unsupported network mode `{value}`"),
                        )
                        .with_help("use `--network=default`, `none` or `host`"));
                    }
                },
            };
            let mounts = flags
                .spanned_strings("mount")?
                .into_iter()
                .map(|(value, span)| RunMount::parse(&value, span))
                .collect::<Result<_, _>>()?;
            // `sandbox` (the default): docker's default capabilities and seccomp.
            // `insecure`: privileged, once the build allows it (checked by the builder,
            // which knows the build's `--allow`).
            let insecure = match flags.string("security")? {
                None => false,
                Some((value, _)) if value == "sandbox" => false,
                Some((value, _)) if value == "insecure" => true,
                Some((value, span)) => {
                    return Err(Error::new(
                        ErrorKind::InvalidFlag,
                        span,
                        format!("unsupported security mode `{value}`"),
                    )
                    .with_help("use `--security=sandbox` (the default) or `--security=insecure`"));
                }
            };
            // CDI devices need the vendor's CDI spec files and their hooks (programs run
            // on the host as root when the container starts): not something a builder
            // without a daemon should run for a Dockerfile. The host's device nodes are
            // there for a privileged step.
            flags.unsupported("device").map_err(|err| {
                err.with_help(
                    "rbuild does not run CDI device hooks; a step that needs the host's devices can \
                     use `--security=insecure` (allowed with `--allow security.insecure`)",
                )
            })?;
            InstructionKind::Run(Run {
                command: command(&node.args),
                heredocs: node.heredocs.clone(),
                network,
                insecure,
                mounts,
            })
        }
        Keyword::Cmd => InstructionKind::Cmd(command(&node.args)),
        Keyword::Entrypoint => InstructionKind::Entrypoint(command(&node.args)),
        Keyword::Shell => match &node.args {
            Args::Json(shell) if !shell.is_empty() => InstructionKind::Shell(shell.clone()),
            Args::Json(_) => return Err(invalid("`SHELL` requires at least one argument".into())),
            _ => {
                return Err(
                    invalid("`SHELL` requires the arguments to be in JSON form".into())
                        .with_help(r#"write it as a JSON array, e.g. `SHELL ["/bin/bash", "-c"]`"#),
                );
            }
        },
        Keyword::Env | Keyword::Label => {
            let Args::Pairs(pairs) = &node.args else {
                return Err(invalid(format!(
                    "`{keyword}` requires at least one argument"
                )));
            };
            if pairs.iter().any(|p| p.key.is_empty()) {
                return Err(invalid(format!("`{keyword}` names can not be blank")));
            }
            let pairs = pairs
                .iter()
                .map(|p| Pair {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    legacy: p.legacy,
                })
                .collect();
            if keyword == Keyword::Env {
                InstructionKind::Env(pairs)
            } else {
                InstructionKind::Label(pairs)
            }
        }
        Keyword::Arg => {
            let words = list();
            if words.is_empty() {
                return Err(invalid("`ARG` requires at least one argument".into()));
            }
            let mut decls = Vec::new();
            for word in words {
                let decl = match word.split_once('=') {
                    Some(("", _)) => return Err(invalid("`ARG` names can not be blank".into())),
                    Some((name, value)) => ArgDecl {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    },
                    None => ArgDecl {
                        name: word,
                        default: None,
                    },
                };
                decls.push(decl);
            }
            InstructionKind::Arg(decls)
        }
        Keyword::Copy | Keyword::Add => {
            let copy = copy(node, &mut flags, list())?;
            if keyword == Keyword::Copy {
                InstructionKind::Copy(copy)
            } else {
                InstructionKind::Add(copy)
            }
        }
        Keyword::Workdir => InstructionKind::Workdir(exactly_one()?),
        Keyword::User => InstructionKind::User(exactly_one()?),
        Keyword::Stopsignal => InstructionKind::StopSignal(exactly_one()?),
        Keyword::Maintainer => InstructionKind::Maintainer(exactly_one()?),
        Keyword::Volume => {
            let volumes: Vec<String> = list().iter().map(|v| v.trim().to_string()).collect();
            if volumes.is_empty() {
                return Err(invalid("`VOLUME` requires at least one argument".into()));
            }
            if volumes.iter().any(String::is_empty) {
                return Err(invalid("`VOLUME` paths can not be empty".into()));
            }
            InstructionKind::Volume(volumes)
        }
        Keyword::Expose => {
            let mut ports = list();
            if ports.is_empty() {
                return Err(invalid("`EXPOSE` requires at least one argument".into()));
            }
            ports.sort();
            InstructionKind::Expose(ports)
        }
        Keyword::Healthcheck => {
            let Args::Health { kind, command } = &node.args else {
                return Err(invalid(
                    "`HEALTHCHECK` requires at least one argument".into(),
                ));
            };
            if kind.eq_ignore_ascii_case("none") {
                if !matches!(**command, Args::Empty) {
                    return Err(invalid("`HEALTHCHECK NONE` takes no arguments".into()));
                }
                // As in BuildKit, flags are not looked at for NONE.
                return Ok(Parsed::Instruction(instruction(node, health_none())));
            }
            InstructionKind::Healthcheck(healthcheck(node, &mut flags, kind, command)?)
        }
        Keyword::Onbuild => {
            let Args::Trigger(trigger) = &node.args else {
                return Err(invalid("`ONBUILD` requires at least one argument".into()));
            };
            if matches!(
                trigger.keyword,
                Keyword::Onbuild | Keyword::From | Keyword::Maintainer
            ) {
                return Err(forbidden_trigger(trigger.keyword, trigger.keyword_span));
            }
            let Parsed::Instruction(typed) = instruction_from_node(trigger, stage_index)? else {
                return Err(forbidden_trigger(Keyword::From, trigger.keyword_span));
            };
            // The config keeps the trigger as Dockerfile text, heredoc bodies included,
            // so that the child parses the same instruction (as BuildKit stores it).
            let mut expression = trigger.original.clone();
            for heredoc in &trigger.heredocs {
                expression.push('\n');
                expression.push_str(&heredoc.content);
                expression.push_str(&heredoc.name);
            }
            InstructionKind::Onbuild(Onbuild {
                expression,
                trigger: Box::new(typed),
            })
        }
    };
    flags.finish()?;
    Ok(Parsed::Instruction(instruction(node, kind)))
}

fn instruction(node: &Node, kind: InstructionKind) -> Instruction {
    Instruction {
        kind,
        span: node.span,
        keyword_span: node.keyword_span,
        args_span: node.args_span,
        text: text(node),
    }
}

fn health_none() -> InstructionKind {
    InstructionKind::Healthcheck(HealthConfig {
        test: vec!["NONE".to_string()],
        ..Default::default()
    })
}

/// The instruction text with the keyword upper-cased.
fn text(node: &Node) -> String {
    let keyword = node.keyword.as_str();
    format!(
        "{keyword}{}",
        node.original.get(keyword.len()..).unwrap_or("")
    )
}

fn command(args: &Args) -> Command {
    match args {
        Args::Json(argv) => Command::Exec(argv.clone()),
        Args::Shell(text) => Command::Shell(text.clone()),
        _ => Command::Shell(String::new()),
    }
}

fn from(node: &Node, index: usize, platform: Option<String>) -> Result<Stage, Error> {
    let words = match &node.args {
        Args::Words(words) => words.as_slice(),
        _ => &[],
    };
    let name = match words {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(Error::new(
                    ErrorKind::InvalidArguments,
                    node.args_span,
                    format!("invalid stage name `{name}`"),
                )
                .with_help("stage names start with a letter and contain only letters, digits, `-`, `_` and `.`"));
            }
            Some(name)
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArguments,
                node.args_span,
                "`FROM` requires either one or three arguments",
            )
            .with_help("write `FROM <image> [AS <name>]`"));
        }
    };
    let base = words[0].clone();
    let base_end = (node.args_span.start + base.len()).min(node.args_span.end);
    Ok(Stage {
        index,
        name,
        base,
        base_span: Span::new(node.args_span.start, base_end),
        platform,
        span: node.span,
        text: text(node),
        instructions: Vec::new(),
    })
}

fn copy(node: &Node, flags: &mut Flags, args: Vec<String>) -> Result<Copy, Error> {
    let keyword = node.keyword;
    let from = if keyword == Keyword::Copy {
        flags.string("from")?
    } else {
        None
    };
    // As BuildKit: `--from` names a stage, an image or a context as written. Stage names
    // are resolved before variables are, so an ARG here would silently mean something
    // else than a reader expects; BuildKit refuses it, and so does rbuild.
    if let Some((from, span)) = &from
        && from
            .char_indices()
            .any(|(i, c)| c == '$' && i + 1 < from.len())
    {
        return Err(Error::new(
            ErrorKind::InvalidFlag,
            *span,
            format!("variable expansion is not supported for `--from` (`{from}`)"),
        )
        .with_help(
            "define a new stage with FROM using an ARG from the global scope: \
             `ARG SRC=image` before the first FROM, `FROM ${SRC} AS src`, then `COPY --from=src`",
        ));
    }
    let chown = flags.string("chown")?.map(|(value, _)| value);
    let chmod = flags.string("chmod")?.map(|(value, _)| value);
    let link = flags.boolean("link")?;
    let excludes = flags.strings("exclude")?;
    let (parents, checksum, unpack, keep_git_dir) = if keyword == Keyword::Copy {
        (flags.boolean("parents")?, None, None, false)
    } else {
        (
            false,
            flags.string("checksum")?,
            flags.optional_boolean("unpack")?,
            flags.boolean("keep-git-dir")?,
        )
    };
    let Some((destination, sources)) = args.split_last() else {
        return Err(missing_destination(node));
    };
    if sources.is_empty() {
        return Err(missing_destination(node));
    }
    if let Ok(Some(_)) = parse_heredoc_word(destination) {
        return Err(Error::new(
            ErrorKind::InvalidArguments,
            node.args_span,
            format!("`{keyword}` cannot accept a heredoc as a destination"),
        ));
    }
    let json = matches!(node.args, Args::Json(_));
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for source in sources {
        match parse_heredoc_word(source) {
            Ok(Some(opener)) if !json => {
                let body = node.heredocs.iter().find(|h| h.name == opener.name);
                inline.push(InlineSource {
                    name: opener.name.clone(),
                    content: body.map(|h| h.body()).unwrap_or_default(),
                    expand: opener.expand,
                });
            }
            _ => paths.push(source.clone()),
        }
    }
    Ok(Copy {
        from,
        chown,
        chmod,
        link,
        parents,
        excludes,
        checksum,
        unpack,
        keep_git_dir,
        sources: paths,
        inline,
        destination: destination.clone(),
    })
}

fn missing_destination(node: &Node) -> Error {
    Error::new(
        ErrorKind::InvalidArguments,
        node.args_span,
        format!(
            "`{}` requires at least two arguments: sources and a destination",
            node.keyword
        ),
    )
    .with_help(format!(
        "write `{} <source>... <destination>`",
        node.keyword
    ))
}

fn healthcheck(
    node: &Node,
    flags: &mut Flags,
    kind: &str,
    command: &Args,
) -> Result<HealthConfig, Error> {
    let mut duration = |name: &'static str| -> Result<u64, Error> {
        let Some((value, span)) = flags.string(name)? else {
            return Ok(0);
        };
        let nanos = parse_duration(&value).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidFlag,
                span,
                format!("invalid duration `{value}` for `--{name}`"),
            )
            .with_help("durations look like `30s`, `1m30s` or `500ms`")
        })?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(Error::new(
                ErrorKind::InvalidFlag,
                span,
                format!("`--{name}` cannot be less than 1ms"),
            ));
        }
        Ok(nanos)
    };
    let interval = duration("interval")?;
    let timeout = duration("timeout")?;
    let start_period = duration("start-period")?;
    let start_interval = duration("start-interval")?;
    let retries = match flags.string("retries")? {
        None => 0,
        Some((value, span)) => value.parse::<u32>().map_err(|_| {
            Error::new(
                ErrorKind::InvalidFlag,
                span,
                format!("`--retries` must be a non-negative integer, not `{value}`"),
            )
        })?,
    };
    if !kind.eq_ignore_ascii_case("cmd") {
        return Err(Error::new(
            ErrorKind::InvalidArguments,
            node.args_span,
            format!("unknown type `{kind}` in `HEALTHCHECK`"),
        )
        .with_help("use `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`"));
    }
    let test = match command {
        Args::Json(argv) if !argv.is_empty() => std::iter::once("CMD".to_string())
            .chain(argv.iter().cloned())
            .collect(),
        Args::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArguments,
                node.args_span,
                "missing command after `HEALTHCHECK CMD`",
            ));
        }
    };
    Ok(HealthConfig {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries: u64::from(retries),
    })
}

#[cfg(test)]
mod tests {
    use crate::instructions::{InstructionKind, parse};
    use crate::{ErrorKind, Span};

    fn kinds(text: &str) -> Vec<InstructionKind> {
        let df = parse(text).unwrap();
        df.stages[0]
            .instructions
            .iter()
            .map(|i| i.kind.clone())
            .collect()
    }

    #[test]
    fn copy_with_flags_and_heredoc() {
        let kinds =
            kinds("FROM a\nCOPY --from=b --chown=u:g x y /d/\nCOPY <<-EOF /f\n\thello\nEOF\n");
        let InstructionKind::Copy(copy) = &kinds[0] else {
            panic!()
        };
        assert_eq!(copy.from.as_ref().map(|f| f.0.as_str()), Some("b"));
        assert_eq!(copy.chown.as_deref(), Some("u:g"));
        assert_eq!(copy.sources, ["x", "y"]);
        assert_eq!(copy.destination, "/d/");
        let InstructionKind::Copy(copy) = &kinds[1] else {
            panic!()
        };
        assert_eq!(copy.inline[0].content, "hello\n");
        assert!(copy.sources.is_empty());
    }

    #[test]
    fn unknown_flag_has_help() {
        let error = parse("FROM a\nCOPY --chwon=u x y\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownFlag);
        assert_eq!(error.span(), Span::new(12, 21));
        assert_eq!(error.help(), Some("did you mean `--chown`?"));
    }

    #[test]
    fn healthcheck_forms() {
        let kinds =
            kinds("FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD curl x\nHEALTHCHECK NONE\n");
        let InstructionKind::Healthcheck(health) = &kinds[0] else {
            panic!()
        };
        assert_eq!(health.test, ["CMD-SHELL", "curl x"]);
        assert_eq!((health.interval, health.retries), (5_000_000_000, 3));
        let InstructionKind::Healthcheck(health) = &kinds[1] else {
            panic!()
        };
        assert_eq!(health.test, ["NONE"]);
        assert!(parse("FROM a\nHEALTHCHECK --interval=1us CMD x\n").is_err());
        assert!(parse("FROM a\nHEALTHCHECK CONNECT x\n").is_err());
    }

    #[test]
    fn shell_must_be_json() {
        assert!(parse("FROM a\nSHELL /bin/bash -c\n").is_err());
        assert_eq!(
            kinds("FROM a\nSHELL [\"/bin/bash\", \"-c\"]\n")[0],
            InstructionKind::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
    }

    #[test]
    fn from_arguments() {
        assert!(parse("FROM a b\n").is_err());
        assert!(parse("FROM a AS 1x\n").is_err());
        assert!(parse("FROM a as B-1.x\n").is_ok());
    }
}
