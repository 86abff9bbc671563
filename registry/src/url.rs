//! Downloads of plain HTTP(S) URLs (`ADD https://…`) into the store as blobs, revalidated
//! on later downloads of the same URL with the validators (`ETag`, `Last-Modified`) the
//! previous answer carried.
//!
//! A download is a blob like any other: hashed while it streams to an ingest (never whole
//! in memory), committed under its sha256, kept by this process's lease while it is used,
//! covered by `store verify`, and collected by GC once no build holds it. What the store
//! remembers per URL is a small state document (`url/<url>`): the blob's digest and size
//! and the validators. A revalidation whose blob was collected meanwhile is simply a new
//! download. Requests go through the registry client's loop (proxies, system roots,
//! retries of connection errors, 5xx and 429), and carry no registry credentials: the
//! only `Authorization` a download sends is the one its caller gives (`ADD`'s
//! `HTTP_AUTH_HEADER_<host>` / `HTTP_AUTH_TOKEN_<host>` secrets), marked sensitive so it
//! never shows in a log, and dropped by the client on a redirect to another host.

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;

use super::client::Registry;
use super::config::Tls;
use super::error::{RegistryError, Result};
use super::retry::describe;
use super::sink::Chunk;
use rbuild_store::{Digest, Store};

/// How to download a URL.
#[derive(Debug, Clone, Default)]
pub struct UrlOptions {
    /// `ADD --checksum`: the content must hash to this. A blob with this digest already in
    /// the store is used without asking the server anything.
    pub expected: Option<Digest>,
    /// The whole value of an `Authorization` header to send (`Bearer …`, `Basic …`).
    /// It is not part of what the store remembers of the URL.
    pub authorization: Option<String>,
}

/// A URL's content, as a blob of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlContent {
    pub digest: Digest,
    pub size: u64,
    /// `Last-Modified` of the answer that brought the content, as seconds since the epoch.
    pub last_modified: Option<i64>,
    pub outcome: UrlOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlOutcome {
    /// The body was downloaded.
    Downloaded,
    /// The server answered `304 Not Modified` to a conditional request: the content is
    /// the one downloaded before.
    NotModified,
    /// The expected digest was in the store: no request was made.
    Existed,
}

/// What the store remembers of the last download of a URL.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Remembered {
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

impl Remembered {
    fn content(&self, outcome: UrlOutcome) -> UrlContent {
        UrlContent {
            digest: self.digest.clone(),
            size: self.size,
            last_modified: self
                .last_modified
                .as_deref()
                .and_then(rbuild_store::time::parse_http_date),
            outcome,
        }
    }
}

fn state_name(url: &str) -> String {
    format!("url/{url}")
}

