//! Layers: OCI layer tars to and from overlay-format snapshot directories.

mod blocks;
mod compression;
pub mod pgzip;
mod unpack;
mod write;

pub use compression::BlobCompression;
pub use unpack::{
    Compression, DEFAULT_MAX_EXPANSION, Unpacked, decompress, detect_compression, extract_archive,
    unpack_layer,
};
pub use write::{LayerOptions, write_layer};

#[cfg(test)]
pub(crate) mod tests;
