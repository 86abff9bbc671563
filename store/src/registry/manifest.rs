//! What a manifest is: its media type (refusing schema 1, unknown and ambiguous types) and
//! the entry of an index for a platform.

use crate::oci::{self, Descriptor, Index, Platform};

pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_TYPE_DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == oci::MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
}

/// The media type of a manifest, from its own `mediaType` field and the `Content-Type`
/// the registry sent. Refused: schema 1, unknown types, a body that looks like both an
/// index and a manifest, and a field that contradicts the header.
pub(crate) fn manifest_media_type(
    bytes: &[u8],
    header_type: Option<&str>,
) -> std::result::Result<String, String> {
    let known = [
        oci::MEDIA_TYPE_MANIFEST,
        oci::MEDIA_TYPE_INDEX,
        oci::MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_LIST,
    ];
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| format!("not valid JSON: {err}"))?;
    let body_type = value.get("mediaType").and_then(|v| v.as_str());
    let has_manifests = value.get("manifests").is_some();
    let has_layers = value.get("layers").is_some() || value.get("config").is_some();
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
        || body_type.is_some_and(|t| MEDIA_TYPE_DOCKER_SCHEMA1.contains(&t))
        || header_type.is_some_and(|t| MEDIA_TYPE_DOCKER_SCHEMA1.contains(&t))
    {
        return Err("docker schema 1 manifests are not supported".to_owned());
    }
    if has_manifests && has_layers {
        return Err(
            "ambiguous manifest: it has both `manifests` (an index) and `layers`/`config` (an image manifest)"
                .to_owned(),
        );
    }
    let header_type = header_type.filter(|t| known.contains(t));
    let media_type = match (body_type, header_type) {
        (Some(body), Some(header)) if body != header => {
            return Err(format!(
                "ambiguous media type: the registry sent `{header}` but the manifest says `{body}`"
            ));
        }
        (Some(body), _) => body.to_owned(),
        (None, Some(header)) => header.to_owned(),
        (None, None) if has_manifests => oci::MEDIA_TYPE_INDEX.to_owned(),
        (None, None) if has_layers => oci::MEDIA_TYPE_MANIFEST.to_owned(),
        (None, None) => return Err("neither an image manifest nor an index".to_owned()),
    };
    if !known.contains(&media_type.as_str()) {
        return Err(format!("unsupported manifest media type `{media_type}`"));
    }
    if is_index(&media_type) != has_manifests {
        return Err(format!(
            "ambiguous manifest: its media type is `{media_type}` but its content is {}",
            if has_manifests {
                "an index"
            } else {
                "an image manifest"
            }
        ));
    }
    Ok(media_type)
}

/// The index entry for `want`: same OS and architecture, and the same variant when one
/// is asked for (arm64 without a variant means v8). Attestation entries
/// (`unknown/unknown`) are never chosen.
pub(crate) fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let entries: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| !is_index(&m.media_type) || m.platform.is_some())
        .collect();
    if let [only] = entries.as_slice()
        && only.platform.is_none()
    {
        return Some(only);
    }
    // The best match, as containerd's matcher ranks them: the variant asked for, else
    // the closest older one this platform also runs.
    entries
        .into_iter()
        .filter_map(|m| {
            let have = m.platform.as_ref()?;
            let rank =
                (have.os == want.os && have.architecture == want.architecture).then(|| {
                    variant_rank(
                        &want.architecture,
                        want.variant.as_deref(),
                        have.variant.as_deref(),
                    )
                })??;
            Some((rank, m))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, m)| m)
}

/// Whether an image for `have` runs on `want` (see [`choose_platform`]'s ranking).
pub fn platform_runs(want: &Platform, have: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && variant_rank(
            &want.architecture,
            want.variant.as_deref(),
            have.variant.as_deref(),
        )
        .is_some()
}

