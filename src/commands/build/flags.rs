//! The `docker build` flags that scripts pass to `rbuild build` besides the usual ones:
//! `-q`, `--call`, `--check`, `--allow`, the sandbox flags of RUN steps, and the
//! environment docker build reads (`BUILDKIT_PROGRESS`, `BUILDX_*`).

use clap::{Args, ValueEnum};
use miette::Result;
use rbuild_runtime::{ExtraHost, Rlimit};

use super::ProgressArg;
use crate::commands::run::flags::parse_add_host;
use crate::size::parse_size;

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
    /// `RUN --security=insecure`: accepted, but rbuild does not run insecure steps yet
    #[value(name = "security.insecure")]
    SecurityInsecure,
}

/// Flags of `docker build` that change what the command does or prints.
#[derive(Debug, Args)]
pub struct ModeArgs {
    /// Print nothing but the image id (on stdout) and errors; the same as `--progress quiet`
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// What to do instead of building, as buildx's `--call`: `check` (as `rbuild check`),
    /// `outline` (the build arguments and secrets of the target), `targets` (the stages)
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = CallArg::Build)]
    pub call: CallArg,
    /// Short for `--call check`
    #[arg(long)]
    pub check: bool,
    /// Allow an entitlement (`network.host`, `security.insecure`), as docker build's flag
    #[arg(long = "allow", value_enum, value_name = "ENTITLEMENT")]
    pub allow: Vec<EntitlementArg>,
}

impl ModeArgs {
    pub fn call(&self) -> CallArg {
        if self.check {
            CallArg::Check
        } else {
            self.call
        }
    }
}

/// The sandbox of every RUN step, as `docker build`'s flags set it.
#[derive(Debug, Args)]
pub struct RunStepArgs {
    /// Add a line to /etc/hosts of every RUN step (`NAME:IP` or `NAME=IP`); may be repeated
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// A resource limit of every RUN step (`nofile=1024:2048`, `nproc=512`; -1 for
    /// unlimited); may be repeated
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. `128m`) [default: 64m]
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Cgroup under which each RUN step gets its own, relative to the hierarchy's root
    /// [default: rbuild]
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    pub cgroup_parent: Option<String>,
}

/// What [`RunStepArgs`] asks of each RUN step.
#[derive(Debug, Default)]
pub struct RunStepOptions {
    pub extra_hosts: Vec<ExtraHost>,
    pub rlimits: Vec<Rlimit>,
    pub shm_size: Option<u64>,
    /// Relative to the hierarchy's root: docker's absolute form (`/ci-builds`) means the
    /// same there.
    pub cgroup_parent: Option<String>,
}

impl RunStepArgs {
    /// Parsed as `rbuild run` parses the same flags.
    pub fn parse(&self) -> Result<RunStepOptions> {
        let extra_hosts = self
            .add_host
            .iter()
            .map(|text| parse_add_host(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| miette::miette!(help = "write `--add-host NAME:IP`", "--add-host: {e}"))?;
        let rlimits = self
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
        let shm_size = match self.shm_size.as_deref() {
            None => None,
            Some(text) => match parse_size(text) {
                Ok(0) => None,
                Ok(size) => Some(size),
                Err(e) => {
                    return Err(miette::miette!(
                        help = "give a size such as `128m` or `1g`",
                        "--shm-size: {e}"
                    ));
                }
            },
        };
        let cgroup_parent = match self.cgroup_parent.as_deref() {
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
    fn quiet_wins_over_auto_and_refuses_other_modes() {
        assert_eq!(
            progress(ProgressArg::Auto, true).unwrap(),
            ProgressArg::Quiet
        );
        assert!(progress(ProgressArg::Plain, true).is_err());
    }
}
