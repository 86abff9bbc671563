//! After the steps: a failed build reported (with a shell into the failed step when asked),
//! or a built image exported (`--push`, `-o`, `--cache-to`), recorded (`--iidfile`,
//! `--metadata-file`) and summed up.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::{
    BuildError, BuildResult, Builder, ExportError, ExportOptions, Exported, Exporter,
};
use rbuild_store::{Digest, Reference};

use super::{BuildArgs, ProgressArg, debug, stdin};
use crate::commands::registry::report;
use crate::report::build_error;
use crate::size::parse_size;

/// Reports a failed build; opens a shell in the failed step's state with `--on-error
/// shell` (or prints how to, where there is no terminal).
pub(super) async fn failed(
    mut err: BuildError,
    args: &BuildArgs,
    source: &stdin::Source,
    session: &super::session::Session,
) -> Result<ExitCode> {
    if let Some(note) = source.failure_note(&err) {
        eprintln!("{note}");
    }
    let (path, dockerfile) = (&source.dockerfile_path, &source.dockerfile);
    let kept = err.take_failed_step();
    let run_failed = matches!(
        err,
        BuildError::RunFailed { .. } | BuildError::OutOfMemory { .. }
    );
    let report = build_error(err, path, dockerfile);
    session.note_failure(&report);
    if let Some(step) = kept {
        eprintln!("{report:?}");
        debug::open_shell(step, &path.display().to_string(), dockerfile).await;
        return Ok(ExitCode::FAILURE);
    }
    if run_failed && args.on_error == debug::OnError::Shell {
        eprintln!("{report:?}");
        let from_stdin = args.context.as_os_str() == "-"
            || args
                .file
                .as_deref()
                .is_some_and(|file| file.as_os_str() == "-");
        debug::print_shell_command(from_stdin);
        return Ok(ExitCode::FAILURE);
    }
    Err(report)
}

