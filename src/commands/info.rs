//! `rbuild info`: what rbuild finds on this machine and will do with it — the store, the
//! user and the id mapping, the snapshotter, cgroups and limits, networks — each with the
//! reason when a feature is not available.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result};
use rbuild_runtime::userns::Mode;

use super::images::{FormatArg, human_size};
use super::{open_runtime, open_store};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
}

pub fn info(args: InfoArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let runtime = open_runtime(&store)?;
    let snapshotter = rbuild_builder::Snapshotter::detect(&store);
    let namespace = crate::rootless::namespace();

    let kernel = nix::sys::utsname::uname()
        .map(|uts| uts.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let free = nix::sys::statvfs::statvfs(store.root())
        .map(|stat| stat.blocks_available() * stat.fragment_size())
        .ok();
    let (user, mode) = match namespace {
        Some(ns) => (
            format!("{} (uid {})", ns.user, ns.host_uid),
            match &ns.mode {
                Mode::Host => "root".to_owned(),
                Mode::Inherited => "root of a user namespace (a container's)".to_owned(),
                Mode::Subordinate => {
                    "rootless: rbuild's user namespace with subordinate ids".to_owned()
                }
                Mode::SingleId(reason) => {
                    format!("rootless: rbuild's user namespace with your id alone ({reason})")
                }
            },
        ),
        None => (String::new(), String::new()),
    };
    let version = match runtime.cgroup_version() {
        rbuild_runtime::CgroupVersion::V1 => "v1",
        rbuild_runtime::CgroupVersion::V2 => "v2",
    };
    let cgroups = match runtime.limits_unavailable() {
        None => format!("{version}; --memory, --cpus and --pids-limit work"),
        Some(reason) => format!("{version}; no limits: {reason}"),
    };
    let bridge = rbuild_runtime::bridge_unavailable();
    let networks = match &bridge {
        None => "host (RUN's default), none, bridge (`rbuild run`'s default)".to_owned(),
        Some(reason) => {
            format!("host (the default of RUN and `rbuild run`), none; no bridge: {reason}")
        }
    };
    let snapshot_text = match &snapshotter {
        rbuild_builder::Snapshotter::Overlayfs => match store.overlay_xattrs().mount_option() {
            Some(option) => format!("overlayfs ({option})"),
            None => "overlayfs".to_owned(),
        },
        rbuild_builder::Snapshotter::Copy { reason } => {
            format!("copy (slower: each step copies its filesystem): {reason}")
        }
    };

    let mut out = crate::output::stdout();
    match args.format {
        FormatArg::Json => {
            let value = serde_json::json!({
                "Version": env!("CARGO_PKG_VERSION"),
                "Kernel": kernel,
                "Store": store.root(),
                "StoreFree": free,
                "User": namespace.map(|ns| &ns.user),
                "Uid": namespace.map(|ns| ns.host_uid),
                "Rootless": namespace.is_some_and(|ns| ns.mode.is_rootless()),
                "Mode": mode,
                "IdMapping": namespace.map(|ns| ns.map.to_string()),
                "Snapshotter": snapshotter.name(),
                "SnapshotterReason": match &snapshotter {
                    rbuild_builder::Snapshotter::Copy { reason } => Some(reason),
                    rbuild_builder::Snapshotter::Overlayfs => None,
                },
                "Cgroups": version,
                "LimitsUnavailable": runtime.limits_unavailable(),
                "BridgeUnavailable": bridge,
            });
            writeln!(out, "{value}").into_diagnostic()?;
        }
        FormatArg::Table => {
            let mut line = |key: &str, value: &str| {
                if !value.is_empty() {
                    writeln!(out, "{key:<12} {value}").into_diagnostic()
                } else {
                    Ok(())
                }
            };
            line("version", env!("CARGO_PKG_VERSION"))?;
            line("kernel", &kernel)?;
            let store_text = match free {
                Some(free) => format!("{} ({} free)", store.root().display(), human_size(free)),
                None => store.root().display().to_string(),
            };
            line("store", &store_text)?;
            line("user", &user)?;
            line("mode", &mode)?;
            if let Some(ns) = namespace.filter(|ns| !ns.map.is_host()) {
                line("id mapping", &ns.map.to_string())?;
            }
            line("snapshotter", &snapshot_text)?;
            line("cgroups", &cgroups)?;
            line("networks", &networks)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
