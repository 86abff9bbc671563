//! Base images: found in the store or pulled, leased for the build, and the filesystem
//! state an `Image` op starts from.

use std::collections::HashMap;
use std::path::Path;

use rbuild_frontend::{ImageConfig, Op, OpKind, Platform};
use rbuild_registry::PullOptions;
use rbuild_store::{Image, Reference};

use crate::error::BuildError;
use crate::solve::{Builder, SolveContext};
use crate::state::{Layer, LayerRef, State};

/// The build's base images, by reference and the platform they are used for.
#[derive(Debug, Default)]
pub(crate) struct Bases(HashMap<(String, Platform), Image>);

impl Bases {
    pub fn insert(&mut self, reference: String, platform: Platform, image: Image) {
        self.0.insert((reference, platform), image);
    }

    pub fn get(&self, reference: &str, platform: &Platform) -> Option<&Image> {
        self.0.get(&(reference.to_owned(), platform.clone()))
    }

    /// Each base's config for the frontend (ENV, WORKDIR, ONBUILD, ...), for each
    /// platform it is used for.
    pub fn configs(&self) -> PlatformConfigs {
        PlatformConfigs(
            self.0
                .iter()
                .map(|(key, image)| {
                    (
                        key.clone(),
                        crate::image::frontend_config(&image.config.config),
                    )
                })
                .collect(),
        )
    }
}

/// The base images' configs by reference and platform, as the frontend reads them.
pub(crate) struct PlatformConfigs(HashMap<(String, Platform), ImageConfig>);

impl rbuild_frontend::BaseConfigs for PlatformConfigs {
    fn config(&self, reference: &str, platform: &Platform) -> Option<&ImageConfig> {
        self.0.get(&(reference.to_owned(), platform.clone()))
    }
}

/// The platform an image's config says it is for, normalized.
pub fn image_platform(image: &Image) -> Platform {
    let platform = image.config.platform();
    let text = rbuild_registry::platform_string(&platform);
    Platform::parse(&text).unwrap_or(Platform {
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
    })
}

impl Builder {
    /// The base image `reference` names, for `platform`: from the store (by name as
    /// written, else by its normalized name; by digest when pinned) if it is that
    /// platform's, else pulled for that platform (always pulled with `pull`, unless pinned
    /// by a digest the store has: that content cannot have changed). A name is given to a
    /// pulled image of this machine's platform only: the store holds one image per name.
    /// It is kept (with its snapshots) from GC for the whole build, even if its name is
    /// removed meanwhile, and unpacked so every RUN finds its lower dirs.
    // Long: one decision (the store's image, its platform, `--pull`, a registry) whose
    // arms share the errors made at its top; apart, each would take them all.
    pub(crate) async fn base_image(
        &self,
        reference: &str,
        pull: bool,
        platform: &Platform,
    ) -> Result<Image, BuildError> {
        let invalid = |source| BuildError::InvalidReference {
            reference: reference.to_owned(),
            source,
        };
        let parsed: Reference = reference.parse().map_err(invalid)?;
        let name = Reference::image_name(reference);
        let wanted = oci_platform(platform);
        let local = self.local_base(&parsed, name.clone(), &wanted).await?;
        // An image of another platform under that name is no base for this one (an older
        // variant this platform runs is, as containerd's matcher allows).
        let runs = |found: &Platform| rbuild_registry::platform_runs(&wanted, &oci_platform(found));
        let wrong = local
            .as_ref()
            .map(image_platform)
            .filter(|found| !runs(found));
        let platform_error = |found: &Platform| BuildError::BasePlatform {
            reference: reference.to_owned(),
            wanted: platform.to_string(),
            found: vec![found.to_string()],
        };
        let local = local.filter(|_| wrong.is_none());
        let missing = local.is_none();
        let image = match (local, &self.registry) {
            (Some(image), registry) if !pull || registry.is_none() || parsed.digest().is_some() => {
                image
            }
            (_, None) => {
                return Err(match &wrong {
                    Some(found) => platform_error(found),
                    None => BuildError::BaseImageNotFound {
                        reference: reference.to_owned(),
                    },
                });
            }
            (_, Some(registry)) => {
                let options = PullOptions {
                    unpack: true,
                    platform: Some(wanted.clone()),
                    ..Default::default()
                };
                let pulled = registry
                    .pull(&self.store, &parsed, &options)
                    .await
                    .map_err(|source| match &wrong {
                        // The store's image is for another platform and the registry has
                        // none for this one (or cannot be reached): say the first.
                        // (A registry that has the image but not the platform says which
                        // it has, which is the better message.)
                        Some(found)
                            if !pull
                                && !matches!(
                                    source,
                                    rbuild_registry::RegistryError::NoMatchingPlatform { .. }
                                ) =>
                        {
                            platform_error(found)
                        }
                        _ => BuildError::Pull {
                            reference: reference.to_owned(),
                            missing,
                            source: Box::new(source),
                        },
                    })?;
                // Checked, as a registry's single-platform image may be for another.
                let pulled_platform = image_platform(&pulled.image);
                if !runs(&pulled_platform) {
                    return Err(platform_error(&pulled_platform));
                }
                // Named only for this machine's platform: the store holds one image per
                // name, and a build for another platform must not displace it.
                let name = name.filter(|_| *platform == Platform::default());
                self.keep_pulled(name, &pulled).await?;
                pulled.image
            }
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<Image, BuildError> {
            store.unpack(&image)?;
            Ok(image)
        })
        .await?
    }

