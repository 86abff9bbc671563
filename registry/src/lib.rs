//! rbuild's registry client: pull and push images, and the build cache, over the OCI
//! distribution API, straight into and out of the store; and downloads of plain URLs
//! (`ADD https://…`) through the same client.
//!
//! The store is synchronous; this crate is async (`reqwest` on tokio) and meets the
//! store on blocking threads: a download is streamed from the socket through a channel to
//! a blocking task that writes it into an [`rbuild_store::Ingest`], so every blob is hashed as it
//! arrives and committed only under its expected digest. Why our own small client instead
//! of `oci-client` is written in `docs/architecture.md`.
//!
//! ```no_run
//! # async fn example(store: rbuild_store::Store) -> Result<(), rbuild_registry::RegistryError> {
//! use rbuild_registry::{PullOptions, Registry, RegistryConfig};
//! let registry = Registry::new(RegistryConfig::load()?);
//! let reference = "127.0.0.1:5000/team/app:v1".parse()?;
//! let pulled = registry.pull(&store, &reference, &PullOptions::default()).await?;
//! println!("{}", pulled.manifest);
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod config;
mod credentials;
mod error;
/// For the cargo-fuzz targets in `fuzz/` only; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod manifest;
mod pull;
mod push;
mod retry;
mod sink;
mod tls;
mod upload;
mod url;

pub use cache::{
    CacheExport, CacheExportRecord, CacheImport, CacheImportRecord, CacheMountRecord,
    MEDIA_TYPE_CACHE_CONFIG,
};
pub use client::Registry;
pub(crate) use client::{Scheme, parse_challenge};
pub use config::{Endpoint, HostConfig, RegistryConfig, Tls, TransferConfig};
pub(crate) use credentials::helper_get_answer;
pub use credentials::{Credentials, DockerConfig};
pub use error::{RegistryError, Result};
pub(crate) use manifest::manifest_media_type;
// The platform helpers a pull chooses with, for the registry's users.
pub(crate) use pull::content_range_start;
pub use pull::{PullOptions, Pulled};
pub use push::{Compression, PushOptions, Pushed};
pub use rbuild_store::platform::{choose_platform, host_platform, platform_runs, platform_string};
pub use retry::TransportFailure;
pub use url::{UrlContent, UrlOptions, UrlOutcome};

use rbuild_store::oci::Platform;

/// What a transfer is doing, for progress output. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// A reference resolved to a manifest.
    Resolved { reference: String, digest: String },
    /// A blob is being downloaded or uploaded.
    BlobStarted { digest: String, size: u64 },
    BlobDone {
        digest: String,
        size: u64,
        outcome: BlobOutcome,
    },
    /// A request failed and is tried again.
    Retrying {
        what: String,
        attempt: u32,
        reason: String,
    },
    /// A layer is being compressed for a push.
    Compressing { digest: String, size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Downloaded,
    /// The store already had it.
    Existed,
    Uploaded,
    /// The registry already had it.
    Skipped,
    /// The registry mounted it from another repository.
    Mounted,
}

/// Parses `os/arch[/variant]` (e.g. `linux/arm64/v8`).
pub fn parse_platform(input: &str) -> Result<Platform> {
    let parts: Vec<&str> = input.split('/').collect();
    let valid =
        |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match parts.as_slice() {
        [os, arch] if valid(os) && valid(arch) => Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture: arch.to_ascii_lowercase(),
            variant: None,
        }),
        [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture: arch.to_ascii_lowercase(),
            variant: Some(variant.to_ascii_lowercase()),
        }),
        _ => Err(RegistryError::InvalidPlatform {
            input: input.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(platform_string(&p), "linux/arm64/v8");
        assert_eq!(
            platform_string(&parse_platform("linux/amd64").unwrap()),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
    }
}
