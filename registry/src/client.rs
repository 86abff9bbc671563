//! The HTTP side of the distribution API: one `reqwest` client per TLS setting, auth
//! (Basic, and Bearer tokens fetched from the realm a 401 names, refreshed on the next
//! 401), and retries: 5xx, 429 and broken connections with backoff per request, failed
//! connections within one short window per endpoint (see `retry`).
//!
//! Secrets go only into `Authorization` headers: never into URLs, errors or events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use super::TransferEvent;
use super::config::{Endpoint, RegistryConfig, Tls};
use super::credentials::{Credentials, DockerConfig};
use super::error::{RegistryError, Result};
use super::retry::{Outages, TransportFailure, backoff};
use super::tls::tls_config;

/// A registry client for every registry: configuration, credentials, connections and
/// tokens. Cheap to share (`Arc`); safe to use from many tasks.
pub struct Registry {
    pub(crate) config: RegistryConfig,
    docker_config: Mutex<Option<Arc<DockerConfig>>>,
    /// By TLS setting and whether proxies are bypassed.
    clients: Mutex<HashMap<(Tls, bool), reqwest::Client>>,
    auth: Mutex<HashMap<String, HostAuth>>,
    outages: Outages,
    events: Option<Arc<dyn Fn(TransferEvent) + Send + Sync>>,
}

/// What a registry endpoint asked for.
#[derive(Debug, Clone, Default)]
struct HostAuth {
    scheme: Scheme,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// No 401 seen yet.
    #[default]
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// One repository on one endpoint, with the access a transfer needs.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub endpoint: Endpoint,
    pub repository: String,
    pub push: bool,
    /// Other repositories this transfer reads from (cross-repository mounts).
    pub mount_from: Vec<String>,
}

impl Repo {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.endpoint.base, self.repository)
    }

    fn scope(&self) -> String {
        let mut scopes = vec![format!(
            "repository:{}:{}",
            self.repository,
            if self.push { "pull,push" } else { "pull" }
        )];
        scopes.extend(
            self.mount_from
                .iter()
                .map(|from| format!("repository:{from}:pull")),
        );
        scopes.join(" ")
    }
}

impl Registry {
    /// A client with the configuration files and docker's credentials (read when first
    /// needed).
    pub fn new(config: RegistryConfig) -> Registry {
        Registry {
            config,
            docker_config: Mutex::new(None),
            clients: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
            outages: Outages::default(),
            events: None,
        }
    }

