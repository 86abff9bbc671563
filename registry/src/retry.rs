//! What a request that got no answer ran into, and when it is tried again.
//!
//! A registry that is not there (connection refused, no route) is waited for briefly, and
//! once per endpoint however many requests a transfer makes: the first failed connection
//! opens a window of [`CONNECT_WINDOW`], every request to that endpoint is tried again
//! inside it and none after it, and an answer from the endpoint closes it. Without the
//! sharing, a push of four blobs to a registry that is not running retried each blob on
//! its own and printed a line per blob and attempt.
//!
//! A connection that broke after it was made (a reset, closed before the answer) is
//! retried per request with [`backoff`], as 5xx answers are: those are the transient
//! failures of a registry that is there. A name that does not resolve and a TLS handshake
//! that fails are not retried: the next try would meet the same answer.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a registry that cannot be connected to is waited for: enough for one that is
/// restarting, short enough that a push to one that is not running fails at once.
pub(crate) const CONNECT_WINDOW: Duration = Duration::from_secs(2);

/// Why a request got no answer: carried by [`super::RegistryError::Transport`], so that
/// callers say what to do next without reading messages. `Refused`, `Unreachable` and
/// `Broken` were retried before the error was returned (see the module's rules); the
/// others never are.
///
/// ```
/// use rbuild_registry::{RegistryError, TransportFailure};
///
/// fn help(err: &RegistryError) -> Option<String> {
///     match err {
///         RegistryError::Transport {
///             failure: TransportFailure::Refused,
///             address,
///             ..
///         } => Some(format!("is a registry running at {address}?")),
///         _ => None,
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// Nothing listens at the address.
    Refused,
    /// No route to the host, or the connection attempt timed out.
    Unreachable,
    /// The host name did not resolve.
    NameNotResolved,
    /// The server's certificate was not accepted.
    Certificate,
    /// The server does not speak TLS (a plain-HTTP server answered the handshake).
    NotTls,
    /// The TLS handshake failed for another reason.
    Tls,
    /// The connection was made and then broke: reset, closed before the answer, or
    /// silent for longer than the read timeout.
    Broken,
    /// The request could not be made (a URL reqwest refuses, too many redirects).
    Request,
}

impl TransportFailure {
    /// What `err` was. hyper and reqwest expose little of it as types: the operating
    /// system's error kind and rustls' error are found in the chain of causes.
    pub(crate) fn of(err: &reqwest::Error) -> TransportFailure {
        if err.is_builder() || err.is_redirect() {
            return TransportFailure::Request;
        }
        for cause in causes(err) {
            if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
                return TransportFailure::of_tls(tls);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return TransportFailure::Refused,
                    std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable => {
                        return TransportFailure::Unreachable;
                    }
                    _ => {}
                }
            }
            // A name that did not resolve is a hyper-util `ConnectError` whose message is
            // all it exposes of that kind.
            if cause.to_string() == "dns error" {
                return TransportFailure::NameNotResolved;
            }
        }
        if err.is_connect() {
            TransportFailure::Unreachable
        } else {
            TransportFailure::Broken
        }
    }

    fn of_tls(err: &rustls::Error) -> TransportFailure {
        match err {
            rustls::Error::InvalidCertificate(_) => TransportFailure::Certificate,
            // What rustls makes of an HTTP answer to its ClientHello.
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                TransportFailure::NotTls
            }
            _ => TransportFailure::Tls,
        }
    }

    /// Whether no connection was made, so the request was not sent and trying again
    /// cannot repeat it (even an upload chunk), and the endpoint's window applies.
    pub(crate) fn before_connecting(self) -> bool {
        matches!(
            self,
            TransportFailure::Refused | TransportFailure::Unreachable
        )
    }

    /// Whether the same request may succeed later.
    pub(crate) fn is_transient(self) -> bool {
        matches!(
            self,
            TransportFailure::Refused | TransportFailure::Unreachable | TransportFailure::Broken
        )
    }
}

/// 200 ms, 400 ms, 800 ms, … up to 8 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.clamp(1, 10).saturating_sub(1)))
        .min(Duration::from_secs(8))
}

/// The endpoints (`scheme://host:port`) that failed to connect, and since when: one
/// window per endpoint for every request of a [`super::Registry`].
#[derive(Debug, Default)]
pub(crate) struct Outages {
    since: Mutex<HashMap<String, Instant>>,
}

impl Outages {
    /// After the `attempt`th failed connection of one request to `origin` at `now`: how
    /// long to wait before trying again, or `None` when the window has passed.
    pub(crate) fn retry_after(&self, origin: &str, attempt: u32, now: Instant) -> Option<Duration> {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let opened = *since.entry(origin.to_owned()).or_insert(now);
        let left = (opened + CONNECT_WINDOW).checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        // Waits grow as in `backoff`, and the last one ends with the window, so one more
        // try is made at its end.
        Some(backoff(attempt).min(left))
    }

