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
        if req.remote(source).is_some() {
            // A URL is never a pattern, even with a `?` in its query string.
            matched.push((source.clone(), 0));
            continue;
        }
        let pivot = req.parents.then(|| split_pivot(source)).flatten();
        if !glob::has_wildcards(source) {
            let depth = pivot.map_or(0, |(prefix, _)| depth_of(&prefix));
            matched.push((source.clone(), depth));
            continue;
        }
        let found = match pivot {
            None => glob::expand(req.source_root, source)?
                .into_iter()
                .map(|rel| (rel, 0))
                .collect(),
            Some((prefix, rest)) => {
                // The pivot drops the directories the part before it matched, as many as
                // they are (`**/./` may match several).
                let mut found = Vec::new();
                for base in glob::expand(req.source_root, &prefix)? {
                    let depth = depth_of(&base);
                    found.extend(
                        glob::expand_below(req.source_root, &base, &rest)?
                            .into_iter()
                            .map(|rel| (rel, depth)),
                    );
                }
                found
            }
        };
        matched.extend(found.into_iter().filter(|(rel, _)| !req.is_excluded(rel)));
    }
    Ok(matched)
}

/// For `--parents`: a source split at its `/./` pivot, into the directories that are
/// dropped and the path that is kept (`src/./app/main.go` keeps `app/main.go`). A leading
/// `./` is no pivot.
fn split_pivot(source: &str) -> Option<(String, String)> {
    let components: Vec<&str> = source.split('/').collect();
    let at = (1..components.len()).find(|&index| components[index] == ".")?;
    Some((components[..at].join("/"), components[at + 1..].join("/")))
}

/// How many directories a relative path names (`./src//a` is 2).
fn depth_of(path: &str) -> usize {
    path.split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .count()
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
        // There, but a symlink to what is not.
        if let Ok(link) = resolve_in_root(self.source_root, clean, false)
            && let Ok(target) = fs::read_link(&link)
        {
            return CopyError::DanglingLink {
                path: source.to_owned(),
                target: target.display().to_string(),
                origin: self.origin.to_owned(),
            };
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_pivot() {
        let pivot = |source: &str| split_pivot(source);
        assert_eq!(
            pivot("src/./app/main.go"),
            Some(("src".to_owned(), "app/main.go".to_owned()))
        );
        assert_eq!(
            pivot("./src/./a/*.go"),
            Some(("./src".to_owned(), "a/*.go".to_owned()))
        );
        assert_eq!(pivot("src/."), Some(("src".to_owned(), String::new())));
        assert_eq!(pivot("./src/app"), None);
        assert_eq!(pivot("src/app"), None);
        assert_eq!(depth_of("./src//a"), 2);
    }
}
