//! Image names and registry references.
//!
//! Two types, because a name in the store and a reference to a registry are not the same
//! thing:
//!
//! - [`ImageName`] is a local name, kept as the user typed it plus a default tag:
//!   `busybox` is stored as `busybox:latest`, not `docker.io/library/busybox:latest`.
//! - [`Reference`] is what registry operations use: `name[:tag][@digest]` normalized with
//!   Docker's defaults (`docker.io`, `library/`, `latest`), e.g. `busybox` →
//!   `docker.io/library/busybox:latest`.
//!
//! The two meet in [`ImageName::normalized`]: the store looks a name up as given first and
//! then by its normalized form, so `FROM docker.io/library/busybox` finds a locally loaded
//! `busybox:latest` and `FROM busybox` finds an image pulled as `docker.io/library/busybox`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Digest;
use crate::error::Error;

/// Docker Hub's canonical name, and the host its API is served from.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A validated image name with its tag, e.g. `busybox:latest` or
/// `127.0.0.1:5000/team/app:v1`. A name given without a tag gets `latest`, as with docker.
///
/// Registry defaults (`docker.io/library/`) are not added: `busybox` stays `busybox`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    repository: String,
    tag: String,
}

impl ImageName {
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The registry reference this name means: `busybox:latest` →
    /// `docker.io/library/busybox:latest`.
    pub fn to_reference(&self) -> Reference {
        let (registry, path) = split_registry(&self.repository);
        Reference::from_parts(registry, path, Some(self.tag.clone()), None)
    }

    /// The fully qualified form, for comparing names typed differently.
    pub fn normalized(&self) -> String {
        self.to_reference().to_string()
    }
}

impl FromStr for ImageName {
    type Err = Error;