    /// The store's image for `reference` and `platform` (by digest when pinned, else by
    /// name; a multi-platform image gives that platform's manifest, a single one whatever
    /// it is), kept from GC for the build; `None` when the store has none.
    async fn local_base(
        &self,
        parsed: &Reference,
        name: Option<rbuild_store::ImageName>,
        wanted: &rbuild_store::oci::Platform,
    ) -> Result<Option<Image>, BuildError> {
        let store = self.store.clone();
        let (parsed, wanted) = (parsed.clone(), wanted.clone());
        tokio::task::spawn_blocking(move || -> Result<Option<Image>, BuildError> {
            let found = match (parsed.digest(), &name) {
                (Some(digest), _) => {
                    store
                        .image_by_digest_for(digest, Some(&wanted))
                        .and_then(|image| {
                            store.protect_image(&image.manifest_digest)?;
                            Ok(image)
                        })
                }
                (None, Some(name)) => match store.image_in_use_for(name, Some(&wanted)) {
                    // A single-platform image of another platform: returned, for the
                    // caller to say so (a multi-platform one without it is not there).
                    Err(rbuild_store::Error::PlatformNotFound { .. })
                        if store
                            .image_record(name)?
                            .is_some_and(|r| store.index_images(&r.manifest).is_none()) =>
                    {
                        store.image_in_use(name)
                    }
                    other => other,
                },
                (None, None) => return Ok(None),
            };
            match found {
                Ok(image) => Ok(Some(image)),
                Err(err) if err.is_not_found() => Ok(None),
                Err(rbuild_store::Error::PlatformNotFound { .. }) => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
        .await?
    }

    /// Names a pulled base (when `name` is given) and keeps it from GC for the build.
    async fn keep_pulled(
        &self,
        name: Option<rbuild_store::ImageName>,
        pulled: &rbuild_registry::Pulled,
    ) -> Result<(), BuildError> {
        let store = self.store.clone();
        let manifest = pulled.manifest.clone();
        let image = pulled.image.manifest_digest.clone();
        tokio::task::spawn_blocking(move || -> Result<(), rbuild_store::Error> {
            if let Some(name) = &name {
                store.tag(name, &manifest)?;
            }
            store.protect_image(&image)
        })
        .await??;
        Ok(())
    }
}

/// A platform as the store names it.
pub fn oci_platform(platform: &Platform) -> rbuild_store::oci::Platform {
    rbuild_store::oci::Platform {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
    }
}

impl SolveContext {
    pub(crate) async fn root_state(&self, op: &Op) -> Result<State, BuildError> {
        let OpKind::Image { reference } = &op.kind else {
            return Ok(State::default());
        };
        let image = self
            .sources
            .bases
            .get(reference, &op.platform)
            .ok_or_else(|| BuildError::BaseImageNotFound {
                reference: reference.clone(),
            })?;
        let chain = image.chain();
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .zip(chain)
            .map(|((descriptor, diff_id), name)| {
                LayerRef::Ready(
                    Layer {
                        descriptor: descriptor.clone(),
                        diff_id: diff_id.clone(),
                    },
                    name,
                )
            })
            .collect();
        let lowers = match image.top() {
            Some(top) => {
                let store = self.builder.snapshots.clone();
                tokio::task::spawn_blocking(move || store.lowers(&top)).await??
            }
            None => Vec::new(),
        };
        Ok(State { lowers, layers })
    }
}

/// Loads the image `selector` picks in the OCI layout `dir` (see
/// [`crate::NamedContextSource::OciLayout`]) and returns the reference a `FROM` of the
/// named context `name` uses for it: pinned by the manifest's digest, under a name no
/// registry serves, so it is never pulled.
pub(crate) fn oci_layout_reference(
    store: &rbuild_store::Store,
    name: &str,
    dir: &Path,
    selector: Option<&str>,
) -> Result<String, BuildError> {
    let error = |reason: String| BuildError::OciLayout {
        name: name.to_owned(),
        path: dir.to_owned(),
        reason,
    };
    let images = store
        .load_layout_dir(dir)
        .map_err(|source| BuildError::OciLayoutLoad {
            name: name.to_owned(),
            path: dir.to_owned(),
            source,
        })?;
    let chosen = choose(&images, selector).map_err(error)?;
    let repository: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(format!(
        "oci-layout.invalid/{repository}@{}",
        chosen.manifest
    ))
}

/// The one image of a layout `selector` names (see [`crate::NamedContextSource::OciLayout`]),
/// or why there is none: never the first of several, whose order is the index's.
fn choose<'a>(
    images: &'a [rbuild_store::LoadedImage],
    selector: Option<&str>,
) -> Result<&'a rbuild_store::LoadedImage, String> {
    let describe = |images: &mut dyn Iterator<Item = &rbuild_store::LoadedImage>| {
        images
            .map(|image| match &image.ref_name {
                Some(tag) => format!("{tag} ({})", image.descriptor),
                None => image.descriptor.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matching: Vec<&rbuild_store::LoadedImage> = match selector {
        Some(digest) if digest.starts_with("sha256:") => images
            .iter()
            .filter(|image| {
                image.descriptor.to_string() == digest || image.manifest.to_string() == digest
            })
            .collect(),
        Some(tag) => images.iter().filter(|image| tagged(image, tag)).collect(),
        None if images.len() == 1 => images.iter().collect(),
        None => images
            .iter()
            .filter(|image| tagged(image, "latest"))
            .collect(),
    };
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => Err(match selector {
            Some(selector) => format!(
                "the layout has no image `{selector}` (it has: {})",
                describe(&mut images.iter())
            ),
            None if images.is_empty() => "the layout has no image".to_owned(),
            None => format!(
                "the layout has several images and none is tagged `latest`: name one with `:TAG` or `@sha256:…` (it has: {})",
                describe(&mut images.iter())
            ),
        }),
        several => Err(format!(
            "`{}` names several images of the layout: {}; name one by its full name or `@sha256:…`",
            selector.unwrap_or("latest"),
            describe(&mut several.iter().copied())
        )),
    }
}

/// Whether a layout's image answers to `selector`: its `ref.name` is it (a tag as skopeo
/// and umoci write them, or a full name as `rbuild save` and containerd do), or a full
/// name whose tag is it, or whose name without the tag is it (`app` for `app:latest`).
fn tagged(image: &rbuild_store::LoadedImage, selector: &str) -> bool {
    image.ref_name.as_deref().is_some_and(|name| {
        name == selector
            || name.rsplit_once(':').is_some_and(|(repository, tag)| {
                !tag.contains('/')
                    && !repository.is_empty()
                    && (tag == selector || repository == selector)
            })
    })
}

#[cfg(test)]
mod tests {
    use rbuild_store::{Digest, LoadedImage};

    use super::choose;

    fn image(name: Option<&str>, n: u8) -> LoadedImage {
        let digest: Digest = format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap();
        LoadedImage {
            ref_name: name.map(str::to_owned),
            descriptor: digest.clone(),
            manifest: digest,
            name: None,
        }
    }

    #[test]
    fn layout_images_are_chosen_by_tag_name_or_digest_never_by_order() {
        let saved = [image(Some("busybox:latest"), 1), image(Some("app:1.0"), 2)];
        let pick = |selector| choose(&saved, selector).map(|image| image.descriptor.to_string());
        assert_eq!(pick(Some("app:1.0")), Ok(saved[1].descriptor.to_string()));
        assert_eq!(pick(Some("app")), Ok(saved[1].descriptor.to_string()));
        assert_eq!(pick(Some("1.0")), Ok(saved[1].descriptor.to_string()));
        assert_eq!(pick(None), Ok(saved[0].descriptor.to_string()));
        let digest = saved[1].descriptor.to_string();
        assert_eq!(pick(Some(&digest)), Ok(digest.clone()));
        assert!(
            pick(Some("2.0"))
                .unwrap_err()
                .contains("has no image `2.0`")
        );

        let two_latest = [image(Some("a:latest"), 1), image(Some("b:latest"), 2)];
        let error = choose(&two_latest, None).unwrap_err();
        assert!(error.contains("`latest` names several images"), "{error}");
        let untagged = [image(None, 1), image(None, 2)];
        assert!(
            choose(&untagged, None)
                .unwrap_err()
                .contains("none is tagged `latest`")
        );
        let one = [image(None, 3)];
        assert!(choose(&one, None).is_ok());
    }
}
