//! Credentials from outside rbuild: what a `docker-credential-<helper> get` prints (the
//! helper is another program, possibly broken or hostile), and the `auths` entries of
//! docker's `config.json`. The first byte says whether the helper exited 0 and which
//! registry is asked for; the rest is the helper's stdout, and then the config file.
//! Errors are fine; panics are not.
//!
//! Consistency: a helper's credentials are its JSON's `Username` and `Secret`, only from a
//! helper that exited 0; `Debug` of any credentials never shows the secret.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_registry::fuzzing;

const REGISTRIES: [&str; 4] = ["docker.io", "127.0.0.1:5000", "ghcr.io", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let succeeded = flags & 1 == 1;
    let registry = REGISTRIES[usize::from(flags >> 1) % REGISTRIES.len()];
    let message = String::from_utf8_lossy(rest);
    if let Ok(Some(credentials)) = fuzzing::credential_helper_answer(succeeded, rest, &message) {
        assert!(succeeded, "credentials from a helper that failed");
        // (As a `Value` it may not parse: fields rbuild ignores are not checked for UTF-8.)
        if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(rest) {
            assert_eq!(answer["Username"], credentials.username.as_str());
            assert_eq!(answer["Secret"], credentials.secret.as_str());
        }
        assert_redacted(&credentials);
    }
    if let Ok(Some(credentials)) = fuzzing::config_credentials(rest, registry) {
        assert_redacted(&credentials);
    }
});

/// `Debug` never shows the secret.
fn assert_redacted(credentials: &rbuild_registry::Credentials) {
    assert_eq!(
        format!("{credentials:?}"),
        format!(
            "Credentials {{ username: {:?}, secret: \"<redacted>\" }}",
            credentials.username
        )
    );
}
