//! `rbuild run`: a command in a fresh sandbox over the image's layers; changes are
//! discarded when it exits, and its exit status becomes rbuild's.

use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_runtime::{Limits, Mount, Network, Process, SandboxSpec, StdioMode};

use super::{key_value, network, open_runtime, open_store, parse_name};
use crate::cli::NetworkArg;
use crate::size::parse_size;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let name = parse_name(&args.image)?;
    let memory = args
        .memory
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| miette::miette!("--memory: {e}"))?;
    let store = open_store()?;
    let runtime = open_runtime(&store)?;
    let prepared = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, rbuild_store::Error> {
            let image = store.image(&name)?;
            let top = store.unpack(&image)?;
            let active = store.prepare(top.as_ref())?;
            Ok((image, active, store.empty_dir()?))
        })
        .await
        .into_diagnostic()?
    };
    let (image, active, empty) = prepared.map_err(|err| match err {
        rbuild_store::Error::ImageNotFound { name } => miette::miette!(
            help = "`rbuild images` lists the images in the store",
            "image `{name}` not found"
        ),
        other => miette::Report::from_err(other),
    })?;
    let config = &image.config.config;
    let strings = |key: &str| -> Option<Vec<String>> {
        config.get(key).and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    let string = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };

    // Docker's rules: `--entrypoint` replaces the entrypoint and drops the image's cmd;
    // arguments replace the cmd.
    let (entrypoint, cmd) = match &args.entrypoint {
        Some(entrypoint) => (vec![entrypoint.clone()], args.command.clone()),
        None if !args.command.is_empty() => (
            strings("Entrypoint").unwrap_or_default(),
            args.command.clone(),
        ),
        None => (
            strings("Entrypoint").unwrap_or_default(),
            strings("Cmd").unwrap_or_default(),
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.discard(active)).await;
        return Err(miette::miette!(
            help = "give a command after the image name",
            "no command specified: the image has no entrypoint or cmd"
        ));
    }
    let mut env: Vec<String> = strings("Env").unwrap_or_default();
    for entry in &args.env {
        if let Some((key, value)) = key_value(entry) {
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(format!("{key}={value}"));
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let cwd = args
        .workdir
        .clone()
        .unwrap_or_else(|| match string("WorkingDir") {
            dir if dir.is_empty() => "/".to_owned(),
            dir => dir,
        });
    let spec = SandboxSpec {
        root: {
            let mut mount = Mount::overlay(
                &active.lowers,
                Some((active.upper.clone(), active.work.clone())),
                empty,
            );
            mount
                .options
                .extend(["index=off", "redirect_dir=off", "metacopy=off"].map(String::from));
            mount
        },
        mounts: Vec::new(),
        process: Process {
            args: argv,
            env,
            cwd,
            user: args.user.clone().unwrap_or_else(|| string("User")),
            terminal: false,
        },
        hostname: args
            .hostname
            .clone()
            .unwrap_or_else(|| image.config_digest.short().to_owned()),
        network: network(args.network).unwrap_or(Network::Host),
        limits: Limits {
            memory_bytes: memory,
            pids: args.pids_limit,
        },
        readonly_root: args.read_only,
    };
    let outcome = async {
        let child = runtime.spawn(&spec, StdioMode::Inherit)?;
        child.wait().await
    }
    .await;
    let store_for_cleanup = store.clone();
    let _ = tokio::task::spawn_blocking(move || store_for_cleanup.discard(active)).await;
    let outcome = outcome.into_diagnostic().wrap_err("the sandbox failed")?;
    if outcome.oom_killed {
        eprintln!("rbuild: the process was killed: out of memory");
    }
    Ok(ExitCode::from(
        u8::try_from(outcome.status.code()).unwrap_or(255),
    ))
}
