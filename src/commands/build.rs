//! `rbuild build`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::{BuildError, BuildOptions, Builder, Cancel, Progress, SecretSource};
use rbuild_runtime::{CpuQuota, Limits};

use super::check::{base_configs, warn_before_build};
use super::outputs::{Output, parse_cache, parse_outputs, write_output};
use super::registry::{CompressionArg, open_registry, push_image, report};
use super::{key_value, network, open_store, parse_name};
use crate::cli::NetworkArg;
use crate::progress::{
    BuildLog, BuildResult, JsonProgress, PlainProgress, QuietProgress, Tee, TtyProgress,
};
use crate::report::build_error;
use crate::size::parse_size;

mod call;
mod debug;
pub(crate) mod epoch;
mod flags;
mod git_context;
mod stdin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A live view on a terminal, plain text otherwise
    Auto,
    /// The live view
    Tty,
    /// Numbered steps, each step's output grouped, with timings: for logs and CI
    Plain,
    /// One JSON object per event, on stderr (rbuild's own events; `rawjson` is accepted
    /// for buildx's name)
    #[value(alias = "rawjson")]
    Json,
    /// Nothing but errors and the image id
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrintArg {
    /// The build graph: ops with digests and definitions, then the image config and history
    Graph,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name for the image (`name[:tag]`); may be repeated
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/dockerfile); `-` reads it
    /// from standard input
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
    /// CPU time for each RUN step, in CPUs (e.g. `1.5`)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VARIABLE`
    /// (`type=file|env` too); may be repeated
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// An extra build context, for `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME`: a directory, or `docker-image://REF`; it replaces a stage
    /// or an image of that name; may be repeated
    #[arg(long = "build-context", value_name = "NAME=DIR|docker-image://REF")]
    pub build_contexts: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (or any id) is the agent of
    /// $SSH_AUTH_SOCK, `ID=SOCKET` another agent, `ID=KEY[,KEY]` private keys loaded into an
    /// agent rbuild starts for the build; may be repeated
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY,...]")]
    pub ssh: Vec<String>,
    /// How to show progress; with `auto`, `BUILDKIT_PROGRESS` chooses when it is set
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Run every step; reuse nothing from the build cache
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// What a failed RUN step leads to: `fail`, or `shell`: a shell in the step's state
    /// once the error is shown (its changes are not kept)
    #[arg(long = "on-error", value_enum, value_name = "fail|shell", default_value_t = debug::OnError::Fail, hide_possible_values = true)]
    pub on_error: debug::OnError,
    /// Fail (after building) if any step ran instead of coming from the cache: for CI
    /// checks that a rebuild is fully cached. Each such step is listed with the reason
    #[arg(long = "fail-on-miss")]
    pub fail_on_miss: bool,
    /// Run every step of this stage, without the cache; may be repeated
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Set a label on the image (`KEY=VALUE`, or `KEY` for an empty value); may be
    /// repeated
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Also write the result: `type=oci,dest=FILE`, `type=docker,dest=FILE`,
    /// `type=tar,dest=FILE` (the filesystem), `type=local,dest=DIR`, just `DIR`, or `-`
    /// (the filesystem as a tar on standard output)
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub outputs: Vec<String>,
    /// Write the image id (config digest) to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON (image and manifest digests, names, cache counts)
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Print this to stdout instead of building
    #[arg(long, value_enum, value_name = "WHAT")]
    pub print: Option<PrintArg>,
    /// Pull every base image, even the ones the store has
    #[arg(long)]
    pub pull: bool,
    /// Push the image to its names (`-t`) once it is built
    #[arg(long)]
    pub push: bool,
    /// How pushes compress layers the store holds uncompressed
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Import a build cache: `type=registry,ref=REF` (or just `REF`); may be repeated.
    /// A cache that cannot be read is reported and the build goes on without it
    #[arg(long = "cache-from", value_name = "CACHE")]
    pub cache_from: Vec<String>,
    /// Export the build cache: `type=registry,ref=REF[,mode=min|max][,mounts=true]
    /// [,ignore-error=true]` (`min`, the default: the steps of the image's own stage; `max`:
    /// every step; `mounts=true`: the contents of the build's `RUN --mount=type=cache`
    /// directories too; `ignore-error=true`: a failed export only warns)
    #[arg(long = "cache-to", value_name = "CACHE")]
    pub cache_to: Vec<String>,
    // docker build's flags for scripts (see `flags`). Fields, not a flattened struct: a
    // flatten would empty this struct's argument group, by which `rbuild -t NAME CONTEXT`
    // (no `build`) is recognised.
    /// Print nothing but the image id (on stdout) and errors; the same as `--progress quiet`
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// What to do instead of building, as buildx's `--call`: `check` (as `rbuild check`),
    /// `outline` (the build arguments and secrets of the target), `targets` (the stages)
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = flags::CallArg::Build)]
    pub call: flags::CallArg,
    /// Short for `--call check`
    #[arg(long)]
    pub check: bool,
    /// Allow an entitlement, as docker build's flag
    #[arg(
        long = "allow",
        value_enum,
        value_name = "ENTITLEMENT",
        value_delimiter = ','
    )]
    pub allow: Vec<flags::EntitlementArg>,
    /// Accepted for docker buildx's sake: the image is always in rbuild's store
    #[arg(long)]
    pub load: bool,
    /// The target platform: only this machine's (`linux/<arch>`) is built; another is
    /// refused (also read from DOCKER_DEFAULT_PLATFORM)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// Accepted as `false` only: rbuild makes no provenance attestation yet
    #[arg(long, value_name = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub provenance: Option<String>,
    /// Accepted as `false` only: rbuild makes no SBOM attestation yet
    #[arg(long, value_name = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sbom: Option<String>,
    /// Add a line to /etc/hosts of every RUN step (`NAME:IP` or `NAME=IP`); may be repeated
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// A resource limit of every RUN step (`nofile=1024:2048`, `nproc=512`; -1 for
    /// unlimited); may be repeated
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. `128m`) [default: 64m]
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Cgroup under which each RUN step gets its own, relative to the hierarchy's root
    /// (a leading `/` changes nothing) [default: rbuild]
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    pub cgroup_parent: Option<String>,
    /// The build context directory; `-` reads a tar of the context (plain, gzip, bzip2, xz
    /// or zstd) or a Dockerfile alone from standard input
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

