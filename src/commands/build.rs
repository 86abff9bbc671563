//! `rbuild build`: reads the flags into a plan (`options`), answers `--call` and `--print`
//! without building, builds with the builder under a session (progress, log, signals), and
//! hands the result to the builder's exporters (`finish`).

use std::process::ExitCode;

use miette::Result;
use rbuild_builder::{BuildError, Builder, ExportOptions, Exporter};

use super::check::warn_before_build;
use super::open_store;
use super::registry::open_registry;
use crate::progress::BuildResult;
use crate::report::build_error;

mod args;
mod attest;
mod call;
mod debug;
pub(crate) mod epoch;
mod finish;
mod flags;
mod git_context;
mod graph;
mod options;
mod session;
mod stdin;

pub use args::{BuildArgs, PrintArg, ProgressArg};

pub async fn build(mut args: BuildArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let plan = options::plan(&mut args)?;
    let mut opts = plan.opts;
    let (dockerfile_path, dockerfile) = (&plan.source.dockerfile_path, &plan.source.dockerfile);
    let ignore = plan.source.ignore.as_deref();
    let convert_opts = rbuild_frontend::ConvertOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        // The checks look at the first platform's build.
        platform: opts.platforms.first().cloned().unwrap_or_default(),
        ..Default::default()
    };
    match flags::call(&args) {
        flags::CallArg::Build => {}
        flags::CallArg::Check => {
            let format = super::check::FormatArg::Text;
            return super::check::check_text(
                dockerfile_path,
                dockerfile,
                ignore,
                convert_opts,
                format,
            );
        }
        method @ (flags::CallArg::Outline | flags::CallArg::Targets) => {
            let df = rbuild_frontend::parse(dockerfile)
                .map_err(|err| build_error(err.into(), dockerfile_path, dockerfile))?;
            let text = if method == flags::CallArg::Targets {
                call::targets(&df, dockerfile)
            } else {
                call::outline(&df, dockerfile, opts.target.as_deref()).map_err(|message| {
                    miette::miette!(help = "list the stages with `--call targets`", "{message}")
                })?
            };
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = open_store()?;
    if args.print == Some(PrintArg::Graph) {
        let path = dockerfile_path;
        return graph::print_graph(&store, path, dockerfile, &convert_opts, args.pull).await;
    }
    warn_before_build(&store, dockerfile_path, dockerfile, &convert_opts, ignore)?;
    let runtime = super::open_runtime_in(&store, plan.cgroup_parent.as_deref())?;
    super::check_limits(&runtime, &opts.limits)?;
    let quiet_transfers = matches!(args.progress, ProgressArg::Quiet | ProgressArg::Json);
    let builder =
        Builder::new(store.clone(), runtime).with_registry(open_registry(quiet_transfers)?);
    for cache in &plan.cache_from {
        match builder.import_cache(&cache.reference).await {
            Ok(import) => {
                if !quiet_transfers {
                    let records = import.records.len();
                    eprintln!(
                        "imported {records} cache record(s) from {}",
                        cache.reference
                    );
                }
                opts.cache_from.push(import);
            }
            Err(err) => {
                // Loud, and not fatal: the build runs without that cache.
                eprintln!(
                    "WARNING: cannot import the build cache from {}; building without it:",
                    cache.reference
                );
                eprintln!("{:?}", miette::Report::from_err(err));
            }
        }
    }
    if let (rbuild_builder::Snapshotter::Copy { reason }, false) =
        (builder.snapshotter(), quiet_transfers)
    {
        eprintln!(
            "note: layers are copied instead of mounted with overlayfs, which is slower ({reason}; see `rbuild info`)"
        );
    }
    let session = session::Session::start(args.progress, store.root(), &plan.tags);
    let export_opts = ExportOptions {
        compression: args.compression.into(),
        source_date_epoch: opts.source_date_epoch,
    };
    let progress = session.progress.clone();
    let result = match builder.build(opts, progress, session.cancel.clone()).await {
        Ok(result) => result,
        Err(BuildError::Cancelled) => {
            session.end(BuildResult::Cancelled, None);
            eprintln!("build cancelled");
            return Ok(ExitCode::from(130));
        }
        Err(err) => {
            let outcome = finish::failed(err, &args, &plan.source, &session).await;
            session.end(BuildResult::Failed, None);
            return outcome;
        }
    };
    // `--push` pushes every name, then `-o` outputs go in their order, then `--cache-to`.
    let pushes = args.push.then_some(&result.tags).into_iter().flatten();
    let exporters: Vec<Exporter> = pushes
        .map(|tag| Exporter::Registry(tag.to_reference()))
        .chain(
            plan.outputs
                .into_iter()
                .filter_map(|output| output.exporter()),
        )
        .chain(plan.cache_to.into_iter().map(Exporter::Cache))
        .collect();
    // Ctrl-C and SIGTERM still stop what follows (pushes, outputs, the cache export): a
    // cancelled CI job must not go on uploading or move a registry's tag.
    let finished = finish::finish(&args, &builder, &result, exporters, export_opts, started);
    let (outcome, ended) = tokio::select! {
        outcome = finished => {
            let ended = if outcome.is_ok() { BuildResult::Succeeded } else { BuildResult::Failed };
            (outcome, ended)
        }
        () = session.cancel.cancelled() => {
            eprintln!("build cancelled");
            (Ok(ExitCode::from(130)), BuildResult::Cancelled)
        }
    };
    session.end(ended, Some(&result.config));
    outcome
}
