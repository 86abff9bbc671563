//! What an op leaves behind for the ops after it: a filesystem (the directories to stack as
//! overlay lowers) and its layers, some of which may still be being measured.
//!
//! Measuring a layer (its tar's SHA-256) and committing its snapshot take as long as
//! reading every byte of it, and only the final image and the next commit need the result.
//! So a step that ran hands its upper dir on at once, as a lower for the steps after it,
//! and its layer becomes a [`LayerRef::Pending`] that a background task resolves.

use std::path::PathBuf;

use rbuild_store::oci::Descriptor;
use rbuild_store::{Digest, SnapshotName};
use tokio::sync::watch;

use crate::error::BuildError;

/// One layer of a filesystem state.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// The outcome of measuring and committing a layer: the layer and its snapshot, or why not.
pub(crate) type Committed = Result<(Layer, SnapshotName), String>;

#[derive(Debug, Clone)]
pub(crate) enum LayerRef {
    Ready(Layer, SnapshotName),
    Pending(watch::Receiver<Option<Committed>>),
    /// A layer of a build cache imported from a registry, which the store may not have
    /// yet: fetched and unpacked only when a step needs its files or the image has it
    /// (see `remote`).
    Remote(Layer),
}

impl LayerRef {
    /// A layer and a sender that resolves it.
    pub(crate) fn pending() -> (watch::Sender<Option<Committed>>, LayerRef) {
        let (sender, receiver) = watch::channel(None);
        (sender, LayerRef::Pending(receiver))
    }

    /// The layer (its snapshot may not exist: see [`LayerRef::Remote`]).
    pub(crate) async fn layer(&self) -> Result<Layer, BuildError> {
        match self {
            LayerRef::Remote(layer) => Ok(layer.clone()),
            other => Ok(other.get().await?.0),
        }
    }

    /// The layer and its snapshot, once committed.
    pub(crate) async fn get(&self) -> Result<(Layer, SnapshotName), BuildError> {
        match self {
            LayerRef::Ready(layer, name) => Ok((layer.clone(), name.clone())),
            LayerRef::Remote(layer) => Err(BuildError::LayerFailed {
                message: format!(
                    "layer {} of an imported cache was used before it was fetched",
                    layer.descriptor.digest
                ),
            }),
            LayerRef::Pending(receiver) => {
                let mut receiver = receiver.clone();
                let done = receiver
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| BuildError::Cancelled)?;
                match done.as_ref().expect("waited for a value") {
                    Ok(committed) => Ok(committed.clone()),
                    Err(message) => Err(BuildError::LayerFailed {
                        message: message.clone(),
                    }),
                }
            }
        }
    }
}

/// A filesystem: the directories to mount (top first) and its layers (bottom first).
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub lowers: Vec<PathBuf>,
    pub layers: Vec<LayerRef>,
}

impl State {
    /// Every layer, once all are committed.
    pub(crate) async fn resolved_layers(&self) -> Result<Vec<Layer>, BuildError> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            layers.push(layer.layer().await?);
        }
        Ok(layers)
    }

    /// Whether some layer is only in a registry cache so far: `lowers` is then not the
    /// filesystem until the state is materialized.
    pub(crate) fn has_remote(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, LayerRef::Remote(_)))
    }
}
