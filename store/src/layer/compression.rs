//! How layers the store holds uncompressed are compressed on their way out (push,
//! archives, cache exports): deterministically, so the same layer is always the same blob.

use std::io::Read;

use crate::oci;

/// How layers the store holds uncompressed are compressed on their way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobCompression {
    #[default]
    Gzip,
    Zstd,
}

impl BlobCompression {
    /// The name of the compression (`gzip`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            BlobCompression::Gzip => "gzip",
            BlobCompression::Zstd => "zstd",
        }
    }

    /// The media type of a layer compressed so.
    pub fn media_type(self) -> &'static str {
        match self {
            BlobCompression::Gzip => oci::MEDIA_TYPE_LAYER_GZIP,
            BlobCompression::Zstd => oci::MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// Compresses `input` into `out`, deterministically: gzip level 6 on every core (see
    /// `pgzip`: the same bytes on any machine), zstd level 3.
    pub fn compress<W: std::io::Write>(self, mut input: impl Read, out: W) -> std::io::Result<W> {
        match self {
            BlobCompression::Gzip => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                super::pgzip::gzip(input, out, 6, threads)
            }
            BlobCompression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, 3)?;
                std::io::copy(&mut input, &mut encoder)?;
                encoder.finish()
            }
        }
    }
}
