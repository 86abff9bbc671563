//! Base images: found in the store or pulled, leased for the build, and the filesystem
//! state an `Image` op starts from.

use rbuild_frontend::OpKind;
use rbuild_store::registry::PullOptions;
use rbuild_store::{Image, Reference};

use crate::error::BuildError;
use crate::solve::{Builder, SolveContext};
use crate::state::{Layer, LayerRef, State};

impl Builder {
    /// The base image `reference` names: from the store (by name as written, else by its
    /// normalized name; by digest when pinned), else pulled (always pulled with `pull`).
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
            (Some(image), registry) if !pull || registry.is_none() => image,
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
