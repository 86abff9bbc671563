//! Shell patterns for `${v#p}`, `${v%p}` and `${v/p/r}`: `*`, `?` and escaped literals.
//!
//! As in BuildKit, bracket expressions are not supported (`[` is a literal) and the only
//! escapes allowed are `\*`, `\?`, `\\`, `\}` and `\/`.

use super::ShellError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Char(char),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub(crate) fn compile(pattern: &str) -> Result<Self, ShellError> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match chars.peek().copied() {
                    // `}` and `/` are escaped only so they don't end the `${}`.
                    Some('}' | '/') => {}
                    Some(escaped @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(Token::Char(escaped));
                    }
                    other => {
                        return Err(ShellError::InvalidPattern {
                            pattern: pattern.to_string(),
                            reason: match other {
                                Some(c) => format!("invalid escape `\\{c}`"),
                                None => "trailing escape".to_string(),
                            },
                        });
                    }
                },
                other => tokens.push(Token::Char(other)),
            }
        }
        Ok(Pattern { tokens })
    }

    fn reversed(&self) -> Pattern {
        let mut tokens = self.tokens.clone();
        tokens.reverse();
        Pattern { tokens }
    }

    /// The lengths (in chars) of the prefixes of `text` the pattern matches, ascending.
    fn prefix_matches(&self, text: &[char]) -> Vec<usize> {
        let n = self.tokens.len();
        let mut states = vec![false; n + 1];
        states[0] = true;
        self.close(&mut states);
        let mut ends = Vec::new();
        for (consumed, ch) in text.iter().enumerate() {
            if states[n] {
                ends.push(consumed);
            }
            let mut next = vec![false; n + 1];
            let mut alive = false;
            for (i, token) in self.tokens.iter().enumerate() {
                if !states[i] {
                    continue;
                }
                match token {
                    Token::Star => next[i] = true,
                    Token::Any => next[i + 1] = true,
                    Token::Char(c) if c == ch => next[i + 1] = true,
                    Token::Char(_) => continue,
                }
                alive = true;
            }
            if !alive {
                return ends;
            }
            self.close(&mut next);
            states = next;
        }
        if states[n] {
            ends.push(text.len());
        }
        ends
    }

    /// A `*` may match nothing: follow those empty moves.
    fn close(&self, states: &mut [bool]) {
        for (i, token) in self.tokens.iter().enumerate() {
            if states[i] && *token == Token::Star {
                states[i + 1] = true;
            }
        }
    }
}

/// `${v#p}` (shortest) and `${v##p}` (longest).
pub(crate) fn trim_prefix(value: &str, pattern: &Pattern, longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let ends = pattern.prefix_matches(&chars);
    let end = if longest { ends.last() } else { ends.first() };
    match end {
        Some(&end) => chars[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// `${v%p}` (shortest) and `${v%%p}` (longest): a prefix match on the reversed text.
pub(crate) fn trim_suffix(value: &str, pattern: &Pattern, longest: bool) -> String {
    let reversed: String = value.chars().rev().collect();
    trim_prefix(&reversed, &pattern.reversed(), longest)
        .chars()
        .rev()
        .collect()
}

/// `${v/p/r}` (first match) and `${v//p/r}` (every match): leftmost, longest matches.
pub(crate) fn replace(value: &str, pattern: &Pattern, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut previous_end = None;
    while i <= chars.len() {
        let longest = pattern.prefix_matches(&chars[i..]).last().copied();
        if let Some(length) = longest {
            // An empty match right after a previous match is skipped, as Go's regexp does.
            if !(length == 0 && previous_end == Some(i)) {
                out.push_str(replacement);
                if !all {
                    out.extend(&chars[i + length..]);
                    return out;
                }
                previous_end = Some(i + length);
                if length > 0 {
                    i += length;
                    continue;
                }
            }
        }
        if let Some(ch) = chars.get(i) {
            out.push(*ch);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::compile(text).unwrap()
    }

    #[test]
    fn trims_prefixes_and_suffixes() {
        assert_eq!(trim_prefix("a/b/c", &pattern("*/"), false), "b/c");
        assert_eq!(trim_prefix("a/b/c", &pattern("*/"), true), "c");
        assert_eq!(trim_suffix("a/b/c", &pattern("/*"), false), "a/b");
        assert_eq!(trim_suffix("a/b/c", &pattern("/*"), true), "a");
        assert_eq!(trim_prefix("abc", &pattern("x"), true), "abc");
        assert_eq!(
            trim_suffix("file.tar.gz", &pattern(".*"), false),
            "file.tar"
        );
        assert_eq!(trim_prefix("a*b", &pattern("a\\*"), false), "b");
    }

    #[test]
    fn replaces_first_or_all() {
        assert_eq!(replace("aXbXc", &pattern("X"), "-", false), "a-bXc");
        assert_eq!(replace("aXbXc", &pattern("X"), "-", true), "a-b-c");
        assert_eq!(replace("abc", &pattern("b*"), "", true), "a");
        assert_eq!(replace("abc", &pattern("z"), "-", true), "abc");
    }

    #[test]
    fn rejects_bad_escapes() {
        assert!(Pattern::compile("a\\x").is_err());
        assert!(Pattern::compile("a\\").is_err());
    }
}
