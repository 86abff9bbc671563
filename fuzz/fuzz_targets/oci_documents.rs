//! OCI and Docker documents as a registry or an archive sends them: the media type check of
//! a fetched manifest (with each `Content-Type` a registry may send), manifests, indexes
//! (and the platform a pull picks from them), image configs (and the frontend's view of
//! their `config`), descriptors and digests. Errors are fine; panics are not.
//!
//! Round trips: a document rbuild accepts, written as canonical JSON, reads back equal (its
//! canonical bytes are a fixed point, so digests of re-written documents are stable).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_store::oci::{
    Descriptor, ImageConfiguration, Index, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST, Manifest, canonical_json,
};
use rbuild_registry::{parse_platform, platform_string};
use rbuild_registry::fuzzing;
use rbuild_store::Digest;

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fuzz_target!(|data: &[u8]| {
    for content_type in [
        None,
        Some(MEDIA_TYPE_MANIFEST),
        Some(MEDIA_TYPE_INDEX),
        Some(MEDIA_TYPE_DOCKER_MANIFEST),
        Some(DOCKER_LIST),
        Some("application/json"),
    ] {
        if let Ok(media_type) = fuzzing::manifest_media_type(data, content_type) {
            // An accepted type is one rbuild knows, and agrees with the header it knows.
            assert!(
                [
                    MEDIA_TYPE_MANIFEST,
                    MEDIA_TYPE_INDEX,
                    MEDIA_TYPE_DOCKER_MANIFEST,
                    DOCKER_LIST
                ]
                .contains(&media_type.as_str()),
                "{media_type}"
            );
        }
    }

    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        round_trip(&manifest);
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        round_trip(&index);
        for platform in [
            "linux/amd64",
            "linux/arm64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
        ] {
            let want = parse_platform(platform).expect("a valid platform");
            if let Some(chosen) = fuzzing::choose_platform(&index, &want) {
                assert!(index.manifests.contains(chosen));
            }
        }
        for entry in &index.manifests {
            if let Some(platform) = &entry.platform {
                // What `--platform` would be typed as for this entry.
                let _ = parse_platform(&platform_string(platform));
            }
        }
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfiguration>(data) {
        let canonical = canonical_json(&config);
        let again: ImageConfiguration =
            serde_json::from_slice(&canonical).expect("canonical JSON reads back");
        // serde_json's float parsing is not correctly rounded (no `float_roundtrip`): a
        // float may come back one ulp off. rbuild never re-writes a base image's `config`
        // value (it writes its own from the frontend's typed config), so floats are left
        // out of the comparison.
        if !has_float(&config.config) {
            assert_eq!(
                canonical_json(&again),
                canonical,
                "canonical JSON is a fixed point"
            );
        }
        let _ = rbuild_builder::frontend_config(&config.config);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = rbuild_builder::frontend_config(&value);
    }
    if let Ok(descriptor) = serde_json::from_slice::<Descriptor>(data) {
        round_trip(&descriptor);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(digest) = text.parse::<Digest>()
    {
        assert_eq!(digest.to_string().parse::<Digest>().ok(), Some(digest));
    }
});

fn round_trip<T>(document: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let canonical = canonical_json(document);
    let again: T = serde_json::from_slice(&canonical).expect("canonical JSON reads back");
    assert_eq!(&again, document, "a document survives canonical JSON");
    assert_eq!(canonical_json(&again), canonical);
}

fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) => number.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(fields) => fields.values().any(has_float),
        _ => false,
    }
}
