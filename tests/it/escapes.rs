//! The container escapes of 2024–2026 replayed against rbuild, as a malicious Dockerfile or
//! base image would try them (docs/security.md maps each to its threat). Each attack must
//! be refused or contained, and the host left as it was: its `core_pattern` and other
//! sysctls, and a canary directory that a symlink in the sandbox points at.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Host files a sandbox escape would write to; read before and after each attack.
const SYSCTLS: [&str; 4] = [
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/fs/suid_dumpable",
    "/proc/sys/vm/overcommit_memory",
];

/// The host as an attack could change it: sysctls, and the files under a canary directory.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    sysctls: Vec<String>,
    canary: Vec<PathBuf>,
}

fn host_state(canary: &Path) -> HostState {
    let mut files = Vec::new();
    let mut dirs = vec![canary.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path.clone());
            }
            files.push(path);
        }
    }
    files.sort();
    HostState {
        sysctls: SYSCTLS
            .iter()
            .map(|path| fs::read_to_string(path).unwrap_or_default())
            .collect(),
        canary: files,
    }
}

/// A canary directory on the host with a file in it, and the empty directories `x/y` and
/// empty file `x/f`: the names of mount-point stubs the racing test's steps create and
/// remove, so that a removal led out of the root by a symlink would show.
fn canary(env: &TestEnv) -> PathBuf {
    let dir = env.path("canary");
    fs::create_dir_all(dir.join("x/y")).unwrap();
    fs::write(dir.join("keep"), "host file\n").unwrap();
    fs::write(dir.join("x/f"), "").unwrap();
    dir
}

/// `busybox` with `extra` (hostile entries) as a second layer, loaded as `name`.
fn load_with_layer(env: &TestEnv, name: &str, extra: &[(&str, tar::EntryType, &str, &[u8])]) {
    let archive = env.path("hostile.tar");
    write_image(&archive, name, &[busybox_layer(), raw_tar(extra)]);
    assert_success(&env.rbuild(&["load", "-i", archive.to_str().unwrap()]));
}

/// CVE-2025-31133 (and CVE-2025-52565 through `/dev/console`): an image whose `/dev/null`
/// and `/dev/console` are symlinks to procfs files. A runtime that masks with "the
/// sandbox's /dev/null" binds `core_pattern` read-write over a masked path. rbuild masks
/// with the host's null device, opened and checked before the root is looked at.
#[test]
fn a_dev_null_symlink_to_a_procfs_file_unmasks_nothing() {
    require_privileges!();
    let env = TestEnv::new();
    let canary = canary(&env);
    load_with_layer(
        &env,
        "evil-null:1",
        &[
            ("dev/", tar::EntryType::Directory, "", b""),
            (
                "dev/null",
                tar::EntryType::Symlink,
                "/proc/sys/kernel/core_pattern",
                b"",
            ),
            (
                "dev/console",
                tar::EntryType::Symlink,
                "/proc/sys/kernel/modprobe",
                b"",
            ),
        ],
    );
    let before = host_state(&canary);
    // Masked files must be the null device; sysctls stay read-only.
    let script = "stat -c '%F %t:%T' /dev/null /proc/keys /proc/timer_list; \
                  for f in /proc/sys/kernel/core_pattern /proc/sys/fs/suid_dumpable; do \
                    echo '|/bin/sh -c escape' > $f 2>/dev/null && echo wrote $f; done; \
                  cat /proc/keys /proc/timer_list | wc -c";
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM evil-null:1\nRUN {script}\nRUN {script}\n"),
        )],
    );
    let out = env.build(&context, "probe");
    assert_success(&out);
    // `rbuild run` sets up the same sandbox, with the command as pid 1.
    let run = env.rbuild(&["run", "evil-null:1", "sh", "-c", script]);
    assert_success(&run);
    assert_eq!(
        stdout(&run),
        "character special file 1:3\n".repeat(3) + "0\n",
        "{}",
        stderr(&run)
    );
    let log = stderr(&out);
    assert_eq!(
        log.matches("character special file 1:3").count(),
        6,
        "{log}"
    );
    assert!(!log.contains("wrote /proc"), "{log}");
    assert_eq!(host_state(&canary), before);
}

