//! Platforms: which entry of an index a platform takes (by containerd's ranking of
//! variants), whether an image runs on a platform, and this machine's platform.

use crate::oci::{self, Descriptor, Index, Platform};

/// The Docker media type of an index (a manifest list).
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `media_type` is an index's (OCI or Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == oci::MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
}

/// This machine's platform: `linux/<arch>`.
pub fn host_platform() -> Platform {
    Platform {
        os: "linux".to_owned(),
        architecture: crate::host_architecture().to_owned(),
        variant: None,
    }
}

/// `os/arch[/variant]`.
pub fn platform_string(platform: &Platform) -> String {
    match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}

/// The index entry for `want`: same OS and architecture, and the same variant when one
/// is asked for (arm64 without a variant means v8). Attestation entries
/// (`unknown/unknown`) are never chosen.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
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

    /// `os/arch[/variant]`, trusted.
    fn parse(text: &str) -> Platform {
        let parts: Vec<&str> = text.split('/').collect();
        Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        }
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
        let pick =
            |p: &str| choose_platform(&index, &parse(p)).map(|d| d.digest.hex()[..1].to_owned());
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
        let pick =
            |p: &str| choose_platform(&index, &parse(p)).map(|d| d.digest.hex()[..1].to_owned());
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("2"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("3"));
        assert_eq!(pick("linux/arm/v5").as_deref(), Some("1"));
        assert_eq!(pick("linux/amd64").as_deref(), Some("5"));
        assert_eq!(pick("linux/amd64/v2").as_deref(), Some("4"));
        assert_eq!(pick("linux/amd64/v4").as_deref(), Some("4"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("6"));
    }
}