/// How well an image of variant `have` suits a platform of variant `want` of
/// `architecture`: 0 for the same variant, n for one n levels older (an arm/v7 machine runs
/// v6 and v5 images, an amd64/v3 one v2 and v1 images), `None` for one it cannot run.
/// The default variants are `arm64/v8`, `arm/v7` and `amd64/v1`.
fn variant_rank(architecture: &str, want: Option<&str>, have: Option<&str>) -> Option<u32> {
    let default = match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        "amd64" => Some("v1"),
        _ => None,
    };
    let level = |variant: Option<&str>| -> Option<u32> {
        variant.or(default)?.strip_prefix('v')?.parse().ok()
    };
    match architecture {
        "arm" | "amd64" => {
            let (want, have) = (level(want)?, level(have)?);
            (have <= want).then(|| want - have)
        }
        _ if want.is_none() => Some(0),
        _ => (want.or(default) == have.or(default)).then_some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use crate::oci::Descriptor;

    #[test]
    fn media_types() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(manifest, Some(oci::MEDIA_TYPE_MANIFEST)).unwrap(),
            oci::MEDIA_TYPE_MANIFEST
        );
        // No field: the header decides; neither: the structure.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(bare, Some(MEDIA_TYPE_DOCKER_LIST)).unwrap(),
            MEDIA_TYPE_DOCKER_LIST
        );
        assert_eq!(
            manifest_media_type(bare, None).unwrap(),
            oci::MEDIA_TYPE_INDEX
        );
        let contradicts = manifest_media_type(manifest, Some(oci::MEDIA_TYPE_DOCKER_MANIFEST));
        assert!(contradicts.unwrap_err().contains("ambiguous"));
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(
            manifest_media_type(both, None)
                .unwrap_err()
                .contains("ambiguous")
        );
        let lying = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{},"layers":[]}"#;
        assert!(
            manifest_media_type(lying, None)
                .unwrap_err()
                .contains("ambiguous")
        );
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(
            manifest_media_type(schema1, None)
                .unwrap_err()
                .contains("schema 1")
        );
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-odd","config":{},"layers":[]}"#;
        assert!(
            manifest_media_type(odd, None)
                .unwrap_err()
                .contains("unsupported")
        );
    }

    #[test]
    fn platform_choice() {
        let entry = |arch: &str, variant: Option<&str>, hex: char| Descriptor {
            platform: Some(Platform {
                os: if arch == "unknown" {
                    "unknown"
                } else {
                    "linux"
                }
                .into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            ..Descriptor::new(
                oci::MEDIA_TYPE_MANIFEST,
                Digest::from_hex(&hex.to_string().repeat(64)).unwrap(),
                1,
            )
        };
        let index = Index::new(vec![
            entry("unknown", None, 'a'),
            entry("arm", Some("v7"), 'b'),
            entry("arm64", None, 'c'),
            entry("amd64", None, 'd'),
        ]);
        let pick = |p: &str| {
            choose_platform(&index, &super::super::parse_platform(p).unwrap())
                .map(|d| d.digest.hex()[..1].to_owned())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("d"));
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("c"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("b"));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
        // amd64/v3 runs an amd64 (v1) image; arm/v8 (32-bit on an ARMv8 CPU) a v7 one.
        assert_eq!(pick("linux/amd64/v3").as_deref(), Some("d"));

        // Variants ranked as containerd's matcher: the exact one, else the closest older.
        let index = Index::new(vec![
            entry("arm", Some("v5"), '1'),
            entry("arm", Some("v7"), '2'),
            entry("arm", Some("v6"), '3'),
            entry("amd64", Some("v2"), '4'),
            entry("amd64", None, '5'),
            entry("arm64", Some("v8"), '6'),
        ]);
        let pick = |p: &str| {
            choose_platform(&index, &super::super::parse_platform(p).unwrap())
                .map(|d| d.digest.hex()[..1].to_owned())
        };
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("2"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("3"));
        assert_eq!(pick("linux/arm/v5").as_deref(), Some("1"));
        assert_eq!(pick("linux/amd64").as_deref(), Some("5"));
        assert_eq!(pick("linux/amd64/v2").as_deref(), Some("4"));
        assert_eq!(pick("linux/amd64/v4").as_deref(), Some("4"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("6"));
    }
}
