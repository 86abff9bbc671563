//! The command line: the subcommands and the options they share. Each command's own
//! arguments live beside its code in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::{
    archive, build, check, docs, images, info, registry, run, sbom, store, verify,
};

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
    pub build: Option<build::BuildArgs>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    ///
    /// Reads the environment as `docker build` does: `BUILDKIT_PROGRESS` (the progress
    /// when `--progress` is `auto`), `DOCKER_CONFIG` (registry credentials),
    /// `SOURCE_DATE_EPOCH` (the time in the image, for reproducible builds) and
    /// `BUILDX_NO_DEFAULT_ATTESTATIONS` (no provenance unless asked). rbuild has no
    /// builder instances or bake files, so `BUILDX_BUILDER` and the other `BUILDX_*`
    /// variables are ignored. docs/conformance.md lists every docker build flag.
    Build(build::BuildArgs),
    /// Check a Dockerfile without building: parse, convert and lint (build checks)
    Check(check::CheckArgs),
    /// Run a command in a new sandbox from an image; changes are discarded
    Run(run::RunArgs),
    /// List images
    ///
    /// SIZE is the size of the image's layers uncompressed, as `docker images` counts it:
    /// one size for an image, whatever its names and however it came to the store (built,
    /// pulled, loaded or imported). A layer several images share counts in each; `rbuild
    /// du` shows the disk space the store takes.
    Images(images::ImagesArgs),
    /// Show an image's OCI config (or its manifest, provenance or SBOM)
    Inspect(images::InspectArgs),
    /// List the packages an image installs (dpkg, apk, Python, Node, Go, Rust) as an SBOM
    ///
    /// Scans any image in the store now, built or not; `rbuild inspect --sbom` shows the
    /// SBOM a build attached (`rbuild build --sbom`).
    Sbom(sbom::SbomArgs),
    /// Build an image again from its provenance, in a scratch store, and compare digests
    #[command(name = "verify-build")]
    VerifyBuild(verify::VerifyBuildArgs),
    /// Write images to an OCI image layout tar (or a docker-archive)
    Save(archive::SaveArgs),
    /// Load images from an OCI image layout tar or a docker-archive
    Load(archive::LoadArgs),
    /// Make an image from a filesystem tarball
    ///
    /// The image's time is SOURCE_DATE_EPOCH when it is set, else now: with it, the same
    /// tarball is the same image in every store (so `verify-build` elsewhere finds a base
    /// imported there too).
    Import(archive::ImportArgs),
    /// Write an image's flattened filesystem as a tar
    Export(archive::ExportArgs),
    /// Pull an image from a registry
    Pull(registry::PullArgs),
    /// Push an image to a registry
    Push(registry::PushArgs),
    /// Store credentials for a registry in docker's config.json (or its credential helper)
    Login(registry::LoginArgs),
    /// Remove the credentials for a registry
    Logout(registry::LogoutArgs),
    /// Give an image another name
    Tag(images::TagArgs),
    /// Remove image names (and the space only they used)
    Rmi(images::RmiArgs),
    /// Show an image's history
    History(images::HistoryArgs),
    /// Show the store's disk usage
    Du(store::DuArgs),
    /// Remove everything no image, build or cache uses
    Prune(store::PruneArgs),
    /// Check the store's integrity
    Store(store::StoreArgs),
    /// Show the full log of the last build
    Logs(store::LogsArgs),
    /// Run a command in rbuild's user namespace (as its root), e.g. to remove a rootless store
    Unshare(store::UnshareArgs),
    /// Show what rbuild finds here: store, user and id mapping, snapshotter, cgroups, networks
    Info(info::InfoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(docs::CompletionArgs),
    /// Write man pages (rbuild.1 and one per command)
    Man(docs::ManArgs),
}

impl Cli {
    /// The exit code when rbuild itself fails: docker's 125 for `run` (so that a script
    /// tells rbuild's failures from the command's own codes), 1 otherwise.
    pub fn failure_code(&self) -> u8 {
        match self.command {
            Some(Command::Run(_)) => RUN_FAILED,
            _ => 1,
        }
    }

    /// Whether the command uses the store or the sandbox, and so runs in rbuild's user
    /// namespace when rbuild is not root.
    pub fn needs_namespace(&self) -> bool {
        !matches!(
            (&self.command, &self.build),
            (
                Some(
                    Command::Login(_)
                        | Command::Logout(_)
                        | Command::Completion(_)
                        | Command::Man(_)
                ),
                _
            ) | (None, None)
        )
    }
}

/// `rbuild run`'s code for its own failures (bad flags included), as `docker run`'s.
pub const RUN_FAILED: u8 = 125;

/// Whether `args` (without the program name) invoke `rbuild run`: its first word, as no
/// option comes before a subcommand.
pub fn invokes_run(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.next().is_some_and(|word| word == "run")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Only a loopback interface
    None,
    /// The host's network
    Host,
    /// A private address on rbuild's bridge (`rbuild0`)
    Bridge,
    /// What the command uses without the flag (docker's word; `build`: the host's, `run`:
    /// the bridge)
    Default,
}
