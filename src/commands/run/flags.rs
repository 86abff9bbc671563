//! `rbuild run`'s flags that docker users bring: what each means here, parsed into what
//! the sandbox spec takes. Each error names the flag's value; the caller adds the flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rbuild_runtime::{ExtraHost, Mount, Seccomp};

use super::super::key_value;

/// `-p [IP:]HOST:CONTAINER[/tcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Publish {
    pub host: SocketAddr,
    pub container: u16,
}

pub(super) fn parse_publish(text: &str) -> Result<Publish, String> {
    let spec = match text.rsplit_once('/') {
        Some((spec, "tcp")) => spec,
        Some((_, protocol)) => {
            return Err(format!(
                "`{text}`: only tcp ports can be published, not {protocol}"
            ));
        }
        None => text,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [host, container] => ("0.0.0.0", *host, *container),
        [ip, host, container] => (*ip, *host, *container),
        _ => return Err(format!("`{text}` is not `[IP:]HOST:CONTAINER`")),
    };
    let port = |value: &str| {
        value
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("`{text}`: `{value}` is not a port number"))
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("`{text}`: `{ip}` is not an IPv4 address"))?;
    Ok(Publish {
        host: SocketAddr::from((ip, port(host)?)),
        container: port(container)?,
    })
}

/// `-v HOST:CONTAINER[:ro|rw]`: a recursive bind of the host path (which must exist). The
/// target is resolved inside the sandbox's root by the runtime, so a symlink in the image
/// cannot send the mount (or writes through it) anywhere on the host.
pub(super) fn parse_volume(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [host, target] => (*host, *target, false),
        [host, target, "ro"] => (*host, *target, true),
        [host, target, "rw"] => (*host, *target, false),
        _ => return Err(format!("`{text}` is not `HOST:CONTAINER[:ro]`")),
    };
    if !target.starts_with('/') {
        return Err(format!("`{text}`: the container path must be absolute"));
    }
    let source = std::fs::canonicalize(host)
        .map_err(|err| format!("`{text}`: cannot use host path {host}: {err}"))?;
    let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
    if readonly {
        options.push("ro".to_owned());
    }
    Ok(Mount {
        fstype: "bind".into(),
        source,
        target: target.into(),
        options,
    })
}

/// Docker's `--security-opt` values that mean something here.
pub(super) fn parse_security_opts(options: &[String]) -> Result<Seccomp, String> {
    let mut seccomp = Seccomp::Default;
    for option in options {
        let (key, value) = option
            .split_once(['=', ':'])
            .unwrap_or((option.as_str(), "true"));
        match (key, value) {
            ("seccomp", "unconfined") => seccomp = Seccomp::Unconfined,
            ("seccomp", _) => {
                return Err(format!(
                    "`{option}`: rbuild has its own profile or none (`seccomp=unconfined`); profiles from files are not supported"
                ));
            }
            // rbuild always sets no_new_privs, and uses neither AppArmor nor SELinux labels.
            ("no-new-privileges", "true") | ("apparmor", "unconfined") | ("label", "disable") => {}
            _ => {
                return Err(format!(
                    "`{option}` is not supported (`seccomp=unconfined`, `no-new-privileges`, `apparmor=unconfined` and `label=disable` are)"
                ));
            }
        }
    }
    Ok(seccomp)
}

/// `--tmpfs PATH[:OPTIONS]`, Docker's default options when none are given.
pub(super) fn parse_tmpfs(text: &str) -> Result<Mount, String> {
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    if !target.starts_with('/') {
        return Err(format!("`{text}`: the tmpfs path must be absolute"));
    }
    let options = if options.is_empty() {
        "rw,noexec,nosuid,size=65536k"
    } else {
        options
    };
    Ok(Mount {
        fstype: "tmpfs".into(),
        source: "tmpfs".into(),
        target: target.into(),
        options: options.split(',').map(str::to_owned).collect(),
    })
}

