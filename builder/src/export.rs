//! An image's flattened filesystem, out of the store: as one tar (`rbuild export`,
//! `-o type=tar`) or as files in a directory (`-o type=local`).

use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_store::{Image, Store};

use crate::copy;
use crate::error::BuildError;
use crate::snapshotter::Snapshotter;

/// Where a filesystem goes.
pub enum RootfsOutput {
    Tar(Box<dyn Write + Send>),
    Dir(PathBuf),
}

/// Writes `image`'s filesystem, all layers applied, to `output`, seen through
/// `snapshotter`. Blocking: call it from a blocking thread.
pub fn export_rootfs(
    store: &Store,
    snapshotter: &Snapshotter,
    image: &Image,
    output: RootfsOutput,
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
                let mut out = rbuild_store::layer::write_layer(&rootfs, out, Default::default())
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
                })
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
