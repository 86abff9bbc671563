//! `.dockerignore` and `--exclude` with Docker's matching (moby's patternmatcher): patterns
//! are anchored at the context root, a leading `/` is dropped and paths are cleaned, `!`
//! re-includes, the last matching pattern wins, and a pattern that matches a directory
//! matches everything below it. `#` starts a comment only in the first column.
//!
//! `**` follows Docker, not `.gitignore`: `dir/**` matches what is below `dir` but not
//! `dir` itself (which stays, empty), `**/x` and `a/**/x` match across any number of
//! directories, zero included, and a pattern that starts with `**` and has no other
//! wildcard matches by suffix (`**.log` matches `a/b.log`).

use crate::glob;

/// A line of an ignore file, or an `--exclude`, that cannot be a pattern. Docker refuses
/// the same lines.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error(
        "{}`!` alone is no pattern: write the pattern to re-include after it, like `!keep.txt`",
        at(*.line)
    )]
    LoneExclamation {
        /// The ignore file's line (1-based); `None` for an `--exclude`.
        line: Option<usize>,
    },
    #[error("{}invalid pattern `{pattern}`", at(*.line))]
    BadPattern {
        line: Option<usize>,
        pattern: String,
    },
}

fn at(line: Option<usize>) -> String {
    line.map_or_else(
        || "`--exclude`: ".to_owned(),
        |line| format!("line {line}: "),
    )
}

impl IgnoreError {
    /// The ignore file's line the problem is on (1-based), if it comes from a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            IgnoreError::LoneExclamation { line } | IgnoreError::BadPattern { line, .. } => *line,
        }
    }
}

/// How a pattern matches, as Docker compiles it: literal patterns compare whole paths, a
/// literal prefix before a final `**` and a literal suffix after a leading `**` compare
/// ends, everything else goes through the wildcard matcher.
#[derive(Debug, Clone)]
enum Kind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Wildcards(Vec<Token>),
}

#[derive(Debug, Clone)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[...]`, as written (brackets included).
    Class(Vec<char>),
    /// `**` before more pattern: nothing, or anything that ends with `/`.
    Dirs,
    /// `**` at the end: anything.
    Any,
}

#[derive(Debug, Clone)]
struct Pattern {
    kind: Kind,
    exclude: bool,
}

/// The compiled patterns of an ignore file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

impl IgnoreMatcher {
    /// Parses an ignore file's text; an error names the line.
    pub fn parse(text: &str) -> Result<IgnoreMatcher, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = text.lines().enumerate().filter_map(|(index, line)| {
            (!line.starts_with('#')).then_some((Some(index + 1), line))
        });
        IgnoreMatcher::compile(lines)
    }

    /// `--exclude` patterns (each one pattern, `!` allowed as in an ignore file).
    pub fn from_excludes(patterns: &[String]) -> Result<IgnoreMatcher, IgnoreError> {
        IgnoreMatcher::compile(patterns.iter().map(|pattern| (None, pattern.as_str())))
    }

    fn compile<'a>(
        lines: impl Iterator<Item = (Option<usize>, &'a str)>,
    ) -> Result<IgnoreMatcher, IgnoreError> {
        let mut patterns = Vec::new();
        for (line, text) in lines {
            let mut pattern = text.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclude = !pattern.starts_with('!');
            if !exclude {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::LoneExclamation { line });
                }
            }
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            // Docker checks the syntax up front, so a malformed class fails the build
            // rather than silently matching nothing.
            if glob::matches(&cleaned, ".").is_err() {
                return Err(IgnoreError::BadPattern {
                    line,
                    pattern: pattern.to_owned(),
                });
            }
            patterns.push(Pattern {
                kind: compile(&cleaned),
                exclude,
            });
        }
        let has_exceptions = patterns.iter().any(|p| !p.exclude);
        Ok(IgnoreMatcher {
            patterns,
            has_exceptions,
        })
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
        let path = segments.join("/");
        // The path itself, then each of its parent directories, shortest first.
        let mut candidates: Vec<String> = (1..segments.len())
            .map(|len| segments[..len].join("/"))
            .collect();
        candidates.insert(0, path);
        let mut excluded = false;
        for pattern in &self.patterns {
            if candidates
                .iter()
                .any(|candidate| pattern.kind.matches(candidate))
            {
                excluded = pattern.exclude;
            }
        }
        excluded
    }
}

