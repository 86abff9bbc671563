//! The user a sandboxed process runs as, resolved from the sandbox's own `/etc/passwd` and
//! `/etc/group` with Docker's (runc's) rules.

use std::io;
use std::path::{Path, PathBuf};

/// Ids to switch to before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; always set (empty drops the helper's own groups).
    pub groups: Vec<u32>,
    /// The home directory from passwd, `/` for a uid without an entry (as runc).
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file; rbuild reads users and groups only from one")]
    NotAFile { path: PathBuf },
    #[error(
        "{path} is larger than {limit} MiB; rbuild refuses to read a user database that big",
        limit = MAX_DATABASE >> 20
    )]
    TooLarge { path: PathBuf },
    #[error(
        "{what} {id} is out of range: uids and gids must be in range 0-{}",
        MAX_ID
    )]
    OutOfRange { what: &'static str, id: u64 },
}

/// The largest uid or gid a process may get, as runc: above it, ids overflow a signed
/// 32-bit integer in other tools (containerd's CVE-2024-40635 turned such a uid into
/// root), and 4294967295 is `(uid_t)-1`, which the kernel reads as "unchanged".
pub(crate) const MAX_ID: u32 = i32::MAX as u32;

/// A bound on `/etc/passwd` and `/etc/group`: they come from the image, and a gigantic
/// one must not exhaust memory or time in rbuild's setup (CVE-2026-47262). Real ones are a
/// few KiB; directory dumps of large sites stay far below this.
pub const MAX_DATABASE: u64 = 32 << 20;

#[derive(Clone, Copy)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    /// The comma-separated member list, split only when asked: a group file is untrusted,
    /// and its lists are never collected.
    members: &'a str,
}

impl GroupEntry<'_> {
    fn lists(&self, user: &str) -> bool {
        self.members.split(',').any(|member| member.trim() == user)
    }
}

