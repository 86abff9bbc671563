//! Small predicates the build checks share: secret-looking names, EXPOSE formats.

use crate::Span;

use super::{Rule, Warning};

/// Name components that suggest a secret, and ones that say it is not one, as in
/// BuildKit's `SecretsUsedInArgOrEnv`: a name matches when one of its `_`-separated
/// parts is a secret word and none is an allowed word (`API_KEY`, not `PUBLIC_KEY`).
const SECRET_WORDS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const NOT_SECRET_WORDS: [&str; 3] = ["public", "file", "version"];

pub(crate) fn is_secret_name(name: &str) -> bool {
    let parts: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    let any = |words: &[&str]| parts.iter().any(|part| words.contains(&part.as_str()));
    any(&SECRET_WORDS) && !any(&NOT_SECRET_WORDS)
}

/// `ExposeInvalidFormat` and `ExposeProtoCasing` for one expanded EXPOSE word.
pub(crate) fn port_warnings(spec: &str, span: Span) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if spec.contains(':') {
        let port = spec.rsplit(':').next().unwrap_or(spec);
        warnings.push(
            Warning::new(
                Rule::ExposeInvalidFormat,
                span,
                format!(
                    "`EXPOSE` should not define an IP address or host-port mapping, found `{spec}`"
                ),
            )
            .with_help(format!(
                "expose only the container port, e.g. `EXPOSE {port}`; publish it when running the container"
            )),
        );
    }
    if let Some((port, proto)) = spec.split_once('/')
        && proto != proto.to_ascii_lowercase()
    {
        let port = port.rsplit(':').next().unwrap_or(port);
        warnings.push(
            Warning::new(
                Rule::ExposeProtoCasing,
                span,
                format!("defined protocol `{spec}` in `EXPOSE` should be lowercase"),
            )
            .with_help(format!("write `{port}/{}`", proto.to_ascii_lowercase())),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "api_key",
            "GITHUB_TOKEN",
            "password",
            "DB_PASSWD",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PUBLIC_KEY",
            "KEY_FILE",
            "TOKEN_VERSION",
            "KEYS",
            "MONKEY",
            "PATH",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn ports() {
        let rules = |spec| {
            port_warnings(spec, Span::default())
                .iter()
                .map(|w| w.rule)
                .collect::<Vec<_>>()
        };
        assert!(rules("80/tcp").is_empty());
        assert_eq!(rules("127.0.0.1:80:80"), [Rule::ExposeInvalidFormat]);
        assert_eq!(rules("80:80"), [Rule::ExposeInvalidFormat]);
        assert_eq!(rules("80/TcP"), [Rule::ExposeProtoCasing]);
        let warnings = port_warnings("80/UDP", Span::default());
        assert_eq!(warnings[0].help.as_deref(), Some("write `80/udp`"));
    }
}
