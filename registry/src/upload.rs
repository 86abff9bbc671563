//! Blob uploads: a HEAD first (the registry may have it), a cross-repository mount when
//! another repository of the same registry has it, else an upload session (`POST`) and
//! the bytes — one `PUT` for a blob up to `transfer.chunk-size`, `PATCH` chunks beyond,
//! resumed from the registry's offset after a failed chunk — closed by a `PUT` with the
//! digest.
//!
//! A registry may drop a session after a failed request (distribution does after a 5xx on
//! the closing `PUT`), and then answers `404 BLOB_UPLOAD_UNKNOWN` (or `410`, or `416` for a
//! range it no longer has) to everything sent to it: retrying the request can never work.
//! Such a blob is started over (HEAD, then a new `POST`), within the same
//! `transfer.retries` budget as failed chunks.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use super::client::{Registry, Repo, check_status, error_message};
use super::error::{RegistryError, Result};
use super::retry::backoff;
use super::{BlobOutcome, TransferEvent};
use rbuild_store::oci::Descriptor;
use rbuild_store::{Digest, Store};

/// How one upload session ended.
enum Sent {
    Done,
    /// The registry no longer knows the session: start the blob over.
    Lost {
        /// The request and answer that said so, for the retry message and the final error.
        error: RegistryError,
        /// Whether the failure that led to it was already counted against the budget.
        counted: bool,
    },
}

/// Failed attempts of one blob (chunks and sessions alike), against `transfer.retries`.
struct Budget {
    failures: u32,
    retries: u32,
}

impl Budget {
    /// Counts a failure; false when the budget is spent.
    fn spend(&mut self) -> bool {
        self.failures += 1;
        self.failures <= self.retries
    }
}

impl Registry {
    /// Uploads one blob unless the registry has it (or can mount it).
    pub(super) async fn upload_blob(
        &self,
        store: &Store,
        repo: &Repo,
        blob: &Descriptor,
    ) -> Result<()> {
        let digest = &blob.digest;
        let mut budget = Budget {
            failures: 0,
            retries: self.config.transfer.retries,
        };
        let mut restarted = false;
        loop {
            if self.registry_has(repo, digest).await? {
                // After a restart: the request that seemed to fail had in fact finished.
                let outcome = if restarted {
                    BlobOutcome::Uploaded
                } else {
                    BlobOutcome::Skipped
                };
                self.event(TransferEvent::BlobDone {
                    digest: digest.to_string(),
                    size: blob.size,
                    outcome,
                });
                return Ok(());
            }
            if !restarted {
                self.event(TransferEvent::BlobStarted {
                    digest: digest.to_string(),
                    size: blob.size,
                });
            }
            // A mount is asked for once: a registry that answered it with a session would
            // answer the same again.
            let Some(location) = self.start_session(store, repo, blob, !restarted).await? else {
                self.event(TransferEvent::BlobDone {
                    digest: digest.to_string(),
                    size: blob.size,
                    outcome: BlobOutcome::Mounted,
                });
                return Ok(());
            };
            if !store.has_blob(digest) {
                // A layer of an imported build cache that no build needed as files: it is
                // in the cache's repository, maybe on another registry. Fetch it to pass
                // it on.
                self.fetch_from_sources(store, blob).await?;
            }
            match self
                .send_blob(store, repo, blob, location, &mut budget)
                .await?
            {
                Sent::Done => break,
                Sent::Lost { error, counted } => {
                    if !counted && !budget.spend() {
                        return Err(error);
                    }
                    restarted = true;
                    self.event(TransferEvent::Retrying {
                        what: format!("upload of {digest}"),
                        attempt: budget.failures,
                        reason: format!("the registry dropped the upload session ({error})"),
                    });
                    tokio::time::sleep(backoff(budget.failures)).await;
                }
            }
        }
        self.event(TransferEvent::BlobDone {
            digest: digest.to_string(),
            size: blob.size,
            outcome: BlobOutcome::Uploaded,
        });
        Ok(())
    }

    /// Whether the repository already has the blob (`HEAD`).
    async fn registry_has(&self, repo: &Repo, digest: &Digest) -> Result<bool> {
        let url = repo.url(&format!("blobs/{digest}"));
        let response = self
            .send(repo, &url, true, || (Method::HEAD, HeaderMap::new(), None))
            .await?;
        if response.status().is_success() {
            return Ok(true);
        }
        if response.status() != StatusCode::NOT_FOUND {
            check_status(response, "HEAD", &url).await?;
        }
        Ok(false)
    }

