//! Package URLs (<https://github.com/package-url/purl-spec>): `pkg:type/namespace/name@version?qualifiers`.

/// A purl of `kind` for `name` (which may hold a namespace, segments split by `/`) at
/// `version`, with `qualifiers` (sorted by key, as the specification's canonical form).
pub(crate) fn purl(kind: &str, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let path: Vec<String> = name.split('/').map(encode).collect();
    let mut purl = format!("pkg:{kind}/{}", path.join("/"));
    if !version.is_empty() {
        purl.push('@');
        purl.push_str(&encode(version));
    }
    let mut qualifiers: Vec<&(&str, &str)> =
        qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    qualifiers.sort();
    for (index, (key, value)) in qualifiers.into_iter().enumerate() {
        purl.push(if index == 0 { '?' } else { '&' });
        purl.push_str(key);
        purl.push('=');
        purl.push_str(&encode(value));
    }
    purl
}

/// Percent-encodes all but the characters a purl component may hold as they are.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl;

    #[test]
    fn components_are_encoded_and_qualifiers_sorted() {
        assert_eq!(
            purl(
                "deb",
                "debian/libc6",
                "1:2.36+b1",
                &[("distro", "debian-12"), ("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@1%3A2.36%2Bb1?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("npm", "%40types/node", "20.1.0", &[]),
            "pkg:npm/%2540types/node@20.1.0"
        );
        assert_eq!(
            purl("npm", "@types/node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            purl("golang", "github.com/a/b", "v1.2.3", &[("x", "")]),
            "pkg:golang/github.com/a/b@v1.2.3"
        );
    }
}
