//! `.dockerignore` patterns (and `COPY --exclude`, which uses the same matcher): the text
//! before the first NUL is the ignore file, each line after it a context path to match.
//! A malformed ignore file is an error (fine); panics and runaway matching time are
//! failures.
//!
//! Consistency: a path matches as its cleaned forms do (`./a`, `a/`, `a//b`), and without
//! `!` exceptions everything below an excluded directory is excluded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_builder::IgnoreMatcher;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let Ok(matcher) = IgnoreMatcher::parse(patterns) else {
        return;
    };
    for path in paths.lines().take(16) {
        let excluded = matcher.is_excluded(path);
        assert_eq!(
            matcher.is_excluded(&format!("./{path}")),
            excluded,
            "{path:?}"
        );
        assert_eq!(
            matcher.is_excluded(&format!("{path}/")),
            excluded,
            "{path:?}"
        );
        if excluded && !matcher.has_exceptions() {
            assert!(matcher.is_excluded(&format!("{path}/below")), "{path:?}");
        }
        if matcher.is_empty() {
            assert!(!excluded);
        }
    }
});
