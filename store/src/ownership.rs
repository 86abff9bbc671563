//! A store belongs to one user and one id mapping: checked when it is opened, and the
//! directories that hold files of other container ids are kept out of the host user's
//! reach.
//!
//! Why the guard: in a rootless store a file of container uid 1000 is owned on disk by one of
//! the user's subordinate ids, and a setuid one would be setuid to that id for anyone who can
//! reach it, the user included. Directories such as `snapshots/` are therefore owned by
//! container uid 1 (a subordinate id) with mode 0700: the host user cannot traverse them,
//! while rbuild, root of its namespace, can. In root's store the root directory's mode 0700
//! does the same against every other user.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::idmap::IdMapping;

const IDMAP_FILE: &str = "idmap";

/// Makes a new, empty store at `root` (mode 0700, this process's mapping recorded) in a
/// directory beside it, renamed into place. Another process that made it first wins.
pub(crate) fn create(root: &Path) -> Result<()> {
    let parent = match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    let name = root.file_name().unwrap_or_default().to_string_lossy();
    let temp = parent.join(format!(".{name}.new-{}", crate::blobs::unique_name()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp)
        .map_err(Error::io("create store root", root))?;
    let made = IdMapping::of_current_process()
        .map_err(|err| Error::io("read the id mapping of", "/proc/self")(err))
        .and_then(|mapping| {
            let path = temp.join(IDMAP_FILE);
            mapping.write(&path).map_err(Error::io("write", path))
        })
        .and_then(|()| match fs::rename(&temp, root) {
            Ok(()) => Ok(()),
            // Made meanwhile by another rbuild (a non-empty directory is not replaced).
            Err(err) if matches!(err.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                Ok(())
            }
            Err(err) => Err(Error::io("create store root", root)(err)),
        });
    let _ = fs::remove_dir_all(&temp);
    made
}

/// Checks that `root` is this user's and was made under this process's id mapping (records
/// the mapping in a store that has none yet), and tightens its mode to 0700.
pub(crate) fn claim(root: &Path) -> Result<IdMapping> {
    let meta = fs::metadata(root).map_err(Error::io("open store root", root))?;
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() != user {
        return Err(Error::ForeignStore {
            path: root.to_owned(),
            owner: meta.uid(),
            user,
        });
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("restrict the permissions of", root))?;
    }
    let current = IdMapping::of_current_process()
        .map_err(Error::io("read the id mapping of", "/proc/self"))?;
    let path = root.join(IDMAP_FILE);
    let recorded = IdMapping::read(&path).map_err(Error::io("read", &path))?;
    let recorded = match recorded {
        Some(recorded) => recorded,
        // A store from before mappings were recorded was made by root; an empty directory
        // (made by the user for the store) has nothing to protect.
        None if root.join("meta.redb").exists() => IdMapping::host(),
        None => {
            current.write(&path).map_err(Error::io("write", &path))?;
            return Ok(current);
        }
    };
    if recorded != current {
        return Err(Error::IdMappingChanged {
            path: root.to_owned(),
            recorded: Box::new(recorded),
            current: Box::new(current),
        });
    }
    if !path.exists() {
        current.write(&path).map_err(Error::io("write", &path))?;
    }
    Ok(current)
}

/// Makes `dir` unreachable for the host user when the store's files may carry subordinate
/// ids: owner container uid and gid 1, mode 0700. Nothing to do in root's store or under a
/// single-id mapping (where no other id exists).
pub(crate) fn guard(dir: &Path, mapping: &IdMapping) -> Result<()> {
    if mapping.is_host() || !mapping.maps_uid(1) || !mapping.maps_gid(1) {
        return Ok(());
    }
    let meta = fs::symlink_metadata(dir).map_err(Error::io("open", dir))?;
    if meta.uid() != 1 || meta.gid() != 1 {
        std::os::unix::fs::lchown(dir, Some(1), Some(1)).map_err(Error::io("chown", dir))?;
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("restrict the permissions of", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_a_new_store_and_tightens_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let mapping = claim(&root).unwrap();
        assert_eq!(mapping, IdMapping::of_current_process().unwrap());
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            IdMapping::read(&root.join(IDMAP_FILE)).unwrap(),
            Some(mapping)
        );
        // Opened again: the same.
        claim(&root).unwrap();
    }

    #[test]
    fn creates_a_store_whole_and_lets_the_first_one_win() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/store");
        create(&root).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        assert!(root.join(IDMAP_FILE).is_file());
        fs::write(root.join("kept"), "").unwrap();
        create(&root).unwrap();
        assert!(root.join("kept").exists(), "the first store stays");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary directory is left");
    }

    #[test]
    fn refuses_a_store_made_under_another_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let other = IdMapping {
            uids: vec![[0, 1000, 1], [1, 100000, 65536]],
            gids: vec![[0, 1000, 1]],
        };
        other.write(&dir.path().join(IDMAP_FILE)).unwrap();
        let err = claim(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::IdMappingChanged { recorded, .. } if **recorded == other),
            "{err}"
        );
    }

    #[test]
    fn an_unrecorded_store_with_metadata_is_roots() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("meta.redb"), "").unwrap();
        let result = claim(dir.path());
        if IdMapping::of_current_process().unwrap().is_host() {
            assert_eq!(result.unwrap(), IdMapping::host());
            assert!(dir.path().join(IDMAP_FILE).exists());
        } else {
            assert!(matches!(result, Err(Error::IdMappingChanged { .. })));
        }
    }
}
