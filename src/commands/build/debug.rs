//! `rbuild build --on-error shell`: a shell in a failed RUN step's state, opened once the
//! build has stopped and its error is shown.

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::ValueEnum;
use rbuild_builder::FailedStep;

/// What a failed RUN step leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OnError {
    /// Report the error and stop
    #[default]
    Fail,
    /// Report the error, then open a shell in the failed RUN step's state (its files as
    /// the command left them, its mounts, environment, user, working directory, network
    /// and limits); on a non-terminal, print the command that would open it
    Shell,
}

/// Whether a shell can be opened here: stdin and stderr are a terminal.
pub fn can_open_shell() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The shell: bash where the step's filesystem has it, else sh.
const SHELL: [&str; 3] = [
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh",
];

/// Opens the shell in `step`'s state and waits for it to end; the state is discarded
/// afterwards.
pub async fn open_shell(step: FailedStep, dockerfile_path: &str, dockerfile: &str) {
    let line = dockerfile
        .get(..step.span().start)
        .map_or(0, |before| before.matches('\n').count())
        + 1;
    eprintln!(
        "rbuild: a shell in the state `{}` ({dockerfile_path}:{line}) failed in; nothing done in it is kept; exit it to end the build",
        step.description(),
    );
    let spec = step.shell(SHELL.map(String::from).to_vec(), true);
    match crate::commands::run::run_attached(step.runtime(), &spec).await {
        Ok(_) => {}
        Err(err) => {
            let report = miette::Report::from_err(err)
                .wrap_err("the shell could not be started (the step's filesystem needs /bin/sh)");
            eprintln!("{report:?}");
        }
    }
    // Discarding removes the step's snapshot: off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(step)).await;
}

/// Says what `--on-error shell` would have done where no terminal is: the command that
/// opens the shell when run in one.
/// `from_stdin`: the Dockerfile or the context came from standard input, which a terminal
/// would not give again: the command is only a model then.
pub fn print_shell_command(from_stdin: bool) {
    if from_stdin {
        eprintln!(
            "rbuild: --on-error shell opens a shell only on a terminal; this build read its Dockerfile \
             or context from standard input, so save that to a file and run this in a terminal, \
             with the file instead of `-`:\n  {}",
            shell_command(std::env::args_os())
        );
        return;
    }
    eprintln!(
        "rbuild: --on-error shell opens a shell only on a terminal; in one, this opens it in the failed step's state:\n  {}",
        shell_command(std::env::args_os())
    );
}

/// This invocation as `rbuild build --on-error shell ...`, quoted for a POSIX shell.
fn shell_command(args: impl IntoIterator<Item = OsString>) -> String {
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let program = args.next().unwrap_or_else(|| "rbuild".to_owned());
    let mut rest: Vec<String> = args.collect();
    if rest.first().map(String::as_str) == Some("build") {
        rest.remove(0);
    }
    // Any `--on-error` already given is replaced.
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in rest {
        if skip_value {
            skip_value = false;
        } else if arg == "--on-error" {
            skip_value = true;
        } else if !arg.starts_with("--on-error=") {
            kept.push(arg);
        }
    }
    let mut words = vec![
        program,
        "build".to_owned(),
        "--on-error".to_owned(),
        "shell".to_owned(),
    ];
    words.extend(kept);
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// `word` as one word for a POSIX shell.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,@%+-".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> String {
        shell_command(args.iter().map(OsString::from))
    }

    #[test]
    fn the_command_is_this_build_with_a_shell_on_error() {
        assert_eq!(
            command(&["rbuild", "build", "-t", "app:1", "."]),
            "rbuild build --on-error shell -t app:1 ."
        );
        assert_eq!(
            command(&["/usr/bin/rbuild", "-t", "app", "ctx"]),
            "/usr/bin/rbuild build --on-error shell -t app ctx"
        );
        assert_eq!(
            command(&[
                "rbuild",
                "build",
                "--on-error",
                "shell",
                "--build-arg",
                "A=b c",
                "."
            ]),
            "rbuild build --on-error shell --build-arg 'A=b c' ."
        );
        assert_eq!(
            command(&[
                "rbuild",
                "build",
                "--on-error=shell",
                "--label",
                "x=it's",
                "."
            ]),
            r"rbuild build --on-error shell --label 'x=it'\''s' ."
        );
    }
}
