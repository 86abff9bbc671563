//! Physical lines, parser directives, line continuations, and the logical line they
//! join into, with a map back to byte offsets in the Dockerfile text.

use std::collections::BTreeSet;

use crate::{Error, ErrorKind, Span};

use super::Directives;

/// One physical line: `[start, end)` excludes the line ending (`\n` or `\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub start: usize,
    pub end: usize,
}

impl Line {
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }
}

/// Splits `text` into lines, skipping a UTF-8 byte order mark at the start.
pub(crate) fn split_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    while start < text.len() {
        let (end, next) = match text[start..].find('\n') {
            Some(i) => (start + i, start + i + 1),
            None => (text.len(), text.len()),
        };
        let end = if text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        lines.push(Line { start, end });
        start = next;
    }
    lines
}

/// True for lines that are comments once leading whitespace is ignored.
pub(crate) fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a line-continuation escape (plus trailing blanks) from the end of `line`.
/// An escape that is itself escaped (`\\`) does not continue the line.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before, true);
    }
    (line, false)
}

/// Recognizes parser directives in the leading comment block.
pub(crate) struct DirectiveScanner {
    done: bool,
    seen: BTreeSet<String>,
    pub directives: Directives,
}

impl DirectiveScanner {
    pub fn new() -> Self {
        DirectiveScanner {
            done: false,
            seen: BTreeSet::new(),
            directives: Directives::default(),
        }
    }

    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// Looks at one line (leading whitespace removed). The first line that is not a
    /// known directive ends the directive block for good.
    pub fn scan(&mut self, line: &str, span: Span) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if !self.seen.insert(key.clone()) {
            return Err(Error::new(
                ErrorKind::Syntax,
                span,
                format!("only one `{key}` parser directive can be used"),
            ));
        }
        match key.as_str() {
            "escape" => {
                self.directives.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(Error::new(
                            ErrorKind::Syntax,
                            span,
                            format!("invalid escape token `{value}`"),
                        )
                        .with_help("the escape token must be `\\` or `` ` ``"));
                    }
                }
            }
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => {
                self.directives.check = Some(value.to_string());
                self.directives.check_span = span;
            }
        }
        Ok(())
    }
}

/// `# key = value`: a letter, then letters and digits, `=`, and a non-empty value.
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_regex_space);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let value = rest
        .trim_start_matches(is_regex_space)
        .strip_prefix('=')?
        .trim_matches(is_regex_space);
    (!value.is_empty()).then_some((key, value))
}

fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// An instruction's text with continuations joined, and where each piece came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogicalLine {
    pub text: String,
    /// `(offset in text, offset in the Dockerfile)` for the start of each joined piece.
    segments: Vec<(usize, usize)>,
}

impl LogicalLine {
    pub fn push(&mut self, piece: &str, source_start: usize) {
        self.segments.push((self.text.len(), source_start));
        self.text.push_str(piece);
    }

    /// The Dockerfile offset of the character at `offset` in the joined text.
    fn source_start(&self, offset: usize) -> usize {
        match self.segments.iter().rev().find(|(at, _)| *at <= offset) {
            Some((at, source)) => source + (offset - at),
            None => 0,
        }
    }

    /// The Dockerfile offset just after the character ending at `offset`.
    fn source_end(&self, offset: usize) -> usize {
        match self.segments.iter().rev().find(|(at, _)| *at < offset) {
            Some((at, source)) => source + (offset - at),
            None => self.source_start(offset),
        }
    }

    /// The Dockerfile span of `[start, end)` in the joined text.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let source_start = self.source_start(start);
        Span::new(source_start, self.source_end(end).max(source_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_with_bom_and_crlf() {
        let text = "\u{feff}FROM a\r\nRUN b\n\nCMD c";
        let lines: Vec<&str> = split_lines(text).iter().map(|l| l.text(text)).collect();
        assert_eq!(lines, ["FROM a", "RUN b", "", "CMD c"]);
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("echo a \\  ", '\\'), ("echo a ", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", true));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", false));
    }

    #[test]
    fn directives() {
        assert_eq!(parse_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            parse_directive("#syntax=docker/dockerfile:1"),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(parse_directive("# not a directive"), None);
        assert_eq!(parse_directive("# key="), None);
    }

    #[test]
    fn logical_line_maps_back() {
        let mut line = LogicalLine::default();
        line.push("RUN a ", 10);
        line.push("  b", 30);
        assert_eq!(line.span(0, 3), Span::new(10, 13));
        assert_eq!(line.span(8, 9), Span::new(32, 33));
        assert_eq!(line.span(4, 6), Span::new(14, 16));
    }
}
