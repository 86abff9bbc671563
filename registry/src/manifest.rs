//! What a manifest is: its media type (refusing schema 1, unknown and ambiguous types).

use rbuild_store::oci;
pub use rbuild_store::platform::{MEDIA_TYPE_DOCKER_LIST, is_index};

const MEDIA_TYPE_DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
