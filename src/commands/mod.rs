//! One module per group of commands; each returns the process exit code or a report.

pub mod archive;
pub mod build;
mod build_context;
pub mod check;
pub mod docs;
pub mod images;
pub mod info;
mod outputs;
pub mod registry;
pub mod run;
pub mod sbom;
mod ssh;
pub mod store;
pub mod verify;

use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_runtime::{Runtime, RuntimeOptions};
use rbuild_store::{ImageName, Store};

use crate::cli::{Cli, Command, NetworkArg};

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match (cli.command, cli.build) {
        (Some(Command::Build(args)), _) | (None, Some(args)) => build::build(args).await,
        (Some(Command::Check(args)), _) => check::check(args),
        (Some(Command::Run(args)), _) => run::run(args).await,
        (Some(Command::Images(args)), _) => images::images(args),
        (Some(Command::Inspect(args)), _) => images::inspect(args),
        (Some(Command::Save(args)), _) => archive::save(args),
        (Some(Command::Load(args)), _) => archive::load(args),
        (Some(Command::Import(args)), _) => archive::import(args),
        (Some(Command::Export(args)), _) => archive::export(args),
        (Some(Command::Pull(args)), _) => registry::pull(args).await,
        (Some(Command::Push(args)), _) => registry::push(args).await,
        (Some(Command::Login(args)), _) => registry::login(args).await,
        (Some(Command::Logout(args)), _) => registry::logout(args),
        (Some(Command::Tag(args)), _) => images::tag(args),
        (Some(Command::Rmi(args)), _) => images::rmi(args),
        (Some(Command::History(args)), _) => images::history(args),
        (Some(Command::VerifyBuild(args)), _) => verify::verify_build(args),
        (Some(Command::Sbom(args)), _) => sbom::sbom(args),
        (Some(Command::Du(args)), _) => store::du(args),
        (Some(Command::Prune(args)), _) => store::prune(args),
        (Some(Command::Store(args)), _) => store::store(args),
        (Some(Command::Logs(args)), _) => store::logs(args),
        (Some(Command::Unshare(args)), _) => store::unshare(args),
        (Some(Command::Info(args)), _) => info::info(args),
        (Some(Command::Completion(args)), _) => docs::completion(args),
        (Some(Command::Man(args)), _) => docs::man(args),
        (None, None) => {
            use clap::CommandFactory;
            Cli::command().print_help().into_diagnostic()?;
            Ok(ExitCode::from(2))
        }
    }
}

pub fn open_store() -> Result<Store> {
    let root = crate::rootless::store_root();
    Store::open(&root).map_err(|err| {
        let help =
            crate::rootless::help_for(std::iter::once(&err as &(dyn std::error::Error + 'static)))
                .or_else(|| store_help(&err));
        match help {
            Some(help) => miette::miette!(
                help = help,
                "cannot open the store at {}: {}",
                root.display(),
                crate::report::message_chain(&err)
            ),
            None => miette::Report::from_err(err)
                .wrap_err(format!("cannot open the store at {}", root.display())),
        }
    })
}

/// What to do when the store's directory cannot be made or written.
fn store_help(err: &rbuild_store::Error) -> Option<String> {
    let rbuild_store::Error::Io { source, .. } = err else {
        return None;
    };
    match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => Some(
            "choose a directory you can write with `RBUILD_ROOT`, or unset it to use your own store".to_owned(),
        ),
        Some(libc::EROFS) => Some(
            "the store's filesystem is read-only: set `RBUILD_ROOT` to a writable directory".to_owned(),
        ),
        _ => None,
    }
}

pub fn open_runtime(store: &Store) -> Result<Runtime> {
    open_runtime_in(store, None)
}

/// The runtime, its sandboxes' cgroups under `cgroup_parent` (`--cgroup-parent`) when
/// given, else under `rbuild`.
pub fn open_runtime_in(store: &Store, cgroup_parent: Option<&str>) -> Result<Runtime> {
    let defaults = RuntimeOptions::default();
    let helper = std::env::current_exe()
        .into_diagnostic()
        .wrap_err("cannot find the rbuild executable to start sandboxes")?;
    Runtime::new(RuntimeOptions {
        helper,
        state_dir: store.root().join("sandboxes"),
        cgroup_parent: cgroup_parent.map_or(defaults.cgroup_parent.clone(), str::to_owned),
        ..defaults
    })
    .into_diagnostic()
    .wrap_err("cannot set up the sandbox runtime")
}

/// Refuses, before anything runs, a limit the sandboxes cannot keep here (rootless rbuild
/// on cgroup v1, or on a v2 cgroup not delegated to the user): never a limit ignored.
pub fn check_limits(runtime: &Runtime, limits: &rbuild_runtime::Limits) -> Result<()> {
    runtime.check_limits(limits).map_err(|err| {
        miette::miette!(
            help = "limits need cgroups rbuild may write: run rbuild as root, or as a user on cgroup v2 in a delegated cgroup (`systemd-run --user --scope -p Delegate=yes rbuild …`); or build without `--memory`, `--cpus` and `--pids-limit`",
            "{err}"
        )
    })
}

/// `--memory`, `--pids-limit` and `--cpus`, as `build` and `run` take them.
pub fn parse_limits(
    memory: Option<&str>,
    pids: Option<u64>,
    cpus: Option<f64>,
) -> Result<rbuild_runtime::Limits> {
    let memory_bytes = memory
        .map(crate::size::parse_size)
        .transpose()
        .map_err(|e| miette::miette!("--memory: {e}"))?;
    let cpu = cpus
        .map(|cpus| {
            rbuild_runtime::CpuQuota::from_cpus(cpus).ok_or_else(|| {
                miette::miette!(
                    help = "give a number of CPUs of at least 0.01, e.g. `--cpus 1.5`",
                    "--cpus: invalid value `{cpus}`"
                )
            })
        })
        .transpose()?;
    Ok(rbuild_runtime::Limits {
        memory_bytes,
        pids,
        cpu,
        ..Default::default()
    })
}

/// `--platform os/arch[/variant]`, normalized as containerd does, as the store names it.
pub fn parse_platform(text: &str) -> Result<rbuild_store::oci::Platform> {
    let platform = rbuild_frontend::Platform::parse(text)
        .map_err(|message| miette::miette!("--platform: {message}"))?;
    Ok(rbuild_builder::oci_platform(&platform))
}

/// A command's `--platform`, when given.
pub fn platform_flag(flag: Option<&str>) -> Result<Option<rbuild_store::oci::Platform>> {
    flag.map(parse_platform).transpose()
}

pub fn parse_name(text: &str) -> Result<ImageName> {
    text.parse::<ImageName>().into_diagnostic()
}

pub fn network(arg: Option<NetworkArg>) -> Option<rbuild_runtime::Network> {
    arg.and_then(|n| match n {
        NetworkArg::None => Some(rbuild_runtime::Network::None),
        NetworkArg::Host => Some(rbuild_runtime::Network::Host),
        NetworkArg::Bridge => Some(rbuild_runtime::Network::Bridge),
        NetworkArg::Default => None,
    })
}

/// `KEY=VALUE`, or `KEY` alone to take the value from rbuild's own environment (skipped
/// when unset), as docker does for `--build-arg` and `-e`.
pub fn key_value(entry: &str) -> Option<(String, String)> {
    match entry.split_once('=') {
        Some((key, value)) => Some((key.to_owned(), value.to_owned())),
        None => std::env::var(entry)
            .ok()
            .map(|value| (entry.to_owned(), value)),
    }
}
