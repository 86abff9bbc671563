//! What can go wrong in a scan: a layer that cannot be read, a package database that is
//! corrupt.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Layers are numbered from 1, bottom first.
    #[error("cannot read layer {layer} of the image as a tar")]
    Layer {
        layer: usize,
        #[source]
        source: io::Error,
    },
    #[error("/{path} line {line}: {reason}")]
    Database {
        path: String,
        line: usize,
        reason: String,
    },
}
