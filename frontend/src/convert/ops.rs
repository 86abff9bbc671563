//! The instructions that add ops: RUN (an exec) and COPY/ADD (a copy), with RUN's
//! environment (proxy build args included but kept out of the cache key) and history.

use std::collections::BTreeMap;

use crate::instructions::{Command, Copy, Instruction, Run};
use crate::shell::Lexer;
use crate::syntax::parse_heredoc_word;
use crate::{
    CopyKind, CopyOp, CopySource, Error, ErrorKind, ExecOp, GitSource, InlineFile, OpKind,
};

use super::dispatch::{Expander, shell_wrap};
use super::plan::FromSource;
use super::values::{is_valid_chmod, resolve_destination};
use super::{Converter, StageState};

/// The predefined proxy ARGs. `--build-arg`s of these names reach every RUN's
/// environment (upper- and lower-case) without an `ARG`, and then stay out of the op's
/// digest and the history, as in BuildKit: a proxy is a property of the machine, not of
/// the build. Declared with `ARG`, they are ordinary ARGs.
const PROXY_ARGS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

fn invalid(span: crate::Span, message: String) -> Error {
    Error::new(ErrorKind::InvalidValue, span, message)
}

impl Converter<'_> {
    pub(super) fn run(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        run: &Run,
        expand: &Expander,
    ) -> Result<(), Error> {
        let mounts = self.exec_mounts(state, run, expand)?;
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
        let history = run_history(&args, &state.args, &state.vars);
        let mut env = state.exec_env();
        let cache_excluded_env = self.proxy_env(&mut env);
        let kind = OpKind::Exec(ExecOp {
            rootfs: state.root,
            args,
            env,
            cache_excluded_env,
            cwd: match state.config.working_dir.as_str() {
                "" => "/".to_string(),
                dir => dir.to_string(),
            },
            user: state.config.user.clone(),
            network: run.network,
            insecure: run.insecure,
            mounts,
        });
        state.root = self.add_op(kind, instruction.span, &state.id, instruction.text.clone());
        state.commit(format!("RUN {history} # buildkit"), false);
        Ok(())
    }

    /// Adds the proxy `--build-arg`s to `env` (both cases of each name, unless the name
    /// is already set) and returns the keys added.
    fn proxy_env(&self, env: &mut Vec<String>) -> Vec<String> {
        let mut added = Vec::new();
        for proxy in PROXY_ARGS {
            let Some(value) = self
                .opts
                .build_args
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(proxy))
                .map(|(_, value)| value)
            else {
                continue;
            };
            for key in [proxy.to_string(), proxy.to_ascii_lowercase()] {
                let set = env
                    .iter()
                    .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
                if !set {
                    env.push(format!("{key}={value}"));
                    added.push(key);
                }
            }
        }
        added
    }

    pub(super) fn copy(
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
            // One word per source, as BuildKit: a variable holding spaces is one path.
            .map(|s| expand.word(s, &state.vars))
            .collect::<Result<Vec<_>, _>>()?;
        for source in &sources {
            if (CopyOp::is_url(source) || GitSource::is_git(source)) && kind == CopyKind::Copy {
                return Err(invalid(span, format!("`COPY` source `{source}` is a URL"))
                    .with_help("use `ADD` for remote sources"));
            }
            // `file://…` and other schemes would otherwise be looked for as a path in the
            // context, and reported missing there.
            if let Some(scheme) = crate::url_scheme(source)
                && !CopyOp::is_url(source)
                && !GitSource::is_git(source)
            {
                return Err(invalid(
                    span,
                    format!("`{keyword}` cannot fetch `{source}`: `{scheme}://` URLs are not supported"),
                )
                .with_help(
                    "`ADD` fetches http(s) URLs, and git repositories over https, ssh and git; a local file or repository goes in the build context",
                ));
            }
        }
        let mut git = match sources.as_slice() {
            [source] if GitSource::is_git(source) && copy.inline.is_empty() => {
                Some(GitSource::parse(source).map_err(|message| {
                    invalid(span, format!("git source `{source}`: {message}"))
                })?)
            }
            _ if sources.iter().any(|source| GitSource::is_git(source)) => {
                return Err(invalid(
                    span,
                    "a git source must be the only source of its `ADD`".into(),
                )
                .with_help("write one `ADD` per repository"));
            }
            _ => None,
        };
        if let Some(git) = &mut git {
            git.keep_git_dir |= copy.keep_git_dir;
            if let Some((value, flag_span)) = &copy.checksum {
                let value = expand.word(value, &state.vars)?;
                let commit = crate::git::commit(&value)
                    .map_err(|message| Error::new(ErrorKind::InvalidFlag, *flag_span, message))?;
                if git.checksum.as_ref().is_some_and(|given| *given != commit) {
                    return Err(Error::new(
                        ErrorKind::InvalidFlag,
                        *flag_span,
                        "`--checksum` and the source's `checksum=` name different commits",
                    ));
                }
                git.checksum = Some(commit);
            }
        } else if copy.keep_git_dir {
            return Err(invalid(span, "`--keep-git-dir` needs a git source".into())
                .with_help("a git source is a repository URL, e.g. `https://host/repo.git#main`"));
        }
        let checksum = match copy.checksum.as_ref().filter(|_| git.is_none()) {
            None => None,
            Some((value, flag_span)) => {
                let value = expand.word(value, &state.vars)?;
                if !is_valid_checksum(&value) {
                    return Err(Error::new(
                        ErrorKind::InvalidFlag,
                        *flag_span,
                        format!("invalid `--checksum` value `{value}`"),
                    )
                    .with_help("write `--checksum=sha256:` and the 64 lowercase hex digits of the file's SHA-256"));
                }
                match sources.as_slice() {
                    [source] if copy.inline.is_empty() && CopyOp::is_url(source) => {}
                    [source] if copy.inline.is_empty() => {
                        return Err(Error::new(
                            ErrorKind::InvalidFlag,
                            *flag_span,
                            format!("`--checksum` needs an HTTP(S) URL source, not the local path `{source}`"),
                        )
                        .with_help("a checksum verifies a download: remove `--checksum` for files of the build context"));
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidFlag,
                            *flag_span,
                            "`--checksum` can only be used with a single source",
                        )
                        .with_help("write one `ADD --checksum=...` per URL"));
                    }
                }
                Some(value)
            }
        };
        if let Some((from, from_span)) = copy.from.as_ref().filter(|_| sources.is_empty())
            && !copy.inline.is_empty()
        {
            return Err(Error::new(
                ErrorKind::InvalidFlag,
                *from_span,
                format!("`--from={from}` with only heredoc sources: heredocs come from the Dockerfile, so nothing would be copied from `{from}`"),
            )
            .with_help("remove `--from`, or name the files to copy from it"));
        }
        // Heredocs beside other sources: more than one source, so into a directory.
        let mixed = !copy.inline.is_empty() && !sources.is_empty();
        if mixed && !copy.destination.ends_with('/') {
            return Err(invalid(
                span,
                format!(
                    "when using {keyword} with more than one source file, the destination must be a directory and end with a /"
                ),
            ));
        }
        let inline_files = |expand: &Expander| -> Result<Vec<InlineFile>, Error> {
            let raw = Lexer {
                skip_quotes: true,
                ..Lexer::new('\\')
            };
            copy.inline
                .iter()
                .map(|file| {
                    Ok(InlineFile {
                        name: file.name.clone(),
                        content: if file.expand {
                            expand.with(raw, &file.content, &state.vars)?
                        } else {
                            file.content.clone()
                        },
                    })
                })
                .collect()
        };
        let inline = if mixed {
            inline_files(expand)?
        } else {
            Vec::new()
        };
        let source = if let Some((from, from_span)) = &copy.from {
            match self
                .plan
                .copy_source(self.df, state.id.index, from, *from_span, "copy")?
            {
                FromSource::Stage(index) => CopySource::Op(self.stage_root(index)),
                FromSource::Image(reference) => {
                    let image = OpKind::Image { reference };
                    let description = format!("{keyword} --from={from}");
                    CopySource::Op(self.add_op(image, *from_span, &state.id, description))
                }
                FromSource::Local(name) => CopySource::Named(name),
            }
        } else if !copy.inline.is_empty() && !mixed {
            CopySource::Inline(inline_files(expand)?)
        } else if let Some(git) = git {
            CopySource::Git(git)
        } else {
            CopySource::Context
        };
        let chown = copy
            .chown
            .as_deref()
            .map(|c| expand.word(c, &state.vars))
            .transpose()?;
        let chmod = copy
            .chmod
            .as_deref()
            .map(|c| expand.word(c, &state.vars))
            .transpose()?;
        if let Some(mode) = chmod.as_deref().filter(|m| !is_valid_chmod(m)) {
            return Err(invalid(
                instruction.span,
                format!("invalid `--chmod` value `{mode}`"),
            )
            .with_help("use an octal mode up to `7777` or a symbolic mode such as `u+x`"));
        }
        let destination = expand.word(&copy.destination, &state.vars)?;
        let excludes = copy
            .excludes
            .iter()
            .map(|e| expand.word(e, &state.vars))
            .collect::<Result<Vec<_>, _>>()?;
        let mut message = keyword.to_string();
        if let Some(chown) = &chown {
            message.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &chmod {
            message.push_str(&format!(" --chmod={chmod}"));
        }
        if let Some(checksum) = &checksum {
            message.push_str(&format!(" --checksum={checksum}"));
        }
        if copy.link {
            message.push_str(" --link");
        }
        if copy.parents {
            message.push_str(" --parents");
        }
        for exclude in &excludes {
            message.push_str(&format!(" --exclude={exclude}"));
        }
        for source in &sources {
            message.push_str(&format!(" {source}"));
        }
        for file in &copy.inline {
            message.push_str(&format!(" <<{}", file.name));
        }
        message.push_str(&format!(" {destination} # buildkit"));
        // A git source copies the whole checkout (or its sub-directory).
        let sources = match source {
            CopySource::Git(_) => vec![".".to_owned()],
            _ => sources,
        };
        let op = OpKind::Copy(CopyOp {
            rootfs: state.root,
            source,
            kind,
            sources,
            destination: resolve_destination(&state.config.working_dir, &destination),
            chown,
            chmod,
            link: copy.link,
            parents: copy.parents,
            excludes,
            checksum,
            unpack: copy.unpack,
            inline,
        });
        state.root = self.add_op(op, instruction.span, &state.id, instruction.text.clone());
        state.commit(message, false);
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits: the only checksum BuildKit accepts for a URL.
fn is_valid_checksum(checksum: &str) -> bool {
    checksum.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An HTTP(S) URL that BuildKit would clone rather than download: its path ends in `.git`
/// (`https://host/repo.git`, `https://host/repo.git#main:dir`).
fn is_only_heredoc(command: &str) -> bool {
    matches!(parse_heredoc_word(command.trim()), Ok(Some(_)))
}

/// BuildKit runs a `#!` heredoc as an executable file it mounts into the container.
/// rbuild writes the script to a temporary file with `/bin/sh` instead, runs it and
/// removes it; the script's exit code is the RUN's.
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
    let mut history = String::new();
    if !declared.is_empty() {
        history.push('|');
        history.push_str(&declared.len().to_string());
        for (name, value) in declared {
            let value = vars
                .get(name)
                .map(String::as_str)
                .or(value.as_deref())
                .unwrap_or("");
            history.push(' ');
            history.push_str(name);
            history.push('=');
            history.push_str(value);
        }
    }
    for (index, arg) in args.iter().enumerate() {
        if index > 0 || !declared.is_empty() {
            history.push(' ');
        }
        history.push_str(arg);
    }
    history
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
