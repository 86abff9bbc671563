//! `rbuild build`'s flags, as clap reads them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{debug, flags};
use crate::cli::NetworkArg;
use crate::commands::registry::CompressionArg;

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
    /// The platforms to build for (`os/arch[/variant]`, comma-separated, e.g.
    /// `linux/amd64,linux/arm64`; default: this machine's, or RBUILD_PLATFORM, or
    /// DOCKER_DEFAULT_PLATFORM). Several make one image index. RUN steps for another
    /// architecture run under QEMU emulation (binfmt_misc)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// Attach SLSA v1 provenance to each image: `min` (the default: every input by
    /// digest, build arguments by name), `max` (also their values, the Dockerfile, the
    /// times), or `false`. `mode=max` is read too, as buildx writes it.
    /// BUILDX_NO_DEFAULT_ATTESTATIONS=1 turns the default off
    #[arg(long, value_name = "min|max|false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub provenance: Option<String>,
    /// Attach an SBOM of each image (the packages its layers install): `true` (SPDX 2.3),
    /// `format=cyclonedx`, or `false`
    #[arg(long, value_name = "true|format=cyclonedx|false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sbom: Option<String>,
    /// How attestations are attached: `index` (BuildKit's attestation manifests in the
    /// image's index) or `oci` (OCI 1.1 referrers: artifacts whose subject is the image,
    /// which keeps its single manifest)
    #[arg(long = "attest-format", value_enum, default_value_t = flags::AttestFormatArg::Index)]
    pub attest_format: flags::AttestFormatArg,
    /// An attestation as buildx writes it: `type=provenance[,mode=max]`,
    /// `type=sbom[,format=cyclonedx]`, `type=…,disabled=true`; may be repeated
    #[arg(long = "attest", value_name = "type=…")]
    pub attest: Vec<String>,
    /// An OCI annotation (`KEY=VALUE`, or `index:`, `manifest:`, `manifest-descriptor:`
    /// before the key, with `[os/arch]` for one platform's image: `manifest[linux/arm64]:KEY=VALUE`);
    /// may be repeated. rbuild sets `org.opencontainers.image.created`, `base.name`,
    /// `base.digest`, and from a git context `source` and `revision`
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
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