    /// Uses `docker_config` for credentials instead of the default file.
    pub fn with_docker_config(self, docker_config: DockerConfig) -> Registry {
        *self.docker_config.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(docker_config));
        self
    }

    /// Reports progress and retries to `events`.
    pub fn with_events(mut self, events: Arc<dyn Fn(TransferEvent) + Send + Sync>) -> Registry {
        self.events = Some(events);
        self
    }

    pub(crate) fn event(&self, event: TransferEvent) {
        if let Some(events) = &self.events {
            events(event);
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The client for `tls`; `direct` bypasses `HTTP(S)_PROXY` (for loopback registries,
    /// which a proxy cannot reach, as Go's and so docker's clients do).
    fn client(&self, tls: &Tls, direct: bool) -> Result<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&(tls.clone(), direct)) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder();
        if direct {
            builder = builder.no_proxy();
        }
        let client = builder
            .tls_backend_preconfigured(tls_config(tls)?)
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // A stalled connection is an error to retry, not a hang.
            .read_timeout(Duration::from_secs(120))
            .http1_only()
            .build()
            .map_err(|source| RegistryError::Client { source })?;
        clients.insert((tls.clone(), direct), client.clone());
        Ok(client)
    }

    async fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        let config = {
            let mut slot = self.docker_config.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(config) => config.clone(),
                None => {
                    let config = Arc::new(DockerConfig::load()?);
                    *slot = Some(config.clone());
                    config
                }
            }
        };
        let host = host.to_owned();
        // Credential helpers are processes: run them off the async workers.
        tokio::task::spawn_blocking(move || config.credentials(&host)).await?
    }

    fn host_auth(&self, base: &str) -> HostAuth {
        self.auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(base)
            .cloned()
            .unwrap_or_default()
    }

    /// The `Authorization` header for a request to `repo`, fetching a token when the
    /// registry wants one and none is cached for the scope.
    async fn authorization(&self, repo: &Repo) -> Result<Option<HeaderValue>> {
        let auth = self.host_auth(&repo.endpoint.base);
        match &auth.scheme {
            Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(self
                .credentials(&repo.endpoint.host)
                .await?
                .map(|c| basic_header(&c))),
            Scheme::Bearer { realm, service } => {
                let scope = repo.scope();
                if let Some(token) = auth.tokens.get(&scope) {
                    return Ok(Some(bearer_header(token)));
                }
                let token = self
                    .fetch_token(repo, realm, service.as_deref(), &scope)
                    .await?;
                self.auth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(repo.endpoint.base.clone())
                    .or_default()
                    .tokens
                    .insert(scope, token.clone());
                Ok(Some(bearer_header(&token)))
            }
        }
    }

    /// The token flow: GET the realm with the service and scopes, with Basic credentials
    /// when there are some (anonymous tokens otherwise).
    async fn fetch_token(
        &self,
        repo: &Repo,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String> {
        let credentials = self.credentials(&repo.endpoint.host).await?;
        self.fetch_token_with(
            &repo.endpoint,
            realm,
            service,
            Some(scope),
            credentials.as_ref(),
        )
        .await
    }

    async fn fetch_token_with(
        &self,
        endpoint: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<String> {
        let mut url = reqwest::Url::parse(realm).map_err(|_| RegistryError::Unauthorized {
            registry: endpoint.host.clone(),
            status: 401,
            message: Some(format!("the token realm `{realm}` is not a URL")),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scope.iter().flat_map(|s| s.split(' ')) {
                query.append_pair("scope", scope);
            }
            if let (None, Some(credentials)) = (scope, credentials) {
                query.append_pair("account", &credentials.username);
            }
        }
        let url = url.to_string();
        let response = self
            .retrying(&endpoint.tls, &url, true, || {
                let mut headers = HeaderMap::new();
                if let Some(credentials) = credentials {
                    headers.insert(header::AUTHORIZATION, basic_header(credentials));
                }
                (Method::GET, headers, None)
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Unauthorized {
                registry: endpoint.host.clone(),
                status: status.as_u16(),
                message: error_message(response).await,
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = read_limited(response, 1 << 20, "a token", &url).await?;
        let token: Token =
            serde_json::from_slice(&body).map_err(|_| RegistryError::Unauthorized {
                registry: endpoint.host.clone(),
                status: status.as_u16(),
                message: Some("the token server's answer is not a token".to_owned()),
            })?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: endpoint.host.clone(),
                status: status.as_u16(),
                message: Some("the token server sent no token".to_owned()),
            })
    }

    /// Checks `credentials` against `registry` (a host as in references): the
    /// registry's `/v2/` must accept them, directly (Basic) or through its token server
    /// (Bearer).
    pub async fn login(&self, registry: &str, credentials: &Credentials) -> Result<()> {
        let api_host = if registry == rbuild_store::DOCKER_HUB {
            rbuild_store::DOCKER_HUB_API
        } else {
            registry
        };
        let mut last_error = None;
        for endpoint in self.config.endpoints(registry, api_host, false) {
            match self.login_at(&endpoint, credentials).await {
                Err(err @ RegistryError::Transport { .. }) => last_error = Some(err),
                other => return other,
            }
        }
        Err(last_error.expect("every registry has at least one endpoint"))
    }

    async fn login_at(&self, endpoint: &Endpoint, credentials: &Credentials) -> Result<()> {
        let url = format!("{}/v2/", endpoint.base);
        let get = |authorization: Option<HeaderValue>| {
            move || {
                let mut headers = HeaderMap::new();
                if let Some(value) = &authorization {
                    headers.insert(header::AUTHORIZATION, value.clone());
                }
                (Method::GET, headers, None)
            }
        };
        let response = self.retrying(&endpoint.tls, &url, true, get(None)).await?;
        if response.status().is_success() {
            // The registry needs no credentials; they are stored all the same.
            return Ok(());
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Status {
                method: "GET".to_owned(),
                url,
                status: response.status().as_u16(),
                message: error_message(response).await,
            });
        }
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map_or(Scheme::Basic, parse_challenge);
        match challenge {
            Scheme::Bearer { realm, service } => {
                self.fetch_token_with(
                    endpoint,
                    &realm,
                    service.as_deref(),
                    None,
                    Some(credentials),
                )
                .await?;
                Ok(())
            }
            Scheme::Basic | Scheme::Anonymous => {
                let response = self
                    .retrying(
                        &endpoint.tls,
                        &url,
                        true,
                        get(Some(basic_header(credentials))),
                    )
                    .await?;
                if response.status().is_success() {
                    return Ok(());
                }
                Err(RegistryError::Unauthorized {
                    registry: endpoint.host.clone(),
                    status: response.status().as_u16(),
                    message: error_message(response).await,
                })
            }
        }
    }

    /// Learns what a 401 asks for; drops the token that was refused, so the next
    /// attempt fetches a fresh one.
    fn learn_challenge(&self, repo: &Repo, challenge: Option<&str>) {
        let scheme = challenge.map_or(Scheme::Basic, parse_challenge);
        let mut auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        let entry = auth.entry(repo.endpoint.base.clone()).or_default();
        entry.tokens.remove(&repo.scope());
        entry.scheme = scheme;
    }

    /// Sends a request to `repo`, with auth and retries. `make` builds the request for
    /// each attempt (method, headers, body). With `retry_transport` false a broken
    /// connection is returned as an error at once (for requests that must not be
    /// repeated blindly, like an upload chunk); 5xx and 429 answers are always retried.
    pub(crate) async fn send(
        &self,
        repo: &Repo,
        url: &str,
        retry_transport: bool,
        make: impl Fn() -> (Method, HeaderMap, Option<Bytes>),
    ) -> Result<Response> {
        let mut refreshed = false;
        loop {
            let authorization = self.authorization(repo).await?;
            let response = self
                .retrying(&repo.endpoint.tls, url, retry_transport, || {
                    let (method, mut headers, body) = make();
                    if let Some(value) = &authorization {
                        headers.insert(header::AUTHORIZATION, value.clone());
                    }
                    (method, headers, body)
                })
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // First 401 of this request: learn the scheme (or that the token expired)
                // and try once more with fresh credentials.
                refreshed = true;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.learn_challenge(repo, challenge.as_deref());
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Unauthorized {
                    registry: repo.endpoint.host.clone(),
                    status: status.as_u16(),
                    message: error_message(response).await,
                });
            }
            return Ok(response);
        }
    }

    /// Sends with retries: 5xx, 429 and broken connections (when `retry_transport`) with
    /// backoff, `transfer.retries` times; failed connections within the endpoint's window
    /// (see `retry`), whatever `retry_transport` says, since such a request was never sent.
    /// Any other answer is returned.
    pub(crate) async fn retrying(
        &self,
        tls: &Tls,
        url: &str,
        retry_transport: bool,
        make: impl Fn() -> (Method, HeaderMap, Option<Bytes>),
    ) -> Result<Response> {
        let parsed = reqwest::Url::parse(url).ok();
        let direct = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(rbuild_store::is_loopback))
            .unwrap_or(false);
        let origin = parsed.map_or_else(|| url.to_owned(), |u| u.origin().ascii_serialization());
        let client = self.client(tls, direct)?;
        let retries = self.config.transfer.retries;
        let mut attempt = 0;
        let mut connect_attempt = 0;
        loop {
            let (method, headers, body) = make();
            let mut request = client.request(method, url).headers(headers);
            if let Some(body) = body {
                request = request.body(body);
            }
            let (reason, delay) = match request.send().await {
                Ok(response) => {
                    self.outages.answered(&origin);
                    let status = response.status();
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                        || attempt >= retries
                    {
                        return Ok(response);
                    }
                    let after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    (format!("the registry answered {status}"), after)
                }
                Err(source) => {
                    let failure = TransportFailure::of(&source);
                    if failure.before_connecting() {
                        connect_attempt += 1;
                        // Silent: the wait is short, and the error says what happened.
                        match self
                            .outages
                            .retry_after(&origin, connect_attempt, Instant::now())
                            .filter(|_| retries > 0)
                        {
                            Some(wait) => {
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            None => return Err(RegistryError::transport(url, &source)),
                        }
                    }
                    if failure != TransportFailure::Broken || !retry_transport || attempt >= retries
                    {
                        return Err(RegistryError::transport(url, &source));
                    }
                    (super::retry::describe(&source), None)
                }
            };
            attempt += 1;
            self.event(TransferEvent::Retrying {
                what: url.to_owned(),
                attempt,
                reason,
            });
            tokio::time::sleep(delay.unwrap_or_else(|| backoff(attempt))).await;
        }
    }
}

