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
use rbuild_store::Digest;
use rbuild_store::registry::{Registry, RegistryConfig, UrlContent, UrlOptions, UrlOutcome};

use crate::copy::RemoteFile;
use crate::error::BuildError;
use crate::progress::{Event, Stream};
use crate::solve::SolveContext;

impl SolveContext {
    /// The client downloads go through: the build's registry client (its proxies,
    /// retries and TLS roots), or a default one.
    fn http(&self) -> Arc<Registry> {
        match &self.builder.registry {
            Some(registry) => registry.clone(),
            None => self
                .http
                .get_or_init(|| Arc::new(Registry::new(RegistryConfig::default())))
                .clone(),
        }
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
        let content = self
            .http()
            .fetch_url(&store, url, &UrlOptions { expected })
            .await
            .map_err(|e| step_failed(Box::new(e)))?;
        self.urls
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
