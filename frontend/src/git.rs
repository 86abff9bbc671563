//! Git sources of `ADD`, as BuildKit writes them: `https://host/repo.git#ref:subdir`,
//! `git@host:org/repo.git#ref`, `git://host/repo.git`, `ssh://…`, `github.com/org/repo`,
//! or the query form `https://host/repo.git?ref=v1&subdir=docs&checksum=<commit>`.
//!
//! The remote is fetched on the host by rbuild's builder with the system's `git`, so what
//! the Dockerfile may name is narrowed here: only the network transports (never `file://`,
//! `ext::` or a local path), no remote that reads as an option, and a sub-directory that
//! stays inside the checkout.

use serde::Serialize;

/// A git repository at a ref, and the part of it an `ADD` copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitSource {
    /// What `git fetch` is given: the URL without fragment or query.
    pub remote: String,
    /// A branch, tag or commit; `None` for the remote's HEAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A directory of the checkout (relative, clean); `None` for all of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// The commit the ref must resolve to (`--checksum` or `checksum=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// `--keep-git-dir` (or `keep-git-dir=true`): the `.git` directory is copied too.
    pub keep_git_dir: bool,
    /// Whether the commit's submodules are fetched and checked out too (recursively), as
    /// BuildKit does unless `submodules=false`. Always in the op's digest: it decides
    /// what the checkout holds.
    pub submodules: bool,
}

impl GitSource {
    /// Whether an ADD source names a git repository (as Docker's CLI tells them).
    pub fn is_git(source: &str) -> bool {
        let base = source.split(['#', '?']).next().unwrap_or(source);
        source.starts_with("git://")
            || source.starts_with("git@")
            || source.starts_with("ssh://")
            || source.starts_with("github.com/")
            || ((source.starts_with("https://") || source.starts_with("http://"))
                && base.trim_end_matches('/').ends_with(".git"))
    }

    /// Parses a source [`GitSource::is_git`] accepts; the error says what is wrong.
    pub fn parse(source: &str) -> Result<GitSource, String> {
        let (base, fragment) = match source.split_once('#') {
            Some((base, fragment)) => (base, Some(fragment)),
            None => (source, None),
        };
        let scp_like = base.starts_with("git@");
        let (url, query) = match base.split_once('?').filter(|_| !scp_like) {
            Some((url, query)) => (url, Some(query)),
            None => (base, None),
        };
        let remote = match url.strip_prefix("github.com/") {
            Some(path) => format!("https://github.com/{path}"),
            None => url.to_owned(),
        };
        if remote.starts_with('-') || remote.chars().any(char::is_whitespace) {
            return Err(format!("`{remote}` is not a git remote"));
        }
        let mut git = GitSource {
            remote,
            reference: None,
            subdir: None,
            checksum: None,
            keep_git_dir: false,
            submodules: true,
        };
        match (fragment, query) {
            (Some(_), Some(_)) => {
                return Err(
                    "give the ref and sub-directory either after `#` or as `?ref=…&subdir=…`, not both"
                        .into(),
                );
            }
            (Some(fragment), None) => {
                let (reference, subdir) = match fragment.split_once(':') {
                    Some((reference, subdir)) => (reference, Some(subdir)),
                    None => (fragment, None),
                };
                git.reference = Some(reference.to_owned()).filter(|r| !r.is_empty());
                git.subdir = subdir.map(clean_subdir).transpose()?.flatten();
            }
            (None, Some(query)) => {
                for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    match key {
                        "ref" | "branch" | "tag" => {
                            git.reference = Some(value.to_owned()).filter(|v| !v.is_empty());
                        }
                        "subdir" => git.subdir = clean_subdir(value)?,
                        "checksum" | "commit" => git.checksum = Some(commit(value)?),
                        "keep-git-dir" => git.keep_git_dir = boolean(key, value)?,
                        "submodules" => git.submodules = boolean(key, value)?,
                        _ => {
                            return Err(format!(
                                "unknown git source parameter `{key}` (known: ref, branch, tag, subdir, checksum, commit, keep-git-dir, submodules)"
                            ));
                        }
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(reference) = &git.reference
            && (reference.starts_with('-') || reference.contains(".."))
        {
            return Err(format!("`{reference}` is not a git ref"));
        }
        Ok(git)
    }

    /// As written in messages and history: the remote, `#ref:subdir` when given.
    pub fn display(&self) -> String {
        let mut text = self.remote.clone();
        if self.reference.is_some() || self.subdir.is_some() {
            text.push('#');
            text.push_str(self.reference.as_deref().unwrap_or(""));
            if let Some(subdir) = &self.subdir {
                text.push(':');
                text.push_str(subdir);
            }
        }
        text
    }
}

/// A commit as `--checksum` gives it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn commit(value: &str) -> Result<String, String> {
    let hex = value.len() == 40 || value.len() == 64;
    if hex
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "`{value}` is not a commit: a git source's checksum is the full commit hash (40 hex digits)"
        ))
    }
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("`{key}` expects true or false, not `{value}`")),
    }
}

