//! Shell-word expansion of Dockerfile arguments: quotes, escapes, `$v`/`${v...}`
//! substitutions and word splitting, with the semantics of BuildKit's shell lexer.
//!
//! [`Lexer::process_word`] yields one string (spaces kept); [`Lexer::process_words`] splits
//! on whitespace that comes from the text or from *unquoted* expansions, while quoted text
//! always stays inside one word.

mod pattern;

use std::collections::BTreeMap;

use pattern::Pattern;

/// Substitutions nested deeper than this (`${a:-${b:-...}}`) are rejected instead of
/// recursing without bound.
const MAX_DEPTH: usize = 64;

/// Where expansion looks variables up.
pub(crate) trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Another lookup that remembers the names it did not find (for the `UndefinedVar` and
/// `UndefinedArgInFrom` build checks).
pub(crate) struct Recording<'a> {
    pub vars: &'a dyn Lookup,
    pub missing: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl<'a> Recording<'a> {
    pub(crate) fn new(vars: &'a dyn Lookup) -> Self {
        Recording {
            vars,
            missing: Default::default(),
        }
    }
}

impl Lookup for Recording<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        let value = self.vars.lookup(name);
        if value.is_none() {
            self.missing.borrow_mut().insert(name.to_string());
        }
        value
    }
}

/// No variables at all (heredoc delimiter detection).
pub(crate) struct NoVars;