/// Everything after a successful build, in order: the id file, automatic garbage
/// collection, the exporters, the metadata file, the summary and the id on stdout, and
/// `--fail-on-miss`.
pub(super) async fn finish(
    args: &BuildArgs,
    builder: &Builder,
    result: &BuildResult,
    exporters: Vec<Exporter>,
    opts: ExportOptions,
    started: Instant,
) -> Result<ExitCode> {
    // A tar on stdout (`-o -`) is the only data there: the id would corrupt it.
    let writes_stdout = exporters.iter().any(|exporter| {
        matches!(
            exporter,
            Exporter::Archive(_, rbuild_builder::Destination::Writer(_))
                | Exporter::Tar(rbuild_builder::Destination::Writer(_))
        )
    });
    if let Some(path) = &args.iidfile {
        std::fs::write(path, result.config.to_string())
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the image id to {}", path.display()))?;
    }
    auto_gc(builder.store()).await;
    let quiet = args.progress == ProgressArg::Quiet;
    let mut pushed: Vec<(Reference, Digest)> = Vec::new();
    let mut reported = |exported: Exported| match exported {
        Exported::Pushed { target, digest } => {
            if !quiet {
                eprintln!("pushed {target}@{digest}");
            }
            pushed.push((target, digest));
        }
        Exported::Cache {
            target,
            digest,
            records,
            mounts,
        } if !quiet => {
            let mounts = match mounts {
                0 => String::new(),
                n => format!(" and {n} cache mount(s)"),
            };
            eprintln!("exported {records} cache record(s){mounts} to {target}@{digest}");
        }
        Exported::CacheFailed { error, .. } => {
            eprintln!("WARNING: the build cache was not exported (ignore-error=true):");
            eprintln!("{:?}", export_report(error));
        }
        Exported::Cache { .. } | Exported::Written => {}
    };
    builder
        .export(result, exporters, opts, &mut reported)
        .await
        .map_err(export_report)?;
    if let Some(path) = &args.metadata_file {
        write_metadata(path, result, &pushed, builder.store())?;
    }
    if !quiet {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        eprintln!(
            "{} step{} run, {} cached, in {}",
            result.executed,
            plural(result.executed),
            result.cached,
            crate::progress::seconds(started.elapsed())
        );
        eprintln!("writing image {}", result.config);
        for tag in &result.tags {
            eprintln!("naming to {tag}");
        }
    }
    if !writes_stdout {
        outln!("{}", result.config);
    }
    if args.fail_on_miss && !result.misses.is_empty() {
        for miss in &result.misses {
            let reason = miss
                .reason
                .as_deref()
                .unwrap_or("no earlier build of this step to compare with");
            eprintln!("cache miss: [{}] {}: {reason}", miss.step, miss.description);
        }
        return Err(miette::miette!(
            help = "the image was built and named; `--fail-on-miss` failed the command because steps ran",
            "{} step(s) missed the cache",
            result.misses.len()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// An exporter's error as the CLI shows it: a registry's with its help.
fn export_report(err: ExportError) -> miette::Report {
    let message = err.to_string();
    match err {
        ExportError::Push { source, .. } | ExportError::Cache { source, .. } => {
            report(*source).wrap_err(message)
        }
        ExportError::Build(err) => crate::rootless::report(err),
        other => miette::Report::from_err(other),
    }
}

/// `--metadata-file`: buildx's keys, and rbuild's own.
fn write_metadata(
    path: &Path,
    result: &BuildResult,
    pushed: &[(Reference, Digest)],
    store: &rbuild_store::Store,
) -> Result<()> {
    // Pushed, the image is the manifest the registry has (its layers compressed), not the
    // store's: that is the digest to sign or deploy, as with BuildKit.
    let digest = pushed.first().map_or_else(
        || result.manifest.digest.to_string(),
        |(_, d)| d.to_string(),
    );
    let mut names: Vec<String> = result.tags.iter().map(ToString::to_string).collect();
    for (target, _) in pushed {
        let target = target.to_string();
        if !names.contains(&target) {
            names.push(target);
        }
    }
    let metadata = serde_json::json!({
        "containerimage.config.digest": result.config.to_string(),
        "containerimage.digest": digest,
        "rbuild.local.digest": result.manifest.digest.to_string(),
        "image.name": names.join(","),
        "rbuild.steps.cached": result.cached,
        "rbuild.steps.run": result.executed,
        "rbuild.pushed": pushed.iter().map(|(target, digest)| format!("{target}@{digest}")).collect::<Vec<_>>(),
        "rbuild.cache.misses": result.misses.iter().map(|m| serde_json::json!({
            "step": m.step, "description": m.description, "reason": m.reason,
        })).collect::<Vec<_>>(),
    });
    let mut metadata = metadata;
    // As buildx: each image's provenance predicate, under `buildx.build.provenance` (one
    // platform) or `buildx.build.provenance/<os/arch>` (several).
    let several = result.platforms.len() > 1;
    for image in &result.platforms {
        let statements = store
            .attestations(&result.manifest.digest, &image.manifest.digest)
            .into_diagnostic()?;
        let provenance = statements
            .iter()
            .find(|s| s.predicate_type == rbuild_builder::PREDICATE_SLSA_PROVENANCE_V1)
            .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.bytes).ok());
        if let Some(statement) = provenance {
            let key = if several {
                format!("buildx.build.provenance/{}", image.platform)
            } else {
                "buildx.build.provenance".to_owned()
            };
            metadata[key] = statement["predicate"].clone();
        }
    }
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&metadata).into_diagnostic()?,
    )
    .into_diagnostic()
    .wrap_err_with(|| format!("cannot write {}", path.display()))
}

/// With `RBUILD_GC_KEEP_STORAGE` set (e.g. `20g`), a build that leaves the store above that
/// size collects garbage right away: unused objects, then build cache, least recently used
/// first, until the store fits again.
async fn auto_gc(store: &rbuild_store::Store) {
    let Some(bound) = std::env::var("RBUILD_GC_KEEP_STORAGE")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| parse_size(&v).ok())
    else {
        return;
    };
    let store = store.clone();
    let report = tokio::task::spawn_blocking(
        move || -> rbuild_store::Result<Option<rbuild_store::GcReport>> {
            if store.estimated_usage()? <= bound {
                return Ok(None);
            }
            store
                .gc(&rbuild_store::GcOptions {
                    keep_storage: Some(bound),
                    ..Default::default()
                })
                .map(Some)
        },
    )
    .await;
    match report {
        Ok(Ok(Some(report))) => eprintln!(
            "the store was above RBUILD_GC_KEEP_STORAGE: removed {} cache record(s), {} blob(s) and {} snapshot(s)",
            report.cache_records, report.blobs, report.snapshots
        ),
        Ok(Ok(None)) => {}
        Ok(Err(err)) => eprintln!("warning: automatic garbage collection failed: {err}"),
        Err(err) => eprintln!("warning: automatic garbage collection failed: {err}"),
    }
}
