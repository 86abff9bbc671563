//! `rbuild completion` and `rbuild man`: shell completions and man pages, both made from
//! the command line's own definition, so they never disagree with `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use miette::{IntoDiagnostic, Result, WrapErr};

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages (e.g. `/usr/local/share/man/man1`); made if missing
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Prints the completion script on stdout, e.g. `rbuild completion bash >
/// /etc/bash_completion.d/rbuild` or `source <(rbuild completion zsh)`.
pub fn completion(args: CompletionArgs) -> Result<ExitCode> {
    let mut command = Cli::command();
    let mut buffer = Vec::new();
    clap_complete::generate(args.shell, &mut command, "rbuild", &mut buffer);
    std::io::Write::write_all(&mut crate::output::stdout(), &buffer)
        .into_diagnostic()
        .wrap_err("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `rbuild.1` and `rbuild-COMMAND.1` for every command into `--dir`, and names
/// each file written.
pub fn man(args: ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", args.dir.display()))?;
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    write_page(&command, "rbuild", &args.dir, &mut pages)?;
    for sub in command.get_subcommands() {
        write_page(
            sub,
            &format!("rbuild-{}", sub.get_name()),
            &args.dir,
            &mut pages,
        )?;
    }
    for page in pages {
        outln!("{}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(
    command: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    pages: &mut Vec<PathBuf>,
) -> Result<()> {
    // The page's title is its file's name, as `man rbuild-build` finds it.
    let command = command.clone().name(name.to_owned());
    let mut buffer = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut buffer)
        .into_diagnostic()?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buffer)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    pages.push(path);
    Ok(())
}
