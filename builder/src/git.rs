//! Git sources of `ADD`, fetched on the host with the system's `git` (Debian's `git`
//! package): it speaks every transport and reads the user's own configuration and
//! credential helpers, which a library would have to re-implement.
//!
//! A ref is resolved to its commit with `git ls-remote` (the commit, not the ref name, is
//! the step's cache key), then only that commit is fetched, shallow, into a scratch
//! directory. Every file of the checkout gets the commit's time, so the layer is the same
//! whoever fetches it. The remote comes from a Dockerfile: only network transports are
//! allowed (`file://` and `ext::` never), and nothing `git` is given can read as an option.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rbuild_frontend::GitSource;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `git` (install Debian's git package)")]
    Spawn(#[source] io::Error),
    #[error("`git {action}` of {remote} failed: {message}")]
    Failed {
        action: &'static str,
        remote: String,
        message: String,
    },
    #[error(
        "a submodule of {remote} is a path of this machine (`file` transport): rbuild fetches \
         submodules over the network only (https, http, git, ssh); use `?submodules=false` to \
         leave them out"
    )]
    LocalSubmodule { remote: String },
    #[error("{remote} has no ref `{reference}`")]
    UnknownRef { remote: String, reference: String },
    #[error(
        "{remote}: `{reference}` is at {found}, not at the commit the checksum names ({expected})"
    )]
    ChecksumMismatch {
        remote: String,
        reference: String,
        found: String,
        expected: String,
    },
    #[error("{remote}: the sub-directory `{subdir}` is not a directory of commit {commit}")]
    NoSubdir {
        remote: String,
        subdir: String,
        commit: String,
    },
    #[error("failed to {action} in the checkout of {remote}")]
    Checkout {
        action: &'static str,
        remote: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to set the times of the checkout of {remote}")]
    Times {
        remote: String,
        #[source]
        source: io::Error,
    },
}

/// How `git` may authenticate: a token (the `GIT_AUTH_TOKEN` secret, for HTTPS) and an
/// SSH agent (`--ssh default`, for `git@` and `ssh://` remotes).
#[derive(Debug, Clone, Default)]
pub(crate) struct GitAuth {
    pub token: Option<String>,
    pub ssh_agent: Option<PathBuf>,
}

impl GitAuth {
    fn command(&self, remote: &str) -> Command {
        let mut command = Command::new("git");
        // Only network transports, whatever the user's configuration allows.
        for (key, value) in [
            ("protocol.allow", "never"),
            ("protocol.https.allow", "always"),
            ("protocol.http.allow", "always"),
            ("protocol.git.allow", "always"),
            ("protocol.ssh.allow", "always"),
            ("advice.detachedHead", "false"),
        ] {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        // In the environment, not on the command line, where any user of the machine can
        // read it (/proc/PID/cmdline; the environment is the owner's alone). Git 2.31.
        // Scoped to the remote's server: a submodule elsewhere never receives it.
        if let Some(token) = &self.token
            && let Some(server) = http_server(remote)
        {
            let basic = STANDARD.encode(format!("x-access-token:{token}"));
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", format!("http.{server}.extraHeader"))
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: basic {basic}"),
                );
        }
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .stdin(Stdio::null());
        match &self.ssh_agent {
            Some(agent) => command.env("SSH_AUTH_SOCK", agent),
            None => command.env_remove("SSH_AUTH_SOCK"),
        };
        // A session of its own, without a controlling terminal: `ssh` asks about an
        // unknown host key (and for passphrases) on `/dev/tty`, under the build's
        // progress display, and would wait there forever. Without one it fails at once,
        // saying "Host key verification failed".
        // SAFETY: between fork and exec the closure only calls setsid(2), which is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                nix::unistd::setsid().map(drop).map_err(io::Error::from)
            });
        }
        command
    }

    fn run(&self, action: &'static str, remote: &str, args: &[&str]) -> Result<Output, GitError> {
        let out = self
            .command(remote)
            .args(args)
            .output()
            .map_err(GitError::Spawn)?;
        if !out.status.success() {
            let mut message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if message.contains("Host key verification failed") {
                message.push_str(
                    "\n(the build never asks about host keys: add the server's key to your \
                     known hosts first, e.g. `ssh-keyscan [-p PORT] HOST >> ~/.ssh/known_hosts`, \
                     after checking it)",
                );
            }
            return Err(GitError::Failed {
                action,
                remote: remote.to_owned(),
                message,
            });
        }
        Ok(out)
    }
}

