//! Whose ids the store's files carry: the uid and gid mappings of the user namespace the
//! store was made in, recorded in `<root>/idmap` and checked by every later `Store::open`.
//!
//! A file of container uid 1000 is stored as whatever host id the namespace maps 1000 to,
//! so a store is only readable as it was written from a namespace with the same mapping:
//! root's store (no namespace, every id itself) is not a rootless user's, and a user whose
//! subordinate range changed would see their files owned by `nobody`. The mapping also fixes
//! the store's overlay format: overlayfs in a user namespace reads `user.overlay.*` xattrs
//! (mount option `userxattr`), not the `trusted.overlay.*` ones only the host's root may set.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of a `uid_map`/`gid_map`: `[inside, outside, count]`.
pub type IdRange = [u32; 3];

/// The mappings a store's files were written under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

const HOST: IdRange = [0, 0, u32::MAX];

impl IdMapping {
    /// The initial user namespace's: every id is itself.
    pub fn host() -> IdMapping {
        IdMapping {
            uids: vec![HOST],
            gids: vec![HOST],
        }
    }

    /// This process's, from `/proc/self/uid_map` and `gid_map`.
    pub fn of_current_process() -> io::Result<IdMapping> {
        Ok(IdMapping {
            uids: parse(&fs::read_to_string("/proc/self/uid_map")?),
            gids: parse(&fs::read_to_string("/proc/self/gid_map")?),
        })
    }

    /// Whether this process runs in a user namespace (any mapping but the host's).
    pub fn in_user_namespace() -> bool {
        IdMapping::of_current_process().is_ok_and(|mapping| !mapping.is_host())
    }

    pub fn is_host(&self) -> bool {
        self.uids == [HOST] && self.gids == [HOST]
    }

    /// Whether container uid `uid` exists (has a host id) under this mapping.
    pub fn maps_uid(&self, uid: u32) -> bool {
        maps(&self.uids, uid)
    }

    pub fn maps_gid(&self, gid: u32) -> bool {
        maps(&self.gids, gid)
    }

    /// The host uid of container root.
    pub fn host_root(&self) -> Option<u32> {
        self.uids
            .iter()
            .find(|range| range[0] == 0)
            .map(|range| range[1])
    }

    /// The overlay xattrs a store of this mapping uses.
    pub fn overlay_xattrs(&self) -> OverlayXattrs {
        if self.is_host() {
            OverlayXattrs::Trusted
        } else {
            OverlayXattrs::User
        }
    }

    pub(crate) fn read(path: &Path) -> io::Result<Option<IdMapping>> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Written whole (a temporary file renamed into place).
    pub(crate) fn write(&self, path: &Path) -> io::Result<()> {
        let temp = path.with_extension(format!("new-{}", crate::blobs::unique_name()));
        fs::write(&temp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&temp, path)
    }
}

fn maps(ranges: &[IdRange], id: u32) -> bool {
    ranges
        .iter()
        .any(|&[inside, _, count]| id >= inside && u64::from(id - inside) < u64::from(count))
}

fn parse(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => {
                    Some([inside, outside, count])
                }
                _ => None,
            }
        })
        .collect()
}

impl fmt::Display for IdMapping {
    /// `root (no user namespace)`, or `container root = uid 1000, uids 1–65536 = 100000–165535`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            return f.write_str("root's (no user namespace)");
        }
        let describe = |ranges: &[IdRange], what: &str| {
            ranges
                .iter()
                .map(|&[inside, outside, count]| match count {
                    1 => format!("{what} {inside} = {outside}"),
                    _ => format!(
                        "{what}s {inside}–{} = {outside}–{}",
                        u64::from(inside) + u64::from(count) - 1,
                        u64::from(outside) + u64::from(count) - 1
                    ),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "a user namespace's ({}; {})",
            describe(&self.uids, "uid"),
            describe(&self.gids, "gid")
        )
    }
}

/// Where overlayfs keeps its bookkeeping (opaque directories) in the store's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`: the host's root.
    Trusted,
    /// `user.overlay.*`, with the mount option `userxattr` (Linux 5.11): a user namespace.
    User,
}

impl OverlayXattrs {
    /// The xattr that makes a directory opaque.
    pub fn opaque(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "trusted.overlay.opaque",
            OverlayXattrs::User => "user.overlay.opaque",
        }
    }

    /// The overlay mount option that selects this format, if any.
    pub fn mount_option(self) -> Option<&'static str> {
        match self {
            OverlayXattrs::Trusted => None,
            OverlayXattrs::User => Some("userxattr"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_and_compares_mappings() {
        let host = IdMapping::host();
        assert!(host.is_host());
        assert_eq!(host.overlay_xattrs(), OverlayXattrs::Trusted);
        assert_eq!(host.to_string(), "root's (no user namespace)");
        let rootless = IdMapping {
            uids: parse("0 1000 1\n1 100000 65536\n"),
            gids: parse("0 1000 1\n"),
        };
        assert!(!rootless.is_host());
        assert_eq!(rootless.overlay_xattrs(), OverlayXattrs::User);
        assert_eq!(rootless.host_root(), Some(1000));
        assert!(rootless.maps_uid(65536));
        assert!(!rootless.maps_uid(65537));
        assert!(rootless.maps_gid(0));
        assert!(!rootless.maps_gid(1));
        assert_eq!(
            rootless.to_string(),
            "a user namespace's (uid 0 = 1000, uids 1–65536 = 100000–165535; gid 0 = 1000)"
        );
        assert_ne!(rootless, host);
    }

    #[test]
    fn round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idmap");
        assert_eq!(IdMapping::read(&path).unwrap(), None);
        let mapping = IdMapping::of_current_process().unwrap();
        mapping.write(&path).unwrap();
        assert_eq!(IdMapping::read(&path).unwrap(), Some(mapping));
    }
}
