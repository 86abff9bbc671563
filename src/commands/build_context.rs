//! `--build-context NAME=VALUE`: extra contexts for `FROM NAME`, `COPY --from=NAME` and
//! `RUN --mount=from=NAME`, as `docker buildx build` takes them.

use miette::Result;
use rbuild_builder::NamedContextSource;

/// Parses `NAME=DIR`, `NAME=docker-image://REF` or `NAME=oci-layout://DIR[:TAG|@DIGEST]`.
/// The sources rbuild cannot read yet (URLs, git) are refused with the reason, never taken
/// for directories.
pub(crate) fn parse(text: &str) -> Result<(String, NamedContextSource)> {
    let flag = |message: String, help: &str| {
        miette::miette!(
            help = help.to_owned(),
            "--build-context `{text}`: {message}"
        )
    };
    let Some((name, value)) = text.split_once('=') else {
        return Err(flag(
            "expected NAME=VALUE".into(),
            "e.g. `--build-context deps=../deps` or `--build-context alpine=docker-image://alpine:3.20`",
        ));
    };
    if name.is_empty() || value.is_empty() {
        return Err(flag(
            "the name and the value must not be empty".into(),
            "e.g. `--build-context deps=../deps`",
        ));
    }
    if let Some(reference) = value.strip_prefix("docker-image://") {
        let reference = rbuild_frontend::normalize_reference(reference)
            .map_err(|message| flag(message, "give an image reference, e.g. `alpine:3.20`"))?;
        return Ok((name.to_owned(), NamedContextSource::Image(reference)));
    }
    if let Some(layout) = value.strip_prefix("oci-layout://") {
        let (dir, selector) = match layout.split_once("@sha256:") {
            Some((dir, hex)) => (dir, Some(format!("sha256:{hex}"))),
            // The selector starts at the first `:` of the last path component, so it may
            // be a full name with its own tag (`DIR:app:1.0`, as `rbuild save` names them).
            None => {
                let last = layout.rfind('/').map_or(0, |slash| slash + 1);
                match layout[last..].find(':') {
                    Some(colon) if last + colon + 1 < layout.len() => (
                        &layout[..last + colon],
                        Some(layout[last + colon + 1..].to_owned()),
                    ),
                    _ => (layout, None),
                }
            }
        };
        if dir.is_empty() {
            return Err(flag(
                "the OCI layout's directory is missing".into(),
                "e.g. `--build-context base=oci-layout://./layout:1.0`",
            ));
        }
        return Ok((
            name.to_owned(),
            NamedContextSource::OciLayout {
                dir: dir.into(),
                selector,
            },
        ));
    }
    for (prefix, what) in [
        ("https://", "a URL"),
        ("http://", "a URL"),
        ("git@", "a git repository"),
        ("ssh://", "a git repository"),
    ] {
        if value.starts_with(prefix) {
            return Err(flag(
                format!("{what} as a build context is not supported by rbuild yet"),
                "give a local directory, `docker-image://REF` or `oci-layout://DIR[:TAG]`",
            ));
        }
    }
    Ok((name.to_owned(), NamedContextSource::Dir(value.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_images_are_told_apart_and_the_rest_refused() {
        assert_eq!(
            parse("deps=../deps").unwrap(),
            ("deps".to_owned(), NamedContextSource::Dir("../deps".into()))
        );
        assert_eq!(
            parse("alpine=docker-image://alpine").unwrap(),
            (
                "alpine".to_owned(),
                NamedContextSource::Image("alpine:latest".into())
            )
        );
        for (text, dir, selector) in [
            ("b=oci-layout://./layout", "./layout", None),
            ("b=oci-layout:///srv/l:1.0", "/srv/l", Some("1.0")),
            ("b=oci-layout://lay:app:1.0", "lay", Some("app:1.0")),
            ("b=oci-layout://l@sha256:abc", "l", Some("sha256:abc")),
        ] {
            assert_eq!(
                parse(text).unwrap().1,
                NamedContextSource::OciLayout {
                    dir: dir.into(),
                    selector: selector.map(str::to_owned)
                },
                "{text}"
            );
        }
        for bad in [
            "deps",
            "=dir",
            "deps=",
            "x=oci-layout://",
            "x=https://example.com/a.tar",
        ] {
            assert!(parse(bad).unwrap_err().to_string().contains(bad), "{bad}");
        }
    }
}
