//! Checking and normalizing instruction values: image references, paths, ports, signals,
//! modes, and the Go-style formatting Docker uses in history entries.

use crate::HealthConfig;
use crate::instructions::duration::format_duration;
use crate::syntax::go_quote;

/// Normalizes an image reference: `:latest` is added when there is neither a tag nor a
/// digest (a `:` after the last `/` is a tag, so `localhost:5000/x` has none).
///
/// Deliberately simple for now: no lower-casing and no `docker.io/library/` prefix, so
/// `busybox` becomes `busybox:latest`, not `docker.io/library/busybox:latest`.
pub fn normalize_reference(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the image reference is empty".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@+".contains(*c)))
    {
        return Err(format!(
            "invalid character `{bad}` in image reference `{name}`"
        ));
    }
    if let Some((repository, digest)) = name.split_once('@') {
        let valid = digest
            .split_once(':')
            .is_some_and(|(algorithm, hex)| !algorithm.is_empty() && !hex.is_empty());
        if repository.is_empty() || !valid {
            return Err(format!("invalid digest in image reference `{name}`"));
        }
        return Ok(name.to_string());
    }
    let tail = name.rsplit('/').next().unwrap_or(name);
    if name.ends_with(['/', ':']) || tail.starts_with(':') {
        return Err(format!("invalid image reference `{name}`"));
    }
    if tail.contains(':') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

/// Cleans an absolute or relative slash path like Go's `path.Clean`.
pub(crate) fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path` made absolute against `base` (an absolute directory) and cleaned.
pub(crate) fn resolve_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!(
            "{}/{path}",
            if base.is_empty() { "/" } else { base }
        ))
    }
}

/// A COPY/ADD destination resolved against WORKDIR. A trailing `/` (and `.` or an empty
/// destination, which mean WORKDIR itself) is kept: it means "into this directory".
pub(crate) fn resolve_destination(workdir: &str, destination: &str) -> String {
    let destination = if destination.is_empty() || destination == "." {
        "./"
    } else {
        destination
    };
    let resolved = resolve_path(workdir, destination);
    let into = destination.ends_with('/') || destination.ends_with("/.");
    if into && !resolved.ends_with('/') {
        resolved + "/"
    } else {
        resolved
    }
}

/// EXPOSE's `[[ip:]host:]port[-end][/proto]` → `port/proto` entries.
pub(crate) fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (address, container) = match spec.rsplit_once(':') {
        Some((address, container)) => (Some(address), container),
        None => (None, spec),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port in `{spec}`"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" | "tcp" => "tcp",
        "udp" => "udp",
        "sctp" => "sctp",
        other => return Err(format!("invalid protocol `{other}` in `{spec}`")),
    };
    let (start, end) =
        port_range(port).ok_or_else(|| format!("invalid port `{port}` in `{spec}`"))?;
    if let Some(address) = address {
        // `host:container` or `ip:host:container`: only the host range is checked.
        let host = address.rsplit(':').next().unwrap_or(address);
        if !host.is_empty() && port_range(host).is_none() {
            return Err(format!("invalid host port `{host}` in `{spec}`"));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let (start, end) = (start.parse::<u16>().ok()?, end.parse::<u16>().ok()?);
    (start <= end).then_some((start, end))
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN",
    "RTMAX",
];

/// STOPSIGNAL: a non-zero number, or a signal name with or without `SIG`.
pub(crate) fn is_valid_signal(signal: &str) -> bool {
    if let Ok(number) = signal.parse::<u32>() {
        return number != 0;
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return true;
    }
    let offset = |rest: &str, max: u32| rest.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    name.strip_prefix("RTMIN+").is_some_and(|r| offset(r, 15))
        || name.strip_prefix("RTMAX-").is_some_and(|r| offset(r, 14))
}

/// `--chmod`: octal up to `7777`, or a symbolic mode such as `u+x,g-w`.
pub(crate) fn is_valid_chmod(mode: &str) -> bool {
    if !mode.is_empty() && mode.chars().all(|c| c.is_ascii_digit()) {
        return u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777);
    }
    !mode.is_empty()
        && mode.split(',').all(|clause| {
            let who_len = clause.find(|c| !"ugoa".contains(c)).unwrap_or(clause.len());
            let ops = &clause[who_len..];
            ops.starts_with(['+', '-', '=']) && ops.chars().all(|c| "+-=rwxXstugo".contains(c))
        })
}

/// Go's `%q` of a string slice: `["/bin/sh" "-c" "echo hi"]`.
pub(crate) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice: `[/bin/sh -c]`.
pub(crate) fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%+v` of Docker's health config, as BuildKit writes it into history.
pub(crate) fn health_history(health: &HealthConfig) -> String {
    format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(&health.test),
        format_duration(health.interval),
        format_duration(health.timeout),
        format_duration(health.start_period),
        format_duration(health.start_interval),
        health.retries
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_references() {
        assert_eq!(normalize_reference("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize_reference("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize_reference("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_reference("reg:5000/a/b:t").unwrap(),
            "reg:5000/a/b:t"
        );
        assert_eq!(normalize_reference("x@sha256:abc").unwrap(), "x@sha256:abc");
        assert_eq!(
            normalize_reference("Upper/Case").unwrap(),
            "Upper/Case:latest"
        );
        assert!(normalize_reference("a b").is_err());
        assert!(normalize_reference("x@").is_err());
        assert!(normalize_reference("x:").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c//"), "/a/c");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(resolve_path("/app", "sub/.."), "/app");
        assert_eq!(resolve_path("", "x"), "/x");
        assert_eq!(resolve_destination("/app", "."), "/app/");
        assert_eq!(resolve_destination("/app", ""), "/app/");
        assert_eq!(resolve_destination("/app", "dir/"), "/app/dir/");
        assert_eq!(resolve_destination("/app", "file"), "/app/file");
        assert_eq!(resolve_destination("/", "/"), "/");
        assert_eq!(resolve_destination("/app", "/abs/x/"), "/abs/x/");
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002/tcp").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(parse_port_spec("127.0.0.1:8080:80").unwrap(), ["80/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("abc").is_err());
        assert!(parse_port_spec("9-1").is_err());
    }

    #[test]
    fn signals_and_modes() {
        assert!(is_valid_signal("SIGKILL") && is_valid_signal("term") && is_valid_signal("9"));
        assert!(is_valid_signal("SIGRTMIN+3"));
        assert!(!is_valid_signal("SIGFOO") && !is_valid_signal("0"));
        assert!(is_valid_chmod("755") && is_valid_chmod("0") && is_valid_chmod("u+x,go-w"));
        assert!(!is_valid_chmod("8") && !is_valid_chmod("17777") && !is_valid_chmod("rwx"));
    }

    #[test]
    fn go_formatting() {
        let args = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "echo \"hi\"".to_string(),
        ];
        assert_eq!(go_quoted_list(&args), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        assert_eq!(go_list(&args[..2]), "[/bin/sh -c]");
        let health = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 3,
            ..Default::default()
        };
        assert_eq!(
            health_history(&health),
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"
        );
    }
}
