//! SSH agents for `RUN --mount=type=ssh` (`--ssh default|ID=SOCKET|ID=KEY[,KEY]`).
//!
//! A step never sees the agent's own socket: it gets a socket of its own, made by rbuild in
//! the step's scratch directory with the mount's mode and owner, and each connection to it
//! is relayed to the agent. So a step running as a non-root user can use the agent, the
//! host's socket path and permissions stay as they are, and when the step ends its socket
//! goes. The keys stay in the agent: they never enter the step's files, its cache key (only
//! the id does) or the image. Keys given as files are loaded into an `ssh-agent` that
//! rbuild starts for the build and stops after it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where an `--ssh` id's agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// A running agent's socket (`--ssh default` is `$SSH_AUTH_SOCK`).
    Socket(PathBuf),
    /// Private key files, loaded into an agent rbuild starts.
    Keys(Vec<PathBuf>),
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "the step needs the SSH agent `{id}`, and the build has no `--ssh {id}`; add `--ssh {id}` (the agent of $SSH_AUTH_SOCK) or `--ssh {id}=KEYFILE`"
    )]
    Required { id: String },
    #[error(
        "cannot start an SSH agent for `--ssh {id}` (`ssh-agent` and `ssh-add` come with Debian's openssh-client)"
    )]
    Agent {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{keys} for `--ssh {id}` is protected by a passphrase, which rbuild cannot ask for; load it into your agent (`ssh-add {keys}`) and pass `--ssh {id}`"
    )]
    Encrypted { id: String, keys: String },
    #[error("`ssh-add` could not load {keys} for `--ssh {id}`: {message}")]
    AddKeys {
        id: String,
        keys: String,
        message: String,
    },
    #[error("cannot make the SSH agent socket {path} for the step")]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An `ssh-agent` rbuild started for key files; stopped when dropped.
#[derive(Debug)]
pub(crate) struct KeyAgent {
    child: Child,
    pub socket: PathBuf,
    dir: PathBuf,
}

impl KeyAgent {
    /// Starts `ssh-agent` on a socket in `dir` (a private directory of the store's) and
    /// loads `keys` into it.
    pub(crate) fn start(id: &str, keys: &[PathBuf], dir: PathBuf) -> Result<KeyAgent, SshError> {
        let agent_error = |source| SshError::Agent {
            id: id.to_owned(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(agent_error)?;
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(agent_error)?;
        let agent = KeyAgent { child, socket, dir };
        // The agent makes its socket once it listens.
        for _ in 0..200 {
            if UnixStream::connect(&agent.socket).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = Command::new("ssh-add")
            .args(keys)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stdin(Stdio::null())
            .output()
            .map_err(agent_error)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // ssh-add asks for a passphrase it cannot read (stdin is closed).
            if stderr.contains("passphrase") {
                return Err(SshError::Encrypted {
                    id: id.to_owned(),
                    keys: keys
                        .iter()
                        .map(|key| key.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            return Err(SshError::AddKeys {
                id: id.to_owned(),
                keys: keys
                    .iter()
                    .map(|key| key.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(agent)
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A step's socket relaying to an agent; closed and removed when dropped.
#[derive(Debug)]
pub(crate) struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl AgentProxy {
    /// Listens at `path` (mode `mode`, owned by `uid:gid`) and relays every connection to
    /// the agent at `agent`.
    pub(crate) fn start(
        path: &Path,
        agent: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<AgentProxy, SshError> {
        let socket_error = |source| SshError::Socket {
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(socket_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(socket_error)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(socket_error)?;
        listener.set_nonblocking(true).map_err(socket_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_owned();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let agent = agent.clone();
                        std::thread::spawn(move || relay(client, &agent));
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(AgentProxy {
            path: path.to_owned(),
            stop,
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies bytes both ways between a step's connection and the agent until either closes.
fn relay(client: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A stand-in agent that answers each request with its bytes reversed: what goes
    /// through the step's socket reaches it and comes back.
    #[test]
    fn the_step_socket_relays_to_the_agent_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).unwrap();
        std::thread::spawn(move || {
            for stream in agent.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 5];
                stream.read_exact(&mut request).unwrap();
                request.reverse();
                stream.write_all(&request).unwrap();
            }
        });
        let step_path = dir.path().join("step.sock");
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let proxy = AgentProxy::start(&step_path, &agent_path, 0o600, uid, gid).unwrap();
        assert_eq!(
            std::fs::metadata(&step_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for _ in 0..2 {
            let mut client = UnixStream::connect(&step_path).unwrap();
            client.write_all(b"hello").unwrap();
            let mut answer = [0u8; 5];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"olleh");
        }
        drop(proxy);
        assert!(!step_path.exists());
    }
}
