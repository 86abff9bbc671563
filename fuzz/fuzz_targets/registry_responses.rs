//! Header values of registry answers, one per line: `WWW-Authenticate` challenges,
//! `Content-Range` of resumed blob downloads, `Docker-Content-Digest`, and `Last-Modified`
//! of `ADD <url>` downloads. Errors are fine; panics are not.
//!
//! Consistency: a Bearer challenge came from a value that says `Bearer` and
//! names a realm found in it, a range start is
//! the number the value carries, a digest prints as it parsed, and an HTTP date survives
//! rbuild's own RFC 3339 formatting.
//!
//! rbuild parses no `Link` header (it lists no tags or catalogs); the `Range` answer to an
//! upload chunk is read in the push code, which has no entry point here yet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_registry::fuzzing;
use rbuild_store::{Digest, time};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some((realm, service)) = fuzzing::bearer_challenge(line) {
            let scheme = line.trim().get(..6).unwrap_or_default();
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{line:?}");
            // Parameters are slices of the value, never made up.
            assert!(line.contains(&realm), "{line:?}");
            assert!(
                service.is_none_or(|service| line.contains(&service)),
                "{line:?}"
            );
        }
        if let Some(start) = fuzzing::content_range_start(line) {
            assert!(line.starts_with("bytes "), "{line:?}");
            assert!(line.contains(&start.to_string()), "{line:?}");
        }
        if let Ok(digest) = line.parse::<Digest>() {
            assert_eq!(digest.to_string().parse::<Digest>().ok(), Some(digest));
        }
        if let Some(seconds) = time::parse_http_date(line) {
            assert_eq!(
                time::parse_rfc3339(&time::rfc3339(seconds)),
                Some(seconds),
                "{line:?}"
            );
        }
    }
});
