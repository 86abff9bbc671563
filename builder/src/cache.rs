//! Cache keys: what a step's result depends on, hashed.
//!
//! A step's key is BLAKE3 over its definition digest (from the frontend), the keys of its
//! inputs, and what else decides its result: the base image's manifest digest for FROM,
//! the content checksum of the context files a COPY reads, the network a RUN has, the
//! `SOURCE_DATE_EPOCH` layers are clamped to. File mtimes never count: touching a file
//! without changing it keeps the cache.

use std::fmt;

/// A step's cache key: 64 hex digits of BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a key from named parts; each part is length-prefixed so no two different part
/// lists hash the same bytes.
pub(crate) struct KeyBuilder {
    hasher: blake3::Hasher,
}

impl KeyBuilder {
    pub(crate) fn new(kind: &str) -> KeyBuilder {
        let mut builder = KeyBuilder {
            hasher: blake3::Hasher::new(),
        };
        builder.part("rbuild-cache-v1");
        builder.part(kind);
        builder
    }

    pub(crate) fn part(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self
    }

    pub(crate) fn finish(&self) -> CacheKey {
        CacheKey(self.hasher.finalize().to_hex().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited() {
        let a = KeyBuilder::new("x").part("ab").part("c").finish();
        let b = KeyBuilder::new("x").part("a").part("bc").finish();
        assert_ne!(a, b);
        assert_eq!(a, KeyBuilder::new("x").part("ab").part("c").finish());
        assert_eq!(a.as_str().len(), 64);
    }
}
