//! The store's contract (`rbuild_store::testsuite`) on every filesystem this machine gives
//! a store root: a temporary directory (under `RBUILD_STORE_SUITE_DIR` when set, e.g. an
//! xfs or btrfs mount) and a tmpfs (as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_store::testsuite::CHECKS;

fn run_suite(base: &Path) {
    for (name, check) in CHECKS {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        eprintln!("{name} on {}", base.display());
        check(&dir);
    }
}

/// On a temporary directory under `RBUILD_STORE_SUITE_DIR` when it is set (to run the
/// contract on another filesystem), else under the system's temporary directory.
#[test]
fn contract_on_a_temporary_directory() {
    let dir = match std::env::var_os("RBUILD_STORE_SUITE_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    run_suite(dir.path());
}

/// A tmpfs mounted for the test, lazily unmounted at the end.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn contract_on_tmpfs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some_and(|v| v == "1") {
            panic!("RBUILD_PRIVILEGED_TESTS=1 but the tests are not running as root");
        }
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "rbuild-suite"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mount a tmpfs at {}",
        dir.path().display()
    );
    let mount = Tmpfs(dir.path().to_owned());
    run_suite(&mount.0);
}
