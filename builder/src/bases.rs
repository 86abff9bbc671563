//! Base images: found in the store or pulled, leased for the build, and the filesystem
//! state an `Image` op starts from.

use rbuild_frontend::OpKind;
use rbuild_store::registry::PullOptions;
use rbuild_store::{Image, Reference};

use std::path::Path;

use crate::error::BuildError;
use crate::solve::{Builder, SolveContext};
use crate::state::{Layer, LayerRef, State};

impl Builder {
    /// The base image `reference` names: from the store (by name as written, else by its
    /// normalized name; by digest when pinned), else pulled (always pulled with `pull`,
    /// unless pinned by a digest the store has: that content cannot have changed).
    /// It is kept (with its snapshots) from GC for the whole build, even if its name is
    /// removed meanwhile, and unpacked so every RUN finds its lower dirs.
    pub(crate) async fn base_image(
        &self,
        reference: &str,
        pull: bool,
    ) -> Result<Image, BuildError> {
        let invalid = |source| BuildError::InvalidReference {
            reference: reference.to_owned(),
            source,
        };
        let parsed: Reference = reference.parse().map_err(invalid)?;
        let name = Reference::image_name(reference);
        let store = self.store.clone();
        let local = {
            let store = store.clone();
            let parsed = parsed.clone();
            let name = name.clone();
            tokio::task::spawn_blocking(move || -> Result<Option<Image>, BuildError> {
                let found = match (parsed.digest(), &name) {
                    (Some(digest), _) => store.image_by_digest(digest).and_then(|image| {
                        store.protect_image(&image.manifest_digest)?;
                        Ok(image)
                    }),
                    (None, Some(name)) => store.image_in_use(name),
                    (None, None) => return Ok(None),
                };
                match found {
                    Ok(image) => Ok(Some(image)),
                    Err(err) if err.is_not_found() => Ok(None),
                    Err(err) => Err(err.into()),
                }
            })
            .await??
        };
        let missing = local.is_none();
        let image = match (local, &self.registry) {
            (Some(image), registry) if !pull || registry.is_none() || parsed.digest().is_some() => {
                image
            }
            (_, None) => {
                return Err(BuildError::BaseImageNotFound {
                    reference: reference.to_owned(),
                });
            }
            (_, Some(registry)) => {
                let pulled = registry
                    .pull(
                        &store,
                        &parsed,
                        &PullOptions {
                            unpack: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|source| BuildError::Pull {
                        reference: reference.to_owned(),
                        missing,
                        source: Box::new(source),
                    })?;
                let store = store.clone();
                let name = name.clone();
                let manifest = pulled.manifest.clone();
                let image = pulled.image.manifest_digest.clone();
                tokio::task::spawn_blocking(move || -> Result<(), rbuild_store::Error> {
                    if let Some(name) = &name {
                        store.tag(name, &manifest)?;
                    }
                    store.protect_image(&image)
                })
                .await??;
                pulled.image
            }
        };
        tokio::task::spawn_blocking(move || -> Result<Image, BuildError> {
            store.unpack(&image)?;
            Ok(image)
        })
        .await?
    }
}

impl SolveContext {
    pub(crate) async fn root_state(&self, kind: &OpKind) -> Result<State, BuildError> {
        let OpKind::Image { reference } = kind else {
            return Ok(State::default());
        };
        let image = self
            .bases
            .get(reference)
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
                let store = self.builder.store.clone();
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
    let described = || {
        images
            .iter()
            .map(|image| match &image.ref_name {
                Some(tag) => format!("{tag} ({})", image.descriptor),
                None => image.descriptor.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match selector {
        Some(digest) if digest.starts_with("sha256:") => images.iter().find(|image| {
            image.descriptor.to_string() == digest || image.manifest.to_string() == digest
        }),
        Some(tag) => images.iter().find(|image| tagged(image, tag)),
        None if images.len() == 1 => images.first(),
        None => images.iter().find(|image| tagged(image, "latest")),
    };
    let Some(chosen) = chosen else {
        return Err(error(match selector {
            Some(selector) => format!(
                "the layout has no image `{selector}` (it has: {})",
                described()
            ),
            None if images.is_empty() => "the layout has no image".to_owned(),
            None => format!(
                "the layout has several images and none is tagged `latest`: name one with `:TAG` or `@sha256:…` (it has: {})",
                described()
            ),
        }));
    };
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

/// Whether a layout's image carries `tag`: its `ref.name` is the tag (as skopeo and
/// umoci write it) or a full name with that tag (as `rbuild save` and containerd do).
fn tagged(image: &rbuild_store::LayoutImage, tag: &str) -> bool {
    image.ref_name.as_deref().is_some_and(|name| {
        name == tag
            || name.rsplit_once(':').is_some_and(|(repository, t)| {
                t == tag && !t.contains('/') && !repository.is_empty()
            })
    })
}
