//! Owners for COPY `--chown` and WORKDIR: `user`, `uid`, `user:group`, `uid:gid`, resolved
//! against the image's own `/etc/passwd` and `/etc/group` (read inside its root).

use std::path::Path;

use rbuild_runtime::{MAX_DATABASE, UserError};

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
    #[error("the image's {path} {problem}; rbuild reads users and groups only from a regular file of at most {} MiB", MAX_DATABASE >> 20)]
    Database {
        path: &'static str,
        problem: &'static str,
    },
    #[error(
        "{what} 4294967295 cannot own a file: it is (uid_t)-1, which means \"unchanged\" to the kernel"
    )]
    Unrepresentable { what: &'static str },
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
            let passwd = read_db(root, "/etc/passwd")?;
            let entry = entries(&passwd)
                .find(|fields| fields.first().copied() == Some(user))
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
            Err(_) => entries(&read_db(root, "/etc/group")?)
                .find(|fields| fields.first().copied() == Some(group))
                .and_then(|fields| field_id(&fields, 2))
                .ok_or_else(|| OwnerError::UnknownGroup {
                    name: group.to_owned(),
                })?,
        },
    };
    if uid == u32::MAX {
        return Err(OwnerError::Unrepresentable { what: "uid" });
    }
    if gid == u32::MAX {
        return Err(OwnerError::Unrepresentable { what: "gid" });
    }
    Ok(Owner { uid, gid })
}

/// Resolves the USER of a stage for files it creates (WORKDIR): like [`resolve_owner`],
/// except that a uid unknown to passwd gets gid 0, as for processes.
pub(crate) fn resolve_user(root: &Path, spec: &str) -> Result<Owner, OwnerError> {
    let owner = resolve_owner(root, spec)?;
    let user = spec.split(':').next().unwrap_or("");
    if !spec.contains(':') && user.parse::<u32>().is_ok() {
        let passwd = read_db(root, "/etc/passwd")?;
        let known = entries(&passwd).find(|fields| field_id(fields, 2) == Some(owner.uid));
        return Ok(Owner {
            uid: owner.uid,
            gid: known.and_then(|f| field_id(&f, 3)).unwrap_or(0),
        });
    }
    Ok(owner)
}

/// The text of a user database of the image, read as the sandbox reads it
/// ([`rbuild_runtime::read_user_database`]: rbuild parses it on the host here); a missing
/// or unreadable one is empty (no name resolves), one that is not a regular file (a FIFO
/// would block the build forever) or is too big is an error.
fn read_db(root: &Path, path: &'static str) -> Result<String, OwnerError> {
    let problem = |problem| OwnerError::Database { path, problem };
    match rbuild_runtime::read_user_database(root, Path::new(path)) {
        Ok(text) => Ok(text),
        Err(UserError::NotAFile { .. }) => Err(problem("is not a regular file")),
        Err(UserError::TooLarge { .. }) => Err(problem("is too large")),
        Err(_) => Ok(String::new()),
    }
}

/// The entries of a database, split into fields lazily, line by line.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(':').collect())
}

fn field_id(fields: &[&str], index: usize) -> Option<u32> {
    fields.get(index)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::fs;

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
        assert_eq!(
            resolve_owner(root, "4294967295").unwrap_err().to_string(),
            "uid 4294967295 cannot own a file: it is (uid_t)-1, which means \"unchanged\" to the kernel"
        );
        assert_eq!(
            resolve_owner(root, "4294967294:4294967294").unwrap(),
            Owner {
                uid: 4294967294,
                gid: 4294967294
            }
        );
    }

    /// The image's databases are parsed on the host: a FIFO must not block the build, and
    /// a gigantic file is refused before it is read (CVE-2026-47262).
    #[test]
    fn special_or_huge_databases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert_eq!(
            resolve_owner(dir.path(), "app").unwrap_err().to_string(),
            "the image's /etc/passwd is not a regular file; rbuild reads users and groups only \
             from a regular file of at most 32 MiB"
        );
        let group = fs::File::create(dir.path().join("etc/group")).unwrap();
        group.set_len(MAX_DATABASE + 1).unwrap();
        assert!(
            resolve_owner(dir.path(), "0:staff")
                .unwrap_err()
                .to_string()
                .starts_with("the image's /etc/group is too large;")
        );
        // Numeric ids need neither file.
        assert_eq!(
            resolve_owner(dir.path(), "5:6").unwrap(),
            Owner { uid: 5, gid: 6 }
        );
    }
}
