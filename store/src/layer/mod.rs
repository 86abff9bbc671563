//! Layers: OCI layer tars to and from overlay-format snapshot directories.

mod unpack;
mod write;

pub use unpack::{detect_compression, unpack_layer, Compression, Unpacked};
pub use write::{write_layer, LayerOptions};

#[cfg(test)]
mod tests;
