//! Applying one instruction to a stage: config changes, history entries, and the ops
//! for RUN, COPY/ADD and WORKDIR.

use std::collections::BTreeMap;

use crate::instructions::{Command, Copy, Instruction, InstructionKind, Run};
use crate::shell::Lexer;
use crate::syntax::parse_heredoc_word;
use crate::{
    CopyKind, CopyOp, CopySource, Error, ErrorKind, ExecOp, InlineFile, MkdirOp, OpKind, Span,
};

use super::plan::FromSource;
use super::values::{
    go_list, go_quoted_list, health_history, is_valid_chmod, is_valid_signal, parse_port_spec,
    resolve_destination, resolve_path,
};
use super::{Converter, StageState, expansion_error};

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Expands words against the variables as they were before the instruction.
struct Expander {
    lexer: Lexer,
    vars: BTreeMap<String, String>,
    span: Span,
}

impl Expander {
    fn word(&self, word: &str) -> Result<String, Error> {
        self.lexer
            .process_word(word, &self.vars)
            .map_err(|e| expansion_error(e, word, self.span))
    }

    fn words(&self, word: &str) -> Result<Vec<String>, Error> {
        self.lexer
            .process_words(word, &self.vars)
            .map_err(|e| expansion_error(e, word, self.span))
    }
}

fn invalid(span: Span, message: String) -> Error {
    Error::new(ErrorKind::InvalidValue, span, message)
}

fn shell_wrap(state: &StageState, command: String) -> Vec<String> {
    let mut args: Vec<String> = match &state.config.shell {
        Some(shell) => shell.clone(),
        None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
    };
    args.push(command);
    args
}