    /// Starts an upload session (`POST`) and returns its location; `None` when the
    /// registry mounted the blob from another repository instead (asked for when `mount`
    /// and a repository of the same registry is known to have it).
    async fn start_session(
        &self,
        store: &Store,
        repo: &Repo,
        blob: &Descriptor,
        mount: bool,
    ) -> Result<Option<String>> {
        let digest = &blob.digest;
        let source = if mount {
            let store = store.clone();
            let digest = digest.clone();
            let host = repo.endpoint.host.clone();
            let own = format!("{}/{}", repo.endpoint.host, repo.repository);
            tokio::task::spawn_blocking(move || {
                store
                    .blob_sources(&digest)
                    .into_iter()
                    .filter(|s| *s != own)
                    .find_map(|s| s.strip_prefix(&format!("{host}/")).map(str::to_owned))
            })
            .await?
        } else {
            None
        };
        let mut session_repo = repo.clone();
        let start_url = match &source {
            Some(from) => {
                session_repo.mount_from = vec![from.clone()];
                format!("{}?mount={digest}&from={from}", repo.url("blobs/uploads/"))
            }
            None => repo.url("blobs/uploads/"),
        };
        let response = self
            .send(&session_repo, &start_url, true, || {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                (Method::POST, headers, None)
            })
            .await?;
        // The registry answers 201 (mounted) or 202 with an upload session, as without
        // `mount`.
        if source.is_some() && response.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let response = check_status(response, "POST", &start_url).await?;
        location(&response, &repo.endpoint.base, &start_url).map(Some)
    }

    /// Sends the blob's bytes to the session at `location` and closes it.
    async fn send_blob(
        &self,
        store: &Store,
        repo: &Repo,
        blob: &Descriptor,
        mut location: String,
        budget: &mut Budget,
    ) -> Result<Sent> {
        let digest = &blob.digest;
        let path = store.blob_path(digest);
        let size = blob.size;
        let chunk_size = self.config.transfer.chunk_size;
        if size <= chunk_size {
            // Small enough for one request: PUT it whole.
            let body = read_chunk(&path, 0, size).await?;
            let url = with_digest(&location, digest);
            let response = self
                .send(repo, &url, true, || {
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    (Method::PUT, headers, Some(body.clone()))
                })
                .await?;
            return close(response, "PUT", &url).await;
        }
        let mut offset: u64 = 0;
        while offset < size {
            let length = chunk_size.min(size - offset);
            let body = read_chunk(&path, offset, length).await?;
            let range = format!("{}-{}", offset, offset + length - 1);
            let sent = self
                .send(repo, &location, false, || {
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    headers.insert(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&range).expect("a range is a valid header"),
                    );
                    (Method::PATCH, headers, Some(body.clone()))
                })
                .await;
            let failure = match sent {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    location = self::location(&response, &repo.endpoint.base, &location)?;
                    // The registry's `Range` must take the upload forward, and not past
                    // what was sent: a registry that keeps answering `0-0` (or a range
                    // beyond the chunk) would otherwise loop the push forever without a
                    // failure counted.
                    let sent_end = offset + length;
                    match uploaded_end(&response) {
                        None => {
                            offset = sent_end;
                            continue;
                        }
                        Some(end) if end > offset && end <= sent_end => {
                            offset = end;
                            continue;
                        }
                        Some(end) => format!(
                            "the registry says it has {end} bytes after a chunk that ends at {sent_end}"
                        ),
                    }
                }
                // A range the registry does not have may be ours to correct: its status
                // says where it is (below), unless the session is gone.
                Ok(response)
                    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || response.status().is_server_error()
                        || response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("the registry answered {}", response.status())
                }
                Ok(response) if session_gone(response.status()) => {
                    return Ok(lost(response, "PATCH", &location, false).await);
                }
                Ok(response) => {
                    check_status(response, "PATCH", &strip_query(&location)).await?;
                    return Err(RegistryError::Status {
                        method: "PATCH".to_owned(),
                        url: strip_query(&location),
                        status: 200,
                        message: Some("expected 202 Accepted".to_owned()),
                    });
                }
                Err(RegistryError::Transport { cause, .. }) => cause,
                Err(err) => return Err(err),
            };
            // Resume: ask the registry how much it has, and go on from there. Chunks are
            // not resent blindly: the registry may have kept part of one.
            if !budget.spend() {
                return Err(RegistryError::Status {
                    method: "PATCH".to_owned(),
                    url: strip_query(&location),
                    status: 0,
                    message: Some(format!("the upload kept failing: {failure}")),
                });
            }
            self.event(TransferEvent::Retrying {
                what: format!("upload of {digest}"),
                attempt: budget.failures,
                reason: failure,
            });
            tokio::time::sleep(backoff(budget.failures)).await;
            let response = self
                .send(repo, &location, true, || {
                    (Method::GET, HeaderMap::new(), None)
                })
                .await?;
            if response.status() != StatusCode::NO_CONTENT {
                // Gone, or a status the registry cannot give: start the blob over.
                return Ok(lost(response, "GET", &location, true).await);
            }
            location = self::location(&response, &repo.endpoint.base, &location)?;
            offset = uploaded_end(&response).unwrap_or(0).min(size);
        }
        let url = with_digest(&location, digest);
        let response = self
            .send(repo, &url, true, || {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                (Method::PUT, headers, None)
            })
            .await?;
        close(response, "PUT", &url).await
    }
}