fn basic_header(credentials: &Credentials) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{}:{}", credentials.username, credentials.secret));
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header");
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub(crate) fn parse_challenge(challenge: &str) -> Scheme {
    let (scheme, params) = challenge.trim().split_once(' ').unwrap_or((challenge, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Scheme::Basic;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            _ => {}
        }
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    match realm {
        Some(realm) => Scheme::Bearer { realm, service },
        None => Scheme::Basic,
    }
}

/// The registry's own message from an error answer (`{"errors":[{"code","message"}]}`).
pub(crate) async fn error_message(response: Response) -> Option<String> {
    let body = response.bytes().await.ok()?;
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let errors: Errors = serde_json::from_slice(&body).ok()?;
    let text: Vec<String> = errors
        .errors
        .into_iter()
        .map(|e| match (e.code, e.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (code, message) => code.or(message).unwrap_or_default(),
        })
        .filter(|t| !t.is_empty())
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

/// Reads a whole (small) body, refusing more than `limit` bytes before reading them when
/// the length is announced, and as soon as it is passed otherwise.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: u64,
    what: &'static str,
    url: &str,
) -> Result<Vec<u8>> {
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(RegistryError::TooLarge {
            what,
            url: url.to_owned(),
            size: length,
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::transport(url, &source))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                what,
                url: url.to_owned(),
                size: body.len() as u64,
                limit,
            });
        }
    }
    Ok(body)
}

/// Fails with the registry's message unless the answer is a success.
pub(crate) async fn check_status(response: Response, method: &str, url: &str) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(RegistryError::Status {
        method: method.to_owned(),
        url: url.to_owned(),
        status: status.as_u16(),
        message: error_message(response).await,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Scheme::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm=https://r/token"#),
            Scheme::Bearer {
                realm: "https://r/token".into(),
                service: None
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="registry""#), Scheme::Basic);
    }

    #[test]
    fn scopes_name_every_repository() {
        let repo = Repo {
            endpoint: Endpoint {
                base: "http://r".into(),
                host: "r".into(),
                tls: Tls::None,
                mirror: false,
            },
            repository: "team/app".into(),
            push: true,
            mount_from: vec!["library/base".into()],
        };
        assert_eq!(
            repo.scope(),
            "repository:team/app:pull,push repository:library/base:pull"
        );
        assert_eq!(
            repo.url("blobs/uploads/"),
            "http://r/v2/team/app/blobs/uploads/"
        );
    }
}
