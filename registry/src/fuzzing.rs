//! Entry points into the registry client's parsers of untrusted input that are otherwise private,
//! for the cargo-fuzz targets in `fuzz/` (registry answers, credential helper output).
//! It exists for `fuzz/` only: not an API, and it changes whenever those parsers do.

use std::path::Path;

use crate::{self as registry, Credentials, DockerConfig, RegistryError, Scheme};
use rbuild_store::oci::{Descriptor, Index, Platform};

/// A `WWW-Authenticate` challenge: `Some((realm, service))` for Bearer, `None` for
/// anything rbuild answers with Basic credentials.
pub fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    match registry::parse_challenge(header) {
        Scheme::Bearer { realm, service } => Some((realm, service)),
        Scheme::Basic | Scheme::Anonymous => None,
    }
}

/// The first byte of a `Content-Range` answer to a ranged blob GET.
pub fn content_range_start(header: &str) -> Option<u64> {
    registry::content_range_start(header)
}

/// The media type of a fetched manifest, from its bytes and its `Content-Type`.
pub fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> Result<String, String> {
    registry::manifest_media_type(bytes, content_type)
}

/// The entry of `index` a pull for `want` takes.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    rbuild_store::platform::choose_platform(index, want)
}

/// What `docker-credential-<helper> get` printed (`stdout`), whether it exited 0, and its
/// output as text for errors.
pub fn credential_helper_answer(
    succeeded: bool,
    stdout: &[u8],
    message: &str,
) -> Result<Option<Credentials>, RegistryError> {
    registry::helper_get_answer("fuzz", succeeded, stdout, message)
}

/// The `auths` credentials of `registry` in docker's `config.json` given as `bytes`
/// (credential helpers are never run).
pub fn config_credentials(
    bytes: &[u8],
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    DockerConfig::parse(Path::new("config.json"), bytes)?.auths_credentials(registry)
}
