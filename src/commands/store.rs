//! The store itself: `rbuild du`, `rbuild prune`, `rbuild store verify`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, Result};
use rbuild_store::{CachePrune, GcOptions};

use super::images::{FormatArg, ago, human_size};
use super::open_store;
use crate::progress::{BuildResult, LogSummary, latest_log, list_logs, read_summary};
use crate::size::{parse_duration, parse_size};
use crate::table::{self, Align};

#[derive(Debug, Args)]
pub struct DuArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// List each image's size and the part it shares with other images
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all build cache, not only the steps no image uses, and the
    /// `RUN --mount=type=cache` directories no build is using
    #[arg(short, long)]
    pub all: bool,
    /// Remove build cache, least recently used first, until the store takes at most this
    /// much (e.g. `10g`)
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// `until=DURATION`: only remove build cache unused for at least this long (e.g. `24h`)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Only show what would be removed
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// List the kept build logs instead, newest first: when each build started, the image
    /// it was to make and how it ended
    #[arg(long)]
    pub list: bool,
    /// A log's name (or its start) from `--list`'s BUILD column; the latest build by default
    pub build: Option<String>,
}

#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// The command and its arguments; the user's shell (`$SHELL`, else `/bin/sh`) by default
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rehash every blob and check every image and snapshot; exit non-zero on problems
    Verify {
        /// Remove what is broken (and the names of images that need it) so that later
        /// builds and loads recreate it
        #[arg(long)]
        repair: bool,
    },
}

