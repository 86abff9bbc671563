//! `RUN --mount=type=ssh` with `--ssh`: a real `ssh-agent` holding a fresh key, and the
//! host's own `ssh-add` (with the libraries it needs) copied into a busybox image to ask
//! the forwarded agent what it holds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::*;

/// An `ssh-agent` on a socket in `dir`, killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent (Debian's openssh-client)");
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Agent { child, socket }
    }

    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap();
        assert_success(&out);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key in `dir`; returns its path and its fingerprint line as `ssh-add -l`
/// prints it.
fn new_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert_success(&out);
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .unwrap();
    assert_success(&out);
    (key, stdout(&out))
}

/// The host's `ssh-add` and the shared libraries `ldd` says it loads, under `dir` at their
/// own paths, for `COPY` into an image.
fn ssh_add_files(dir: &Path) {
    let ssh_add = Path::new("/usr/bin/ssh-add");
    let ldd = Command::new("ldd").arg(ssh_add).output().unwrap();
    assert_success(&ldd);
    let mut files = vec![ssh_add.to_owned()];
    for line in stdout(&ldd).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push(PathBuf::from(path));
        }
    }
    for file in files {
        let to = dir.join(file.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&file, &to).unwrap();
    }
}

#[test]
fn steps_use_the_forwarded_agent_and_its_keys_stay_out() {
    require_privileges!();
    require_tool("ssh-agent");
    let env = TestEnv::with_busybox();
    let keys = env.path("keys");
    fs::create_dir_all(&keys).unwrap();
    let (key, fingerprint) = new_key(&keys);
    let agent = Agent::start(&keys);
    agent.add(&key);

    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY tools/ /\n\
             RUN --mount=type=ssh ssh-add -l > /as-root\n\
             USER 1000\n\
             RUN --mount=type=ssh,uid=1000 ssh-add -l > /tmp/as-user\n\
             RUN --mount=type=ssh ssh-add -l 2>&1 | grep -c 'Permission denied' > /tmp/denied\n\
             RUN --mount=type=ssh,id=other echo \"${SSH_AUTH_SOCK:-none}\" > /tmp/optional\n",
        )],
    );
    ssh_add_files(&context.join("tools"));
    let flag = format!("default={}", agent.socket.display());
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--ssh",
        &flag,
        "-t",
        "ssh:1",
        context.to_str().unwrap(),
    ]);
    assert_success(&out);
    let cat = |path: &str| {
        let out = env.rbuild(&["run", "ssh:1", "cat", path]);
        assert_success(&out);
        stdout(&out)
    };
    assert_eq!(cat("/as-root"), fingerprint);
    assert_eq!(cat("/tmp/as-user"), fingerprint);
    // The default mode is 0600 for root: another user cannot use the agent.
    assert_eq!(cat("/tmp/denied"), "1\n");
    // An id the build was not given is skipped (it is not `required`).
    assert_eq!(cat("/tmp/optional"), "none\n");

    // Nothing of the key in the image.
    let archive = env.path("ssh.tar");
    assert_success(&env.rbuild(&["save", "-o", archive.to_str().unwrap(), "ssh:1"]));
    let private = fs::read(&key).unwrap();
    let saved = fs::read(&archive).unwrap();
    assert!(!saved.windows(64).any(|w| w == &private[..64]));

    // A key file: rbuild starts an agent with it for the build.
    let context = env.context(
        "keyfile",
        &[(
            "Dockerfile",
            "FROM ssh:1\nUSER root\nRUN --mount=type=ssh,id=deploy,required ssh-add -l > /keyfile\n",
        )],
    );
    let flag = format!("deploy={}", key.display());
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--ssh",
        &flag,
        "-t",
        "ssh:2",
        context.to_str().unwrap(),
    ]);
    assert_success(&out);
    let out = env.rbuild(&["run", "ssh:2", "cat", "/keyfile"]);
    assert_eq!(stdout(&out), fingerprint);

    // A required agent that was not given fails the step, saying which flag to add.
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "-t",
        "ssh:3",
        context.to_str().unwrap(),
    ]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("the step needs the SSH agent `deploy`, and the build has no `--ssh deploy`"),
        "{err}"
    );
}