impl Lookup for NoVars {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ShellError {
    #[error("unterminated {kind}-quoted string")]
    UnterminatedQuote { kind: &'static str },
    #[error("missing `}}` in variable substitution")]
    MissingBrace,
    #[error("missing `/` in `${{}}` substitution")]
    MissingSlash,
    #[error("bad substitution")]
    BadSubstitution,
    #[error("unexpected end of text while looking for matching `{stop}`")]
    UnexpectedEnd { stop: char },
    #[error("unsupported modifier `{modifier}` in substitution")]
    UnsupportedModifier { modifier: String },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern `{pattern}` in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("variable substitutions are nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// Expansion settings. `Lexer::new(escape)` gives the normal Dockerfile behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters.
    pub skip_quotes: bool,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expands `word` to a single string.
    pub(crate) fn process_word(&self, word: &str, vars: &dyn Lookup) -> Result<String, ShellError> {
        Ok(self.process(word, vars)?.0)
    }

    /// Expands `word` and splits it into words.
    pub(crate) fn process_words(
        &self,
        word: &str,
        vars: &dyn Lookup,
    ) -> Result<Vec<String>, ShellError> {
        Ok(self.process(word, vars)?.1)
    }

    fn process(&self, word: &str, vars: &dyn Lookup) -> Result<(String, Vec<String>), ShellError> {
        let mut scanner = Scanner {
            chars: word.chars().collect(),
            pos: 0,
            lexer: self,
            vars,
            depth: 0,
        };
        scanner.until(None, self.raw_escapes)
    }
}

/// Accumulates words: whitespace from the text or from unquoted expansions separates
/// words; "raw" additions (quoted text, escaped characters) never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    lexer: &'a Lexer,
    vars: &'a dyn Lookup,
    depth: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    /// Processes text up to `stop` (consumed) or the end when `stop` is `None`.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' | '"' if !self.lexer.skip_quotes => {
                    let value = if ch == '\'' {
                        self.single_quote()?
                    } else {
                        self.double_quote(raw_escapes)?
                    };
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(ShellError::UnexpectedEnd { stop }),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything up to the next `'` is literal; there is no escaping inside.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedQuote { kind: "single" }),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `$` expands; the escape character escapes only `"`, `$` and itself.
    fn double_quote(&mut self, raw_escapes: bool) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedQuote { kind: "double" }),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().expect("peeked a character");
                    if ch == self.lexer.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                ch = next;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.lookup(name).map(str::to_string)
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ShellError::TooDeep);
        }
        let result = self.dollar_inner();
        self.depth -= 1;
        result
    }

    fn dollar_inner(&mut self) -> Result<String, ShellError> {
        self.next(); // `$`
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // `{`
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(first) = self.next() else {
            return Err(ShellError::MissingBrace);
        };
        match first {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (null_is_unset, op) = if first == ':' {
                    (true, self.next())
                } else {
                    (false, Some(first))
                };
                let modifier: String = if null_is_unset {
                    std::iter::once(':').chain(op).collect()
                } else {
                    first.to_string()
                };
                let raw_escapes = matches!(op, Some('#' | '%'));
                let word = match self.until(Some('}'), raw_escapes) {
                    Ok((word, _)) => word,
                    Err(_) if self.peek().is_none() => return Err(ShellError::MissingBrace),
                    Err(error) => return Err(error),
                };
                let value = self.lookup(&name);
                if self.lexer.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    Some('-') => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if empty { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(required(&name, word, "is not allowed to be unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(required(&name, word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('#' | '%')) => {
                        let (longest, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let pattern = Pattern::compile(pattern)?;
                        let value = value.unwrap_or_default();
                        Ok(if op == '#' {
                            pattern::trim_prefix(&value, &pattern, longest)
                        } else {
                            pattern::trim_suffix(&value, &pattern, longest)
                        })
                    }
                    _ => Err(ShellError::UnsupportedModifier { modifier }),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.until(Some('/'), true) {
                    Ok((pattern, _)) => pattern,
                    Err(_) if self.peek().is_none() => return Err(ShellError::MissingSlash),
                    Err(error) => return Err(error),
                };
                let replacement = match self.until(Some('}'), true) {
                    Ok((replacement, _)) => replacement,
                    Err(_) if self.peek().is_none() => return Err(ShellError::MissingBrace),
                    Err(error) => return Err(error),
                };
                let value = self.lookup(&name);
                if self.lexer.skip_unset && value.is_none() {
                    let slashes = if all { "//" } else { "/" };
                    return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
                }
                let compiled = Pattern::compile(&pattern)?;
                Ok(pattern::replace(
                    &value.unwrap_or_default(),
                    &compiled,
                    &replacement,
                    all,
                ))
            }
            other => Err(ShellError::UnsupportedModifier {
                modifier: other.to_string(),
            }),
        }
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional
    /// parameter; or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(digit) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(digit);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || ch.is_numeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn required(name: &str, word: String, default: &str) -> ShellError {
    ShellError::Required {
        name: name.to_string(),
        message: if word.is_empty() {
            default.to_string()
        } else {
            word
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_simple_forms() {
        let lexer = Lexer::new('\\');
        let env = vars(&[("A", "x y"), ("E", "")]);
        assert_eq!(lexer.process_word("$A-${A}", &env).unwrap(), "x y-x y");
        assert_eq!(
            lexer.process_word("${B:-d}${E:-e}${E-f}", &env).unwrap(),
            "de"
        );
        assert_eq!(lexer.process_word("${A:+set}${B+no}", &env).unwrap(), "set");
        assert_eq!(
            lexer.process_words("a$A 'b c'", &env).unwrap(),
            ["ax", "y", "b c"]
        );
    }

    #[test]
    fn required_variables_fail_with_message() {
        let lexer = Lexer::new('\\');
        let error = lexer
            .process_word("${X:?must be set}", &NoVars)
            .unwrap_err();
        assert_eq!(error.to_string(), "X: must be set");
    }

    #[test]
    fn pattern_forms() {
        let lexer = Lexer::new('\\');
        let env = vars(&[("P", "/usr/local/bin")]);
        assert_eq!(
            lexer.process_word("${P#*/}", &env).unwrap(),
            "usr/local/bin"
        );
        assert_eq!(lexer.process_word("${P##*/}", &env).unwrap(), "bin");
        assert_eq!(lexer.process_word("${P%/*}", &env).unwrap(), "/usr/local");
        assert_eq!(lexer.process_word("${P%%/l*}", &env).unwrap(), "/usr");
        assert_eq!(
            lexer.process_word("${P/local/opt}", &env).unwrap(),
            "/usr/opt/bin"
        );
        assert_eq!(
            lexer.process_word("${P//\\//:}", &env).unwrap(),
            ":usr:local:bin"
        );
    }

    #[test]
    fn backtick_escape() {
        let lexer = Lexer::new('`');
        assert_eq!(lexer.process_word("a`$b\\c", &NoVars).unwrap(), "a$b\\c");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let lexer = Lexer::new('\\');
        let word = "${a:-".repeat(10_000) + &"}".repeat(10_000);
        assert_eq!(lexer.process_word(&word, &NoVars), Err(ShellError::TooDeep));
    }

    #[test]
    fn skip_unset_keeps_references() {
        let lexer = Lexer {
            skip_unset: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lexer.process_word("$A ${B} ${C:-x}", &NoVars).unwrap(),
            "$A ${B} ${C:-x}"
        );
    }
}
