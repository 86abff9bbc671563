//! `RUN --mount=type=ssh` with `--ssh`: a real `ssh-agent` holding a fresh key, and the
//! host's own `ssh-add` and `ssh` (with the libraries they need) copied into a busybox
//! image to ask the forwarded agent what it holds and to log in to a real `sshd` on
//! 127.0.0.1 with it; git sources fetched from that `sshd` with the same agent.

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

/// The host's `ssh-add` and `ssh` and the shared libraries `ldd` says they load, under
/// `dir` at their own paths, for `COPY` into an image.
fn ssh_add_files(dir: &Path) {
    for tool in ["/usr/bin/ssh-add", "/usr/bin/ssh"] {
        host_tool_files(Path::new(tool), dir);
    }
}

fn host_tool_files(tool: &Path, dir: &Path) {
    let ldd = Command::new("ldd").arg(tool).output().unwrap();
    assert_success(&ldd);
    let mut files = vec![tool.to_owned()];
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

/// An `sshd` (Debian's openssh-server) on 127.0.0.1 that lets in, as root, the holder of
/// the key in `authorized_keys` only; killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    /// `[127.0.0.1]:PORT <host key>`: the known-hosts line for this server.
    known_host: String,
}

impl Sshd {
    fn start(dir: &Path, authorized_keys: &Path) -> Sshd {
        // sshd refuses to start without its privilege separation directory, which Debian
        // makes when the service starts, not when the package is installed.
        fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .unwrap();
        assert_success(&out);
        let port = free_port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {keys}\n\
                 PidFile none\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n",
                host_key = host_key.display(),
                keys = authorized_keys.display(),
            ),
        )
        .unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (Debian's openssh-server)");
        assert!(wait_for_port(port, &mut child), "sshd did not start");
        let public = fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let mut fields = public.split_whitespace();
        let known_host = format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        Sshd {
            child,
            port,
            known_host,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent given with `--ssh default` is what logs in to a real sshd: `ADD` of a
/// repository over `ssh://` (git on the host) and a RUN step's own `ssh` (in the sandbox).
/// Without `--ssh` the same build is refused by the server, and the step says so.
#[test]
fn git_over_ssh_and_steps_log_in_to_sshd_with_the_forwarded_agent() {
    require_privileges!();
    require_tool("ssh-agent");
    require_tool("git");
    if !Path::new("/usr/sbin/sshd").exists() {
        if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some() {
            panic!("sshd is missing: install Debian's openssh-server");
        }
        eprintln!("skipped: no /usr/sbin/sshd (Debian's openssh-server)");
        return;
    }
    let env = TestEnv::with_busybox();
    let keys = env.path("keys");
    fs::create_dir_all(&keys).unwrap();
    let (key, _) = new_key(&keys);
    let agent = Agent::start(&keys);
    agent.add(&key);
    let sshd = Sshd::start(&keys, &keys.join("id_ed25519.pub"));
    let port = sshd.port;

    // A repository served over SSH, and a file only a logged-in user can read.
    let bare = env.path("served/repo.git");
    fs::create_dir_all(&bare).unwrap();
    crate::git::git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let work = env.path("work");
    fs::create_dir_all(&work).unwrap();
    crate::git::git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("README"), "fetched over ssh\n").unwrap();
    crate::git::git(&work, &["add", "-A"]);
    crate::git::git(&work, &["commit", "-q", "-m", "first"]);
    crate::git::git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let remote_file = env.path("remote.txt");
    fs::write(&remote_file, "read over ssh\n").unwrap();

    let context = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM busybox\nCOPY tools/ /\nCOPY known_hosts /etc/ssh/ssh_known_hosts\n\
                     ADD ssh://root@127.0.0.1:{port}{repo}#main /src/\n\
                     RUN --mount=type=ssh ssh -F /dev/null -o BatchMode=yes -p {port} \
                     root@127.0.0.1 cat {file} > /remote.txt\n",
                    repo = bare.display(),
                    file = remote_file.display(),
                ),
            ),
            ("known_hosts", &sshd.known_host),
        ],
    );
    ssh_add_files(&context.join("tools"));
    let known_hosts = keys.join("known_hosts");
    fs::write(&known_hosts, &sshd.known_host).unwrap();
    // The host's `ssh` (run by git) as a user's configuration would have it: this
    // server's key known, never a question on a terminal.
    let ssh_command = format!(
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
        known_hosts.display()
    );
    let build = |ssh: Option<&str>, tag: &str| {
        let mut command = env.host_command();
        command.args(["build", "--progress", "plain", "-t", tag]);
        if let Some(ssh) = ssh {
            command.args(["--ssh", ssh]);
        }
        command
            .arg(&context)
            .env("GIT_SSH_COMMAND", &ssh_command)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    let out = build(
        Some(&format!("default={}", agent.socket.display())),
        "sshd:1",
    );
    assert_success(&out);
    let out = env.rbuild(&["run", "sshd:1", "cat", "/src/README", "/remote.txt"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "fetched over ssh\nread over ssh\n");

    // No agent: the server refuses the fetch, and the error names the step's line.
    let out = build(None, "sshd:2");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:4"), "{err}");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
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