    /// `origin` answered: a later failure opens a new window.
    pub(crate) fn answered(&self, origin: &str) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if !since.is_empty() {
            since.remove(origin);
        }
    }
}

/// `err` and its causes, outermost first. An `io::Error` that wraps another error is
/// followed into it: its `source` skips the wrapped error, which is where hyper-rustls
/// (an `io::Error` in an `io::Error`) puts rustls' own.
fn causes<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(
        Some(err),
        |&current: &&'a (dyn Error + 'static)| match current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => current.source(),
        },
    )
}

/// The innermost cause of a transport error, for messages ("connection reset by peer").
pub(crate) fn describe(err: &(dyn Error + 'static)) -> String {
    causes(err)
        .last()
        .map_or_else(|| err.to_string(), |cause| cause.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(20), Duration::from_secs(8));
    }

    /// The tries one request makes against an endpoint that never answers.
    fn tries(outages: &Outages, origin: &str, start: Instant) -> Vec<Duration> {
        let mut now = start;
        let mut waits = Vec::new();
        for attempt in 1.. {
            match outages.retry_after(origin, attempt, now) {
                Some(wait) => {
                    waits.push(wait);
                    now += wait;
                }
                None => break,
            }
        }
        waits
    }

    #[test]
    fn a_closed_port_is_tried_a_few_times_within_the_window() {
        let outages = Outages::default();
        let waits = tries(&outages, "http://127.0.0.1:5999", Instant::now());
        assert_eq!(
            waits,
            [200, 400, 800, 600].map(Duration::from_millis),
            "the last wait ends with the window"
        );
        assert_eq!(waits.iter().sum::<Duration>(), CONNECT_WINDOW);
    }

    #[test]
    fn the_window_is_shared_by_every_request_to_an_endpoint() {
        let outages = Outages::default();
        let start = Instant::now();
        let origin = "http://127.0.0.1:5999";
        assert!(outages.retry_after(origin, 1, start).is_some());
        // Another request (another blob) that fails later gets only what is left...
        let late = start + Duration::from_millis(1900);
        assert_eq!(
            outages.retry_after(origin, 1, late),
            Some(Duration::from_millis(100))
        );
        // ...and none once the window has passed, however few tries it made itself.
        assert_eq!(outages.retry_after(origin, 1, start + CONNECT_WINDOW), None);
        assert_eq!(
            outages.retry_after(origin, 1, start + 2 * CONNECT_WINDOW),
            None
        );
        // Another endpoint has its own window.
        assert!(
            outages
                .retry_after("https://127.0.0.1:5999", 1, start + CONNECT_WINDOW)
                .is_some()
        );
    }

    #[test]
    fn an_answer_closes_the_window() {
        let outages = Outages::default();
        let start = Instant::now();
        let origin = "http://127.0.0.1:5000";
        assert!(outages.retry_after(origin, 1, start).is_some());
        assert_eq!(outages.retry_after(origin, 1, start + CONNECT_WINDOW), None);
        // The registry came back, then went away again: a new window.
        outages.answered(origin);
        let later = start + 10 * CONNECT_WINDOW;
        assert_eq!(
            outages.retry_after(origin, 1, later),
            Some(Duration::from_millis(200))
        );
    }

    /// A server on 127.0.0.1 that answers every connection with `answer` and closes it.
    fn server(answer: &'static [u8]) -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let _ = stream.read(&mut [0; 1024]);
                let _ = stream.write_all(answer);
            }
        });
        port
    }

    async fn failure(url: String) -> TransportFailure {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(
                super::super::tls::tls_config(&super::super::Tls::Unverified).unwrap(),
            )
            .build()
            .unwrap();
        let err = client.get(url).send().await.unwrap_err();
        TransportFailure::of(&err)
    }

    /// Real failures, classified from what reqwest returns. (Names that do not resolve
    /// are left out: that would ask the machine's DNS server.)
    #[tokio::test]
    async fn failures_are_told_apart() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = failure(format!("http://127.0.0.1:{port}/v2/")).await;
        assert_eq!(refused, TransportFailure::Refused);
        assert!(refused.before_connecting() && refused.is_transient());

        let port = server(b"");
        let broken = failure(format!("http://127.0.0.1:{port}/v2/")).await;
        assert_eq!(broken, TransportFailure::Broken);
        assert!(!broken.before_connecting() && broken.is_transient());

        let port = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        let not_tls = failure(format!("https://127.0.0.1:{port}/v2/")).await;
        assert_eq!(not_tls, TransportFailure::NotTls);
        assert!(!not_tls.is_transient());
    }
}