    fn from_str(input: &str) -> Result<ImageName, Error> {
        if input.contains('@') {
            return Err(invalid(
                input,
                "a digest (`@sha256:…`) cannot be part of a local image name",
            ));
        }
        let parsed = parse(input)?;
        Ok(ImageName {
            repository: parsed.repository.to_owned(),
            tag: parsed.tag.unwrap_or("latest").to_owned(),
        })
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for ImageName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A normalized registry reference: `registry/repository[:tag][@digest]`. Without a tag
/// or a digest the tag is `latest`; with only a digest there is no tag.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    fn from_parts(
        registry: Option<&str>,
        path: &str,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> Reference {
        let registry = match registry {
            None | Some("index.docker.io") | Some("registry-1.docker.io") => DOCKER_HUB,
            Some(host) => host,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        }
    }

    /// The registry's name as written in references (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry's API answers on: `registry-1.docker.io` for
    /// Docker Hub, the registry's name otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one
    /// (it pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest: what a manifest is pushed to when
    /// it goes by its digest alone (an index's platform manifests).
    pub fn without_tag(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The local name for this reference, as typed (`busybox:1` for `busybox:1`), when it
    /// has a tag.
    pub fn image_name(input: &str) -> Option<ImageName> {
        let without_digest = input.split('@').next()?;
        if input.contains('@') && parse(without_digest).ok()?.tag.is_none() {
            return None;
        }
        without_digest.parse().ok()
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Reference, Error> {
        let (name, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|_| {
                    invalid(
                        input,
                        "the digest must be `sha256:` followed by 64 lowercase hex digits",
                    )
                })?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        let parsed = parse(name)?;
        let (registry, path) = split_registry(parsed.repository);
        Ok(Reference::from_parts(
            registry,
            path,
            parsed.tag.map(str::to_owned),
            digest,
        ))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Whether a registry host is this machine (`localhost`, `127.0.0.0/8`, `::1`): such
/// registries speak plain HTTP by default, as with docker.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn invalid(input: &str, reason: &'static str) -> Error {
    Error::InvalidImageName {
        input: input.to_owned(),
        reason,
    }
}

struct Parsed<'a> {
    /// `[registry/]path`, validated.
    repository: &'a str,
    tag: Option<&'a str>,
}

/// Splits `[registry/]path` into its registry (a first component with `.` or `:`, or
/// `localhost`, followed by more components: docker's rule) and path.
fn split_registry(repository: &str) -> (Option<&str>, &str) {
    match repository.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, repository),
    }
}

fn parse(input: &str) -> Result<Parsed<'_>, Error> {
    if input.is_empty() {
        return Err(invalid(input, "the name is empty"));
    }
    if input.len() > 255 {
        return Err(invalid(input, "a name has at most 255 characters"));
    }
    // A `:` after the last `/` separates the tag; one before it belongs to a registry
    // port (`localhost:5000/app`).
    let last_slash = input.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match input[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&input[..colon], Some(&input[colon + 1..]))
        }
        None => (input, None),
    };
    if let Some(tag) = tag {
        if tag.is_empty() || tag.len() > 128 {
            return Err(invalid(input, "a tag has 1 to 128 characters"));
        }
        if !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || tag.starts_with(['.', '-'])
        {
            return Err(invalid(
                input,
                "a tag has letters, digits, `_`, `.` and `-`, and starts with a letter, digit or `_`",
            ));
        }
    }
    let (registry, path) = split_registry(repository);
    if let Some(host) = registry
        && (!host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
            || !host.starts_with(|c: char| c.is_ascii_alphanumeric()))
    {
        return Err(invalid(input, "the registry host has invalid characters"));
    }
    for component in path.split('/') {
        if component.is_empty()
            || !component.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            || !component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            || !component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                input,
                "repository names use lowercase letters, digits and `.`, `_`, `-` separators",
            ));
        }
    }
    Ok(Parsed { repository, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_latest_and_keeps_registry_ports() {
        let cases = [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<ImageName>().unwrap().to_string(), expected);
        }
    }

    #[test]
    fn rejects_bad_names() {
        for input in [
            "",
            "Busybox",
            "app:",
            "app:-x",
            "a//b",
            "../x",
            "app-",
            "app@sha256:00",
        ] {
            assert!(
                input.parse::<ImageName>().is_err(),
                "{input} should be rejected"
            );
        }
    }

    #[test]
    fn references_take_dockers_defaults() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("team/app", "docker.io/team/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/team/app:v2", "docker.io/team/app:v2"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest"),
            ("quay.io/org/app:1.0", "quay.io/org/app:1.0"),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Reference>().unwrap().to_string(), expected);
        }
        let pinned: Reference = format!("busybox@{digest}").parse().unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.manifest_reference(), digest);
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@{digest}")
        );
        let both: Reference = format!("127.0.0.1:5000/app:v1@{digest}").parse().unwrap();
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(both.manifest_reference(), digest);
        assert_eq!(both.api_host(), "127.0.0.1:5000");
        assert_eq!(
            "busybox".parse::<Reference>().unwrap().api_host(),
            DOCKER_HUB_API
        );
    }

    #[test]
    fn bad_references_say_why() {
        let cases = [
            ("busybox@sha256:abc", "the digest must be"),
            ("busybox@md5:abc", "the digest must be"),
            ("Busybox", "lowercase"),
            ("app:", "1 to 128"),
            ("bad_host!:5000/app", "registry host"),
            ("", "empty"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn local_names_normalize_like_references() {
        let short: ImageName = "busybox".parse().unwrap();
        let long: ImageName = "docker.io/library/busybox:latest".parse().unwrap();
        assert_ne!(short, long);
        assert_eq!(short.normalized(), long.normalized());
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            Reference::image_name(&format!("busybox:1@{digest}")),
            Some("busybox:1".parse().unwrap())
        );
        assert_eq!(Reference::image_name(&format!("busybox@{digest}")), None);
        assert_eq!(
            Reference::image_name("busybox"),
            Some("busybox:latest".parse().unwrap())
        );
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["docker.io", "10.0.0.1:5000", "example.com:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
