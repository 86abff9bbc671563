//! OCI annotations: `--annotation [TYPE[,TYPE][\[PLATFORM\]]:]KEY=VALUE` as buildx reads
//! it, and the standard ones rbuild sets on every image it builds.

use std::collections::BTreeMap;

use rbuild_frontend::Platform;
use rbuild_store::Image;

use super::GitOrigin;

/// Where an annotation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnnotationLevel {
    /// Each image manifest (the default).
    Manifest,
    /// The image index of a multi-platform or attested image.
    Index,
    /// Each image's entry in the index.
    ManifestDescriptor,
}

/// One `--annotation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub levels: Vec<AnnotationLevel>,
    /// Only the images of this platform (`manifest[linux/arm64]:…`).
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

impl Annotation {
    /// Parses `[TYPE[,TYPE][\[PLATFORM\]]:]KEY=VALUE`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Annotation, String> {
        let (left, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not `KEY=VALUE`"))?;
        let (prefix, key) = match left.split_once(':') {
            Some((prefix, key)) => (Some(prefix), key),
            None => (None, left),
        };
        if key.is_empty() {
            return Err(format!("`{text}` has no key"));
        }
        let mut levels = Vec::new();
        let mut platform = None;
        if let Some(prefix) = prefix {
            let (types, selector) = match prefix.split_once('[') {
                Some((types, rest)) => {
                    let selector = rest
                        .strip_suffix(']')
                        .ok_or_else(|| format!("`{prefix}`: a platform is written `[os/arch]`"))?;
                    (types, Some(selector))
                }
                None => (prefix, None),
            };
            for kind in types.split(',') {
                levels.push(match kind.trim() {
                    "manifest" => AnnotationLevel::Manifest,
                    "index" => AnnotationLevel::Index,
                    "manifest-descriptor" => AnnotationLevel::ManifestDescriptor,
                    "index-descriptor" => {
                        return Err("`index-descriptor` annotations are not supported: rbuild \
                                    writes the index's descriptor only in an OCI layout's \
                                    index.json"
                            .to_owned());
                    }
                    other => {
                        return Err(format!(
                            "unknown annotation type `{other}` (the types are `manifest`, `index` \
                             and `manifest-descriptor`)"
                        ));
                    }
                });
            }
            if let Some(selector) = selector {
                if levels.contains(&AnnotationLevel::Index) {
                    return Err(format!(
                        "`{prefix}`: an index is for every platform, so `index` takes no `[{selector}]`"
                    ));
                }
                platform = Some(Platform::parse(selector).map_err(|err| err.to_string())?);
            }
        }
        if levels.is_empty() {
            levels.push(AnnotationLevel::Manifest);
        }
        Ok(Annotation {
            levels,
            platform,
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Whether this annotation goes at `level` for an image of `platform`.
    pub(crate) fn applies(&self, level: AnnotationLevel, platform: Option<&Platform>) -> bool {
        self.levels.contains(&level)
            && match (&self.platform, platform) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }
}

/// The `--annotation`s for `level` (of an image of `platform`), as a map.
pub(crate) fn annotations_for(
    annotations: &[Annotation],
    level: AnnotationLevel,
    platform: Option<&Platform>,
) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|a| a.applies(level, platform))
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

/// The standard annotations of an image rbuild builds: when it was made, the base image
/// of its last stage by name and digest, and for a git context, the repository and
/// commit. All come from the build's inputs, so the same build gives the same manifest.
pub(crate) fn default_annotations(
    created: Option<&str>,
    base: Option<(&str, &Image)>,
    git: Option<&GitOrigin>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        annotations.insert(format!("org.opencontainers.image.{key}"), value);
    };
    if let Some(created) = created {
        set("created", created.to_owned());
    }
    if let Some((name, image)) = base {
        set("base.name", name.to_owned());
        set("base.digest", image.manifest_digest.to_string());
    }
    if let Some(git) = git {
        set("source", git.remote.clone());
        set("revision", git.commit.clone());
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_forms() {
        let plain = Annotation::parse("org.example.team=core").unwrap();
        assert_eq!(plain.levels, [AnnotationLevel::Manifest]);
        assert_eq!(
            (plain.key.as_str(), plain.value.as_str()),
            ("org.example.team", "core")
        );
        let both = Annotation::parse("index,manifest:a=b=c").unwrap();
        assert_eq!(
            both.levels,
            [AnnotationLevel::Index, AnnotationLevel::Manifest]
        );
        assert_eq!(both.value, "b=c");
        let arm = Annotation::parse("manifest[linux/arm64]:k=v").unwrap();
        assert_eq!(arm.platform, Some(Platform::parse("linux/arm64").unwrap()));
        assert!(arm.applies(
            AnnotationLevel::Manifest,
            Some(&Platform::parse("linux/arm64").unwrap())
        ));
        assert!(!arm.applies(
            AnnotationLevel::Manifest,
            Some(&Platform::parse("linux/amd64").unwrap())
        ));
        assert_eq!(
            Annotation::parse("layer:k=v").unwrap_err(),
            "unknown annotation type `layer` (the types are `manifest`, `index` and `manifest-descriptor`)"
        );
        assert_eq!(
            Annotation::parse("novalue").unwrap_err(),
            "`novalue` is not `KEY=VALUE`"
        );
        assert!(Annotation::parse("index-descriptor:k=v").is_err());
        assert_eq!(
            Annotation::parse("index[linux/amd64]:k=v").unwrap_err(),
            "`index[linux/amd64]`: an index is for every platform, so `index` takes no `[linux/amd64]`"
        );
    }
}
