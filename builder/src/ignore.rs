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
            // The pattern may match the path itself or any of its parent directories.
            let matched =
                (1..=segments.len()).any(|len| matches(&pattern.segments, &segments[..len]));
            if matched {
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

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                // `**` inside a segment behaves like `*` there.
                let segment_pattern = first.replace("**", "*");
                glob::matches(&segment_pattern, segment).unwrap_or(false)
                    && matches(rest, path_rest)
            }
            None => false,
        },
    }
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
}
