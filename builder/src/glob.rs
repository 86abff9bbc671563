//! Wildcards in COPY/ADD sources, with Go `filepath.Match` semantics as Docker uses them:
//! `*` any run of characters except `/`, `?` one character, `[a-z]` / `[^a-z]` classes,
//! `\` escapes the next character.

use std::fs;
use std::path::Path;

use crate::resolve::resolve_in_root;

#[derive(Debug, thiserror::Error)]
#[error("invalid pattern `{pattern}`")]
pub(crate) struct BadPattern {
    pub pattern: String,
}

pub(crate) fn has_wildcards(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether `name` (one path component) matches `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern {
        pattern: pattern.to_owned(),
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    let (matched, next) = class(&p, pi, n[ni]).ok_or_else(bad)?;
                    if matched {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let escaped = *p.get(pi + 1).ok_or_else(bad)?;
                    if ni < n.len() && n[ni] == escaped {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && c != '[' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        match star {
            Some((star_pi, star_ni)) if star_ni < n.len() && n[star_ni] != '/' => {
                star = Some((star_pi, star_ni + 1));
                pi = star_pi + 1;
                ni = star_ni + 1;
            }
            _ => {
                // Validate the rest of the pattern so a malformed class is an error, not a
                // silent mismatch.
                validate(&p[pi..]).ok_or_else(bad)?;
                return Ok(false);
            }
        }
    }
}

/// Matches `c` against the class starting at `p[start] == '['`; returns (matched, index
/// after the class), or `None` for a malformed class.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some('^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            hi = *p.get(i)?;
            if hi == '\\' {
                i += 1;
                hi = *p.get(i)?;
            }
            i += 1;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negated, i))
}

fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => i += 2,
            '[' => i = class(p, i, '\0')?.1,
            _ => i += 1,
        }
    }
    (i <= p.len()).then_some(())
}

/// Expands `pattern` (relative to `root`) into the paths that exist and match it, sorted,
/// relative to `root`, as Go's `filepath.Glob` does. A component without wildcards after
/// one with them (`*/b/f.txt`) is looked up below each match, and a match below which it
/// does not exist (a file `Dockerfile` gives `Dockerfile/b/f.txt`) is no match.
pub(crate) fn expand(root: &Path, pattern: &str) -> Result<Vec<String>, BadPattern> {
    expand_below(root, "", pattern)
}

/// [`expand`] below `base`, an existing path relative to `root` taken as it is (a name
/// with `*` in it is a name there, not a pattern). The matches include `base`.
pub(crate) fn expand_below(
    root: &Path,
    base: &str,
    pattern: &str,
) -> Result<Vec<String>, BadPattern> {
    let mut current = vec![base.to_owned()];
    for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if component == "**" {
            // Any number of directories, none included.
            let mut all = Vec::new();
            for base in &current {
                all.push(base.clone());
                descendant_dirs(root, base, &mut all);
            }
            current = all;
            continue;
        }
        let mut next = Vec::new();
        for base in &current {
            let joined = |name: &str| {
                if base.is_empty() {
                    name.to_owned()
                } else {
                    format!("{base}/{name}")
                }
            };
            if !has_wildcards(component) {
                next.push(joined(component));
                continue;
            }
            let Ok(dir) = resolve_in_root(root, base, true) else {
                continue;
            };
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if matches(component, &name)? {
                    next.push(joined(&name));
                }
            }
        }
        current = next;
    }
    current.retain(|rel| {
        resolve_in_root(root, rel, false).is_ok_and(|host| fs::symlink_metadata(host).is_ok())
    });
    Ok(current)
}

/// Every directory below `base` (relative to `root`), recursively, without following
/// symlinks.
fn descendant_dirs(root: &Path, base: &str, out: &mut Vec<String>) {
    let Ok(dir) = resolve_in_root(root, base, true) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let rel = if base.is_empty() {
            name
        } else {
            format!("{base}/{name}")
        };
        out.push(rel.clone());
        descendant_dirs(root, &rel, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_semantics() {
        let cases = [
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*b", "a/b", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("f*.go", "foo.go", true),
            ("f*.go", "foo.rs", false),
            ("*.txt", ".hidden.txt", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                matches(pattern, name).unwrap(),
                expected,
                "{pattern} vs {name}"
            );
        }
        assert!(matches("[", "a").is_err());
        assert!(matches("a[", "b").is_err());
    }

    #[test]
    fn expand_walks_directories() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/a")).unwrap();
        fs::write(dir.path().join("src/a/x.rs"), "").unwrap();
        fs::write(dir.path().join("src/a/y.txt"), "").unwrap();
        fs::write(dir.path().join("src/b.rs"), "").unwrap();
        assert_eq!(expand(dir.path(), "src/*/*.rs").unwrap(), ["src/a/x.rs"]);
        assert_eq!(expand(dir.path(), "src/*.rs").unwrap(), ["src/b.rs"]);
        assert_eq!(expand(dir.path(), "./src/b.rs").unwrap(), ["src/b.rs"]);
        assert!(expand(dir.path(), "nothing*").unwrap().is_empty());
        assert_eq!(
            expand(dir.path(), "**/*.rs").unwrap(),
            ["src/b.rs", "src/a/x.rs"]
        );
        assert_eq!(expand(dir.path(), "src/**/*.txt").unwrap(), ["src/a/y.txt"]);
    }

    #[test]
    fn expand_keeps_only_paths_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::create_dir_all(dir.path().join("c/b")).unwrap();
        fs::write(dir.path().join("a/b/f.txt"), "").unwrap();
        fs::write(dir.path().join("Dockerfile"), "").unwrap();
        // `Dockerfile/b/f.txt` and `c/b/f.txt` do not exist: they are no match.
        assert_eq!(expand(dir.path(), "*/b/f.txt").unwrap(), ["a/b/f.txt"]);
        assert_eq!(expand(dir.path(), "*/b").unwrap(), ["a/b", "c/b"]);
        assert_eq!(expand(dir.path(), "**/f.txt").unwrap(), ["a/b/f.txt"]);
        assert!(expand(dir.path(), "*/nothing").unwrap().is_empty());
    }
}