pub fn du(args: DuArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let usage = store.usage().into_diagnostic()?;
    let mut out = crate::output::stdout();
    match args.format {
        FormatArg::Json => {
            let images: Vec<_> = usage
                .images
                .iter()
                .map(|i| serde_json::json!({"Name": i.name.to_string(), "Size": i.size, "SharedSize": i.shared}))
                .collect();
            let value = serde_json::json!({
                "Total": usage.total,
                "Blobs": {"Count": usage.blob_count, "Size": usage.blobs},
                "Snapshots": {"Count": usage.snapshot_count, "Size": usage.snapshots},
                "Metadata": usage.metadata,
                "CacheMounts": {"Count": usage.cache_mount_count, "Size": usage.cache_mounts},
                "Other": usage.total.saturating_sub(usage.blobs + usage.snapshots + usage.metadata + usage.cache_mounts),
                "Reclaimable": usage.reclaimable,
                "Images": images,
            });
            writeln!(out, "{value}").into_diagnostic()?;
        }
        FormatArg::Table => {
            let other = usage.total.saturating_sub(
                usage.blobs + usage.snapshots + usage.metadata + usage.cache_mounts,
            );
            writeln!(out, "{:<12} {:>7} {:>12}", "TYPE", "COUNT", "SIZE").into_diagnostic()?;
            writeln!(
                out,
                "{:<12} {:>7} {:>12}",
                "blobs",
                usage.blob_count,
                human_size(usage.blobs)
            )
            .into_diagnostic()?;
            writeln!(
                out,
                "{:<12} {:>7} {:>12}",
                "snapshots",
                usage.snapshot_count,
                human_size(usage.snapshots)
            )
            .into_diagnostic()?;
            writeln!(
                out,
                "{:<12} {:>7} {:>12}",
                "cache mounts",
                usage.cache_mount_count,
                human_size(usage.cache_mounts)
            )
            .into_diagnostic()?;
            writeln!(
                out,
                "{:<12} {:>7} {:>12}",
                "metadata",
                "",
                human_size(usage.metadata)
            )
            .into_diagnostic()?;
            writeln!(out, "{:<12} {:>7} {:>12}", "other", "", human_size(other))
                .into_diagnostic()?;
            writeln!(
                out,
                "{:<12} {:>7} {:>12}",
                "total",
                "",
                human_size(usage.total)
            )
            .into_diagnostic()?;
            writeln!(
                out,
                "reclaimable by `rbuild prune`: {}",
                human_size(usage.reclaimable)
            )
            .into_diagnostic()?;
            if args.verbose {
                writeln!(out).into_diagnostic()?;
                writeln!(
                    out,
                    "{:<40} {:>12} {:>12} {:>12}",
                    "IMAGE", "SIZE", "SHARED", "UNIQUE"
                )
                .into_diagnostic()?;
                for image in &usage.images {
                    writeln!(
                        out,
                        "{:<40} {:>12} {:>12} {:>12}",
                        image.name.to_string(),
                        human_size(image.size),
                        human_size(image.shared),
                        human_size(image.size - image.shared)
                    )
                    .into_diagnostic()?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(args: PruneArgs) -> Result<ExitCode> {
    let keep_storage = args
        .keep_storage
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| miette::miette!("--keep-storage: {e}"))?;
    let mut unused_for = None;
    for filter in &args.filter {
        match filter.split_once('=') {
            Some(("until", duration)) => {
                unused_for =
                    Some(parse_duration(duration).map_err(|e| miette::miette!("--filter: {e}"))?);
            }
            _ => {
                return Err(miette::miette!(
                    help = "the supported filter is `until=DURATION`, e.g. `until=24h`",
                    "unknown filter `{filter}`"
                ));
            }
        }
    }
    let cache = match (args.all, keep_storage) {
        (true, _) => CachePrune::All,
        (false, Some(_)) => CachePrune::Keep,
        (false, None) => CachePrune::Dangling,
    };
    let store = open_store()?;
    let report = store
        .gc(&GcOptions {
            dry_run: args.dry_run,
            cache,
            unused_for,
            keep_storage,
        })
        .into_diagnostic()?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let cache_mounts = if args.all {
        format!("{} cache mount(s), ", report.cache_mounts)
    } else {
        String::new()
    };
    outln!(
        "{verb} {} cache record(s), {cache_mounts}{} blob(s) and {} snapshot(s): {}",
        report.cache_records,
        report.blobs,
        report.snapshots,
        human_size(report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// `rbuild logs`: the full log of the last build (or of a given one).
pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let dir = store.root().join("logs");
    let logs = list_logs(&dir);
    if args.list {
        let now = rbuild_store::time::now_unix();
        let rows: Vec<Vec<String>> = logs.iter().rev().map(|log| log_row(log, now)).collect();
        let columns = [
            ("BUILD", Align::Left),
            ("STARTED", Align::Left),
            ("IMAGE", Align::Left),
            ("RESULT", Align::Left),
        ];
        crate::output::stdout()
            .write_all(table::render(&columns, &rows).as_bytes())
            .into_diagnostic()?;
        return Ok(ExitCode::SUCCESS);
    }
    let log = match &args.build {
        Some(name) => logs
            .iter()
            .rev()
            .find(|log| {
                log.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(name.as_str()))
            })
            .cloned()
            .ok_or_else(|| {
                miette::miette!(
                    help = "`rbuild logs --list` lists them",
                    "no build log `{name}`"
                )
            })?,
        None => latest_log(&dir)
            .ok_or_else(|| miette::miette!("no build has run with this store yet"))?,
    };
    let text = std::fs::read(&log).into_diagnostic()?;
    crate::output::stdout().write_all(&text).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

/// One line of `logs --list`: the log's name (what `rbuild logs` takes), when the build
/// started, the image it was to make (its names, else its IMAGE ID), how it ended.
fn log_row(log: &std::path::Path, now: i64) -> Vec<String> {
    let name = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Names are `<seconds>.<nanos>-<pid>` (see `BuildLog::create`).
    let started = name
        .split_once('.')
        .and_then(|(seconds, _)| seconds.parse::<i64>().ok())
        .map_or_else(|| "N/A".to_owned(), |t| ago(now - t));
    let summary = read_summary(log);
    let image = match &summary {
        Some(summary) if !summary.tags.is_empty() => summary.tags.join(", "),
        Some(LogSummary {
            image: Some(image), ..
        }) => image
            .parse::<rbuild_store::Digest>()
            .map_or_else(|_| image.clone(), |id| id.short().to_owned()),
        _ => "-".to_owned(),
    };
    let result = match summary.map(|s| s.result) {
        Some(Some(BuildResult::Succeeded)) => "succeeded",
        Some(Some(BuildResult::Failed)) => "failed",
        Some(Some(BuildResult::Cancelled)) => "cancelled",
        // Still running, or killed.
        Some(None) => "unfinished",
        // Logged by an rbuild that kept no summary.
        None => "-",
    };
    vec![name, started, image, result.to_owned()]
}

pub fn store(args: StoreArgs) -> Result<ExitCode> {
    match args.command {
        StoreCommand::Verify { repair } => verify(repair),
    }
}

fn verify(repair: bool) -> Result<ExitCode> {
    let store = open_store()?;
    let report = store.verify().into_diagnostic()?;
    let mut out = crate::output::stdout();
    for digest in &report.corrupt {
        writeln!(out, "corrupt blob {digest}").into_diagnostic()?;
    }
    for (digest, images) in &report.missing {
        let names: Vec<String> = images.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "missing blob {digest} (needed by {})",
            names.join(", ")
        )
        .into_diagnostic()?;
    }
    for name in &report.broken_images {
        writeln!(out, "broken image {name}").into_diagnostic()?;
    }
    for digest in &report.broken_snapshots {
        writeln!(out, "broken snapshot {digest}").into_diagnostic()?;
    }
    if report.is_clean() {
        writeln!(out, "{} blobs verified, no problems found", report.blobs).into_diagnostic()?;
        return Ok(ExitCode::SUCCESS);
    }
    if repair {
        store.repair(&report).into_diagnostic()?;
        writeln!(
            out,
            "repaired: broken objects removed; build or load the images again"
        )
        .into_diagnostic()?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("help: `rbuild store verify --repair` removes what is broken");
    Ok(ExitCode::FAILURE)
}

/// `rbuild unshare [CMD...]`: the command as root of rbuild's user namespace, where the
/// store's files have their container owners (as `podman unshare`); `RBUILD_ROOT` names the
/// store. As root, the command simply runs.
pub fn unshare(args: UnshareArgs) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_owned());
    let (program, rest) = match args.command.split_first() {
        Some((program, rest)) => (program.clone(), rest.to_vec()),
        None => (shell, Vec::new()),
    };
    let err = std::process::Command::new(&program)
        .args(&rest)
        .env("RBUILD_ROOT", crate::rootless::store_root())
        .exec();
    Err(miette::miette!("cannot run `{program}`: {err}"))
}
