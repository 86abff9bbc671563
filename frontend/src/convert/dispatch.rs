//! Applying one instruction to a stage: config changes, history entries, WORKDIR's op,
//! and the build checks that need the stage's state. RUN and COPY/ADD are in `ops`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::instructions::{Command, Instruction, InstructionKind};
use crate::lint::{Rule, Warning, is_secret_name, port_warnings};
use crate::shell::{Lexer, Lookup};
use crate::{CopyKind, Error, ErrorKind, MkdirOp, OpKind, Span};

use super::values::{
    go_list, go_quoted_list, health_history, is_valid_signal, parse_port_spec, resolve_path,
};
use super::{Converter, StageState, expansion_error};

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Expands words of one instruction, remembering (when linting) the variables it looked
/// up and did not find.
pub(super) struct Expander {
    pub lexer: Lexer,
    pub span: Span,
    missing: Option<RefCell<BTreeSet<String>>>,
}

/// The stage's variables, seen through an [`Expander`].
struct Seen<'a> {
    vars: &'a BTreeMap<String, String>,
    missing: Option<&'a RefCell<BTreeSet<String>>>,
}

impl Lookup for Seen<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        let value = self.vars.get(name).map(String::as_str);
        if value.is_none()
            && let Some(missing) = self.missing
        {
            missing.borrow_mut().insert(name.to_string());
        }
        value
    }
}

impl Expander {
    fn seen<'a>(&'a self, vars: &'a BTreeMap<String, String>) -> Seen<'a> {
        Seen {
            vars,
            missing: self.missing.as_ref(),
        }
    }

    pub fn word(&self, word: &str, vars: &BTreeMap<String, String>) -> Result<String, Error> {
        self.with(self.lexer, word, vars)
    }