impl Registry {
    /// The content of `url` as a blob of the store, kept by this process's lease: the
    /// expected digest when the store has it, else the remembered content when the server
    /// answers a conditional GET with `304`, else the downloaded body. Any answer other
    /// than a success (after the retries of 5xx and 429) is an error naming the URL and
    /// the status; so is content that does not hash to `opts.expected`.
    pub async fn fetch_url(
        &self,
        store: &Store,
        url: &str,
        opts: &UrlOptions,
    ) -> Result<UrlContent> {
        let tls = match reqwest::Url::parse(url).map(|u| u.scheme().to_owned()) {
            Ok(scheme) if scheme == "https" => Tls::Verified(Vec::new()),
            Ok(scheme) if scheme == "http" => Tls::None,
            _ => {
                return Err(RegistryError::InvalidUrl {
                    url: url.to_owned(),
                });
            }
        };
        let remembered = {
            let store = store.clone();
            let name = state_name(url);
            tokio::task::spawn_blocking(move || -> rbuild_store::Result<Option<Remembered>> {
                let Some(bytes) = store.get_state(&name)? else {
                    return Ok(None);
                };
                // A document that does not parse is as good as none: download again.
                let Ok(remembered) = serde_json::from_slice::<Remembered>(&bytes) else {
                    return Ok(None);
                };
                // Only usable while its blob is there (GC may have collected it).
                Ok(store
                    .keep_existing_blob(&remembered.digest)?
                    .then_some(remembered))
            })
            .await??
        };
        if let Some(expected) = &opts.expected {
            let exists = {
                let store = store.clone();
                let expected = expected.clone();
                tokio::task::spawn_blocking(move || store.keep_existing_blob(&expected)).await??
            };
            if exists {
                if let Some(remembered) = remembered.filter(|r| r.digest == *expected) {
                    return Ok(remembered.content(UrlOutcome::Existed));
                }
                let size = std::fs::metadata(store.blob_path(expected)).map_or(0, |m| m.len());
                return Ok(UrlContent {
                    digest: expected.clone(),
                    size,
                    last_modified: None,
                    outcome: UrlOutcome::Existed,
                });
            }
        }
        let conditional = remembered.filter(|_| opts.expected.is_none());
        let authorization = opts
            .authorization
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| RegistryError::InvalidAuthorization {
                url: url.to_owned(),
            })?;
        let response = self
            .retrying(&tls, url, true, || {
                let mut headers = HeaderMap::new();
                if let Some(mut value) = authorization.clone() {
                    value.set_sensitive(true);
                    headers.insert(header::AUTHORIZATION, value);
                }
                if let Some(remembered) = &conditional {
                    let value = |v: &Option<String>| {
                        v.as_deref().and_then(|v| HeaderValue::from_str(v).ok())
                    };
                    if let Some(etag) = value(&remembered.etag) {
                        headers.insert(header::IF_NONE_MATCH, etag);
                    }
                    if let Some(time) = value(&remembered.last_modified) {
                        headers.insert(header::IF_MODIFIED_SINCE, time);
                    }
                }
                (Method::GET, headers, None)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED
            && let Some(remembered) = &conditional
        {
            return Ok(remembered.content(UrlOutcome::NotModified));
        }
        if !status.is_success() {
            // The URL that answered: after a redirect, not the one asked.
            let answered = response.url().as_str();
            return Err(RegistryError::UrlStatus {
                url: if answered == url {
                    url.to_owned()
                } else {
                    format!("{url} (redirected to {answered})")
                },
                status: status.to_string(),
            });
        }
        let text = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = text(header::ETAG);
        let last_modified = text(header::LAST_MODIFIED);

        // The body streams to a blocking writer through a bounded channel: a slow disk
        // slows the socket down instead of filling memory.
        let (sender, mut receiver) = mpsc::channel::<Chunk>(16);
        let writer = {
            let store = store.clone();
            let expected = opts.expected.clone();
            tokio::task::spawn_blocking(move || -> rbuild_store::Result<Option<(Digest, u64)>> {
                let mut ingest = store.ingest()?;
                while let Some(chunk) = receiver.blocking_recv() {
                    match chunk {
                        Chunk::Data(bytes) => std::io::Write::write_all(&mut ingest, &bytes)
                            .map_err(rbuild_store::Error::io("write blob", store.root()))?,
                        Chunk::Restart => ingest = store.ingest()?,
                        Chunk::Finish => return ingest.commit(expected.as_ref()).map(Some),
                    }
                }
                Ok(None)
            })
        };
        let streamed = async {
            let mut response = response;
            while let Some(bytes) =
                response
                    .chunk()
                    .await
                    .map_err(|source| RegistryError::Download {
                        url: url.to_owned(),
                        reason: describe(&source),
                    })?
            {
                if sender.send(Chunk::Data(bytes)).await.is_err() {
                    // The writer stopped: its own error says why.
                    return Ok(false);
                }
            }
            Ok::<bool, RegistryError>(sender.send(Chunk::Finish).await.is_ok())
        }
        .await;
        drop(sender);
        let written = writer.await?;
        streamed?;
        let (digest, size) = match written {
            Ok(Some(committed)) => committed,
            Ok(None) => {
                return Err(RegistryError::Download {
                    url: url.to_owned(),
                    reason: "the download stopped before its end".to_owned(),
                });
            }
            Err(rbuild_store::Error::DigestMismatch { expected, actual }) => {
                return Err(RegistryError::DigestMismatch {
                    what: "the content",
                    url: url.to_owned(),
                    expected,
                    actual,
                });
            }
            Err(err) => return Err(err.into()),
        };
        let remembered = Remembered {
            digest,
            size,
            etag,
            last_modified,
        };
        {
            let store = store.clone();
            let name = state_name(url);
            let document = serde_json::to_vec(&remembered).expect("state documents serialize");
            tokio::task::spawn_blocking(move || store.put_state(&name, &document)).await??;
        }
        Ok(remembered.content(UrlOutcome::Downloaded))
    }
}
