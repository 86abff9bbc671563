//! `--ssh default|ID[=SOCKET|KEY[,KEY...]]`: the SSH agents `RUN --mount=type=ssh`
//! forwards, as `docker buildx build --ssh` takes them.

use std::path::PathBuf;

use miette::Result;
use rbuild_builder::SshSource;

/// Parses one `--ssh` value; `agent` is `$SSH_AUTH_SOCK`, for an id without paths.
pub(crate) fn parse(text: &str, agent: Option<PathBuf>) -> Result<(String, SshSource)> {
    let (id, paths) = match text.split_once('=') {
        Some((id, paths)) => (id, Some(paths)),
        None => (text, None),
    };
    if id.is_empty() {
        return Err(miette::miette!(
            help = "e.g. `--ssh default` or `--ssh github=~/.ssh/id_ed25519`",
            "--ssh `{text}`: the id is empty"
        ));
    }
    let Some(paths) = paths.filter(|paths| !paths.is_empty()) else {
        let Some(agent) = agent else {
            return Err(miette::miette!(
                help = format!(
                    "start an agent (`eval $(ssh-agent)` and `ssh-add`), or give a key: `--ssh {id}=~/.ssh/id_ed25519`"
                ),
                "--ssh {id}: SSH_AUTH_SOCK is not set, so there is no agent to forward"
            ));
        };
        // Checked now: a stale SSH_AUTH_SOCK would otherwise fail only inside a step.
        if std::os::unix::net::UnixStream::connect(&agent).is_err() {
            return Err(miette::miette!(
                help = format!(
                    "start an agent (`eval $(ssh-agent)` and `ssh-add`), or give a key: `--ssh {id}=~/.ssh/id_ed25519`"
                ),
                "--ssh {id}: no SSH agent answers at SSH_AUTH_SOCK ({})",
                agent.display()
            ));
        }
        return Ok((id.to_owned(), SshSource::Socket(agent)));
    };
    let paths: Vec<PathBuf> = paths.split(',').map(PathBuf::from).collect();
    for path in &paths {
        if !path.exists() {
            return Err(miette::miette!(
                help = "give an agent's socket or private key files",
                "--ssh {id}: {} does not exist",
                path.display()
            ));
        }
    }
    // One path that is a socket is an agent; anything else is key files.
    let is_socket = |path: &PathBuf| {
        std::os::unix::fs::FileTypeExt::is_socket(&std::fs::metadata(path).ok()?.file_type())
            .then_some(())
    };
    if let [path] = paths.as_slice()
        && is_socket(path).is_some()
    {
        return Ok((id.to_owned(), SshSource::Socket(path.clone())));
    }
    Ok((id.to_owned(), SshSource::Keys(paths)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sockets_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "key").unwrap();
        let agent = Some(socket.clone());
        assert_eq!(
            parse("default", agent.clone()).unwrap(),
            ("default".into(), SshSource::Socket(socket.clone()))
        );
        let error = parse("default", Some("/nonexistent/agent".into()))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no SSH agent answers at SSH_AUTH_SOCK (/nonexistent/agent)"),
            "{error}"
        );
        assert_eq!(
            parse(&format!("gh={}", socket.display()), None).unwrap(),
            ("gh".into(), SshSource::Socket(socket.clone()))
        );
        assert_eq!(
            parse(&format!("gh={}", key.display()), None).unwrap(),
            ("gh".into(), SshSource::Keys(vec![key.clone()]))
        );
        let error = parse("deploy", None).unwrap_err();
        assert!(
            error.to_string().contains("SSH_AUTH_SOCK is not set"),
            "{error}"
        );
        let help = error
            .help()
            .map(|help| help.to_string())
            .unwrap_or_default();
        assert!(help.contains("`--ssh deploy=~/.ssh/id_ed25519`"), "{help}");
        let error = parse("x=/nonexistent/key", agent).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/key does not exist"), "{error}");
    }
}
