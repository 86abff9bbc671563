//! ADD's URL sources: downloaded on the host (never inside a sandbox) through the
//! registry client into the store, once per build and URL; their content digests are
//! part of the step's cache key.
//!
//! Without `--checksum` the URL is fetched while the cache key is computed, revalidated
//! with the `ETag`/`Last-Modified` of the previous download (a `304` reuses the blob the
//! store kept), so a changed remote file makes the step run again. With `--checksum` the
//! key is the checksum and nothing is fetched unless the step runs and the store lacks
//! the content, as with BuildKit.

use std::sync::Arc;

use rbuild_frontend::{CopyOp, Op};
use rbuild_registry::{
    Registry, RegistryConfig, RegistryError, UrlContent, UrlOptions, UrlOutcome,
};
use rbuild_store::Digest;

use crate::copy::RemoteFile;
use crate::error::BuildError;
use crate::progress::{Event, Stream};
use crate::secrets::SecretError;
use crate::solve::SolveContext;

impl SolveContext {
    /// The client downloads go through: the build's registry client (its proxies,
    /// retries and TLS roots), or a default one.
    fn http(&self) -> Arc<Registry> {
        match &self.builder.registry {
            Some(registry) => registry.clone(),
            None => self
                .sources
                .http
                .get_or_init(|| Arc::new(Registry::new(RegistryConfig::default())))
                .clone(),
        }
    }

    /// The `Authorization` a download of `url` sends, from the build's secrets as
    /// BuildKit names them: `HTTP_AUTH_HEADER_<host>` is the header's whole value,
    /// else `HTTP_AUTH_TOKEN_<host>` is sent as `Bearer <token>`. `<host>` is the URL's
    /// host name without its port. No such secret: no header (a public download).
    /// Secrets are read here, at the request, and never enter the cache key.
    /// A secret of that name that was given but cannot be read (a missing file, an unset
    /// variable) is an error: a silent request without credentials would only say 401.
    /// Returns the header and the secret's id.
    fn http_authorization(&self, url: &str) -> Result<Option<(String, String)>, SecretError> {
        let Some(host) = url_host(url) else {
            return Ok(None);
        };
        let secret = |id: String| -> Result<Option<(String, String)>, SecretError> {
            let Some(source) = self.opts.secrets.get(&id) else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(&source.read_given(&id)?)
                .trim()
                .to_owned();
            Ok(Some((text, id)).filter(|(text, _)| !text.is_empty()))
        };
        if let Some(header) = secret(format!("HTTP_AUTH_HEADER_{host}"))? {
            return Ok(Some(header));
        }
        Ok(secret(format!("HTTP_AUTH_TOKEN_{host}"))?
            .map(|(token, id)| (format!("Bearer {token}"), id)))
    }

    /// The content of `url` for this build: fetched (or revalidated) on first use, the
    /// same afterwards. `checksum` is the op's `--checksum`.
    pub(crate) async fn url_content(
        &self,
        op: &Op,
        url: &str,
        checksum: Option<&str>,
    ) -> Result<UrlContent, BuildError> {
        let known = self
            .sources
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned();
        if let Some(content) =
            known.filter(|c| checksum.is_none_or(|sum| c.digest.to_string() == sum))
        {
            return Ok(content);
        }
        let step_failed =
            |source: Box<dyn std::error::Error + Send + Sync>| BuildError::step_failed(op, source);
        let expected = checksum
            .map(|sum| sum.parse::<Digest>())
            .transpose()
            .map_err(|e| step_failed(Box::new(e)))?;
        let store = self.builder.store.clone();
        let authorization = self
            .http_authorization(url)
            .map_err(|e| step_failed(Box::new(e)))?;
        let content = self
            .http()
            .fetch_url(
                &store,
                url,
                &UrlOptions {
                    expected,
                    authorization: authorization.as_ref().map(|(header, _)| header.clone()),
                },
            )
            .await
            .map_err(|source| match &source {
                RegistryError::UrlStatus { status, .. }
                    if status.starts_with("401") || status.starts_with("403") =>
                {
                    let host = url_host(url).unwrap_or_default();
                    let hint = match &authorization {
                        Some((_, id)) => {
                            format!("the server refused the credentials of the secret `{id}`")
                        }
                        None => format!(
                            "the server wants credentials: give them as a build secret, \
                             `--secret id=HTTP_AUTH_TOKEN_{host},env=VARIABLE` (sent as a bearer \
                             token) or `HTTP_AUTH_HEADER_{host}` (the whole Authorization value)"
                        ),
                    };
                    step_failed(Box::new(Unauthorized { hint, source }))
                }
                _ => step_failed(Box::new(source)),
            })?;
        self.sources
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_owned(), content.clone());
        Ok(content)
    }

    /// The downloaded files of a running ADD step, fetched now if the cache key did not
    /// need them (`--checksum`), with a line of progress for each.
    pub(crate) async fn remote_files(
        &self,
        op: &Op,
        copy: &CopyOp,
        step: usize,
    ) -> Result<Vec<RemoteFile>, BuildError> {
        let mut files = Vec::new();
        for url in copy.sources.iter().filter(|s| CopyOp::is_url(s)) {
            let content = self.url_content(op, url, copy.checksum.as_deref()).await?;
            let line = match content.outcome {
                UrlOutcome::Downloaded => format!("downloaded {url} ({} bytes)", content.size),
                UrlOutcome::NotModified => {
                    format!(
                        "{url} is not modified ({} bytes, kept from the last download)",
                        content.size
                    )
                }
                UrlOutcome::Existed => format!("{url}: {} is in the store", content.digest),
            };
            self.progress.event(Event::Log {
                step,
                stream: Stream::Stderr,
                line: line.as_bytes(),
            });
            files.push(RemoteFile {
                url: url.clone(),
                path: self.builder.store.blob_path(&content.digest),
                mtime: content.last_modified.unwrap_or(0),
            });
        }
        Ok(files)
    }
}

/// A download the server refused for want of (valid) credentials, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("{hint}")]
struct Unauthorized {
    hint: String,
    #[source]
    source: RegistryError,
}

/// The scheme of `scheme://…` and its authority (`host[:port]`) without user info, for
/// what is keyed by server: download secrets, git tokens.
pub(crate) fn url_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some((
        scheme,
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    ))
}

/// The host name of an `http(s)://` URL: no user info, no port, IPv6 addresses without
/// their brackets (as a URL library's `host_str` gives them, bracketed, they could not
/// be part of a secret id).
fn url_host(url: &str) -> Option<&str> {
    let (_, host_port) = url_authority(url)?;
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn secrets_are_named_by_the_host_alone() {
        for (url, host) in [
            ("https://example.com/a.tar", Some("example.com")),
            ("http://127.0.0.1:8080/x?y#z", Some("127.0.0.1")),
            (
                "https://user:pw@files.example.org:443",
                Some("files.example.org"),
            ),
            ("http://[::1]:80/a", Some("::1")),
            ("https:///a", None),
            ("example.com/a", None),
        ] {
            assert_eq!(url_host(url), host, "{url}");
        }
    }
}