impl Converter<'_> {
    pub(super) fn dispatch(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
    ) -> Result<(), Error> {
        let expand = Expander {
            lexer: Lexer::new(self.df.directives.escape),
            vars: state.vars(),
            span: instruction.args_span,
        };
        match &instruction.kind {
            InstructionKind::Env(pairs) => {
                let mut message = String::from("ENV");
                for pair in pairs {
                    let (key, value) = (expand.word(&pair.key)?, expand.word(&pair.value)?);
                    message.push_str(&format!(" {key}={value}"));
                    state.config.set_env(&key, &value);
                }
                state.commit(message, true);
            }
            InstructionKind::Label(pairs) => {
                let mut message = String::from("LABEL");
                for pair in pairs {
                    let (key, value) = (expand.word(&pair.key)?, expand.word(&pair.value)?);
                    message.push_str(&format!(" {key}={value}"));
                    state.config.labels.insert(key, value);
                }
                state.commit(message, true);
            }
            InstructionKind::Arg(decls) => {
                let mut parts = Vec::new();
                for decl in decls {
                    let value = match (self.opts.build_args.get(&decl.name), &decl.default) {
                        (Some(value), _) => Some(value.clone()),
                        // Each ARG sees the ones declared before it on the same line.
                        (None, Some(default)) => Some(
                            Expander {
                                vars: state.vars(),
                                ..expand.clone_settings()
                            }
                            .word(default)?,
                        ),
                        (None, None) => self.plan.meta.get(&decl.name).cloned(),
                    };
                    parts.push(match &value {
                        Some(value) => format!("{}={value}", decl.name),
                        None => decl.name.clone(),
                    });
                    state.declare_arg(&decl.name, value);
                }
                state.commit(format!("ARG {}", parts.join(" ")), true);
            }
            InstructionKind::Run(run) => self.run(state, instruction, run, &expand)?,
            InstructionKind::Cmd(command) => {
                let args = match command {
                    Command::Exec(argv) => argv.clone(),
                    Command::Shell(text) => shell_wrap(state, text.clone()),
                };
                state.commit(format!("CMD {}", go_quoted_list(&args)), true);
                state.config.cmd = Some(args);
                state.cmd_set = true;
            }
            InstructionKind::Entrypoint(command) => {
                let args = match command {
                    Command::Exec(argv) => argv.clone(),
                    Command::Shell(text) => shell_wrap(state, text.clone()),
                };
                state.commit(format!("ENTRYPOINT {}", go_quoted_list(&args)), true);
                state.config.entrypoint = (!args.is_empty()).then_some(args);
                // An ENTRYPOINT drops the CMD it inherited, but not one this stage set.
                if !state.cmd_set {
                    state.config.cmd = None;
                }
            }
            InstructionKind::Shell(shell) => {
                state.commit(format!("SHELL {}", go_list(shell)), true);
                state.config.shell = Some(shell.clone());
            }
            InstructionKind::Workdir(path) => {
                let path = expand.word(path)?;
                if path.is_empty() {
                    return Err(
                        invalid(instruction.args_span, "`WORKDIR` path is empty".into()).with_help(
                            "the path expanded to an empty string; check the variables it uses",
                        ),
                    );
                }
                let workdir = resolve_path(&state.config.working_dir, &path);
                state.config.working_dir = workdir.clone();
                let layer = workdir != "/";
                if layer {
                    let kind = OpKind::Mkdir(MkdirOp {
                        rootfs: state.root,
                        path: workdir.clone(),
                        owner: state.config.user.clone(),
                    });
                    state.root =
                        self.add_op(kind, instruction.span, &state.id, instruction.text.clone());
                }
                state.commit(format!("WORKDIR {workdir}"), !layer);
            }
            InstructionKind::User(user) => {
                let user = expand.word(user)?;
                state.commit(format!("USER {user}"), true);
                state.config.user = user;
            }
            InstructionKind::Volume(volumes) => {
                let mut expanded = Vec::new();
                for volume in volumes {
                    let volume = expand.word(volume)?;
                    if volume.is_empty() {
                        return Err(invalid(
                            instruction.args_span,
                            "`VOLUME` path is empty".into(),
                        ));
                    }
                    state.config.volumes.insert(volume.clone(), crate::Empty {});
                    expanded.push(volume);
                }
                state.commit(format!("VOLUME {}", go_list(&expanded)), true);
            }
            InstructionKind::Expose(ports) => {
                let mut exposed = Vec::new();
                for port in ports {
                    for word in expand.words(port)? {
                        let specs = parse_port_spec(&word)
                            .map_err(|message| invalid(instruction.args_span, message))?;
                        exposed.extend(specs);
                    }
                }
                for port in &exposed {
                    state
                        .config
                        .exposed_ports
                        .insert(port.clone(), crate::Empty {});
                }
                state.commit(format!("EXPOSE {}", go_list(&exposed)), true);
            }
            InstructionKind::StopSignal(signal) => {
                let signal = expand.word(signal)?;
                if !is_valid_signal(&signal) {
                    return Err(invalid(
                        instruction.args_span,
                        format!("invalid signal `{signal}`"),
                    )
                    .with_help("use a signal name such as `SIGTERM` or a number"));
                }
                state.commit(format!("STOPSIGNAL {signal}"), true);
                state.config.stop_signal = Some(signal);
            }
            InstructionKind::Maintainer(maintainer) => {
                // The OCI `author` field is outside `config`; rbuild records only history.
                state.commit(format!("MAINTAINER {maintainer}"), true);
            }
            InstructionKind::Healthcheck(health) => {
                state.commit(health_history(health), true);
                state.config.healthcheck = Some(health.clone());
            }
            InstructionKind::Onbuild(onbuild) => {
                state.config.on_build.push(onbuild.expression.clone());
            }
            InstructionKind::Copy(copy) => {
                self.copy(state, instruction, copy, CopyKind::Copy, &expand)?
            }
            InstructionKind::Add(copy) => {
                self.copy(state, instruction, copy, CopyKind::Add, &expand)?
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        run: &Run,
        expand: &Expander,
    ) -> Result<(), Error> {
        let args = match &run.command {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(text) => {
                let script = match run.heredocs.as_slice() {
                    [] => text.clone(),
                    // `RUN <<EOF` alone: the body is the script.
                    [heredoc] if is_only_heredoc(text) => {
                        let body = heredoc.body();
                        if body.starts_with("#!") {
                            shebang_script(&body)
                        } else {
                            body
                        }
                    }
                    // Anything else: hand the shell the line and the bodies, as written.
                    heredocs => {
                        let mut script = text.clone();
                        for heredoc in heredocs {
                            script.push('\n');
                            script.push_str(&heredoc.content);
                            script.push_str(&heredoc.name);
                        }
                        script
                    }
                };
                shell_wrap(state, script)
            }
        };
        let history = run_history(&args, &state.args, &expand.vars);
        let kind = OpKind::Exec(ExecOp {
            rootfs: state.root,
            args,
            env: state.exec_env(),
            cwd: match state.config.working_dir.as_str() {
                "" => "/".to_string(),
                dir => dir.to_string(),
            },
            user: state.config.user.clone(),
            network: run.network,
        });
        state.root = self.add_op(kind, instruction.span, &state.id, instruction.text.clone());
        state.commit(format!("RUN {history} # buildkit"), false);
        Ok(())
    }

    fn copy(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        copy: &Copy,
        kind: CopyKind,
        expand: &Expander,
    ) -> Result<(), Error> {
        let keyword = if kind == CopyKind::Copy {
            "COPY"
        } else {
            "ADD"
        };
        let span = instruction.args_span;
        let sources = copy
            .sources
            .iter()
            .map(|s| expand.word(s))
            .collect::<Result<Vec<_>, _>>()?;
        for source in &sources {
            let remote = ["http://", "https://", "git@", "git://"]
                .iter()
                .any(|p| source.starts_with(p));
            if remote && kind == CopyKind::Copy {
                return Err(invalid(span, format!("`COPY` source `{source}` is a URL"))
                    .with_help("use `ADD` for remote sources"));
            }
            if remote {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    span,
                    format!(
                        "`ADD` from a remote source (`{source}`) is not supported by rbuild yet"
                    ),
                ));
            }
        }
        if !copy.inline.is_empty() && (!sources.is_empty() || copy.from.is_some()) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                span,
                format!(
                    "`{keyword}` with both heredoc and other sources is not supported by rbuild yet"
                ),
            )
            .with_help("split it into one instruction per kind of source"));
        }
        let source = if let Some((from, from_span)) = &copy.from {
            match self
                .plan
                .copy_source(self.df, state.id.index, from, *from_span)?
            {
                FromSource::Stage(index) => CopySource::Op(self.stage_root(index)),
                FromSource::Image(reference) => {
                    let image = OpKind::Image { reference };
                    let description = format!("{keyword} --from={from}");
                    CopySource::Op(self.add_op(image, *from_span, &state.id, description))
                }
            }
        } else if !copy.inline.is_empty() {
            let raw = Lexer {
                skip_quotes: true,
                ..Lexer::new('\\')
            };
            let mut files = Vec::new();
            for file in &copy.inline {
                let content = if file.expand {
                    raw.process_word(&file.content, &expand.vars)
                        .map_err(|e| expansion_error(e, &file.name, span))?
                } else {
                    file.content.clone()
                };
                files.push(InlineFile {
                    name: file.name.clone(),
                    content,
                });
            }
            CopySource::Inline(files)
        } else {
            CopySource::Context
        };
        let chown = copy.chown.as_deref().map(|c| expand.word(c)).transpose()?;
        let chmod = copy.chmod.as_deref().map(|c| expand.word(c)).transpose()?;
        if let Some(mode) = chmod.as_deref().filter(|m| !is_valid_chmod(m)) {
            return Err(invalid(
                instruction.span,
                format!("invalid `--chmod` value `{mode}`"),
            )
            .with_help("use an octal mode up to `7777` or a symbolic mode such as `u+x`"));
        }
        let destination = expand.word(&copy.destination)?;
        let mut message = keyword.to_string();
        if let Some(chown) = &chown {
            message.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &chmod {
            message.push_str(&format!(" --chmod={chmod}"));
        }
        for source in &sources {
            message.push_str(&format!(" {source}"));
        }
        for file in &copy.inline {
            message.push_str(&format!(" <<{}", file.name));
        }
        message.push_str(&format!(" {destination} # buildkit"));
        let op = OpKind::Copy(CopyOp {
            rootfs: state.root,
            source,
            kind,
            sources,
            destination: resolve_destination(&state.config.working_dir, &destination),
            chown,
            chmod,
        });
        state.root = self.add_op(op, instruction.span, &state.id, instruction.text.clone());
        state.commit(message, false);
        Ok(())
    }
}

