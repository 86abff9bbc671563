//! rbuild's builder: solves a `BuildGraph` through the store (bytes, snapshots, images) and
//! the runtime (RUN steps), and assembles the image.

mod attest;
mod bases;
mod cache;
mod chmod;
mod commit;
mod context;
mod copy;
mod debug;
mod download;
mod emulation;
mod error;
mod exec;
mod executor;
mod explain;
mod export;
mod exporter;
mod fileops;
mod finish;
mod git;
mod glob;
mod ignore;
mod image;
mod key;
mod lowers;
mod mounts;
mod owner;
mod progress;
mod remote;
mod resolve;
mod scheduler;
mod secrets;
mod snapshots;
mod snapshotter;
mod solve;
mod ssh;
mod state;
mod step;
pub mod suggest;
#[cfg(test)]
mod testing;
mod times;
mod unarchive;

pub use attest::{
    Annotation, AnnotationLevel, AttestFormat, AttestOptions, GitOrigin, Invocation,
    PREDICATE_CYCLONEDX, PREDICATE_SLSA_PROVENANCE_V1, PREDICATE_SPDX, Provenance, ProvenanceMode,
    SbomFormat, image_inventory,
};
pub use bases::{image_platform, oci_platform};
pub use cache::CacheKey;
pub use debug::FailedStep;
pub use emulation::{EmulationError, check_emulation};
pub use error::BuildError;
pub use exec::DEFAULT_NETWORK;
pub use executor::{Executor, MAX_LINE, OutputSink, Running};
pub use export::{RootfsOutput, export_rootfs};
pub use exporter::{CacheTarget, Destination, ExportError, ExportOptions, Exported, Exporter};
pub use git::{GitContext, GitError, fetch_context as fetch_git_context};
pub use ignore::{IgnoreError, IgnoreMatcher};
pub use image::frontend_config;
pub use mounts::MountError;
pub use progress::{Event, Progress, Silent, Stream};
pub use secrets::{SecretError, SecretSource};
pub use snapshots::Snapshots;
pub use snapshotter::Snapshotter;
pub use solve::{
    BuildOptions, BuildResult, Builder, Cancel, Miss, NamedContextSource, PlatformImage,
};
pub use ssh::{SshError, SshSource};
/// ADD's archive detection, for a context streamed on stdin and for `fuzz/`.
pub use unarchive::open_archive;
