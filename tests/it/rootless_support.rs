//! rbuild as an ordinary user, for the rootless tests: the users `scripts/test.sh` creates
//! (`rbuild-test`, with subordinate ids, and `rbuild-test-nosubid`, without), a scratch
//! directory of theirs with a `$HOME` of its own (so that the store is the default one,
//! `~/.local/share/rbuild`), and the `rbuild` binary where they can run it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::support::{TestEnv, assert_success, stdout, write_busybox_image};

/// An ordinary user with subordinate ids 300000–365535.
pub const USER: &str = "rbuild-test";
/// An ordinary user without subordinate ids.
pub const USER_WITHOUT_SUBIDS: &str = "rbuild-test-nosubid";

/// `PATH` of the users' rbuild: where Debian puts newuidmap, and nothing else of the tests.
pub const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A user account of the machine.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// The account named `name` in /etc/passwd.
    pub fn lookup(name: &str) -> Option<Account> {
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != name {
                return None;
            }
            Some(Account {
                name: name.to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    }
}

/// The test user `name`, after `require_privileges!()` (switching users needs root). Without
/// the user: a skip with the reason, or a failure under `RBUILD_PRIVILEGED_TESTS=1`.
macro_rules! require_user {
    ($name:expr) => {{
        require_privileges!();
        match $crate::rootless_support::Account::lookup($name) {
            Some(account) => account,
            None => {
                if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some_and(|v| v == "1") {
                    panic!(
                        "the test user `{}` is missing: scripts/test.sh creates it when run as root",
                        $name
                    );
                }
                eprintln!(
                    "skipped: the test user `{}` is missing (scripts/test.sh creates it as root)",
                    $name
                );
                return;
            }
        }
    }};
}

/// A scratch directory owned by `account`, and rbuild run as that user in it.
pub struct UserEnv {
    pub env: TestEnv,
    pub account: Account,
}

impl UserEnv {
    pub fn new(account: &Account) -> UserEnv {
        let env = TestEnv::new();
        let user = UserEnv {
            env,
            account: account.clone(),
        };
        fs::create_dir(user.home()).unwrap();
        user.give(user.env.dir.path());
        user
    }

    /// A new environment with `busybox:latest` loaded (by the user).
    pub fn with_busybox(account: &Account) -> UserEnv {
        let user = UserEnv::new(account);
        let tar = user.path("busybox.tar");
        write_busybox_image(&tar);
        user.give(&tar);
        let out = user.rbuild(&["load", "-i", tar.to_str().unwrap()]);
        assert_success(&out);
        user
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// The user's default store.
    pub fn store(&self) -> PathBuf {
        self.home().join(".local/share/rbuild")
    }

    /// `rbuild` as the user: their uid and gid and no other group, a clean environment with
    /// `HOME` in the scratch directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(rbuild_binary());
        cmd.uid(self.account.uid)
            .gid(self.account.gid)
            .env_clear()
            .env("HOME", self.home())
            .env("USER", &self.account.name)
            .env("PATH", USER_PATH)
            // Messages on one line each, whole phrases to look for.
            .env("COLUMNS", "1000")
            .current_dir(self.env.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn rbuild(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run rbuild")
    }

    /// Builds `context` as `tag` with plain progress.
    pub fn build(&self, context: &Path, tag: &str) -> Output {
        self.rbuild(&[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            context.to_str().unwrap(),
        ])
    }

    /// Writes `files` under `name/` (owned by the user) and returns that directory.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.env.context(name, files);
        self.give(&dir);
        dir
    }

    /// Gives `path` and everything below it to the user.
    pub fn give(&self, path: &Path) {
        let meta = fs::symlink_metadata(path).unwrap();
        std::os::unix::fs::lchown(path, Some(self.account.uid), Some(self.account.gid)).unwrap();
        if meta.is_dir() {
            for entry in fs::read_dir(path).unwrap() {
                self.give(&entry.unwrap().path());
            }
        }
    }

    /// Runs `program` as the user (not rbuild): what the user can do to the store directly.
    pub fn as_user(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .uid(self.account.uid)
            .gid(self.account.gid)
            .env_clear()
            .env("PATH", USER_PATH)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The rbuild binary, where every user can run it: in place when every directory above it
/// lets others through, else a copy in /tmp (a CI clone may live under root's home).
pub fn rbuild_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_rbuild"));
        let reachable = built
            .ancestors()
            .skip(1)
            .all(|dir| fs::metadata(dir).is_ok_and(|meta| meta.mode() & 0o001 != 0));
        if reachable {
            return built;
        }
        let meta = fs::metadata(&built).unwrap();
        let dir = PathBuf::from(format!(
            "/tmp/rbuild-it-bin-{}-{}",
            meta.len(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000
        ));
        let copy = dir.join("rbuild");
        if !copy.exists() {
            fs::create_dir_all(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            let temp = dir.join(format!("rbuild.{}", std::process::id()));
            fs::copy(&built, &temp).unwrap();
            fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&temp, &copy).unwrap();
        }
        copy
    })
}

/// The image id (last line of stdout) of a successful build.
pub fn image_id(out: &Output) -> String {
    assert_success(out);
    stdout(out).lines().last().unwrap_or_default().to_owned()
}
