//! An image's flattened filesystem, out of the store: as one tar (`rbuild export`,
//! `-o type=tar`) or as files in a directory (`-o type=local`).

use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_store::{Image, Store};

use crate::copy;
use crate::error::BuildError;
use crate::snapshotter::Snapshotter;
use crate::times::Times;

/// Where a filesystem goes.
pub enum RootfsOutput {
    Tar(Box<dyn Write + Send>),
    Dir(PathBuf),
}

/// Writes `image`'s filesystem, all layers applied, to `output`, seen through
/// `snapshotter`. Blocking: call it from a blocking thread.
/// `clamp_mtime` (`SOURCE_DATE_EPOCH`): later file times are written as it, as in the
/// image's layers, so an export is the same whichever way the image came to the store.
pub fn export_rootfs(
    store: &Store,
    snapshotter: &Snapshotter,
    image: &Image,
    output: RootfsOutput,
    clamp_mtime: Option<i64>,
) -> Result<(), BuildError> {
    let top = store.unpack(image)?;
    let scratch = store.temp_dir("export")?;
    let result = (|| -> Result<(), BuildError> {
        let lowers = match &top {
            Some(top) => store.lowers(top)?,
            None => Vec::new(),
        };
        let rootfs = scratch.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(|e| io_error(&rootfs, e))?;
        // An image without layers (`FROM scratch` and config only) is an empty directory:
        // overlayfs cannot be mounted without a lower layer.
        let mounts: Vec<_> = if lowers.is_empty() {
            Vec::new()
        } else {
            snapshotter
                .read_only(store, &lowers, &rootfs)?
                .into_iter()
                .collect()
        };
        rbuild_runtime::with_mounts(&mounts, || match output {
            RootfsOutput::Tar(out) => {
                let opts = rbuild_store::layer::LayerOptions {
                    clamp_mtime: clamp_mtime.and_then(|epoch| u64::try_from(epoch).ok()),
                };
                let mut out = rbuild_store::layer::write_layer(&rootfs, out, opts)
                    .map_err(|e| io_error(&rootfs, e))?;
                out.flush().map_err(|e| io_error(&rootfs, e))
            }
            RootfsOutput::Dir(dest) => {
                std::fs::create_dir_all(&dest).map_err(|e| io_error(&dest, e))?;
                // The files are written for the user: a rootless rbuild gives them to the
                // user (container root), not to subordinate ids they could not remove, as
                // BuildKit's client writes them as the user who asked.
                let keep_owners = store.id_mapping().is_host();
                copy::copy_tree_owned(&rootfs, "the image", &dest, keep_owners).map_err(|e| {
                    BuildError::Export {
                        source: Box::new(e),
                    }
                })?;
                // Every entry the copy wrote (not `dest` itself, which may be the user's).
                match clamp_mtime {
                    Some(epoch) => {
                        crate::times::apply_to_tree(&rootfs, &dest, Times::Clamp(epoch), false)
                            .map_err(|e| io_error(&dest, e))
                    }
                    None => Ok(()),
                }
            }
        })?
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn io_error(path: &Path, source: std::io::Error) -> BuildError {
    BuildError::Export {
        source: Box::new(std::io::Error::new(
            source.kind(),
            format!("{}: {source}", path.display()),
        )),
    }
}
