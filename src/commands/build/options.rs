//! What `rbuild build`'s flags ask for, checked before anything runs: the build's options,
//! its source (context and Dockerfile), names, exporters and caches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::Result;
use rbuild_builder::{BuildOptions, CacheTarget, SecretSource, SshSource};
use rbuild_store::ImageName;

use super::{BuildArgs, attest, debug, epoch, flags, git_context, stdin};
use crate::commands::outputs::{Output, parse_cache, parse_outputs};
use crate::commands::{key_value, network, parse_name};

/// A build as its flags describe it.
pub(super) struct Plan {
    pub opts: BuildOptions,
    /// Where the context and Dockerfile came from (a directory, stdin, a git remote).
    pub source: stdin::Source,
    pub tags: Vec<ImageName>,
    pub outputs: Vec<Output>,
    pub cache_from: Vec<CacheTarget>,
    pub cache_to: Vec<CacheTarget>,
    /// `--cgroup-parent`: where the RUN steps' cgroups go.
    pub cgroup_parent: Option<String>,
}

/// Reads and checks every flag; opens the context (fetching a git context).
pub(super) fn plan(args: &mut BuildArgs) -> Result<Plan> {
    // As docker does: a build that fails must not leave the id (or metadata) of an earlier
    // build where a script would take it for this one's.
    for path in [&args.iidfile, &args.metadata_file].into_iter().flatten() {
        remove_stale(path)?;
    }
    args.progress = flags::progress(args.progress, args.quiet)?;
    let platforms = flags::platforms(&args.platform)?;
    let tags = args
        .tags
        .iter()
        .map(|t| parse_name(t))
        .collect::<Result<Vec<_>>>()?;
    let outputs = parse_outputs(&args.outputs)?;
    if platforms.len() > 1
        && let Some(what) = outputs.iter().find_map(Output::single_platform_only)
    {
        return Err(miette::miette!(
            help = "`-o type=oci` writes the index of every platform, `-o type=local` a directory per platform",
            "`-o type={what}` holds one platform, and this build is for {}",
            platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut build_args: BTreeMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| key_value(a))
        .collect();
    let secrets = args
        .secrets
        .iter()
        .map(|text| parse_secret(text))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let agent = std::env::var_os("SSH_AUTH_SOCK")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let ssh = args
        .ssh
        .iter()
        .map(|text| crate::commands::ssh::parse(text, agent.clone()))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let source = open_source(args, &build_args, &secrets, &ssh)?;
    let run_steps = flags::run_steps(args)?;
    let source_date_epoch = epoch::resolve(
        &mut build_args,
        &source.dockerfile,
        &source.dockerfile_path,
        source.context_time,
    )?;
    let opts = BuildOptions {
        dockerfile: source.dockerfile.clone(),
        context: source.context.clone(),
        build_args,
        target: args.target.clone(),
        platforms,
        tags: tags.clone(),
        network: network(args.network),
        limits: crate::commands::parse_limits(args.memory.as_deref(), args.pids_limit, args.cpus)?,
        source_date_epoch,
        ignore: source.ignore.clone(),
        no_cache: args.no_cache,
        keep_failed_step: args.on_error == debug::OnError::Shell && debug::can_open_shell(),
        labels: args
            .labels
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<_>>()?,
        no_cache_filter: args.no_cache_filter.clone(),
        secrets,
        pull: args.pull,
        cache_from: Vec::new(),
        named_contexts: args
            .build_contexts
            .iter()
            .map(|text| crate::commands::build_context::parse(text))
            .collect::<Result<_>>()?,
        ssh,
        extra_hosts: run_steps.extra_hosts,
        rlimits: run_steps.rlimits,
        shm_size: run_steps.shm_size,
        allow_insecure: args
            .allow
            .contains(&flags::EntitlementArg::SecurityInsecure),
        attest: attest::options(args, &source)?,
        annotations: attest::annotations(&args.annotations)?,
    };
    attest::check_annotations(&opts)?;
    let caches = |flag, texts: &[String]| {
        texts
            .iter()
            .map(|c| parse_cache(c, flag))
            .collect::<Result<Vec<_>>>()
    };
    if args.push && tags.is_empty() {
        return Err(miette::miette!(
            help = "name the image with `-t REGISTRY/REPOSITORY:TAG`",
            "`--push` needs a name to push to"
        ));
    }
    Ok(Plan {
        opts,
        source,
        tags,
        outputs,
        cache_from: caches("--cache-from", &args.cache_from)?,
        cache_to: caches("--cache-to", &args.cache_to)?,
        cgroup_parent: run_steps.cgroup_parent,
    })
}

/// The context and Dockerfile: a git remote (fetched with the build's token and agent), a
/// directory, or standard input.
fn open_source(
    args: &BuildArgs,
    build_args: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretSource>,
    ssh: &BTreeMap<String, SshSource>,
) -> Result<stdin::Source> {
    if !git_context::is_git_context(&args.context) {
        // A URL that is neither a directory here nor a git remote rbuild fetches would be
        // looked for as a directory named like it.
        let text = args.context.to_string_lossy();
        if !args.context.exists()
            && let Some(scheme) = rbuild_frontend::url_scheme(&text)
        {
            return Err(miette::miette!(
                help = "rbuild builds a local directory, a git repository over https, ssh or git, or a tar on stdin; for a local repository, build its checkout (`git worktree add`, `git clone`)",
                "cannot build `{text}`: `{scheme}://` contexts are not supported"
            ));
        }
        return stdin::Source::open(&args.context, args.file.as_deref());
    }
    let auth = git_context::GitAuth {
        token: secrets
            .get("GIT_AUTH_TOKEN")
            .and_then(|secret| secret.read("GIT_AUTH_TOKEN").ok().flatten())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|token| token.trim().to_owned()),
        ssh_agent: match ssh.get("default") {
            Some(SshSource::Socket(socket)) => Some(socket.clone()),
            _ => None,
        },
    };
    let keep_git_dir = build_args
        .get("BUILDKIT_CONTEXT_KEEP_GIT_DIR")
        .is_some_and(|value| matches!(value.as_str(), "1" | "true"));
    git_context::open(&args.context, args.file.as_deref(), auth, keep_git_dir)
}

/// `--secret id=ID[,type=file|env][,src=FILE][,env=VAR]`, as buildx reads it: `src` (or
/// `source`) is a file, or with `type=env` a variable's name; `env=VAR` is a variable;
/// with neither, the variable named like the id. Values are read when a step mounts them.
fn parse_secret(text: &str) -> Result<(String, SecretSource)> {
    let mut kind = None;
    let (mut id, mut src, mut env) = (None, None, None);
    for field in text.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(miette::miette!(
                help = "write `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR`",
                "--secret `{text}`: `{field}` is not `key=value`"
            ));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" if value == "file" || value == "env" => kind = Some(value.to_owned()),
            "type" => {
                return Err(miette::miette!(
                    help = "the types are `file` and `env`",
                    "--secret `{text}`: unsupported secret type `{value}`"
                ));
            }
            "id" => id = Some(value.to_owned()),
            "src" | "source" => src = Some(value.to_owned()),
            "env" => env = Some(value.to_owned()),
            _ => {
                return Err(miette::miette!(
                    help = "the keys are `id`, `type`, `src` (or `source`) and `env`",
                    "--secret `{text}`: unknown key `{key}`"
                ));
            }
        }
    }
    let id = id.filter(|id| !id.is_empty()).ok_or_else(|| {
        miette::miette!(
            help = "write `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR`",
            "--secret `{text}`: `id=` is missing"
        )
    })?;
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => {
            return Err(miette::miette!(
                "--secret `{text}`: give either `src=` or `env=`, not both"
            ));
        }
        (Some("env"), Some(var), None) | (_, None, Some(var)) => SecretSource::Env(var),
        (_, Some(file), None) => SecretSource::File(PathBuf::from(file)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (_, None, None) => SecretSource::Env(id.clone()),
    };
    Ok((id, source))
}

