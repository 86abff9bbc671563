//! Registry configuration: `/etc/rbuild/config.toml`, then
//! `$XDG_CONFIG_HOME/rbuild/config.toml` (`~/.config/rbuild/config.toml`), the second
//! overriding the first host by host and field by field.
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["mirror.example.com", "http://127.0.0.1:5001"]  # tried in order, then docker.io
//!
//! [registry."registry.internal:5443"]
//! ca = ["/etc/rbuild/certs/internal-ca.pem"]  # trusted besides the system's roots
//!
//! [registry."build-cache.lan:5000"]
//! insecure = true   # TLS without verification, else plain HTTP
//!
//! [registry."127.0.0.1:5000"]
//! http = true       # plain HTTP (the default for loopback registries anyway)
//!
//! [transfer]
//! retries = 5       # attempts after the first, on resets, 5xx and 429 (0: no
//!                   # retries, not even the 2 s given to a refused connection)
//! concurrency = 4   # blobs moved at the same time
//! chunk-size = 16777216  # bytes per upload request
//! ```
//!
//! Proxies come from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{RegistryError, Result};
use rbuild_store::is_loopback;

/// How rbuild talks to registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Per registry host (as written in references: `docker.io`, `host:port`).
    pub registries: BTreeMap<String, HostConfig>,
    pub transfer: TransferConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Pull-through mirrors, tried in order before the registry itself. An entry is a
    /// host (`mirror:5000`, HTTPS) or a URL (`http://mirror:5000`).
    #[serde(default)]
    pub mirrors: Option<Vec<String>>,
    /// Plain HTTP.
    #[serde(default)]
    pub http: Option<bool>,
    /// TLS without certificate verification, falling back to plain HTTP.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// PEM files of certificate authorities to trust for this registry.
    #[serde(default)]
    pub ca: Option<Vec<PathBuf>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    pub retries: u32,
    pub concurrency: usize,
    pub chunk_size: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            retries: 5,
            concurrency: 4,
            chunk_size: 16 << 20,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    registry: BTreeMap<String, HostConfig>,
    #[serde(default)]
    transfer: FileTransfer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileTransfer {
    retries: Option<u32>,
    concurrency: Option<usize>,
    chunk_size: Option<u64>,
}

/// How to reach one endpoint of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, without a trailing slash.
    pub base: String,
    /// The registry host this endpoint serves (credentials are looked up by it).
    pub host: String,
    pub tls: Tls,
    /// Whether this endpoint is a mirror (then failures move on to the next endpoint).
    pub mirror: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tls {
    /// Plain HTTP.
    None,
    /// Verified against the system roots plus these CA files.
    Verified(Vec<PathBuf>),
    /// Not verified.
    Unverified,
}

