//! `rbuild build`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::{BuildOptions, Builder, Cancel, Progress};
use rbuild_runtime::Limits;

use super::{key_value, network, open_runtime, open_store, parse_name};
use crate::cli::NetworkArg;
use crate::progress::{BuildLog, JsonProgress, PlainProgress, QuietProgress, Tee, TtyProgress};
use crate::report::build_error;
use crate::size::parse_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A live view on a terminal, plain text otherwise
    Auto,
    /// The live view
    Tty,
    /// Numbered steps, each step's output grouped, with timings: for logs and CI
    Plain,
    /// One JSON object per event, on stderr
    Json,
    /// Nothing but errors and the image id
    Quiet,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name for the image (`name[:tag]`); may be repeated
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage and what it needs
    #[arg(long)]
    pub target: Option<String>,
    /// Network for RUN steps that do not choose one [default: host]
    #[arg(long, value_enum)]
    pub network: Option<NetworkArg>,
    /// Memory limit for each RUN step (e.g. `512m`, `2g`)
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes in each RUN step
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// How to show progress
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Run every step; reuse nothing from the build cache
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Run every step of this stage, without the cache; may be repeated
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Write the image id (config digest) to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// The build context directory
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

pub async fn build(args: BuildArgs) -> Result<ExitCode> {
    let tags = args
        .tags
        .iter()
        .map(|t| parse_name(t))
        .collect::<Result<Vec<_>>>()?;
    let dockerfile_path: PathBuf = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let dockerfile = std::fs::read(&dockerfile_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the Dockerfile {}", dockerfile_path.display()))?;
    let dockerfile = String::from_utf8(dockerfile).map_err(|_| {
        miette::miette!(
            "the Dockerfile {} is not valid UTF-8",
            dockerfile_path.display()
        )
    })?;
    let build_args: BTreeMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| key_value(a))
        .collect();
    let memory = args
        .memory
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| miette::miette!("--memory: {e}"))?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => Some(value.parse::<i64>().map_err(|_| {
            miette::miette!("SOURCE_DATE_EPOCH must be a number of seconds, not `{value}`")
        })?),
        _ => None,
    };
    let opts = BuildOptions {
        dockerfile: dockerfile.clone(),
        context: args.context.clone(),
        build_args,
        target: args.target.clone(),
        tags: tags.clone(),
        network: network(args.network),
        limits: Limits {
            memory_bytes: memory,
            pids: args.pids_limit,
        },
        source_date_epoch,
        ignore: read_ignore_file(&dockerfile_path, &args.context)?,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
    };
    let store = open_store()?;
    let runtime = open_runtime(&store)?;
    let builder_root = store.root().to_owned();
    let builder = Builder::new(store, runtime);
    let shown: Arc<dyn Progress> = match args.progress {
        ProgressArg::Quiet => Arc::new(QuietProgress),
        ProgressArg::Json => Arc::new(JsonProgress::new()),
        ProgressArg::Tty => Arc::new(TtyProgress::new()),
        ProgressArg::Auto if std::io::stderr().is_terminal() => Arc::new(TtyProgress::new()),
        ProgressArg::Auto | ProgressArg::Plain => Arc::new(PlainProgress::new()),
    };
    // The whole log, whatever is shown, for `rbuild logs`.
    let mut renderers = vec![shown];
    if let Ok(log) = BuildLog::create(builder_root.as_path()) {
        renderers.push(Arc::new(log));
    }
    let progress: Arc<dyn Progress> = Arc::new(Tee(renderers));
    // Ctrl-C and SIGTERM cancel the build; it stops its sandboxes and cleans up first.
    let cancel = Cancel::default();
    let signals = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminated => {}
            }
            cancel.cancel();
        }
    });
    let result = builder.build(opts, progress, cancel.clone()).await;
    signals.abort();
    let result = match result {
        Ok(result) => result,
        Err(rbuild_builder::BuildError::Cancelled) => {
            eprintln!("build cancelled");
            return Ok(ExitCode::from(130));
        }
        Err(err) => return Err(build_error(err, &dockerfile_path, &dockerfile)),
    };
    if let Some(path) = &args.iidfile {
        write_iidfile(path, &result.config.to_string())?;
    }
    if args.progress != ProgressArg::Quiet {
        eprintln!("{} step(s) cached, {} run", result.cached, result.executed);
        eprintln!("writing image {}", result.config);
        for tag in &result.tags {
            eprintln!("naming to {tag}");
        }
    }
    println!("{}", result.config);
    Ok(ExitCode::SUCCESS)
}

/// The ignore file for a build: `<Dockerfile>.dockerignore` beside the Dockerfile when it
/// exists, else `.dockerignore` at the context root.
fn read_ignore_file(dockerfile: &Path, context: &Path) -> Result<Option<String>> {
    let mut beside = dockerfile.as_os_str().to_owned();
    beside.push(".dockerignore");
    for path in [PathBuf::from(beside), context.join(".dockerignore")] {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(miette::Report::from_err(err)
                    .wrap_err(format!("cannot read {}", path.display())));
            }
        }
    }
    Ok(None)
}

fn write_iidfile(path: &Path, id: &str) -> Result<()> {
    std::fs::write(path, id)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the image id to {}", path.display()))
}