/// `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped, as libc does.
/// Lazy: each lookup walks the text again rather than holding every entry.
fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> + Clone {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let _gecos = fields.next();
        let home = fields.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// `name:password:gid:member,member`.
fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry<'_>> + Clone {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        let members = fields.next().unwrap_or("");
        Some(GroupEntry { name, gid, members })
    })
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, `uid:group`, ...).
///
/// As runc: a numeric user is always a uid, and a uid missing from passwd is fine (gid 0);
/// a name must exist. Without an explicit group, the primary group comes from passwd and
/// the supplementary groups are those of `/etc/group` that list the user's name; with an
/// explicit group there are none. The primary group is not left out of the supplementary
/// ones when `/etc/group` lists the user in it (as runc). `""` is uid 0, with root's groups.
pub(crate) fn resolve(user: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, group),
        None => (user, ""),
    };
    let users = parse_passwd(passwd);
    let numeric_uid = if user_part.is_empty() {
        Some(0)
    } else {
        user_part.parse::<u32>().ok()
    };
    let entry = match numeric_uid {
        Some(uid) => users.clone().find(|entry| entry.uid == uid),
        None => Some(
            users
                .clone()
                .find(|entry| entry.name == user_part)
                .ok_or_else(|| UserError::UnknownUser {
                    name: user_part.to_owned(),
                })?,
        ),
    };
    let uid = match (entry, numeric_uid) {
        (Some(entry), _) => entry.uid,
        (None, Some(uid)) => uid,
        (None, None) => unreachable!("a named user without an entry returned above"),
    };
    let home = match entry.map(|entry| entry.home) {
        Some(home) if !home.is_empty() => home.to_owned(),
        _ => "/".to_owned(),
    };
    let groups = parse_group(group);
    if !group_part.is_empty() {
        let gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .clone()
                .find(|entry| entry.name == group_part)
                .map(|entry| entry.gid)
                .ok_or_else(|| UserError::UnknownGroup {
                    name: group_part.to_owned(),
                })?,
        };
        return checked(ExecUser {
            uid,
            gid,
            groups: Vec::new(),
            home,
        });
    }
    let gid = entry.map_or(0, |entry| entry.gid);
    let mut supplementary = Vec::new();
    if let Some(entry) = &entry {
        for group in groups {
            if group.lists(entry.name) && !supplementary.contains(&group.gid) {
                supplementary.push(group.gid);
            }
        }
    }
    checked(ExecUser {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

/// Refuses ids above [`MAX_ID`], wherever they came from (the USER line, passwd, group).
fn checked(user: ExecUser) -> Result<ExecUser, UserError> {
    let out_of_range = |what, id: u32| UserError::OutOfRange {
        what,
        id: u64::from(id),
    };
    if user.uid > MAX_ID {
        return Err(out_of_range("uid", user.uid));
    }
    if user.gid > MAX_ID {
        return Err(out_of_range("gid", user.gid));
    }
    if let Some(&gid) = user.groups.iter().find(|&&gid| gid > MAX_ID) {
        return Err(out_of_range("supplementary gid", gid));
    }
    Ok(user)
}

/// Resolves `user` from `/etc/passwd` and `/etc/group` of `root`, read without leaving it
/// (symlinks resolve inside the root, magic links are refused); a missing file counts as
/// empty.
pub(crate) fn resolve_from(user: &str, root: &Path) -> Result<ExecUser, UserError> {
    let passwd = read_user_database(root, Path::new("/etc/passwd"))?;
    let group = read_user_database(root, Path::new("/etc/group"))?;
    resolve(user, &passwd, &group)
}

/// Reads a user database of the image (`/etc/passwd`, `/etc/group`) inside `root`: a
/// regular file (a FIFO or a device there would block or never end; opening without
/// blocking lets the check come first) of at most [`MAX_DATABASE`] bytes; a missing one is
/// empty. For the sandbox's user, and for the builder's `--chown` names.
pub fn read_user_database(root: &Path, path: &Path) -> Result<String, UserError> {
    let read_error = |source| UserError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match crate::mount::open_in_root(root, path, libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => return Err(read_error(source)),
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(UserError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_DATABASE {
        return Err(UserError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    // The size may change while it is read (a racing step sharing the directory).
    io::Read::read_to_end(&mut io::Read::take(file, MAX_DATABASE + 1), &mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_DATABASE {
        return Err(UserError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
bin:x:1:1:bin:/bin:/sbin/nologin
broken line
alice:x:1000:1000:Alice:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/:/sbin/nologin
";

    const GROUP: &str = "\
root:x:0:root
bin:x:1:root,bin,daemon
wheel:x:10:root, alice
alice:x:1000:alice
video:x:27:alice
staff:x:50:
nogroup:x:65533
nobody:x:65534:
";

    fn user(uid: u32, gid: u32, groups: &[u32]) -> (u32, u32, Vec<u32>) {
        (uid, gid, groups.to_vec())
    }

    fn ids(user: ExecUser) -> (u32, u32, Vec<u32>) {
        (user.uid, user.gid, user.groups)
    }

    #[test]
    fn home_comes_from_passwd_or_is_root_dir() {
        assert_eq!(resolve("alice", PASSWD, GROUP).unwrap().home, "/home/alice");
        assert_eq!(resolve("", PASSWD, GROUP).unwrap().home, "/root");
        assert_eq!(resolve("4242", PASSWD, GROUP).unwrap().home, "/");
    }

    #[test]
    fn empty_is_root_with_roots_groups() {
        assert_eq!(
            ids(resolve("", PASSWD, GROUP).unwrap()),
            user(0, 0, &[0, 1, 10])
        );
        assert_eq!(ids(resolve("", "", "").unwrap()), user(0, 0, &[]));
    }

    #[test]
    fn name_gets_primary_and_supplementary_groups() {
        assert_eq!(
            ids(resolve("alice", PASSWD, GROUP).unwrap()),
            user(1000, 1000, &[10, 1000, 27])
        );
        assert_eq!(
            ids(resolve("nobody", PASSWD, GROUP).unwrap()),
            user(65534, 65534, &[])
        );
    }

    #[test]
    fn numeric_uid_uses_passwd_when_present() {
        assert_eq!(
            ids(resolve("1000", PASSWD, GROUP).unwrap()),
            user(1000, 1000, &[10, 1000, 27])
        );
        assert_eq!(
            ids(resolve("4242", PASSWD, GROUP).unwrap()),
            user(4242, 0, &[])
        );
        assert_eq!(ids(resolve("4242", "", "").unwrap()), user(4242, 0, &[]));
    }

    #[test]
    fn explicit_group_drops_supplementary_groups() {
        assert_eq!(
            ids(resolve("alice:video", PASSWD, GROUP).unwrap()),
            user(1000, 27, &[])
        );
        assert_eq!(
            ids(resolve("1000:1000", PASSWD, GROUP).unwrap()),
            user(1000, 1000, &[])
        );
        assert_eq!(
            ids(resolve("1000:1000", "", "").unwrap()),
            user(1000, 1000, &[])
        );
        assert_eq!(
            ids(resolve("4242:staff", PASSWD, GROUP).unwrap()),
            user(4242, 50, &[])
        );
        assert_eq!(
            ids(resolve("root:", PASSWD, GROUP).unwrap()),
            user(0, 0, &[0, 1, 10])
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve("mallory", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        let err = resolve("alice:nope", PASSWD, GROUP).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nope: no matching entries in group file"
        );
        assert!(resolve("alice", "", "").is_err());
    }

    #[test]
    fn reads_files_and_treats_missing_ones_as_empty() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(ids(resolve_from("", temp.path()).unwrap()), user(0, 0, &[]));
        fs::create_dir(temp.path().join("etc")).unwrap();
        fs::write(temp.path().join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(
            ids(resolve_from("alice", temp.path()).unwrap()),
            user(1000, 1000, &[])
        );
        // A group file that is a symlink out of the root reads the root's own file.
        fs::write(temp.path().join("group"), GROUP).unwrap();
        std::os::unix::fs::symlink("../../../../group", temp.path().join("etc/group")).unwrap();
        assert_eq!(
            ids(resolve_from("alice", temp.path()).unwrap()),
            user(1000, 1000, &[10, 1000, 27])
        );
    }

    /// runc's range; above it other tools overflow to root (CVE-2024-40635), and
    /// 4294967295 would leave the process's uid unchanged (root).
    #[test]
    fn ids_above_the_signed_range_are_refused() {
        assert_eq!(
            ids(resolve("2147483647:2147483647", "", "").unwrap()),
            user(2147483647, 2147483647, &[])
        );
        for spec in [
            "2147483648",
            "4294967295",
            "0:4294967295",
            "1000:2147483648",
        ] {
            let err = resolve(spec, "", "").unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("is out of range: uids and gids must be in range 0-2147483647"),
                "{spec}: {err}"
            );
        }
        let passwd = "evil:x:4294967295:0::/:/bin/sh\nlow:x:7:4294967295::/:/bin/sh\n";
        assert_eq!(
            resolve("evil", passwd, "").unwrap_err().to_string(),
            "uid 4294967295 is out of range: uids and gids must be in range 0-2147483647"
        );
        assert_eq!(
            resolve("low", passwd, "").unwrap_err().to_string(),
            "gid 4294967295 is out of range: uids and gids must be in range 0-2147483647"
        );
        let group = "big:x:3000000000:low\n";
        assert_eq!(
            resolve("low:0", passwd, group).map(ids).unwrap(),
            user(7, 0, &[])
        );
        assert!(
            resolve("7", "low:x:7:7::/:/bin/sh\n", group)
                .unwrap_err()
                .to_string()
                .starts_with("supplementary gid 3000000000 is out of range")
        );
    }

    /// CVE-2026-47262: a user database of the image is bounded, and one that never ends
    /// (a FIFO, a device) is refused before it is read.
    #[test]
    fn huge_or_special_databases_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        fs::create_dir(temp.path().join("etc")).unwrap();
        let group = fs::File::create(temp.path().join("etc/group")).unwrap();
        group.set_len(MAX_DATABASE + 1).unwrap();
        let err = resolve_from("root", temp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/group is larger than 32 MiB; rbuild refuses to read a user database that big"
        );
        group.set_len(MAX_DATABASE).unwrap();
        assert!(resolve_from("", temp.path()).is_ok());

        nix::unistd::mkfifo(
            &temp.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let err = resolve_from("", temp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/passwd is not a regular file; rbuild reads users and groups only from one"
        );
    }

    /// A group that lists a user among millions of members is found, and nothing per
    /// member is held.
    #[test]
    fn long_member_lists_are_searched_in_place() {
        let mut group = String::from("crowd:x:77:");
        for n in 0..200_000 {
            group.push_str(&format!("user{n},"));
        }
        group.push_str(" alice\n");
        assert_eq!(
            ids(resolve("alice", PASSWD, &group).unwrap()),
            user(1000, 1000, &[77])
        );
    }
}
