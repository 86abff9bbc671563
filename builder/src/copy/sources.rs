//! Which files a COPY or ADD names: sources resolved in the source root, wildcards
//! expanded, `.dockerignore` and `--exclude` applied, `--parents` pivots.

use std::fs;

use super::{CopyError, CopyRequest, RemoteFile};
use crate::glob;
use crate::resolve::resolve_in_root;

/// The sources `req` names, wildcards expanded, each with how many leading directories
/// `--parents` drops from it. A wildcard that matches nothing is fine as long as something
/// else matched.
pub(super) fn matched(req: &CopyRequest<'_>) -> Result<Vec<(String, usize)>, CopyError> {
    let mut matched: Vec<(String, usize)> = Vec::new();
    for source in req.sources {
        let depth = if req.parents { pivot_depth(source) } else { 0 };
        if req.remote(source).is_some() {
            // A URL is never a pattern, even with a `?` in its query string.
            matched.push((source.clone(), 0));
        } else if glob::has_wildcards(source) {
            let found = glob::expand(req.source_root, source)?;
            matched.extend(
                found
                    .into_iter()
                    .filter(|rel| !req.is_excluded(rel))
                    .map(|rel| (rel, depth)),
            );
        } else {
            matched.push((source.clone(), depth));
        }
    }
    Ok(matched)
}

impl CopyRequest<'_> {
    pub(super) fn remote(&self, source: &str) -> Option<&RemoteFile> {
        self.remote.iter().find(|remote| remote.url == source)
    }

    pub(super) fn is_excluded(&self, rel: &str) -> bool {
        self.excluded_by(rel).is_some()
    }

    /// `source` is missing: the error, with the closest name in its directory (one that
    /// is not excluded) when one is likely what was meant.
    pub(super) fn not_found(&self, source: &str) -> CopyError {
        let clean = source.trim_start_matches('/');
        let (dir, name) = match clean.rsplit_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", clean),
        };
        let suggestion = (!glob::has_wildcards(source) && !name.is_empty())
            .then(|| resolve_in_root(self.source_root, dir, true).ok())
            .flatten()
            .and_then(|host| fs::read_dir(host).ok())
            .and_then(|entries| {
                let names: Vec<String> = entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|entry| {
                        let rel = if dir.is_empty() {
                            entry.clone()
                        } else {
                            format!("{dir}/{entry}")
                        };
                        !self.is_excluded(&rel)
                    })
                    .collect();
                let closest = crate::suggest::closest(name, names.iter().map(String::as_str))?;
                Some(if dir.is_empty() {
                    closest.to_owned()
                } else {
                    format!("{dir}/{closest}")
                })
            });
        CopyError::NotFound {
            path: source.to_owned(),
            origin: self.origin.to_owned(),
            suggestion,
        }
    }

    /// What excludes `rel`, if anything, as the user would name it.
    pub(super) fn excluded_by(&self, rel: &str) -> Option<&'static str> {
        if self.ignore.is_some_and(|ignore| ignore.is_excluded(rel)) {
            Some(".dockerignore")
        } else if self.exclude.is_some_and(|exclude| exclude.is_excluded(rel)) {
            Some("--exclude")
        } else {
            None
        }
    }

    /// Whether an excluded directory may still hold files a `!` pattern re-includes.
    pub(super) fn has_exceptions(&self) -> bool {
        self.ignore.is_some_and(|i| i.has_exceptions())
            || self.exclude.is_some_and(|e| e.has_exceptions())
    }
}

/// For `--parents`: how many leading directories of a source's path are dropped, i.e. the
/// position of a `/./` pivot (`src/./app/main.go` keeps `app/main.go`); none drops nothing.
fn pivot_depth(source: &str) -> usize {
    let mut depth = 0;
    for (index, component) in source.split('/').enumerate() {
        match component {
            "" => {}
            "." if index == 0 => {}
            "." => return depth,
            _ => depth += 1,
        }
    }
    0
}