/// The sub-directory relative and clean; one that leaves the checkout (`..`) is refused
/// (BuildKit's 2026 advisory: a `#ref:subdir` read outside the checkout).
fn clean_subdir(subdir: &str) -> Result<Option<String>, String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "the sub-directory `{subdir}` leaves the repository; name a directory inside it"
                ));
            }
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart() {
        for git in [
            "https://github.com/moby/buildkit.git",
            "https://host/repo.git#v1:docs",
            "http://127.0.0.1:9418/r.git?ref=main",
            "git@github.com:org/repo.git",
            "git://127.0.0.1/repo.git",
            "ssh://git@host/repo.git",
            "github.com/org/repo",
        ] {
            assert!(GitSource::is_git(git), "{git}");
        }
        for not in [
            "https://example.com/file.tar.gz",
            "app.git",
            "https://host/x.git.tar",
        ] {
            assert!(!GitSource::is_git(not), "{not}");
        }
    }

    #[test]
    fn fragments_and_queries() {
        let git = GitSource::parse("https://host/repo.git#v1.2:docs/./api/").unwrap();
        assert_eq!(git.remote, "https://host/repo.git");
        assert_eq!(git.reference.as_deref(), Some("v1.2"));
        assert_eq!(git.subdir.as_deref(), Some("docs/api"));
        assert_eq!(git.display(), "https://host/repo.git#v1.2:docs/api");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let git = GitSource::parse(&format!(
            "https://host/repo.git?tag=v2&subdir=src&checksum={commit}&keep-git-dir=true"
        ))
        .unwrap();
        assert_eq!(
            (git.reference.as_deref(), git.subdir.as_deref()),
            (Some("v2"), Some("src"))
        );
        assert_eq!(git.checksum.as_deref(), Some(commit));
        assert!(git.keep_git_dir);
        assert!(git.submodules);
        let git = GitSource::parse("https://host/repo.git?submodules=false").unwrap();
        assert!(!git.submodules);
        let git = GitSource::parse("git@github.com:org/repo.git#main").unwrap();
        assert_eq!(git.remote, "git@github.com:org/repo.git");
        assert_eq!(
            GitSource::parse("github.com/org/repo").unwrap().remote,
            "https://github.com/org/repo"
        );
    }

    #[test]
    fn escapes_and_injections_are_refused() {
        for (source, error) in [
            ("https://host/r.git#main:../../etc", "leaves the repository"),
            (
                "https://host/r.git?subdir=a/../../b",
                "leaves the repository",
            ),
            ("https://host/r.git#--upload-pack=touch", "is not a git ref"),
            ("https://host/r.git#a..b", "is not a git ref"),
            ("https://host/r.git?ref=x#y", "not both"),
            (
                "https://host/r.git?colour=red",
                "unknown git source parameter `colour`",
            ),
            ("https://host/r.git?checksum=abc", "is not a commit"),
            ("https://host/r.git?submodules=maybe", "submodules"),
        ] {
            let err = GitSource::parse(source).unwrap_err();
            assert!(err.contains(error), "{source}: {err}");
        }
    }
}
