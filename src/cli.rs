//! Command-line arguments, with docker's conventions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// rbuild: a Dockerfile image builder with a daemonless store and sandbox.
///
/// `rbuild -t NAME CONTEXT` is short for `rbuild build -t NAME CONTEXT`.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub build: Option<BuildArgs>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Run a command in a new sandbox from an image; changes are discarded
    Run(RunArgs),
    /// List images
    Images(ImagesArgs),
    /// Show an image's OCI config (or its manifest)
    Inspect(InspectArgs),
    /// Write images to an OCI image layout tar
    Save(SaveArgs),
    /// Load images from an OCI image layout tar
    Load(LoadArgs),
    /// Make an image from a filesystem tarball
    Import(ImportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Only a loopback interface
    None,
    /// The host's network
    Host,
}

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

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the sandbox
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network [default: host]
    #[arg(long, value_enum)]
    pub network: Option<NetworkArg>,
    /// Memory limit (e.g. `512m`)
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// Hostname inside the sandbox
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the image's filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// The image to run
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print the manifest instead of the config
    #[arg(long)]
    pub manifest: bool,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Output file
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Input file (`-` for stdin)
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: PathBuf,
    /// Name the loaded image
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Filesystem tarball (plain or gzip; `-` for stdin)
    pub file: PathBuf,
    /// Name for the image
    pub name: String,
}