/// Cleans a pattern like Go's `filepath.Clean`, without a leading `/`.
fn clean(pattern: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in pattern.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments.join("/")
}

/// Compiles a cleaned pattern the way Docker's patternmatcher does.
fn compile(pattern: &str) -> Kind {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    // Literal until a wildcard shows; `Prefix`/`Suffix` only as Docker decides them.
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Wildcards,
    }
    let mut detected = Detected::Exact;
    let mut index = 0;
    let mut first = true;
    while index < chars.len() {
        let ch = chars[index];
        index += 1;
        match ch {
            '*' if chars.get(index) == Some(&'*') => {
                index += 1;
                // `**/` is `**`.
                if chars.get(index) == Some(&'/') {
                    index += 1;
                }
                if index == chars.len() {
                    if matches!(detected, Detected::Exact) {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::Any);
                        detected = Detected::Wildcards;
                    }
                } else {
                    tokens.push(Token::Dirs);
                    detected = Detected::Wildcards;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Wildcards;
            }
            '?' => {
                tokens.push(Token::One);
                detected = Detected::Wildcards;
            }
            '\\' => match chars.get(index) {
                Some(next) => {
                    tokens.push(Token::Char(*next));
                    index += 1;
                    detected = Detected::Wildcards;
                }
                None => tokens.push(Token::Char('\\')),
            },
            '[' => {
                let end = class_end(&chars, index - 1);
                tokens.push(Token::Class(chars[index - 1..end].to_vec()));
                index = end;
                detected = Detected::Wildcards;
            }
            other => tokens.push(Token::Char(other)),
        }
        first = false;
    }
    match detected {
        Detected::Exact => Kind::Exact(pattern.to_owned()),
        Detected::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Detected::Suffix => Kind::Suffix(pattern[2..].to_owned()),
        Detected::Wildcards => Kind::Wildcards(tokens),
    }
}

/// The index just after the class that starts at `chars[start] == '['` (the syntax was
/// checked: it is closed).
fn class_end(chars: &[char], start: usize) -> usize {
    let mut index = start + 1;
    if chars.get(index) == Some(&'^') {
        index += 1;
    }
    let mut first = true;
    while index < chars.len() {
        match chars[index] {
            ']' if !first => return index + 1,
            '\\' => index += 2,
            _ => index += 1,
        }
        first = false;
    }
    chars.len()
}

impl Kind {
    fn matches(&self, path: &str) -> bool {
        match self {
            Kind::Exact(pattern) => path == pattern,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Wildcards(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(tokens, &chars)
            }
        }
    }
}

/// Whether `tokens` match all of `path`. Memoized over (token, position): a `**`, `*` or
/// trailing `**` tries every place the rest could start, and without the memo many of them
/// in one pattern took exponential time.
fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let mut memo = vec![None; (tokens.len() + 1) * (path.len() + 1)];
    matches_at(tokens, path, 0, 0, &mut memo)
}