/// `KEY=VALUE` lines (a bare `KEY` takes rbuild's own value); blank lines and `#`
/// comments are skipped. Values are taken as they are, quotes included, as Docker does.
pub(super) fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| line.trim_start())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(key_value)
        .collect()
}

/// `--mount type=bind|tmpfs,...`, docker's keys: `source`/`src`, `target`/`destination`/
/// `dst`, `readonly`/`ro`, `bind-propagation`, `tmpfs-size`, `tmpfs-mode`. Volumes are
/// refused: rbuild keeps none (a bind of a host directory does the same job).
pub(super) fn parse_mount(text: &str) -> Result<Mount, String> {
    let mut kind = "volume";
    let mut source = None;
    let mut target = None;
    let mut readonly = false;
    let mut propagation = "rprivate";
    let mut tmpfs_options = Vec::new();
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        let flag = || match value {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(format!("`{text}`: `{key}` is true or false, not `{value}`")),
        };
        match key {
            "type" => kind = value,
            "source" | "src" => source = Some(value),
            "target" | "destination" | "dst" => target = Some(value),
            "readonly" | "ro" => readonly = flag()?,
            "bind-propagation" => propagation = value,
            "tmpfs-size" => tmpfs_options.push(format!("size={value}")),
            "tmpfs-mode" => tmpfs_options.push(format!("mode={value}")),
            "consistency" => {}
            _ => return Err(format!("`{text}`: unknown key `{key}`")),
        }
    }
    let target = target
        .filter(|target| target.starts_with('/'))
        .ok_or_else(|| format!("`{text}`: needs an absolute `target=`"))?;
    match kind {
        "bind" => {
            let host = source.ok_or_else(|| format!("`{text}`: a bind needs `source=`"))?;
            let mut mount = parse_volume(&format!("{host}:{target}"))?;
            if !matches!(
                propagation,
                "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
            ) {
                return Err(format!(
                    "`{text}`: unknown bind-propagation `{propagation}`"
                ));
            }
            mount.options[1] = propagation.to_owned();
            if readonly {
                mount.options.push("ro".to_owned());
            }
            Ok(mount)
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(format!("`{text}`: a tmpfs has no source"));
            }
            let mut options = vec!["rw".to_owned(), "nosuid".to_owned(), "nodev".to_owned()];
            if readonly {
                options[0] = "ro".to_owned();
            }
            options.extend(tmpfs_options);
            Ok(Mount {
                fstype: "tmpfs".into(),
                source: "tmpfs".into(),
                target: target.into(),
                options,
            })
        }
        "volume" => Err(format!(
            "`{text}`: rbuild keeps no volumes; bind a host directory instead (`type=bind,source=DIR,target={target}`)"
        )),
        other => Err(format!("`{text}`: unknown type `{other}` (bind or tmpfs)")),
    }
}

/// `--add-host NAME:IP` (also `NAME=IP`, docker's newer form, and `[IPv6]` in brackets).
/// `host-gateway` is refused: it names the host's address on a docker bridge.
pub(crate) fn parse_add_host(text: &str) -> Result<ExtraHost, String> {
    let (name, address) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| format!("`{text}` is not `NAME:IP`"))?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(format!("`{text}`: `{name}` is not a host name"));
    }
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address: IpAddr = address.parse().map_err(|_| {
        if address == "host-gateway" {
            format!("`{text}`: `host-gateway` is not supported; give the address")
        } else {
            format!("`{text}`: `{address}` is not an IP address")
        }
    })?;
    Ok(ExtraHost {
        name: name.to_owned(),
        address,
    })
}

