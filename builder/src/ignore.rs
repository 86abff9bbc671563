//! `.dockerignore` with Docker's matching: patterns are anchored at the context root, a
//! leading `/` is dropped and paths are cleaned, `**` matches any number of directories,
//! `!` re-includes, the last matching pattern wins, and a pattern that matches a directory
//! matches everything below it. `#` starts a comment only in the first column.

use crate::glob;

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exclude: bool,
}

/// The compiled patterns of an ignore file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

impl IgnoreMatcher {
    /// Parses an ignore file's text.
    pub fn parse(text: &str) -> IgnoreMatcher {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclude = !pattern.starts_with('!');
            if !exclude {
                pattern = pattern[1..].trim();
            }
            let segments = clean(pattern);
            if segments.is_empty() {
                continue;
            }
            patterns.push(Pattern { segments, exclude });
        }
        let has_exceptions = patterns.iter().any(|p| !p.exclude);
        IgnoreMatcher {
            patterns,
            has_exceptions,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `!` patterns exist, so an excluded directory may still hold included files.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether the context path `path` (relative, `/`-separated) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if segments.is_empty() {
            return false;
        }
        let mut excluded = false;
        for pattern in &self.patterns {
            if matches_path_or_parent(&pattern.segments, &segments) {
                excluded = pattern.exclude;
            }
        }
        excluded
    }
}

/// Cleans a pattern like Go's `filepath.Clean` and splits it into segments.
fn clean(pattern: &str) -> Vec<String> {
    let mut segments: Vec<String> = Vec::new();
    for segment in pattern.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other.to_owned()),
        }
    }
    segments
}

/// Whether `pattern` matches `path` or one of its parent directories.
///
/// Dynamic programming over (pattern segment, path segment), so each segment glob runs at
/// most once per pair: trying every split for every `**` is exponential in the number of
/// `**`s (`**/a/**/a/**/…` against a deep path never finished).
fn matches_path_or_parent(pattern: &[String], path: &[&str]) -> bool {
    let width = path.len() + 1;
    // rest[j]: pattern[i..] matches path[j..len] for some len >= max(j, 1), i.e. the path
    // or a parent directory (never the empty path), for the `i` of the current round.
    let mut rest: Vec<bool> = (0..width).map(|j| j >= 1).collect();
    for segment in pattern.iter().rev() {
        let mut current = vec![false; width];
        if segment == "**" {
            // `**` takes zero or more segments: here, or one more and `**` again.
            for j in (0..width).rev() {
                current[j] = rest[j] || (j < path.len() && current[j + 1]);
            }
        } else {
            // `**` inside a segment behaves like `*` there.
            let segment_pattern = segment.replace("**", "*");
            for j in 0..path.len() {
                current[j] =
                    rest[j + 1] && glob::matches(&segment_pattern, path[j]).unwrap_or(false);
            }
        }
        rest = current;
    }
    rest[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let m = IgnoreMatcher::parse(
            "# comment\n\u{feff}\n/node_modules\n*.log\n!important.log\nbuild/**\n**/*.tmp\n  docs/ \n",
        );
        assert!(m.is_excluded("node_modules"));
        assert!(
            m.is_excluded("node_modules/pkg/index.js"),
            "below an excluded directory"
        );
        assert!(!m.is_excluded("src/node_modules"), "anchored at the root");
        assert!(m.is_excluded("debug.log"));
        assert!(!m.is_excluded("important.log"), "the last match wins");
        assert!(
            !m.is_excluded("logs/debug.log"),
            "`*` does not cross directories"
        );
        assert!(m.is_excluded("build/out/a.o"));
        assert!(m.is_excluded("a/b/c/x.tmp"));
        assert!(m.is_excluded("x.tmp"), "`**` matches zero directories");
        assert!(m.is_excluded("docs/index.md"));
        assert!(!m.is_excluded("src/main.rs"));
        assert!(m.has_exceptions());
    }

    #[test]
    fn comments_only_in_the_first_column_and_cleaning() {
        let m = IgnoreMatcher::parse(" #notacomment\na/../b\n./c/./d\n");
        assert!(m.is_excluded("#notacomment"));
        assert!(m.is_excluded("b"));
        assert!(m.is_excluded("c/d"));
        assert!(!m.is_excluded("a"));
    }

    #[test]
    fn many_double_stars_match_deep_paths_quickly() {
        // Trying every split for every `**` took ~C(52, 12) steps for the first pair.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let deep = vec!["a"; 40].join("/");
            let stars = IgnoreMatcher::parse(&format!("{}x", "**/".repeat(12)));
            let alternating = IgnoreMatcher::parse(&format!("{}c", "**/a/".repeat(8)));
            let ends_in_c = format!("{deep}/c");
            let _ = done.send([
                stars.is_excluded(&deep),
                alternating.is_excluded(&deep),
                alternating.is_excluded(&ends_in_c),
            ]);
        });
        let results = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("matching finished in time");
        assert_eq!(results, [false, false, true]);
    }

    #[test]
    fn patterns_match_paths_and_their_parents() {
        let m = IgnoreMatcher::parse("a/**/c\n**/d\ne/*\n");
        assert!(m.is_excluded("a/c"));
        assert!(m.is_excluded("a/b/b/c"));
        assert!(m.is_excluded("a/b/c/inside"));
        assert!(!m.is_excluded("a"));
        assert!(!m.is_excluded("a/b"));
        assert!(m.is_excluded("d"));
        assert!(m.is_excluded("x/y/d/z"));
        assert!(m.is_excluded("e/f/g"));
        assert!(!m.is_excluded("e"));
    }
}