fn matches_at(
    tokens: &[Token],
    path: &[char],
    token: usize,
    at: usize,
    memo: &mut [Option<bool>],
) -> bool {
    let key = token * (path.len() + 1) + at;
    if let Some(known) = memo[key] {
        return known;
    }
    let rest = &path[at..];
    let one = |ok: bool| ok && !rest.is_empty();
    let result = match tokens.get(token) {
        None => rest.is_empty(),
        Some(Token::Char(ch)) => {
            one(rest.first() == Some(ch)) && matches_at(tokens, path, token + 1, at + 1, memo)
        }
        Some(Token::One) => {
            one(rest.first().is_some_and(|c| *c != '/'))
                && matches_at(tokens, path, token + 1, at + 1, memo)
        }
        Some(Token::Class(class)) => {
            one(rest.first().is_some_and(|c| {
                glob::matches(&class.iter().collect::<String>(), &c.to_string()).unwrap_or(false)
            })) && matches_at(tokens, path, token + 1, at + 1, memo)
        }
        Some(Token::Star) => {
            let run = rest.iter().take_while(|c| **c != '/').count();
            let mut found = false;
            for skip in 0..=run {
                if matches_at(tokens, path, token + 1, at + skip, memo) {
                    found = true;
                    break;
                }
            }
            found
        }
        Some(Token::Dirs) => {
            let mut found = matches_at(tokens, path, token + 1, at, memo);
            let mut index = at;
            while !found && index < path.len() {
                if path[index] == '/' {
                    found = matches_at(tokens, path, token + 1, index + 1, memo);
                }
                index += 1;
            }
            found
        }
        Some(Token::Any) => {
            let mut found = false;
            for start in at..=path.len() {
                if matches_at(tokens, path, token + 1, start, memo) {
                    found = true;
                    break;
                }
            }
            found
        }
    };
    memo[key] = Some(result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many `**` against a deep path: matching must not try every split of the path for
    /// every `**` (that was exponential: 12 of them never finished). The timeout only
    /// keeps a regression from hanging the suite.
    #[test]
    fn many_double_stars_match_deep_paths_quickly() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let deep = vec!["a"; 40].join("/");
            let stars = IgnoreMatcher::parse(&format!("{}x", "**/".repeat(12))).unwrap();
            let alternating = IgnoreMatcher::parse(&format!("{}c", "**/a/".repeat(8))).unwrap();
            let ends_in_c = format!("{deep}/c");
            let _ = done.send([
                stars.is_excluded(&deep),
                alternating.is_excluded(&deep),
                alternating.is_excluded(&ends_in_c),
            ]);
        });
        let results = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("matching finished");
        assert_eq!(results, [false, false, true]);
    }

    #[test]
    fn docker_semantics() {
        let m = IgnoreMatcher::parse(
            "# comment\n\u{feff}\n/node_modules\n*.log\n!important.log\nbuild/**\n**/*.tmp\n  docs/ \n",
        )
        .unwrap();
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
        let m = IgnoreMatcher::parse(" #notacomment\na/../b\n./c/./d\n").unwrap();
        assert!(m.is_excluded("#notacomment"));
        assert!(m.is_excluded("b"));
        assert!(m.is_excluded("c/d"));
        assert!(!m.is_excluded("a"));
    }

    #[test]
    fn double_star_as_docker_compiles_it() {
        let m = IgnoreMatcher::parse("dir/**\n").unwrap();
        assert!(!m.is_excluded("dir"), "`dir/**` leaves `dir` itself");
        assert!(m.is_excluded("dir/a"));
        assert!(m.is_excluded("dir/sub/b"));
        assert!(!m.is_excluded("dirx/a"));

        let m = IgnoreMatcher::parse("**.log\na/**/z\nx**y\n**\n!keep/**\n").unwrap();
        assert!(!m.is_excluded("keep/f"));
        assert!(m.is_excluded("keep"), "`**` alone matches everything");
        let m = IgnoreMatcher::parse("**.log\na/**/z\nx**y\n").unwrap();
        assert!(
            m.is_excluded("deep/er/b.log"),
            "a literal after a leading `**` is a suffix"
        );
        assert!(m.is_excluded("a/z") && m.is_excluded("a/b/c/z"));
        assert!(!m.is_excluded("a/bz"));
        assert!(m.is_excluded("xy") && m.is_excluded("x/y") && m.is_excluded("xa/y"));
        assert!(
            !m.is_excluded("xay"),
            "`**` inside a name only spans whole directories"
        );
        let m = IgnoreMatcher::parse("sub**\n").unwrap();
        assert!(m.is_excluded("sub") && m.is_excluded("subway") && m.is_excluded("sub/f"));
    }

    #[test]
    fn lines_that_are_no_pattern_are_errors_naming_the_line() {
        for (text, line) in [("a\n!\n", 2), ("# c\n\n  !  \n", 3)] {
            let err = IgnoreMatcher::parse(text).unwrap_err();
            assert!(matches!(err, IgnoreError::LoneExclamation { .. }), "{err}");
            assert_eq!(err.line(), Some(line), "{text:?}");
            assert!(
                err.to_string()
                    .starts_with(&format!("line {line}: `!` alone")),
                "{err}"
            );
        }
        let err = IgnoreMatcher::parse("ok\nbad[\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: invalid pattern `bad[`");
        let err = IgnoreMatcher::from_excludes(&["!".to_owned()]).unwrap_err();
        assert_eq!(err.line(), None);
        assert!(
            err.to_string()
                .starts_with("`--exclude`: `!` alone is no pattern"),
            "{err}"
        );
        assert!(IgnoreMatcher::parse("!x\n").is_ok(), "`!x` is a pattern");
    }
}