    /// Expands with other lexer settings (heredoc bodies).
    pub fn with(
        &self,
        lexer: Lexer,
        word: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, Error> {
        lexer
            .process_word(word, &self.seen(vars))
            .map_err(|e| expansion_error(e, word, self.span))
    }

    pub fn words(&self, word: &str, vars: &BTreeMap<String, String>) -> Result<Vec<String>, Error> {
        self.lexer
            .process_words(word, &self.seen(vars))
            .map_err(|e| expansion_error(e, word, self.span))
    }
}

fn invalid(span: Span, message: String) -> Error {
    Error::new(ErrorKind::InvalidValue, span, message)
}

pub(super) fn shell_wrap(state: &StageState, command: String) -> Vec<String> {
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
            span: instruction.args_span,
            missing: self.lint.is_some().then(RefCell::default),
        };
        self.dispatch_with(state, instruction, &expand)?;
        if let Some(missing) = expand.missing {
            self.undefined_vars(state, instruction, missing.into_inner());
        }
        Ok(())
    }

    fn dispatch_with(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        expand: &Expander,
    ) -> Result<(), Error> {
        let span = instruction.args_span;
        match &instruction.kind {
            InstructionKind::Env(pairs) | InstructionKind::Label(pairs) => {
                let env = matches!(instruction.kind, InstructionKind::Env(_));
                let keyword = if env { "ENV" } else { "LABEL" };
                // Every value is expanded with the variables as they were before.
                let mut expanded = Vec::new();
                for pair in pairs {
                    let key = expand.word(&pair.key, &state.vars)?;
                    let value = expand.word(&pair.value, &state.vars)?;
                    if pair.legacy {
                        self.warn(legacy_key_value(keyword, &key, &value, span));
                    }
                    if env && is_secret_name(&key) {
                        self.warn(secret(keyword, &key, span));
                    }
                    expanded.push((key, value));
                }
                let mut message = String::from(keyword);
                for (key, value) in expanded {
                    message.push_str(&format!(" {key}={value}"));
                    if env {
                        state.set_env(&key, &value);
                    } else {
                        state.config.labels.insert(key, value);
                    }
                }
                state.commit(message, true);
            }
            InstructionKind::Arg(decls) => {
                let mut parts = Vec::new();
                for decl in decls {
                    if is_secret_name(&decl.name) {
                        self.warn(secret("ARG", &decl.name, span));
                    }
                    let value = match (self.opts.build_args.get(&decl.name), &decl.default) {
                        (Some(value), _) => Some(value.clone()),
                        // Each ARG sees the ones declared before it on the same line.
                        (None, Some(default)) => Some(expand.word(default, &state.vars)?),
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
            InstructionKind::Run(run) => self.run(state, instruction, run, expand)?,
            InstructionKind::Cmd(command) | InstructionKind::Entrypoint(command) => {
                let cmd = matches!(instruction.kind, InstructionKind::Cmd(_));
                let keyword = if cmd { "CMD" } else { "ENTRYPOINT" };
                let last = if cmd {
                    &mut state.last_cmd
                } else {
                    &mut state.last_entrypoint
                };
                if let Some(previous) = last.replace(instruction.span) {
                    self.warn(used_once(keyword, previous));
                }
                let args = match command {
                    Command::Exec(argv) => argv.clone(),
                    Command::Shell(text) => {
                        if state.config.shell.is_none() {
                            self.warn(json_args(keyword, text, instruction.span));
                        }
                        shell_wrap(state, text.clone())
                    }
                };
                state.commit(format!("{keyword} {}", go_quoted_list(&args)), true);
                if cmd {
                    state.config.cmd = Some(args);
                    state.cmd_set = true;
                } else {
                    state.config.entrypoint = (!args.is_empty()).then_some(args);
                    // An ENTRYPOINT drops the CMD it inherited, but not one this stage set.
                    if !state.cmd_set {
                        state.config.cmd = None;
                    }
                }
            }
            InstructionKind::Shell(shell) => {
                state.commit(format!("SHELL {}", go_list(shell)), true);
                state.config.shell = Some(shell.clone());
            }
            InstructionKind::Workdir(path) => self.workdir(state, instruction, path, expand)?,
            InstructionKind::User(user) => {
                let user = expand.word(user, &state.vars)?;
                state.commit(format!("USER {user}"), true);
                state.config.user = user;
            }
            InstructionKind::Volume(volumes) => {
                let mut expanded = Vec::new();
                for volume in volumes {
                    // One word per path, as BuildKit: a variable holding spaces is one path.
                    let volume = expand.word(volume, &state.vars)?;
                    if volume.is_empty() {
                        return Err(invalid(span, "`VOLUME` path is empty".into()));
                    }
                    expanded.push(volume);
                }
                for volume in &expanded {
                    state.config.volumes.insert(volume.clone(), crate::Empty {});
                }
                state.commit(format!("VOLUME {}", go_list(&expanded)), true);
            }
            InstructionKind::Expose(ports) => {
                let mut words = Vec::new();
                for port in ports {
                    words.extend(expand.words(port, &state.vars)?);
                }
                let mut exposed = Vec::new();
                for word in words {
                    for warning in port_warnings(&word, span) {
                        self.warn(warning);
                    }
                    exposed
                        .extend(parse_port_spec(&word).map_err(|message| invalid(span, message))?);
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
                let signal = expand.word(signal, &state.vars)?;
                if !is_valid_signal(&signal) {
                    return Err(invalid(span, format!("invalid signal `{signal}`"))
                        .with_help("use a signal name such as `SIGTERM` or a number"));
                }
                state.commit(format!("STOPSIGNAL {signal}"), true);
                state.config.stop_signal = Some(signal);
            }
            InstructionKind::Maintainer(maintainer) => {
                // Deprecated, and still Docker's way to set the OCI `author` field (outside
                // `config`, so the builder writes it); `MaintainerDeprecated` warns.
                state.commit(format!("MAINTAINER {maintainer}"), true);
                state.author = Some(maintainer.clone());
            }
            InstructionKind::Healthcheck(health) => {
                if let Some(previous) = state.last_healthcheck.replace(instruction.span) {
                    self.warn(used_once("HEALTHCHECK", previous));
                }
                state.commit(health_history(health), true);
                state.config.healthcheck = Some(health.clone());
            }
            InstructionKind::Onbuild(onbuild) => {
                state.config.on_build.push(onbuild.expression.clone());
            }
            InstructionKind::Copy(copy) => {
                self.copy(state, instruction, copy, CopyKind::Copy, expand)?
            }
            InstructionKind::Add(copy) => {
                self.copy(state, instruction, copy, CopyKind::Add, expand)?
            }
        }
        Ok(())
    }

    fn workdir(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        path: &str,
        expand: &Expander,
    ) -> Result<(), Error> {
        let path = expand.word(path, &state.vars)?;
        if path.is_empty() {
            return Err(
                invalid(instruction.args_span, "`WORKDIR` path is empty".into())
                    .with_help("the path expanded to an empty string; check the variables it uses"),
            );
        }
        // Only the first WORKDIR of the FROM chain is checked: fixing it fixes the others.
        if !state.workdir_set && !path.starts_with('/') {
            self.warn(
                Warning::new(
                    Rule::WorkdirRelativePath,
                    instruction.args_span,
                    format!(
                        "relative workdir `{path}` can have unexpected results if the base image changes"
                    ),
                )
                .with_help(format!("use an absolute path, e.g. `WORKDIR /{path}`")),
            );
        }
        state.workdir_set = true;
        let workdir = resolve_path(&state.config.working_dir, &path);
        state.config.working_dir = workdir.clone();
        let layer = workdir != "/";
        if layer {
            let kind = OpKind::Mkdir(MkdirOp {
                rootfs: state.root,
                path: workdir.clone(),
                owner: state.config.user.clone(),
            });
            state.root = self.add_op(kind, instruction.span, &state.id, instruction.text.clone());
        }
        state.commit(format!("WORKDIR {workdir}"), !layer);
        Ok(())
    }

    /// `UndefinedVar`: variables an instruction used that are neither set nor declared
    /// with a value-less `ARG`.
    fn undefined_vars(
        &mut self,
        state: &StageState,
        instruction: &Instruction,
        missing: BTreeSet<String>,
    ) {
        let known: Vec<&str> = state.vars.keys().map(String::as_str).collect();
        for name in missing {
            if state.args.iter().any(|(arg, _)| *arg == name) {
                continue;
            }
            let warning = Warning::new(
                Rule::UndefinedVar,
                instruction.args_span,
                format!("usage of undefined variable `${name}`"),
            );
            self.warn(match crate::error::suggest(&name, &known) {
                Some(similar) => warning.with_help(format!("did you mean `${similar}`?")),
                None => warning.with_help(format!(
                    "declare it with `ARG {name}` or set it with `ENV {name}=<value>` before using it"
                )),
            });
        }
    }
}

fn legacy_key_value(keyword: &str, key: &str, value: &str, span: Span) -> Warning {
    let value = if value.contains(char::is_whitespace) || value.is_empty() {
        format!("\"{}\"", value.replace('"', "\\\""))
    } else {
        value.to_string()
    };
    let fix = if value.len() > 60 {
        format!("{keyword} {key}=<value>")
    } else {
        format!("{keyword} {key}={value}")
    };
    Warning::new(
        Rule::LegacyKeyValueFormat,
        span,
        format!(
            "`{keyword} key=value` should be used instead of legacy `{keyword} key value` format"
        ),
    )
    .with_help(format!("write `{fix}`"))
}

fn secret(keyword: &str, key: &str, span: Span) -> Warning {
    Warning::new(
        Rule::SecretsUsedInArgOrEnv,
        span,
        format!("do not use `ARG` or `ENV` instructions for sensitive data (`{keyword} {key}`)"),
    )
    .with_help("their values are kept in the image's config or history; pass secrets in at run time instead")
}

fn used_once(keyword: &str, previous: Span) -> Warning {
    Warning::new(
        Rule::MultipleInstructionsDisallowed,
        previous,
        format!(
            "multiple `{keyword}` instructions should not be used in the same stage because only the last one will be used"
        ),
    )
    .with_help(format!("remove this `{keyword}`: a later one replaces it"))
}

fn json_args(keyword: &str, text: &str, span: Span) -> Warning {
    let argv: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("\"{w}\""))
        .collect();
    let example = if argv.is_empty() || text.contains(['&', '|', ';', '$', '>', '<', '"', '\'']) {
        format!("{keyword} [\"executable\", \"arg\"]")
    } else {
        format!("{keyword} [{}]", argv.join(", "))
    };
    Warning::new(
        Rule::JsonArgsRecommended,
        span,
        format!("JSON arguments recommended for `{keyword}` to prevent unintended behavior related to OS signals"),
    )
    .with_help(format!(
        "write `{example}`, or set the shell explicitly with `SHELL` if a shell is wanted"
    ))
}