impl RegistryConfig {
    /// Reads the system file, then the user's, when they exist.
    pub fn load() -> Result<RegistryConfig> {
        let mut config = RegistryConfig::default();
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .map(|dir| dir.join("rbuild/config.toml"));
        for path in std::iter::once(PathBuf::from("/etc/rbuild/config.toml")).chain(user) {
            match std::fs::read_to_string(&path) {
                Ok(text) => config.merge_toml(&text, &path)?,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RegistryError::Io {
                        action: "read",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(config)
    }

    /// Applies one file's settings over these.
    pub fn merge_toml(&mut self, text: &str, path: &Path) -> Result<()> {
        let file: File = toml::from_str(text).map_err(|err| RegistryError::Config {
            path: path.to_owned(),
            reason: err.to_string().trim().replace('\n', " "),
        })?;
        for (host, new) in file.registry {
            let entry = self.registries.entry(host).or_default();
            if new.mirrors.is_some() {
                entry.mirrors = new.mirrors;
            }
            if new.http.is_some() {
                entry.http = new.http;
            }
            if new.insecure.is_some() {
                entry.insecure = new.insecure;
            }
            if let Some(ca) = new.ca {
                // Relative CA paths are relative to the file that names them.
                let dir = path.parent().unwrap_or(Path::new("/"));
                entry.ca = Some(ca.into_iter().map(|p| dir.join(p)).collect());
            }
        }
        if let Some(retries) = file.transfer.retries {
            self.transfer.retries = retries;
        }
        if let Some(concurrency) = file.transfer.concurrency {
            self.transfer.concurrency = concurrency.max(1);
        }
        if let Some(chunk_size) = file.transfer.chunk_size {
            self.transfer.chunk_size = chunk_size.max(64 * 1024);
        }
        Ok(())
    }

    /// The endpoints to try for `registry`, in order: its mirrors (for pulls), then the
    /// registry itself (over TLS and then plain HTTP when it is insecure).
    pub fn endpoints(&self, registry: &str, api_host: &str, pull: bool) -> Vec<Endpoint> {
        let host = self.registries.get(registry).cloned().unwrap_or_default();
        let mut endpoints = Vec::new();
        if pull {
            for mirror in host.mirrors.iter().flatten() {
                let (scheme, mirror_host) = match mirror.split_once("://") {
                    Some((scheme, rest)) => (Some(scheme), rest.trim_end_matches('/')),
                    None => (None, mirror.trim_end_matches('/')),
                };
                let mirror_config = self
                    .registries
                    .get(mirror_host)
                    .cloned()
                    .unwrap_or_default();
                for (base_scheme, tls) in schemes(mirror_host, &mirror_config, scheme) {
                    endpoints.push(Endpoint {
                        base: format!("{base_scheme}://{mirror_host}"),
                        host: mirror_host.to_owned(),
                        tls,
                        mirror: true,
                    });
                }
            }
        }
        for (scheme, tls) in schemes(registry, &host, None) {
            endpoints.push(Endpoint {
                base: format!("{scheme}://{api_host}"),
                host: registry.to_owned(),
                tls,
                mirror: false,
            });
        }
        endpoints
    }
}

/// The schemes to try for a host: explicit ones first, then the configuration, then the
/// defaults (HTTPS; plain HTTP for loopback hosts unless CAs are configured for them).
fn schemes(host: &str, config: &HostConfig, explicit: Option<&str>) -> Vec<(&'static str, Tls)> {
    let ca = config.ca.clone().unwrap_or_default();
    match explicit {
        Some("http") => return vec![("http", Tls::None)],
        Some(_) if config.insecure == Some(true) => return vec![("https", Tls::Unverified)],
        Some(_) => return vec![("https", Tls::Verified(ca))],
        None => {}
    }
    if config.http == Some(true) {
        return vec![("http", Tls::None)];
    }
    if config.insecure == Some(true) {
        return vec![("https", Tls::Unverified), ("http", Tls::None)];
    }
    if is_loopback(host) && config.ca.is_none() && config.http != Some(false) {
        return vec![("http", Tls::None)];
    }
    vec![("https", Tls::Verified(ca))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_field_by_field() {
        let mut config = RegistryConfig::default();
        config
            .merge_toml(
                r#"
                [registry."docker.io"]
                mirrors = ["mirror.example.com"]
                [registry."r.lan:5000"]
                insecure = true
                [transfer]
                retries = 2
                "#,
                Path::new("/etc/rbuild/config.toml"),
            )
            .unwrap();
        config
            .merge_toml(
                r#"
                [registry."r.lan:5000"]
                ca = ["ca.pem"]
                "#,
                Path::new("/home/u/.config/rbuild/config.toml"),
            )
            .unwrap();
        let host = &config.registries["r.lan:5000"];
        assert_eq!(host.insecure, Some(true));
        assert_eq!(
            host.ca.as_deref(),
            Some(&[PathBuf::from("/home/u/.config/rbuild/ca.pem")][..])
        );
        assert_eq!(config.transfer.retries, 2);
        let endpoints = config.endpoints("docker.io", "registry-1.docker.io", true);
        let bases: Vec<&str> = endpoints.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            ["https://mirror.example.com", "https://registry-1.docker.io"]
        );
        assert!(endpoints[0].mirror && !endpoints[1].mirror);
        // Pushes never go to mirrors.
        assert_eq!(
            config
                .endpoints("docker.io", "registry-1.docker.io", false)
                .len(),
            1
        );
    }

    #[test]
    fn loopback_is_plain_http_unless_configured() {
        let mut config = RegistryConfig::default();
        let tls = |config: &RegistryConfig, host: &str| {
            config
                .endpoints(host, host, true)
                .into_iter()
                .map(|e| (e.base, e.tls))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tls(&config, "127.0.0.1:5000"),
            [("http://127.0.0.1:5000".to_owned(), Tls::None)]
        );
        config
            .merge_toml(
                "[registry.\"127.0.0.1:5443\"]\nca = [\"/tmp/ca.pem\"]\n[registry.\"lan:1\"]\ninsecure = true\n",
                Path::new("/x/config.toml"),
            )
            .unwrap();
        assert_eq!(
            tls(&config, "127.0.0.1:5443"),
            [(
                "https://127.0.0.1:5443".to_owned(),
                Tls::Verified(vec![PathBuf::from("/tmp/ca.pem")])
            )]
        );
        assert_eq!(
            tls(&config, "lan:1"),
            [
                ("https://lan:1".to_owned(), Tls::Unverified),
                ("http://lan:1".to_owned(), Tls::None)
            ]
        );
        assert_eq!(
            tls(&config, "example.com"),
            [("https://example.com".to_owned(), Tls::Verified(vec![]))]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = RegistryConfig::default()
            .merge_toml("[registry.\"x\"]\nmirror = []\n", Path::new("/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/c.toml") && err.contains("mirror"), "{err}");
    }
}
