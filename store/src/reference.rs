//! Image names: `[registry[:port]/]repository[:tag]`, normalized to always carry a tag.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A validated image name with its tag, e.g. `busybox:latest` or
/// `127.0.0.1:5000/team/app:v1`. A name given without a tag gets `latest`, as with docker.
///
/// Registry defaults (`docker.io/library/`) are not added: `busybox` stays `busybox`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    repository: String,
    tag: String,
}

impl ImageName {
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl FromStr for ImageName {
    type Err = Error;

    fn from_str(input: &str) -> Result<ImageName, Error> {
        let invalid = |reason| Error::InvalidImageName {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if input.contains('@') {
            return Err(invalid("digest references are not supported here yet"));
        }
        // A `:` after the last `/` separates the tag; one before it belongs to a
        // registry port (`localhost:5000/app`).
        let last_slash = input.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match input[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&input[..colon], &input[colon + 1..])
            }
            None => (input, "latest"),
        };
        if tag.is_empty() || tag.len() > 128 {
            return Err(invalid("a tag has 1 to 128 characters"));
        }
        if !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || tag.starts_with(['.', '-'])
        {
            return Err(invalid(
                "a tag has letters, digits, `_`, `.` and `-`, and starts with a letter, digit or `_`",
            ));
        }
        let mut components = repository.split('/').peekable();
        let mut first = true;
        while let Some(component) = components.next() {
            let is_registry = first
                && components.peek().is_some()
                && (component.contains(['.', ':']) || component == "localhost");
            first = false;
            if is_registry {
                if !component
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
                    || !component.starts_with(|c: char| c.is_ascii_alphanumeric())
                {
                    return Err(invalid("the registry host has invalid characters"));
                }
                continue;
            }
            if component.is_empty()
                || !component.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                || !component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(invalid(
                    "repository names use lowercase letters, digits and `.`, `_`, `-` separators",
                ));
            }
        }
        Ok(ImageName {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for ImageName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_latest_and_keeps_registry_ports() {
        let cases = [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<ImageName>().unwrap().to_string(), expected);
        }
    }

    #[test]
    fn rejects_bad_names() {
        for input in [
            "",
            "Busybox",
            "app:",
            "app:-x",
            "a//b",
            "../x",
            "app@sha256:00",
        ] {
            assert!(
                input.parse::<ImageName>().is_err(),
                "{input} should be rejected"
            );
        }
    }
}