/// `--label KEY=VALUE`; `KEY` alone is an empty value, as with docker.
fn parse_label(text: &str) -> Result<(String, String)> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(miette::miette!(
            help = "give a label as `--label KEY=VALUE` or `--label KEY`",
            "--label `{text}`: the key is empty"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// An earlier build's file at `path` made empty: a regular file is removed (as docker
/// does), a symlink's regular file emptied (the link stays); a FIFO or a device (a CI
/// job's reader, `/dev/null`) is left as it is, to be written into.
fn remove_stale(path: &Path) -> Result<()> {
    let failed = |err: std::io::Error| {
        miette::Report::from_err(err).wrap_err(format!(
            "cannot remove {} before the build (it would hold an earlier build's result)",
            path.display()
        ))
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.is_file() {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(failed(err)),
            _ => Ok(()),
        };
    }
    if meta.is_symlink() && std::fs::metadata(path).is_ok_and(|target| target.is_file()) {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_as_buildx_does() {
        let parse = |text| parse_secret(text).unwrap();
        assert_eq!(
            parse("id=npm,src=/home/me/.npmrc"),
            ("npm".into(), SecretSource::File("/home/me/.npmrc".into()))
        );
        assert_eq!(
            parse("id=npm,type=file,source=rc"),
            ("npm".into(), SecretSource::File("rc".into()))
        );
        assert_eq!(
            parse("id=aws,env=AWS_KEY"),
            ("aws".into(), SecretSource::Env("AWS_KEY".into()))
        );
        assert_eq!(
            parse("id=aws,type=env,src=AWS_KEY"),
            ("aws".into(), SecretSource::Env("AWS_KEY".into()))
        );
        assert_eq!(
            parse("id=TOKEN"),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        for bad in [
            "src=x",
            "id=a,type=ssh",
            "id=a,colour=red",
            "id=a,src=x,env=Y",
            "id",
        ] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }
}
