//! The `docker build` flags that scripts pass to `rbuild build` besides the usual ones:
//! `-q`, `--call`, `--check`, `--allow`, the sandbox flags of RUN steps, and the
//! environment docker build reads (`BUILDKIT_PROGRESS`). The flags themselves are fields
//! of `BuildArgs`.

use clap::ValueEnum;
use miette::Result;
use rbuild_runtime::{ExtraHost, Rlimit};

use super::{BuildArgs, ProgressArg};
use crate::commands::run::flags::parse_add_host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallArg {
    /// Build the image (the default)
    Build,
    /// Check the Dockerfile without building, as `rbuild check`
    Check,
    /// Print the target's build arguments (with defaults and descriptions) and secrets
    Outline,
    /// List the stages, with the descriptions of the `# NAME ...` comments above their FROM
    Targets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EntitlementArg {
    /// `RUN --network=host`: allowed without it in rbuild (the host's network is already
    /// RUN's default); accepted for docker's scripts
    #[value(name = "network.host")]
    NetworkHost,
    /// `RUN --security=insecure`: such steps run privileged (every capability, no seccomp
    /// profile, no masked paths, the host's devices), as `docker run --privileged`
    #[value(name = "security.insecure")]
    SecurityInsecure,
}

/// What the sandbox flags (`--add-host`, `--ulimit`, `--shm-size`, `--cgroup-parent`) ask
/// of each RUN step.
#[derive(Debug, Default)]
pub struct RunStepOptions {
    pub extra_hosts: Vec<ExtraHost>,
    pub rlimits: Vec<Rlimit>,
    pub shm_size: Option<u64>,
    /// Relative to the hierarchy's root: docker's absolute form (`/ci-builds`) means the
    /// same there.
    pub cgroup_parent: Option<String>,
}

/// `--call`, with `--check` its shorthand.
pub fn call(args: &BuildArgs) -> CallArg {
    if args.check {
        CallArg::Check
    } else {
        args.call
    }
}

/// The sandbox flags, parsed as `rbuild run` parses the same flags.
pub fn run_steps(args: &BuildArgs) -> Result<RunStepOptions> {
    let extra_hosts = args
        .add_host
        .iter()
        .map(|text| parse_add_host(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette::miette!(help = "write `--add-host NAME:IP`", "--add-host: {e}"))?;
    let rlimits = args
        .ulimit
        .iter()
        .map(|text| Rlimit::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            miette::miette!(
                help = "write e.g. `--ulimit nofile=1024:2048`",
                "--ulimit: {e}"
            )
        })?;
    let shm_size = crate::size::shm_size(args.shm_size.as_deref())?;
    let cgroup_parent = match args.cgroup_parent.as_deref() {
        None => None,
        Some(text) => {
            let relative = text.trim_start_matches('/');
            if relative.is_empty() || relative.split('/').any(|part| part == "..") {
                return Err(miette::miette!(
                    help = "name a cgroup below the hierarchy's root, e.g. `--cgroup-parent ci/builds`",
                    "--cgroup-parent `{text}`: not a cgroup path"
                ));
            }
            Some(relative.to_owned())
        }
    };
    Ok(RunStepOptions {
        extra_hosts,
        rlimits,
        shm_size,
        cgroup_parent,
    })
}

/// `--platform` (else `RBUILD_PLATFORM`, else `DOCKER_DEFAULT_PLATFORM`): the platforms to
/// build for, comma-separated or repeated, normalized as containerd does (`local` is this
/// machine's), each once; empty for this machine's. A RUN step for another architecture
/// runs emulated.
pub fn platforms(flag: &[String]) -> Result<Vec<rbuild_frontend::Platform>> {
    let (values, origin) = if flag.is_empty() {
        let from_env = ["RBUILD_PLATFORM", "DOCKER_DEFAULT_PLATFORM"]
            .into_iter()
            .find_map(|name| Some((std::env::var(name).ok().filter(|v| !v.is_empty())?, name)));
        match from_env {
            Some((value, name)) => (vec![value], name),
            None => return Ok(Vec::new()),
        }
    } else {
        (flag.to_vec(), "--platform")
    };
    let mut platforms: Vec<rbuild_frontend::Platform> = Vec::new();
    for text in values.iter().flat_map(|value| value.split(',')) {
        let platform = match text.trim() {
            "local" => rbuild_frontend::Platform::default(),
            text => rbuild_frontend::Platform::parse(text).map_err(|message| {
                miette::miette!(
                    help = "name a platform as `os/architecture[/variant]`, e.g. `linux/arm64`",
                    "{origin}: {message}"
                )
            })?,
        };
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

/// The progress to show: `-q` means quiet (and refuses another explicit mode, as buildx
/// does); otherwise `BUILDKIT_PROGRESS` replaces `auto`, as it does for docker build.
pub fn progress(progress: ProgressArg, quiet: bool) -> Result<ProgressArg> {
    if quiet {
        return match progress {
            ProgressArg::Auto | ProgressArg::Quiet => Ok(ProgressArg::Quiet),
            other => Err(miette::miette!(
                help = "leave out `--progress`, or `-q`",
                "`--progress {}` and `--quiet` cannot be used together",
                other
                    .to_possible_value()
                    .expect("no variant is skipped")
                    .get_name()
            )),
        };
    }
    if progress != ProgressArg::Auto {
        return Ok(progress);
    }
    match std::env::var("BUILDKIT_PROGRESS") {
        Ok(value) if !value.is_empty() => ProgressArg::from_str(&value, true).map_err(|_| {
            miette::miette!(
                help = "set it to `auto`, `plain`, `tty`, `quiet` or `rawjson`, or unset it",
                "BUILDKIT_PROGRESS: unknown progress mode `{value}`"
            )
        }),
        _ => Ok(progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_normalized_as_containerd_does() {
        for (given, normal) in [
            ("linux/amd64", "linux/amd64"),
            ("amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm/v7", "linux/arm/v7"),
        ] {
            let parsed = platforms(&[given.to_owned()]).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].to_string(), normal, "{given}");
        }
        let same = platforms(&["linux/arm64,aarch64".to_owned()]).unwrap();
        assert_eq!(same.len(), 1);
        let two = platforms(&["linux/amd64,linux/arm64".to_owned(), "arm64".to_owned()]);
        let two: Vec<String> = two.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(two, ["linux/amd64", "linux/arm64"]);
        assert!(platforms(&["linux//x".to_owned()]).is_err());
    }

    #[test]
    fn quiet_wins_over_auto_and_refuses_other_modes() {
        assert_eq!(
            progress(ProgressArg::Auto, true).unwrap(),
            ProgressArg::Quiet
        );
        assert!(progress(ProgressArg::Plain, true).is_err());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttestFormatArg {
    /// Attestation manifests in the image's index (BuildKit's form)
    Index,
    /// OCI 1.1 referrers of the image
    Oci,
}
