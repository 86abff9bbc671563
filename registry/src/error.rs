//! Why a registry operation failed: which registry, which object, and what it answered.

use super::retry::{TransportFailure, describe};
use rbuild_store::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] rbuild_store::Error),
    /// A request got no answer. The message names the address once, with the innermost
    /// cause, and not reqwest's own message, which repeats the whole URL.
    #[error("{}", transport_message(*failure, address, cause))]
    Transport {
        url: String,
        /// `host:port` of the URL.
        address: String,
        failure: TransportFailure,
        /// The innermost cause, as the operating system or rustls put it.
        cause: String,
    },
    #[error("cannot set up the HTTP client")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{method} {url}: the registry answered {status}{}",
        fmt_message(message)
    )]
    Status {
        method: String,
        url: String,
        status: u16,
        /// The registry's own error message (`errors[].message`), if it sent one.
        message: Option<String>,
    },
    #[error("{registry}: authentication failed ({status}){}", fmt_message(message))]
    Unauthorized {
        registry: String,
        status: u16,
        message: Option<String>,
    },
    #[error("{reference}: not found in the registry")]
    NotFound { reference: String },
    #[error("{what} from {url} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        url: String,
        size: u64,
        limit: u64,
    },
    #[error("{what} from {url} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: &'static str,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {digest} from {url} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        url: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: {reason}")]
    InvalidManifest { url: String, reason: String },
    #[error("{reference} has no image for {platform} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("invalid registry configuration {path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper `docker-credential-{helper}` failed: {reason}")]
    CredentialHelper { helper: String, reason: String },
    #[error("invalid platform `{input}`: expected `os/arch[/variant]`, e.g. `linux/arm64`")]
    InvalidPlatform { input: String },
    #[error("`{url}` is not an HTTP or HTTPS URL")]
    InvalidUrl { url: String },
    /// The `Authorization` value given for a download cannot be sent as a header (a
    /// line break, a control character). The value itself is a secret: never shown.
    #[error("the authorization secret for `{url}` is not a valid HTTP header value")]
    InvalidAuthorization { url: String },
    /// A plain URL (`ADD https://…`) answered something other than a success.
    #[error("GET {url}: the server answered {status}")]
    UrlStatus {
        url: String,
        /// The code and its reason, e.g. `404 Not Found`.
        status: String,
    },
    #[error("the download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("a transfer task failed")]
    Join(#[from] tokio::task::JoinError),
}

fn transport_message(failure: TransportFailure, address: &str, cause: &str) -> String {
    match failure {
        TransportFailure::Refused => format!("cannot connect to {address}: connection refused"),
        TransportFailure::Unreachable => format!("cannot connect to {address}: {cause}"),
        TransportFailure::NameNotResolved => {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            format!("the name `{host}` did not resolve: {cause}")
        }
        TransportFailure::Certificate => {
            format!("the certificate of {address} is not trusted: {cause}")
        }
        TransportFailure::NotTls => format!("{address} does not speak TLS: {cause}"),
        TransportFailure::Tls => format!("the TLS handshake with {address} failed: {cause}"),
        TransportFailure::Broken => format!("the connection to {address} broke: {cause}"),
        TransportFailure::Request => format!("the request to {address} failed: {cause}"),
    }
}

fn fmt_message(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl RegistryError {
    /// A request to `url` that got no answer.
    pub(crate) fn transport(url: &str, source: &reqwest::Error) -> RegistryError {
        let address = reqwest::Url::parse(url)
            .ok()
            .and_then(|url| {
                let host = url.host_str()?.to_owned();
                Some(match url.port_or_known_default() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| url.to_owned());
        RegistryError::Transport {
            url: url.to_owned(),
            address,
            failure: TransportFailure::of(source),
            cause: describe(source),
        }
    }

    /// Whether trying again (or another endpoint) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { failure, .. } => failure.is_transient(),
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether the error means the manifest or blob does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
            || matches!(self, RegistryError::Status { status: 404, .. })
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
