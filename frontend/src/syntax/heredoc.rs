//! Finding here-document openers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) on an instruction line.

use crate::shell::{Lexer, NoVars, ShellError};
use crate::{Error, ErrorKind};

use super::lines::LogicalLine;
use super::{Args, Heredoc, Keyword, Node};

/// Only RUN, COPY and ADD in shell form take heredocs.
pub(super) fn may_have_heredocs(node: &Node) -> bool {
    matches!(node.keyword, Keyword::Run | Keyword::Copy | Keyword::Add)
        && !matches!(node.args, Args::Json(_))
}

/// The heredocs opened on `line`, in order, with empty bodies.
pub(super) fn heredocs_from_line(line: &LogicalLine) -> Result<Vec<Heredoc>, Error> {
    if !line.text.contains("<<") {
        return Ok(Vec::new());
    }
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    // A line the lexer cannot split (say, an unterminated quote for the shell to report)
    // simply has no heredocs.
    let words = lexer.process_words(&line.text, &NoVars).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        match parse_heredoc_word(&word) {
            Ok(Some(heredoc)) => heredocs.push(heredoc),
            Ok(None) => {}
            Err(error) => {
                return Err(Error::new(
                    ErrorKind::Syntax,
                    line.span(0, line.text.len()),
                    format!("invalid heredoc delimiter `{word}`: {error}"),
                ));
            }
        }
    }
    Ok(heredocs)
}

/// Parses one word as a heredoc opener: `[fd]<<[-]delimiter`. A quoted (or partly quoted)
/// delimiter turns expansion of the body off.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, ShellError> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lexer = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = lexer.process_words(rest, &NoVars)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer {
        raw_quotes: true,
        ..lexer
    }
    .process_words(rest, &NoVars)?;
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand,
        chomp,
        fd: word[..digits].parse().ok(),
        span: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opener_forms() {
        let heredoc = parse_heredoc_word("<<EOF").unwrap().unwrap();
        assert_eq!(
            (heredoc.name.as_str(), heredoc.expand, heredoc.chomp),
            ("EOF", true, false)
        );
        let heredoc = parse_heredoc_word("<<-'EOF'").unwrap().unwrap();
        assert_eq!(
            (heredoc.name.as_str(), heredoc.expand, heredoc.chomp),
            ("EOF", false, true)
        );
        let heredoc = parse_heredoc_word("3<<E\"O\"F").unwrap().unwrap();
        assert_eq!(
            (heredoc.name.as_str(), heredoc.expand, heredoc.fd),
            ("EOF", false, Some(3))
        );
        assert_eq!(parse_heredoc_word("<<").unwrap(), None);
        assert_eq!(parse_heredoc_word("a<<b").unwrap(), None);
        assert_eq!(parse_heredoc_word("<<<x").unwrap(), None);
    }
}
