//! The overlay on-disk format of snapshots, in one place. A deleted entry is a whiteout,
//! a 0/0 character device; a directory that hides what the layers below it have there
//! carries the `overlay.opaque` xattr with the value `y`, `trusted.overlay.opaque` as the
//! host's root and `user.overlay.opaque` in a user namespace ([`OverlayXattrs`]). The
//! layer writer, the copy snapshotter and the builder's lookups through lower layers all
//! read and write the format through these functions.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub use crate::idmap::OverlayXattrs;

/// Whether an entry is a whiteout.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Makes a whiteout at `path` (unprivileged processes may, since Linux 5.8).
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .map_err(io::Error::from)
}

/// Whether `dir` is opaque in the format whose xattr is `opaque_xattr`
/// ([`OverlayXattrs::opaque`]).
pub fn is_opaque(dir: &Path, opaque_xattr: &str) -> bool {
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(dir, OsStr::new(opaque_xattr), &mut value[..]),
        Ok(1) if value[0] == b'y'
    )
}

/// Whether `dir` is opaque in either format: for readers that do not know which one the
/// snapshot was written in.
pub fn is_opaque_in_any_format(dir: &Path) -> bool {
    [OverlayXattrs::Trusted, OverlayXattrs::User]
        .iter()
        .any(|xattrs| is_opaque(dir, xattrs.opaque()))
}

/// Marks `dir` opaque in the format whose xattr is `opaque_xattr`.
pub fn set_opaque(dir: &Path, opaque_xattr: &str) -> io::Result<()> {
    rustix::fs::lsetxattr(dir, opaque_xattr, b"y", rustix::fs::XattrFlags::empty())
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As an unprivileged user, in the format a user namespace uses (the only one without
    /// root).
    #[test]
    fn whiteouts_and_opaque_directories_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let opaque = dir.path().join("opaque");
        std::fs::create_dir(&opaque).unwrap();
        assert!(!is_opaque_in_any_format(&opaque));
        // tmpfs of old kernels and some filesystems refuse user xattrs: nothing to check.
        if set_opaque(&opaque, OverlayXattrs::User.opaque()).is_ok() {
            assert!(is_opaque(&opaque, OverlayXattrs::User.opaque()));
            assert!(is_opaque_in_any_format(&opaque));
            assert!(!is_opaque(&opaque, OverlayXattrs::Trusted.opaque()));
        }
        let gone = dir.path().join("gone");
        if make_whiteout(&gone).is_ok() {
            assert!(is_whiteout(&std::fs::symlink_metadata(&gone).unwrap()));
        }
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!is_whiteout(&std::fs::symlink_metadata(&file).unwrap()));
    }
}