pub async fn build(mut args: BuildArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    // As docker does: a build that fails must not leave the id (or metadata) of an earlier
    // build where a script would take it for this one's.
    for path in [&args.iidfile, &args.metadata_file].into_iter().flatten() {
        remove_stale(path)?;
    }
    args.progress = flags::progress(args.progress, args.quiet)?;
    flags::check_platforms(&args.platform)?;
    flags::check_attestations("--provenance", args.provenance.as_deref())?;
    flags::check_attestations("--sbom", args.sbom.as_deref())?;
    let tags = args
        .tags
        .iter()
        .map(|t| parse_name(t))
        .collect::<Result<Vec<_>>>()?;
    let outputs = parse_outputs(&args.outputs)?;
    let mut build_args: BTreeMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| key_value(a))
        .collect();
    let secrets = args
        .secrets
        .iter()
        .map(|text| parse_secret(text))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let ssh = args
        .ssh
        .iter()
        .map(|text| {
            super::ssh::parse(
                text,
                std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|value| !value.is_empty())
                    .map(PathBuf::from),
            )
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let source = if git_context::is_git_context(&args.context) {
        let auth = git_context::GitAuth {
            token: secrets
                .get("GIT_AUTH_TOKEN")
                .and_then(|secret| secret.read("GIT_AUTH_TOKEN").ok().flatten())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(|token| token.trim().to_owned()),
            ssh_agent: match ssh.get("default") {
                Some(rbuild_builder::SshSource::Socket(socket)) => Some(socket.clone()),
                _ => None,
            },
        };
        let keep_git_dir = build_args
            .get("BUILDKIT_CONTEXT_KEEP_GIT_DIR")
            .is_some_and(|value| matches!(value.as_str(), "1" | "true"));
        git_context::open(&args.context, args.file.as_deref(), auth, keep_git_dir)?
    } else {
        stdin::Source::open(&args.context, args.file.as_deref())?
    };
    let dockerfile_path = source.dockerfile_path.clone();
    let dockerfile = source.dockerfile.clone();
    let run_steps = flags::run_steps(&args)?;
    let cgroup_parent = run_steps.cgroup_parent.clone();
    let memory = args
        .memory
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| miette::miette!("--memory: {e}"))?;
    if let Some(cpus) = args.cpus
        && CpuQuota::from_cpus(cpus).is_none()
    {
        return Err(miette::miette!(
            help = "give a number of CPUs of at least 0.01, e.g. `--cpus 1.5`",
            "--cpus: invalid value `{cpus}`"
        ));
    }
    let source_date_epoch = epoch::resolve(
        &mut build_args,
        &dockerfile,
        &source.dockerfile_path,
        source.context_time,
    )?;
    let ignore = source.ignore.clone();
    let opts = BuildOptions {
        dockerfile: dockerfile.clone(),
        context: source.context.clone(),
        build_args,
        target: args.target.clone(),
        tags: tags.clone(),
        network: network(args.network),
        limits: Limits {
            memory_bytes: memory,
            pids: args.pids_limit,
            cpu: args.cpus.and_then(CpuQuota::from_cpus),
            ..Limits::default()
        },
        source_date_epoch,
        ignore: ignore.clone(),
        no_cache: args.no_cache,
        keep_failed_step: args.on_error == debug::OnError::Shell && debug::can_open_shell(),
        labels: args
            .labels
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<_>>()?,
        no_cache_filter: args.no_cache_filter.clone(),
        secrets,
        pull: args.pull,
        cache_from: Vec::new(),
        named_contexts: args
            .build_contexts
            .iter()
            .map(|text| super::build_context::parse(text))
            .collect::<Result<_>>()?,
        ssh,
        extra_hosts: run_steps.extra_hosts,
        rlimits: run_steps.rlimits,
        shm_size: run_steps.shm_size,
        allow_insecure: args
            .allow
            .contains(&flags::EntitlementArg::SecurityInsecure),
    };
    let cache_from = args
        .cache_from
        .iter()
        .map(|c| parse_cache(c, "--cache-from"))
        .collect::<Result<Vec<_>>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|c| parse_cache(c, "--cache-to"))
        .collect::<Result<Vec<_>>>()?;
    if args.push && tags.is_empty() {
        return Err(miette::miette!(
            help = "name the image with `-t REGISTRY/REPOSITORY:TAG`",
            "`--push` needs a name to push to"
        ));
    }
    let mut opts = opts;
    let convert_opts = rbuild_frontend::ConvertOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        ..Default::default()
    };
    match flags::call(&args) {
        flags::CallArg::Build => {}
        flags::CallArg::Check => {
            return super::check::check_text(
                &dockerfile_path,
                &dockerfile,
                ignore.as_deref(),
                convert_opts,
                super::check::FormatArg::Text,
            );
        }
        method @ (flags::CallArg::Outline | flags::CallArg::Targets) => {
            let df = rbuild_frontend::parse(&dockerfile)
                .map_err(|err| build_error(err.into(), &dockerfile_path, &dockerfile))?;
            let text = if method == flags::CallArg::Targets {
                call::targets(&df, &dockerfile)
            } else {
                call::outline(&df, &dockerfile, opts.target.as_deref()).map_err(|message| {
                    miette::miette!(help = "list the stages with `--call targets`", "{message}")
                })?
            };
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = open_store()?;
    if args.print == Some(PrintArg::Graph) {
        let df = rbuild_frontend::parse(&dockerfile)
            .map_err(|err| build_error(err.into(), &dockerfile_path, &dockerfile))?;
        let bases = print_base_configs(&store, &df, &convert_opts, args.pull)
            .await
            .map_err(|err| build_error(err, &dockerfile_path, &dockerfile))?;
        let graph = rbuild_frontend::convert(&df, &convert_opts, &bases)
            .map_err(|err| build_error(err.into(), &dockerfile_path, &dockerfile))?;
        print!("{}", rbuild_frontend::dump_graph(&graph));
        return Ok(ExitCode::SUCCESS);
    }
    warn_before_build(
        &store,
        &dockerfile_path,
        &dockerfile,
        &convert_opts,
        ignore.as_deref(),
    )?;
    let runtime = super::open_runtime_in(&store, cgroup_parent.as_deref())?;
    super::check_limits(&runtime, &opts.limits)?;
    let builder_root = store.root().to_owned();
    let output_store = store.clone();
    let quiet_transfers = matches!(args.progress, ProgressArg::Quiet | ProgressArg::Json);
    let registry = open_registry(quiet_transfers)?;
    for cache in &cache_from {
        match registry.pull_cache(&store, &cache.reference).await {
            Ok(import) => {
                if !quiet_transfers {
                    eprintln!(
                        "imported {} cache record(s) from {}",
                        import.records.len(),
                        cache.reference
                    );
                }
                opts.cache_from.push(import);
            }
            Err(err) => {
                // Loud, and not fatal: the build runs without that cache.
                let report = miette::Report::from_err(err);
                eprintln!(
                    "WARNING: cannot import the build cache from {}; building without it:",
                    cache.reference
                );
                eprintln!("{report:?}");
            }
        }
    }
    let builder = Builder::new(store, runtime).with_registry(registry.clone());
    let snapshotter = builder.snapshotter().clone();
    if let (rbuild_builder::Snapshotter::Copy { reason }, false) = (
        builder.snapshotter(),
        matches!(args.progress, ProgressArg::Quiet | ProgressArg::Json),
    ) {
        eprintln!(
            "note: layers are copied instead of mounted with overlayfs, which is slower ({reason}; see `rbuild info`)"
        );
    }
    let shown: Arc<dyn Progress> = match args.progress {
        ProgressArg::Quiet => Arc::new(QuietProgress),
        ProgressArg::Json => Arc::new(JsonProgress::new()),
        ProgressArg::Tty => Arc::new(TtyProgress::new()),
        ProgressArg::Auto if std::io::stderr().is_terminal() => Arc::new(TtyProgress::new()),
        ProgressArg::Auto | ProgressArg::Plain => Arc::new(PlainProgress::new()),
    };
    // The whole log, whatever is shown, for `rbuild logs`.
    let mut renderers = vec![shown];
    let log = BuildLog::create(builder_root.as_path(), &tags)
        .ok()
        .map(Arc::new);
    if let Some(log) = &log {
        renderers.push(log.clone());
    }
    let finish_log = |result, image| {
        if let Some(log) = &log {
            log.finish(result, image);
        }
    };
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
    let source_date_epoch = opts.source_date_epoch;
    let result = builder.build(opts, progress, cancel.clone()).await;
    let result = match result {
        Ok(result) => result,
        Err(rbuild_builder::BuildError::Cancelled) => {
            signals.abort();
            finish_log(BuildResult::Cancelled, None);
            eprintln!("build cancelled");
            return Ok(ExitCode::from(130));
        }
        Err(mut err) => {
            signals.abort();
            finish_log(BuildResult::Failed, None);
            if let Some(note) = source.failure_note(&err) {
                eprintln!("{note}");
            }
            let kept = err.take_failed_step();
            let run_failed = matches!(
                err,
                BuildError::RunFailed { .. } | BuildError::OutOfMemory { .. }
            );
            let report = build_error(err, &dockerfile_path, &dockerfile);
            if let Some(step) = kept {
                eprintln!("{report:?}");
                debug::open_shell(step, &dockerfile_path.display().to_string(), &dockerfile).await;
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
            return Err(report);
        }
    };
    let writes_stdout = outputs.iter().any(|o| o.to_stdout());
    // Ctrl-C and SIGTERM still stop what follows (pushes, outputs, the cache export): a
    // cancelled CI job must not go on uploading or move a registry's tag.
    let finish = async {
        if let Some(path) = &args.iidfile {
            write_iidfile(path, &result.config.to_string())?;
        }
        auto_gc(&output_store).await;
        let compression = args.compression.into();
        let quiet = args.progress == ProgressArg::Quiet;
        let mut pushed = Vec::new();
        if args.push {
            for tag in &result.tags {
                let target = tag.to_reference();
                let digest = push_image(
                    &registry,
                    &output_store,
                    &result.manifest.digest,
                    &target,
                    compression,
                    quiet,
                )
                .await?;
                pushed.push((target, digest));
            }
        }
        for output in outputs {
            if let Output::Registry(target) = &output {
                let digest = push_image(
                    &registry,
                    &output_store,
                    &result.manifest.digest,
                    target,
                    compression,
                    quiet,
                )
                .await?;
                pushed.push((target.clone(), digest));
                continue;
            }
            write_output(
                &output_store,
                &snapshotter,
                &result,
                output,
                source_date_epoch,
            )
            .await?;
        }
        for cache in &cache_to {
            let records = result
                .cache_records
                .iter()
                .filter(|(_, in_result)| cache.max || *in_result)
                .map(|(record, _)| record.clone())
                .collect();
            let mounts: Vec<String> = if cache.mounts {
                result
                    .cache_mounts
                    .iter()
                    .filter(|id| output_store.has_cache_mount(id))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let export = rbuild_store::registry::CacheExport {
                records,
                compression,
                mounts,
                traces: result.traces.clone(),
            };
            let exported = registry
                .push_cache(&output_store, &cache.reference, &export)
                .await
                .map_err(report)
                .wrap_err_with(|| format!("cannot export the build cache to {}", cache.reference));
            let digest = match exported {
                Ok(digest) => digest,
                Err(err) if cache.ignore_error => {
                    eprintln!("WARNING: the build cache was not exported (ignore-error=true):");
                    eprintln!("{err:?}");
                    continue;
                }
                Err(err) => return Err(err),
            };
            if !quiet {
                let mounts = match export.mounts.len() {
                    0 => String::new(),
                    n => format!(" and {n} cache mount(s)"),
                };
                eprintln!(
                    "exported {} cache record(s){mounts} to {}@{digest}",
                    export.records.len(),
                    cache.reference
                );
            }
        }
        if let Some(path) = &args.metadata_file {
            // Pushed, the image is the manifest the registry has (its layers compressed),
            // not the store's: that is the digest to sign or deploy, as with BuildKit.
            let digest = pushed.first().map_or_else(
                || result.manifest.digest.to_string(),
                |(_, d)| d.to_string(),
            );
            let mut names: Vec<String> = result.tags.iter().map(ToString::to_string).collect();
            for (target, _) in &pushed {
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
            std::fs::write(
                path,
                serde_json::to_vec_pretty(&metadata).into_diagnostic()?,
            )
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        }
        if args.progress != ProgressArg::Quiet {
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
        // A tar on stdout (`-o -`) is the only data there: the id would corrupt it.
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
        Ok::<ExitCode, miette::Report>(ExitCode::SUCCESS)
    };
    let (outcome, result_of) = tokio::select! {
        outcome = finish => {
            let result_of = if outcome.is_ok() { BuildResult::Succeeded } else { BuildResult::Failed };
            (outcome, result_of)
        }
        () = cancel.cancelled() => {
            eprintln!("build cancelled");
            (Ok(ExitCode::from(130)), BuildResult::Cancelled)
        }
    };
    signals.abort();
    finish_log(result_of, Some(&result.config));
    outcome
}

/// `--secret id=ID[,type=file|env][,src=FILE][,env=VAR]`, as buildx reads it: `src` (or
/// `source`) is a file, or with `type=env` a variable's name; `env=VAR` is a variable;
/// with neither, the variable named like the id. Values are read when a step mounts them.
fn parse_secret(text: &str) -> Result<(String, SecretSource)> {
    let mut kind = None;
    let (mut id, mut src, mut env) = (None, None, None);
    for field in text.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(miette::miette!(
                help = "write `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR`",
                "--secret `{text}`: `{field}` is not `key=value`"
            ));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" if value == "file" || value == "env" => kind = Some(value.to_owned()),
            "type" => {
                return Err(miette::miette!(
                    help = "the types are `file` and `env`",
                    "--secret `{text}`: unsupported secret type `{value}`"
                ));
            }
            "id" => id = Some(value.to_owned()),
            "src" | "source" => src = Some(value.to_owned()),
            "env" => env = Some(value.to_owned()),
            _ => {
                return Err(miette::miette!(
                    help = "the keys are `id`, `type`, `src` (or `source`) and `env`",
                    "--secret `{text}`: unknown key `{key}`"
                ));
            }
        }
    }
    let id = id.filter(|id| !id.is_empty()).ok_or_else(|| {
        miette::miette!(
            help = "write `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR`",
            "--secret `{text}`: `id=` is missing"
        )
    })?;
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => {
            return Err(miette::miette!(
                "--secret `{text}`: give either `src=` or `env=`, not both"
            ));
        }
        (Some("env"), Some(var), None) | (_, None, Some(var)) => SecretSource::Env(var),
        (_, Some(file), None) => SecretSource::File(PathBuf::from(file)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (_, None, None) => SecretSource::Env(id.clone()),
    };
    Ok((id, source))
}

/// `--label KEY=VALUE`; `KEY` alone is an empty value, as with docker.
fn parse_label(text: &str) -> Result<(String, String)> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(miette::miette!(
            help = "give a label as `--label KEY=VALUE` or `--label KEY`",
            "--label `{text}`: the key is empty"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(miette::Report::from_err(err).wrap_err(format!(
            "cannot remove {} before the build (it would hold an earlier build's result)",
            path.display()
        ))),
    }
}

fn write_iidfile(path: &Path, id: &str) -> Result<()> {
    std::fs::write(path, id)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the image id to {}", path.display()))
}

/// The base configs for `--print graph`: from the store, else (or with `--pull`) only the
/// config from the registry, no layer fetched and nothing kept.
async fn print_base_configs(
    store: &rbuild_store::Store,
    df: &rbuild_frontend::Dockerfile,
    opts: &rbuild_frontend::ConvertOptions,
    pull: bool,
) -> std::result::Result<BTreeMap<String, rbuild_frontend::ImageConfig>, BuildError> {
    let mut bases = if pull {
        BTreeMap::new()
    } else {
        base_configs(store, df, opts, false)?
    };
    let mut registry = None;
    for reference in rbuild_frontend::image_references(df, opts)? {
        if bases.contains_key(&reference) {
            continue;
        }
        let parsed: rbuild_store::Reference =
            reference
                .parse()
                .map_err(|source| BuildError::InvalidReference {
                    reference: reference.clone(),
                    source,
                })?;
        let registry =
            match &registry {
                Some(registry) => registry,
                None => registry.insert(open_registry(true).map_err(|_| {
                    BuildError::BaseImageNotFound {
                        reference: reference.clone(),
                    }
                })?),
            };
        let pulled = registry
            .pull(
                store,
                &parsed,
                &rbuild_store::registry::PullOptions {
                    config_only: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| BuildError::Pull {
                reference: reference.clone(),
                missing: true,
                source: Box::new(source),
            })?;
        bases.insert(
            reference,
            rbuild_builder::frontend_config(&pulled.image.config.config),
        );
    }
    Ok(bases)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_as_buildx_does() {
        let parse = |text| parse_secret(text).unwrap();
        assert_eq!(
            parse("id=npm,src=/home/me/.npmrc"),
            ("npm".into(), SecretSource::File("/home/me/.npmrc".into()))
        );
        assert_eq!(
            parse("id=npm,type=file,source=rc"),
            ("npm".into(), SecretSource::File("rc".into()))
        );
        assert_eq!(
            parse("id=aws,env=AWS_KEY"),
            ("aws".into(), SecretSource::Env("AWS_KEY".into()))
        );
        assert_eq!(
            parse("id=aws,type=env,src=AWS_KEY"),
            ("aws".into(), SecretSource::Env("AWS_KEY".into()))
        );
        assert_eq!(
            parse("id=TOKEN"),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        for bad in [
            "src=x",
            "id=a,type=ssh",
            "id=a,colour=red",
            "id=a,src=x,env=Y",
            "id",
        ] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }
}
