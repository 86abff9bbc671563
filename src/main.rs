//! The `rbuild` command: build Dockerfiles into OCI images, run them, move them around.

#[macro_use]
mod output;
mod cli;
mod commands;
mod progress;
mod report;
mod rootless;
mod size;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper is this same binary, re-executed: it must start before anything
    // else (no threads, no async runtime) because it forks into new namespaces.
    if std::env::args_os().nth(1).as_deref() == Some(rbuild_runtime::INIT_ARG.as_ref()) {
        rbuild_runtime::init_main();
    }
    // Errors are wrapped to the terminal's width, or to `COLUMNS` where it is set (CI logs,
    // and tests that look for whole phrases); at spaces only, so a URL, path, range or
    // digest stays whole and can be copied (textwrap's defaults also break lines after a
    // `/` and at hyphens).
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok());
    let _ = miette::set_hook(Box::new(move |_| {
        let opts = miette::MietteHandlerOpts::new()
            .break_words(false)
            .word_separator(textwrap::WordSeparator::AsciiSpace)
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        Box::new(match width {
            Some(width) => opts.width(width).build(),
            None => opts.build(),
        })
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            let code = err.exit_code();
            return ExitCode::from(
                if code != 0 && cli::invokes_run(std::env::args_os().skip(1)) {
                    cli::RUN_FAILED
                } else {
                    u8::try_from(code).unwrap_or(2)
                },
            );
        }
    };
    let failed = ExitCode::from(cli.failure_code());
    // Before any thread exists: a multi-threaded process cannot enter a user namespace.
    if cli.needs_namespace()
        && let Err(report) = rootless::enter()
    {
        eprintln!("{report:?}");
        return failed;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            if let Some(help) = rootless::help_for(report.chain()) {
                eprintln!("  help: {help}");
            }
            failed
        }
    }
}