/// Sets `key` in `env`, replacing an earlier value (docker's order: later wins).
pub(super) fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(format!("{key}={value}"));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn parses_published_ports() {
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            Publish {
                host: "0.0.0.0:8080".parse().unwrap(),
                container: 80
            }
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/tcp").unwrap().host,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(
            parse_publish("8080:80/udp")
                .unwrap_err()
                .contains("only tcp")
        );
        assert!(parse_publish("80").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("x:1:2").is_err());
    }

    #[test]
    fn parses_security_opts_as_docker() {
        let opts = |list: &[&str]| {
            parse_security_opts(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(opts(&[]), Ok(Seccomp::Default));
        assert_eq!(opts(&["seccomp=unconfined"]), Ok(Seccomp::Unconfined));
        assert_eq!(
            opts(&["seccomp:unconfined", "no-new-privileges"]),
            Ok(Seccomp::Unconfined)
        );
        assert_eq!(
            opts(&["apparmor=unconfined", "label=disable"]),
            Ok(Seccomp::Default)
        );
        assert!(
            opts(&["seccomp=/etc/profile.json"])
                .unwrap_err()
                .contains("from files")
        );
        assert!(opts(&["no-new-privileges=false"]).is_err());
        assert!(opts(&["label=type:x"]).is_err());
    }

    #[test]
    fn parses_volumes_and_tmpfs() {
        let temp = tempfile::tempdir().unwrap();
        let host = temp.path().to_str().unwrap();
        let mount = parse_volume(&format!("{host}:/data:ro")).unwrap();
        assert_eq!(mount.fstype, "bind");
        assert_eq!(mount.source, temp.path().canonicalize().unwrap());
        assert_eq!(mount.target, PathBuf::from("/data"));
        assert_eq!(mount.options, ["rbind", "rprivate", "ro"]);
        assert!(parse_volume(&format!("{host}:relative")).is_err());
        assert!(parse_volume("/does/not/exist:/data").is_err());
        assert!(parse_volume(&format!("{host}:/data:rx")).is_err());

        let tmpfs = parse_tmpfs("/run").unwrap();
        assert_eq!(tmpfs.options, ["rw", "noexec", "nosuid", "size=65536k"]);
        assert_eq!(parse_tmpfs("/run:size=1m").unwrap().options, ["size=1m"]);
        assert!(parse_tmpfs("run").is_err());
    }

    #[test]
    fn parses_env_files() {
        let vars = parse_env_file("# comment\n\nA=1\n  B=two words\nC=\"quoted\"\n");
        assert_eq!(
            vars,
            [
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "two words".to_owned()),
                ("C".to_owned(), "\"quoted\"".to_owned()),
            ]
        );
        let mut env = vec!["A=0".to_owned(), "PATH=/bin".to_owned()];
        set_env(&mut env, "A", "1");
        assert_eq!(env, ["PATH=/bin", "A=1"]);
    }

    #[test]
    fn parses_mounts_as_docker() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let mount = parse_mount(&format!("type=bind,src={host},dst=/data,readonly")).unwrap();
        assert_eq!(mount.fstype, "bind");
        assert_eq!(mount.target, std::path::Path::new("/data"));
        assert_eq!(mount.options, ["rbind", "rprivate", "ro"]);
        let mount = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=1m").unwrap();
        assert_eq!(mount.options, ["rw", "nosuid", "nodev", "size=1m"]);
        let err = parse_mount("type=volume,source=cache,target=/cache").unwrap_err();
        assert!(err.contains("rbuild keeps no volumes"), "{err}");
        assert!(parse_mount("target=/x").unwrap_err().contains("no volumes"));
        assert!(
            parse_mount("type=bind,source=/tmp")
                .unwrap_err()
                .contains("target=")
        );
        assert!(
            parse_mount("type=tmpfs,target=/t,color=blue")
                .unwrap_err()
                .contains("color")
        );
    }

    #[test]
    fn parses_extra_hosts_as_docker() {
        let host = parse_add_host("db:10.0.0.5").unwrap();
        assert_eq!(
            (host.name.as_str(), host.address.to_string().as_str()),
            ("db", "10.0.0.5")
        );
        let host = parse_add_host("v6=[::1]").unwrap();
        assert_eq!(host.address.to_string(), "::1");
        assert!(parse_add_host("db").is_err());
        assert!(
            parse_add_host("db:nowhere")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(
            parse_add_host("gw:host-gateway")
                .unwrap_err()
                .contains("host-gateway")
        );
    }
}