/// The commit `source` stands for: its checksum when it has one (no network), else what
/// its ref (or the remote's HEAD) points at now.
pub(crate) fn resolve(source: &GitSource, auth: &GitAuth) -> Result<String, GitError> {
    if let Some(commit) = &source.checksum {
        return Ok(commit.clone());
    }
    if let Some(reference) = &source.reference
        && is_commit(reference)
    {
        return Ok(reference.clone());
    }
    let reference = source.reference.as_deref().unwrap_or("HEAD");
    // The peeled pattern too: an annotated tag's own line names the tag object.
    let peeled = format!("{reference}^{{}}");
    let out = auth.run(
        "ls-remote",
        &source.remote,
        &["ls-remote", "--", &source.remote, reference, &peeled],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let refs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    // An annotated tag's commit (`^{}`) first, then tags, branches and the name itself.
    let wanted = [
        format!("refs/tags/{reference}^{{}}"),
        format!("refs/tags/{reference}"),
        format!("refs/heads/{reference}"),
        reference.to_owned(),
    ];
    wanted
        .iter()
        .find_map(|name| {
            refs.iter()
                .find(|(_, r)| r == name)
                .map(|(c, _)| c.to_string())
        })
        .ok_or_else(|| GitError::UnknownRef {
            remote: source.remote.clone(),
            reference: reference.to_owned(),
        })
}

/// A checkout made by [`checkout`].
pub(crate) struct Checkout {
    /// The directory to copy from (the sub-directory, if the source names one).
    pub root: PathBuf,
    /// The commit's time (committer date, seconds since the epoch): every file's mtime.
    pub time: i64,
}

/// Fetches `commit` of `source` into `dir` (new, empty) and checks it out. `.git` is
/// removed unless kept.
pub(crate) fn checkout(
    source: &GitSource,
    commit: &str,
    dir: &Path,
    auth: &GitAuth,
) -> Result<Checkout, GitError> {
    let remote = &source.remote;
    check_pinned_ref(source, commit, auth)?;
    let time = fetch_commit(source, commit, dir, auth)?;
    if source.submodules && dir.join(".gitmodules").exists() {
        update_submodules(dir, remote, auth)?;
    }
    if !source.keep_git_dir {
        remove_git_dirs(dir).map_err(|source_err| GitError::Checkout {
            action: "remove `.git`",
            remote: remote.clone(),
            source: source_err,
        })?;
    }
    // Every entry, `dir` too, symlinks themselves: the checkout is the same whenever it
    // is made.
    crate::times::apply_to_tree(dir, dir, crate::times::Times::Set(time), true).map_err(
        |source_err| GitError::Times {
            remote: remote.clone(),
            source: source_err,
        },
    )?;
    let root = match &source.subdir {
        Some(subdir) => checked_subdir(source, subdir, commit, dir)?,
        None => dir.to_owned(),
    };
    Ok(Checkout { root, time })
}

/// A checksum with a ref: the ref must be at that commit (checked when the step runs; a
/// cache hit needs no network).
fn check_pinned_ref(source: &GitSource, commit: &str, auth: &GitAuth) -> Result<(), GitError> {
    let Some(reference) = source.reference.as_ref().filter(|r| !is_commit(r)) else {
        return Ok(());
    };
    if source.checksum.is_none() {
        return Ok(());
    }
    let unpinned = GitSource {
        checksum: None,
        ..source.clone()
    };
    let at = resolve(&unpinned, auth)?;
    if at != commit {
        return Err(GitError::ChecksumMismatch {
            remote: source.remote.clone(),
            reference: reference.clone(),
            found: at,
            expected: commit.to_owned(),
        });
    }
    Ok(())
}

/// Fetches `commit` alone into a new repository in `dir` and checks it out; returns its
/// committer time (seconds since the epoch).
fn fetch_commit(
    source: &GitSource,
    commit: &str,
    dir: &Path,
    auth: &GitAuth,
) -> Result<i64, GitError> {
    let remote = &source.remote;
    let dir_text = dir.to_string_lossy();
    auth.run("init", remote, &["init", "-q", "--", &dir_text])?;
    let fetch = |what: &str| {
        auth.run(
            "fetch",
            remote,
            &[
                "-C",
                &dir_text,
                "fetch",
                "-q",
                "--depth",
                "1",
                "--no-tags",
                "--",
                remote,
                what,
            ],
        )
    };
    // By commit where the server allows it; else the ref, which must be at that commit.
    if fetch(commit).is_err() {
        let reference = source.reference.as_deref().unwrap_or("HEAD");
        fetch(reference)?;
    }
    let head = auth.run(
        "rev-parse",
        remote,
        // The commit, also when a ref fetched by name is an annotated tag.
        &["-C", &dir_text, "rev-parse", "FETCH_HEAD^{commit}"],
    )?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    if head != commit {
        return Err(GitError::ChecksumMismatch {
            remote: remote.clone(),
            reference: source.reference.clone().unwrap_or_else(|| "HEAD".into()),
            found: head,
            expected: commit.to_owned(),
        });
    }
    auth.run(
        "checkout",
        remote,
        &["-C", &dir_text, "checkout", "-q", "FETCH_HEAD"],
    )?;
    let time = auth.run(
        "log",
        remote,
        &["-C", &dir_text, "log", "-1", "--format=%ct", "FETCH_HEAD"],
    )?;
    Ok(String::from_utf8_lossy(&time.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// The checkout's `subdir`, which must be a directory inside it: the frontend allows no
/// `..`, and a symlink on the way must not lead out either.
fn checked_subdir(
    source: &GitSource,
    subdir: &str,
    commit: &str,
    dir: &Path,
) -> Result<PathBuf, GitError> {
    let path = dir.join(subdir);
    let inside = std::fs::canonicalize(&path)
        .ok()
        .zip(std::fs::canonicalize(dir).ok())
        .is_some_and(|(path, dir)| path.starts_with(dir) && path.is_dir());
    if !inside || std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
        return Err(GitError::NoSubdir {
            remote: source.remote.clone(),
            subdir: subdir.to_owned(),
            commit: commit.to_owned(),
        });
    }
    Ok(path)
}

/// A build context fetched from git (`rbuild build https://host/repo.git#ref:dir`).
#[derive(Debug)]
pub struct GitContext {
    /// The checkout's directory, or its sub-directory when the source names one.
    pub root: PathBuf,
    /// The commit checked out.
    pub commit: String,
    /// The commit's time, seconds since the epoch (`SOURCE_DATE_EPOCH=context`).
    pub time: i64,
}

/// Fetches the commit `source` names (its ref resolved now) into `dir` (new, or empty),
/// as for an ADD: shallow, file times the commit's, `.git` kept only when asked for.
/// Authenticates with `token` (HTTPS) and the agent at `ssh_agent` (SSH remotes).
pub fn fetch_context(
    source: &GitSource,
    dir: &Path,
    token: Option<String>,
    ssh_agent: Option<PathBuf>,
) -> Result<GitContext, GitError> {
    let auth = GitAuth { token, ssh_agent };
    let commit = resolve(source, &auth)?;
    let Checkout { root, time } = checkout(source, &commit, dir, &auth)?;
    Ok(GitContext { root, commit, time })
}

/// Checks out the submodules of the commit in `dir`, recursively, at the commits it
/// records, shallow where the servers allow it. Their URLs come from the repository,
/// so the same transports as for the remote only (the `-c protocol.*` settings reach
/// the `git` processes the submodule command starts); a relative URL (`../lib.git`) is
/// resolved against the remote, as a clone would.
fn update_submodules(dir: &Path, remote: &str, auth: &GitAuth) -> Result<(), GitError> {
    let dir_text = dir.to_string_lossy();
    auth.run(
        "config",
        remote,
        &["-C", &dir_text, "config", "remote.origin.url", remote],
    )?;
    let update = |shallow: bool| {
        let mut args = vec![
            "-C",
            &*dir_text,
            "submodule",
            "update",
            "--init",
            "--recursive",
        ];
        if shallow {
            args.extend(["--depth", "1"]);
        }
        auth.run("submodule update", remote, &args)
    };
    // A recorded commit that is no branch's tip cannot be fetched shallow from a server
    // that refuses unadvertised objects (`git daemon`, many self-hosted servers): then
    // the whole history of that submodule.
    // Starting over: a shallow clone cannot be deepened to a commit its fetch refused.
    if update(true).is_err() {
        auth.run(
            "submodule deinit",
            remote,
            &[
                "-C",
                &dir_text,
                "submodule",
                "deinit",
                "-q",
                "--all",
                "--force",
            ],
        )?;
        let modules = dir.join(".git/modules");
        if modules.exists() {
            std::fs::remove_dir_all(&modules).map_err(|source| GitError::Checkout {
                action: "remove `.git/modules`",
                remote: remote.to_owned(),
                source,
            })?;
        }
        update(false).map_err(|err| match err {
            GitError::Failed { message, .. }
                if message.contains("transport 'file' not allowed") =>
            {
                GitError::LocalSubmodule {
                    remote: remote.to_owned(),
                }
            }
            err => err,
        })?;
    }
    Ok(())
}

/// Removes `.git` everywhere in the checkout: the repository's directory and each
/// submodule's `.git` file (which points into it). No tracked file can be named `.git`.
fn remove_git_dirs(dir: &Path) -> io::Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if entry.file_name() == ".git" {
                if kind.is_dir() {
                    std::fs::remove_dir_all(entry.path())?;
                } else {
                    std::fs::remove_file(entry.path())?;
                }
            } else if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// `scheme://host[:port]/` of an HTTP(S) remote: what a token is scoped to.
fn http_server(remote: &str) -> Option<String> {
    let (scheme, authority) = crate::download::url_authority(remote)?;
    (matches!(scheme, "https" | "http") && !authority.is_empty())
        .then(|| format!("{scheme}://{authority}/"))
}

/// Whether `text` is a full commit hash.
fn is_commit(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::http_server;

    #[test]
    fn tokens_are_scoped_to_the_remote_s_server() {
        for (remote, server) in [
            (
                "https://github.com/org/repo.git",
                Some("https://github.com/"),
            ),
            (
                "http://x@127.0.0.1:8080/r.git",
                Some("http://127.0.0.1:8080/"),
            ),
            ("git://127.0.0.1/r.git", None),
            ("git@github.com:org/repo.git", None),
            ("ssh://git@host/r.git", None),
        ] {
            assert_eq!(http_server(remote).as_deref(), server, "{remote}");
        }
    }
}
