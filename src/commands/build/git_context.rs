//! A git repository as the build context, as with `docker build`:
//! `rbuild build https://host/org/repo.git#ref:dir`, `git@host:org/repo.git`,
//! `github.com/org/repo` and the `?ref=…&subdir=…` form. The commit the ref points at is
//! fetched, shallow, with the system's `git` into a scratch directory (file times the
//! commit's, so the context is the same whoever fetches it), and `-f` names the
//! Dockerfile inside the repository (by default `Dockerfile` of the sub-directory).

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_frontend::GitSource;

use super::stdin::Source;
use crate::commands::check::{dockerfile_path, read_dockerfile, read_ignore_file};

/// How `git` authenticates for the context: as for `ADD <git>`, the `GIT_AUTH_TOKEN`
/// secret (HTTPS) and the `--ssh default` agent (SSH remotes).
#[derive(Debug, Default)]
pub struct GitAuth {
    pub token: Option<String>,
    pub ssh_agent: Option<PathBuf>,
}

/// Whether the context argument names a git repository rather than a directory: as
/// docker's CLI decides, an existing directory wins.
pub fn is_git_context(context: &Path) -> bool {
    !context.is_dir() && context.to_str().is_some_and(GitSource::is_git)
}

/// Fetches the repository and reads the Dockerfile from it. `keep_git_dir` keeps `.git`
/// in the context (the build argument `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`, as BuildKit).
pub fn open(
    context: &Path,
    file: Option<&Path>,
    auth: GitAuth,
    keep_git_dir: bool,
) -> Result<Source> {
    let url = context.to_string_lossy();
    let mut source = GitSource::parse(&url).map_err(|message| {
        miette::miette!(
            help = "a git context is `https://host/org/repo.git#REF:DIR`, `git@host:org/repo.git#REF` or `github.com/org/repo`",
            "the context `{url}` is not a git repository rbuild can fetch: {message}"
        )
    })?;
    source.keep_git_dir = keep_git_dir;
    let scratch = tempfile::Builder::new()
        .prefix("rbuild-git-")
        .tempdir()
        .into_diagnostic()
        .wrap_err("cannot make a directory for the git context")?;
    let checkout = scratch.path().join("checkout");
    // As given: `display()` would leave out `?submodules=false` and the like.
    eprintln!("fetching the context from {url}");
    let fetched = rbuild_builder::fetch_git_context(&source, &checkout, auth.token, auth.ssh_agent)
        .map_err(|err| {
            miette::Report::from_err(err).wrap_err(format!(
                "cannot fetch the build context {}",
                source.display()
            ))
        })?;
    eprintln!("context: {} at commit {}", source.remote, fetched.commit);
    // `-f` names a file of the repository (of its sub-directory), never one of this
    // machine.
    let relative = match file {
        Some(file) if file.is_absolute() || file.components().any(|c| c.as_os_str() == "..") => {
            return Err(miette::miette!(
                help =
                    "give the Dockerfile's path inside the repository, e.g. `-f docker/Dockerfile`",
                "`-f {}`: with a git context, the Dockerfile is a file of the repository",
                file.display()
            ));
        }
        Some(file) => Some(file.to_owned()),
        None => None,
    };
    let path = match &relative {
        Some(file) => fetched.root.join(file),
        None => dockerfile_path(None, &fetched.root),
    };
    let inside = std::fs::canonicalize(&path)
        .ok()
        .zip(std::fs::canonicalize(&checkout).ok())
        .is_some_and(|(path, checkout)| path.starts_with(checkout) && path.is_file());
    if !inside {
        let name = relative.unwrap_or_else(|| PathBuf::from("Dockerfile"));
        return Err(miette::miette!(
            help = "name it with `-f PATH-IN-THE-REPOSITORY`",
            "commit {} of {} has no `{}`{}",
            fetched.commit,
            source.remote,
            name.display(),
            source
                .subdir
                .as_deref()
                .map(|dir| format!(" in `{dir}`"))
                .unwrap_or_default()
        ));
    }
    let dockerfile = read_dockerfile(&path)?;
    let ignore = read_ignore_file(&path, &fetched.root)?;
    // Messages name the file in the repository, not the scratch directory.
    let name = path
        .strip_prefix(&fetched.root)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    let (remote, subdir) = (source.remote.clone(), source.subdir.clone());
    let dockerfile_path = PathBuf::from(format!(
        "{}@{}:{name}",
        source.remote,
        short(&fetched.commit)
    ));
    let mut source = Source::fetched(dockerfile_path, dockerfile, fetched.root, ignore, scratch);
    source.context_time = Some(fetched.time);
    let origin = rbuild_builder::GitOrigin {
        remote: remote.clone(),
        commit: fetched.commit.clone(),
        subdir,
    };
    source.git = Some((origin, name));
    Ok(source)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