impl Expander {
    fn clone_settings(&self) -> Expander {
        Expander {
            lexer: self.lexer,
            vars: BTreeMap::new(),
            span: self.span,
        }
    }
}

fn is_only_heredoc(command: &str) -> bool {
    matches!(parse_heredoc_word(command.trim()), Ok(Some(_)))
}

/// BuildKit runs a `#!` heredoc as an executable file it mounts into the container. The
/// graph has no mounts, so rbuild writes the script to a temporary file with `/bin/sh`,
/// runs it and removes it; the script's exit code is the RUN's.
fn shebang_script(body: &str) -> String {
    let mut delimiter = String::from("RBUILD_SCRIPT_EOF");
    while body.lines().any(|line| line == delimiter) {
        delimiter.push('_');
    }
    format!(
        "set -e; f=$(mktemp); trap 'rm -f \"$f\"' EXIT; cat > \"$f\" <<'{delimiter}'\n{body}{delimiter}\nchmod +x \"$f\"; \"$f\""
    )
}

/// `RUN`'s history text: `|2 A=1 B=2 /bin/sh -c cmd` when ARGs are in scope (their
/// current values; ENV of the same name wins), as BuildKit writes it.
fn run_history(
    args: &[String],
    declared: &[(String, Option<String>)],
    vars: &BTreeMap<String, String>,
) -> String {
    let mut parts = Vec::new();
    if !declared.is_empty() {
        parts.push(format!("|{}", declared.len()));
        for (name, value) in declared {
            let value = vars
                .get(name)
                .map(String::as_str)
                .or(value.as_deref())
                .unwrap_or("");
            parts.push(format!("{name}={value}"));
        }
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_history_lists_args() {
        let args = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "echo hi".to_string(),
        ];
        assert_eq!(
            run_history(&args, &[], &BTreeMap::new()),
            "/bin/sh -c echo hi"
        );
        let declared = vec![
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), None),
        ];
        assert_eq!(
            run_history(&args, &declared, &BTreeMap::new()),
            "|2 A=1 B= /bin/sh -c echo hi"
        );
    }

    #[test]
    fn shebang_script_avoids_delimiter_clash() {
        let script = shebang_script("#!/bin/sh\nRBUILD_SCRIPT_EOF\n");
        assert!(script.contains("<<'RBUILD_SCRIPT_EOF_'"));
    }
}
