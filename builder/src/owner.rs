//! Owners for COPY `--chown` and WORKDIR: `user`, `uid`, `user:group`, `uid:gid`, resolved
//! against the image's own `/etc/passwd` and `/etc/group` (read inside its root).

use std::fs;
use std::path::Path;

use crate::resolve::resolve_in_root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OwnerError {
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
}

/// Resolves `spec` inside `root`, as BuildKit does for `--chown`: a user name alone takes its
/// primary group from passwd, a bare uid takes the same number as gid; numeric ids need no
/// lookup; an unknown name is an error.
pub(crate) fn resolve_owner(root: &Path, spec: &str) -> Result<Owner, OwnerError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(Owner::ROOT);
    }
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let entry = read_db(root, "/etc/passwd")
                .into_iter()
                .find(|fields| fields.first().map(String::as_str) == Some(user))
                .ok_or_else(|| OwnerError::UnknownUser {
                    name: user.to_owned(),
                })?;
            let uid = field_id(&entry, 2).ok_or_else(|| OwnerError::UnknownUser {
                name: user.to_owned(),
            })?;
            (uid, field_id(&entry, 3).unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => read_db(root, "/etc/group")
                .into_iter()
                .find(|fields| fields.first().map(String::as_str) == Some(group))
                .and_then(|fields| field_id(&fields, 2))
                .ok_or_else(|| OwnerError::UnknownGroup {
                    name: group.to_owned(),
                })?,
        },
    };
    Ok(Owner { uid, gid })
}

/// Resolves the USER of a stage for files it creates (WORKDIR): like [`resolve_owner`],
/// except that a uid unknown to passwd gets gid 0, as for processes.
pub(crate) fn resolve_user(root: &Path, spec: &str) -> Result<Owner, OwnerError> {
    let owner = resolve_owner(root, spec)?;
    let user = spec.split(':').next().unwrap_or("");
    if !spec.contains(':') && user.parse::<u32>().is_ok() {
        let known = read_db(root, "/etc/passwd")
            .into_iter()
            .find(|fields| field_id(fields, 2) == Some(owner.uid));
        return Ok(Owner {
            uid: owner.uid,
            gid: known.and_then(|f| field_id(&f, 3)).unwrap_or(0),
        });
    }
    Ok(owner)
}

fn read_db(root: &Path, path: &str) -> Vec<Vec<String>> {
    let Ok(host_path) = resolve_in_root(root, path, true) else {
        return Vec::new();
    };
    let Ok(text) = fs::read_to_string(host_path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(':').map(str::to_owned).collect())
        .collect()
}

fn field_id(fields: &[String], index: usize) -> Option<u32> {
    fields.get(index)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\napp:x:1001:\n",
        )
        .unwrap();
        let root = dir.path();
        assert_eq!(
            resolve_owner(root, "app").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_owner(root, "app:staff").unwrap(),
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(
            resolve_owner(root, "42").unwrap(),
            Owner { uid: 42, gid: 42 }
        );
        assert_eq!(
            resolve_owner(root, "42:7").unwrap(),
            Owner { uid: 42, gid: 7 }
        );
        assert_eq!(resolve_user(root, "42").unwrap(), Owner { uid: 42, gid: 0 });
        assert_eq!(
            resolve_user(root, "1000").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert!(matches!(
            resolve_owner(root, "nobody"),
            Err(OwnerError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_owner(root, "app:nogroup"),
            Err(OwnerError::UnknownGroup { .. })
        ));
    }
}