/// Answers to a request on a session URL that mean the registry no longer has the session:
/// `404` (`BLOB_UPLOAD_UNKNOWN`), `410 Gone`, and `416` for a range it cannot take.
fn session_gone(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::RANGE_NOT_SATISFIABLE
    )
}

/// The answer to the closing `PUT`.
async fn close(response: Response, method: &str, url: &str) -> Result<Sent> {
    if session_gone(response.status()) {
        return Ok(lost(response, method, url, false).await);
    }
    check_status(response, method, &strip_query(url)).await?;
    Ok(Sent::Done)
}

async fn lost(response: Response, method: &str, url: &str, counted: bool) -> Sent {
    let status = response.status().as_u16();
    Sent::Lost {
        error: RegistryError::Status {
            method: method.to_owned(),
            url: strip_query(url),
            status,
            message: error_message(response).await,
        },
        counted,
    }
}

/// The upload URL a registry answered with (`Location`, possibly relative).
fn location(response: &Response, base: &str, previous: &str) -> Result<String> {
    let value = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            method: "POST".to_owned(),
            url: strip_query(previous),
            status: response.status().as_u16(),
            message: Some("the registry sent no upload location".to_owned()),
        })?;
    let base = reqwest::Url::parse(&format!("{base}/")).expect("endpoint bases are URLs");
    base.join(value)
        .map(|u| u.to_string())
        .map_err(|_| RegistryError::Status {
            method: "POST".to_owned(),
            url: strip_query(previous),
            status: response.status().as_u16(),
            message: Some(format!("the upload location `{value}` is not a URL")),
        })
}

/// The offset after the last byte the registry has (`Range: 0-1023` → 1024).
fn uploaded_end(response: &Response) -> Option<u64> {
    let value = response.headers().get(header::RANGE)?.to_str().ok()?;
    let end: u64 = value
        .trim_start_matches("bytes=")
        .split('-')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    end.checked_add(1)
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Upload URLs carry session state in their query: left out of messages.
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

async fn read_chunk(path: &std::path::Path, offset: u64, length: u64) -> Result<Bytes> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<Bytes> {
        let io = |source| RegistryError::Io {
            action: "read blob",
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buffer = vec![0; length as usize];
        file.read_exact(&mut buffer).map_err(io)?;
        Ok(Bytes::from(buffer))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls() {
        let digest = Digest::of(b"x");
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u?_state=s", &digest),
            format!("http://r/v2/a/blobs/uploads/u?_state=s&digest={digest}")
        );
        assert_eq!(strip_query("http://r/u?_state=secret"), "http://r/u");
    }

    #[test]
    fn a_session_is_gone_on_404_410_and_416_only() {
        for status in [404, 410, 416] {
            assert!(
                session_gone(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [400, 401, 403, 500, 503] {
            assert!(
                !session_gone(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }

    fn with_range(range: &str) -> Response {
        Response::from(
            http::Response::builder()
                .status(202)
                .header("Range", range)
                .body(Vec::<u8>::new())
                .unwrap(),
        )
    }

    /// A `Range` a registry sends is read, never trusted to be sane: the largest end does
    /// not overflow (found by fuzzing the registry's answers).
    #[test]
    fn the_uploaded_end_is_read_without_overflow() {
        assert_eq!(uploaded_end(&with_range("0-1023")), Some(1024));
        assert_eq!(uploaded_end(&with_range("bytes=0-0")), Some(1));
        assert_eq!(uploaded_end(&with_range("0-18446744073709551615")), None);
        assert_eq!(uploaded_end(&with_range("garbage")), None);
    }
}