/// The same attack one level up: an image whose `/dev` is a symlink into `/proc/sys`
/// would have rbuild mount its `/dev` and bind device nodes inside procfs. Refused, as
/// runc refuses it, with the reason.
#[test]
fn a_kernel_filesystem_mount_point_that_is_a_symlink_is_refused() {
    require_privileges!();
    let env = TestEnv::new();
    let canary = canary(&env);
    load_with_layer(
        &env,
        "evil-dev:1",
        &[("dev", tar::EntryType::Symlink, "/proc/sys/kernel", b"")],
    );
    let before = host_state(&canary);
    let out = env.rbuild(&["run", "evil-dev:1", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = flat(&stderr(&out));
    for part in [
        "the image's /dev leads to",
        "(a symlink); rbuild mounts the sandbox's own /dev there only on a directory",
    ] {
        assert!(err.contains(part), "{err}");
    }
    assert_eq!(host_state(&canary), before);
}

/// CVE-2025-52881's shape: two steps share a cache mount; one swaps a directory of it for
/// a symlink to a host path in a loop while the other starts with a mount below that
/// directory. A runtime that looks the mount point up and then mounts (or creates its
/// stub) by path lands on the host. rbuild holds every mount point by descriptor: the
/// victim's steps run with the mount inside their own root, or are refused, and the host
/// directory the symlink names stays as it was.
#[test]
fn racing_steps_over_a_shared_cache_mount_stay_in_their_roots() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let canary = canary(&env);
    let target = canary.display();
    let mut dockerfile = format!(
        "FROM busybox AS swapper\n\
         RUN --mount=type=cache,id=race,target=/c sh -c 'touch /c/started; \
           end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do \
             rm -rf /c/d; mkdir /c/d 2>/dev/null; rm -rf /c/d; ln -s {target} /c/d 2>/dev/null; \
           done; rm -rf /c/d /c/started'\n\
         FROM busybox AS victim\n\
         RUN --mount=type=cache,id=race,target=/c sh -c 'for i in $(seq 100); do \
           test -e /c/started && exit 0; sleep 0.05; done'\n"
    );
    // Directory stubs (x, x/y) for a tmpfs, file stubs (x, x/f) for a bind of a file.
    for n in 0..30 {
        let mount = if n % 2 == 0 {
            "type=tmpfs,target=/c/d/x/y"
        } else {
            "type=bind,source=Dockerfile,target=/c/d/x/f"
        };
        dockerfile.push_str(&format!(
            "RUN --mount=type=cache,id=race,target=/c --mount={mount} sh -c ': step {n}'\n"
        ));
    }
    dockerfile.push_str(
        "FROM busybox\nCOPY --from=swapper /etc/passwd /s\nCOPY --from=victim /etc/passwd /v\n",
    );
    let context = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    let before = host_state(&canary);
    let out = env.build(&context, "raced");
    if !out.status.success() {
        // Refused is fine when it says why; anything else is a bug.
        let err = flat(&stderr(&out));
        // A directory removed under the mount point as it is mounted on is the same race
        // seen a moment later.
        assert!(
            err.contains(
                "while the sandbox was set up (a directory it shares with another sandbox \
                 changed under it); refused"
            ) || err.contains("on /c/d/x/y: ENOENT")
                || err.contains("on /c/d/x/f: ENOENT"),
            "{err}"
        );
    }
    assert_eq!(host_state(&canary), before);
}

/// CVE-2024-40635: a uid above 2^31 overflowed to root in containerd. rbuild takes runc's
/// range, and 4294967295 (`(uid_t)-1`, "unchanged" to setuid) is never a user.
#[test]
fn users_above_the_signed_range_are_refused() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let context = env.context(
        "ok",
        &[(
            "Dockerfile",
            "FROM busybox\nUSER 2147483647:2147483647\nRUN id -u > /tmp/id && id -g >> /tmp/id\n",
        )],
    );
    assert_success(&env.build(&context, "top"));
    let out = env.rbuild(&["run", "top", "cat", "/tmp/id"]);
    assert_eq!(stdout(&out), "2147483647\n2147483647\n");

    for user in ["2147483648", "4294967295", "0:4294967295"] {
        let context = env.context(
            &format!("user-{user}"),
            &[(
                "Dockerfile",
                &format!("FROM busybox\nUSER {user}\nRUN id\n"),
            )],
        );
        let out = env.build(&context, "over");
        assert_failure(&out);
        let err = flat(&stderr(&out));
        assert!(
            err.contains("is out of range: uids and gids must be in range 0-2147483647"),
            "{user}: {err}"
        );
        assert!(!stdout(&out).contains("uid="), "{user}");
        let out = env.rbuild(&["run", "--user", user, "busybox", "id"]);
        assert_eq!(out.status.code(), Some(125), "{user}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
    }
    // Where the line ends inside it, the range stays whole (not broken at its hyphen).
    for columns in ["45", "80"] {
        let out = env
            .command()
            .env("COLUMNS", columns)
            .args(["run", "--user", "2147483648", "busybox", "id"])
            .output()
            .unwrap();
        assert!(
            stderr(&out)
                .lines()
                .any(|line| line.contains("0-2147483647")),
            "{columns}: {}",
            stderr(&out)
        );
    }
    let context = env.context(
        "chown",
        &[
            ("Dockerfile", "FROM busybox\nCOPY --chown=4294967295 f /f\n"),
            ("f", "x"),
        ],
    );
    let out = env.build(&context, "chowned");
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("uid 4294967295 cannot own a file"),
        "{}",
        stderr(&out)
    );
}

/// CVE-2026-47262: rbuild parses the image's `/etc/group` and `/etc/passwd` (for the
/// step's user, and on the host for `--chown`): a gigantic one is refused before it is
/// read, and one that never ends (a FIFO) is refused instead of hanging the build.
#[test]
fn gigantic_or_endless_user_databases_are_refused() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let cases = [
        (
            "RUN dd if=/dev/zero of=/etc/group bs=1M count=33 2>/dev/null\nRUN true\n",
            "/etc/group is larger than 32 MiB; rbuild refuses to read a user database that big",
        ),
        (
            "RUN rm /etc/group && mkfifo /etc/group\nRUN true\n",
            "/etc/group is not a regular file; rbuild reads users and groups only from one",
        ),
        (
            "RUN rm /etc/passwd && mkfifo /etc/passwd\nCOPY --chown=app Dockerfile /x\n",
            "the image's /etc/passwd is not a regular file",
        ),
    ];
    for (steps, expected) in cases {
        let context = env.context("db", &[("Dockerfile", &format!("FROM busybox\n{steps}"))]);
        let out = env.build(&context, "db");
        assert_failure(&out);
        let err = flat(&stderr(&out));
        assert!(err.contains(expected), "{steps}: {err}");
    }
}
