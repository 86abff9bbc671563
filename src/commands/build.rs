//! `rbuild build`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::{BuildOptions, Builder, Progress};
use rbuild_runtime::Limits;

use super::{key_value, network, open_runtime, open_store, parse_name};
use crate::cli::NetworkArg;
use crate::progress::{PlainProgress, QuietProgress};
use crate::report::build_error;
use crate::size::parse_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// Plain text when stderr is not a terminal (always plain, for now)
    Auto,
    /// Numbered steps, their output and timings, for logs
    Plain,
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
            ..Limits::default()
        },
        source_date_epoch,
    };
    let store = open_store()?;
    let runtime = open_runtime(&store)?;
    let builder = Builder::new(store, runtime);
    let plain;
    let quiet;
    let progress: &dyn Progress = match args.progress {
        ProgressArg::Quiet => {
            quiet = QuietProgress;
            &quiet
        }
        ProgressArg::Auto | ProgressArg::Plain => {
            plain = PlainProgress::new();
            &plain
        }
    };
    let result = builder
        .build(&opts, progress)
        .await
        .map_err(|err| build_error(err, &dockerfile_path, &dockerfile))?;
    if let Some(path) = &args.iidfile {
        write_iidfile(path, &result.config.to_string())?;
    }
    if args.progress != ProgressArg::Quiet {
        eprintln!("writing image {}", result.config);
        for tag in &result.tags {
            eprintln!("naming to {tag}");
        }
    }
    println!("{}", result.config);
    Ok(ExitCode::SUCCESS)
}

fn write_iidfile(path: &Path, id: &str) -> Result<()> {
    std::fs::write(path, id)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the image id to {}", path.display()))
}
