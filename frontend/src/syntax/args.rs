//! Splitting one logical line into keyword, flags and arguments, and shaping the
//! arguments the way each keyword takes them (JSON or shell form, words, pairs, ...).

use crate::{Error, ErrorKind};

use super::lines::LogicalLine;
use super::{Args, Flag, KeyValue, Keyword, Node, unknown_instruction};

/// The separators BuildKit splits instruction words on (`[\t\v\f\r ]+`).
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Builds the node for the instruction starting at `start` in `line`. `in_trigger` is
/// set for the instruction after `ONBUILD`, which may not be another `ONBUILD`.
pub(super) fn node_from_line(
    line: &LogicalLine,
    start: usize,
    escape: char,
    in_trigger: bool,
) -> Result<Node, Error> {
    let text = &line.text[start..];
    let lead = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    let keyword_start = start + lead;
    let keyword_len = trimmed.find(is_separator).unwrap_or(trimmed.len());
    let word = &trimmed[..keyword_len];
    let keyword_span = line.span(keyword_start, keyword_start + keyword_len);
    let keyword = Keyword::parse(word).ok_or_else(|| unknown_instruction(word, keyword_span))?;
    if in_trigger && keyword == Keyword::Onbuild {
        return Err(Error::new(
            ErrorKind::InvalidOnbuild,
            keyword_span,
            "chaining `ONBUILD` via `ONBUILD ONBUILD` isn't allowed",
        ));
    }
    let after = &trimmed[keyword_len..];
    let rest = after.trim_start_matches(is_separator);
    let rest_start = keyword_start + keyword_len + (after.len() - rest.len());

    let (raw_flags, args_offset) = extract_flags(rest);
    let flags = raw_flags
        .into_iter()
        .map(|(text, from, to)| Flag {
            text,
            span: line.span(rest_start + from, rest_start + to),
        })
        .collect();
    let untrimmed = &rest[args_offset..];
    let args_text = untrimmed.trim();
    let args_start = rest_start + args_offset + (untrimmed.len() - untrimmed.trim_start().len());
    let args_span = line.span(args_start, args_start + args_text.len());
    let invalid = |message: String| Error::new(ErrorKind::Syntax, args_span, message);
    let not_strings = |keyword: Keyword| {
        invalid(not_strings(keyword))
            .with_help("every element of the JSON array must be a string in double quotes")
    };

    let args = if args_text.is_empty() {
        Args::Empty
    } else {
        match keyword {
            Keyword::Add | Keyword::Copy | Keyword::Volume => match parse_json(args_text) {
                JsonForm::Strings(strings) => Args::Json(strings),
                JsonForm::NotStrings => return Err(not_strings(keyword)),
                JsonForm::NotJson => Args::Words(split_whitespace(args_text)),
            },
            Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => {
                maybe_json(args_text).ok_or_else(|| not_strings(keyword))?
            }
            Keyword::Arg => Args::Words(parse_words(args_text, escape)),
            Keyword::Env | Keyword::Label => {
                name_values(args_text, keyword, escape).map_err(|message| {
                    invalid(message).with_help(format!(
                        "write `{keyword} <name>=<value>`, quoting a value that has spaces"
                    ))
                })?
            }
            Keyword::Expose | Keyword::From => Args::Words(split_whitespace(args_text)),
            Keyword::Maintainer | Keyword::Stopsignal | Keyword::User | Keyword::Workdir => {
                Args::Words(vec![args_text.to_string()])
            }
            Keyword::Healthcheck => {
                let kind_len = args_text
                    .find(char::is_whitespace)
                    .unwrap_or(args_text.len());
                let (kind, command) = args_text.split_at(kind_len);
                let command = command.trim_start();
                let command = if command.is_empty() {
                    Args::Empty
                } else {
                    maybe_json(command).ok_or_else(|| not_strings(keyword))?
                };
                Args::Health {
                    kind: kind.to_string(),
                    command: Box::new(command),
                }
            }
            Keyword::Onbuild => {
                Args::Trigger(Box::new(node_from_line(line, args_start, escape, true)?))
            }
        }
    };
    Ok(Node {
        keyword,
        keyword_span,
        span: line.span(keyword_start, keyword_start + trimmed.len()),
        flags,
        args,
        args_span,
        heredocs: Vec::new(),
        original: trimmed.to_string(),
        empty_continuation: false,
    })
}

fn not_strings(keyword: Keyword) -> String {
    format!("the JSON form of `{keyword}` must be an array of strings")
}

enum JsonForm {
    Strings(Vec<String>),
    /// Valid JSON array, but not of strings: an error, unlike invalid JSON.
    NotStrings,
    NotJson,
}

fn parse_json(text: &str) -> JsonForm {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonForm::NotJson;
    }
    // serde_json bounds its own recursion, so deeply nested input is just "not JSON".
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Err(_) => JsonForm::NotJson,
        Ok(values) => values
            .into_iter()
            .map(|value| match value {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map_or(JsonForm::NotStrings, JsonForm::Strings),
    }
}

/// Exec form when the text is a JSON array of strings, shell form when it is not JSON;
/// `None` for a JSON array of something else.
fn maybe_json(text: &str) -> Option<Args> {
    match parse_json(text) {
        JsonForm::Strings(strings) => Some(Args::Json(strings)),
        JsonForm::NotStrings => None,
        JsonForm::NotJson => Some(Args::Shell(text.to_string())),
    }
}

fn split_whitespace(text: &str) -> Vec<String> {
    text.split(is_separator)
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

/// ENV/LABEL: `k=v ...` pairs, or the legacy `k value` where the value is the rest.
fn name_values(text: &str, keyword: Keyword, escape: char) -> Result<Args, String> {
    let words = parse_words(text, escape);
    let Some(first) = words.first() else {
        return Ok(Args::Empty);
    };
    if !first.contains('=') {
        let Some((key, value)) = text.split_once(is_separator) else {
            return Err(format!("`{keyword} {text}` has no value"));
        };
        return Ok(Args::Pairs(vec![KeyValue {
            key: key.to_string(),
            value: value.trim_start_matches(is_separator).to_string(),
            legacy: true,
        }]));
    }
    let pairs = words
        .iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => Ok(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
                legacy: false,
            }),
            None => Err(format!(
                "can't find `=` in `{word}`; `{keyword}` takes `name=value` pairs"
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(Args::Pairs(pairs))
}

/// Splits on unquoted whitespace, keeping quotes and escapes in the words (they are
/// removed later, by expansion). An escape at the very end is dropped.
pub(super) fn parse_words(text: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut in_word = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if !in_word {
            if c.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        match quote {
            None if c.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                in_word = false;
                continue;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    // An unquoted escape keeps itself and the next character.
                    if let Some(&next) = chars.get(i) {
                        word.push(c);
                        word.push(next);
                        i += 1;
                    }
                    continue;
                }
            }
            Some(q) if c == q => quote = None,
            Some(q) if c == escape && q != '\'' => {
                match chars.get(i) {
                    Some(&next) => {
                        word.push(c);
                        word.push(next);
                        i += 1;
                    }
                    None => quote = None,
                }
                continue;
            }
            Some(_) => {}
        }
        word.push(c);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Reads leading `--name[=value]` words (quotes removed, `\` escapes) up to the first
/// word that is not a flag or a `--`. Returns each flag with its byte range, and the
/// offset where the arguments start.
fn extract_flags(text: &str) -> (Vec<(String, usize, usize)>, usize) {
    if !text.trim_start().starts_with("--") {
        return (Vec::new(), text.len() - text.trim_start().len());
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(at, _)| at);
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
            i += 1;
        }
        let start = offset(i);
        if i >= chars.len() || !text[start..].starts_with("--") {
            return (flags, start);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        while let Some(&(_, c)) = chars.get(i) {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            i += 1;
            match quote {
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == '\\' => match chars.get(i) {
                    Some(&(_, next)) => {
                        word.push(next);
                        i += 1;
                    }
                    None => quote = None,
                },
                _ => word.push(c),
            }
        }
        let end = offset(i);
        if word == "--" {
            return (flags, end);
        }
        if blank_ok || !word.is_empty() {
            flags.push((word, start, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Span;

    fn line(text: &str) -> LogicalLine {
        let mut line = LogicalLine::default();
        line.push(text, 0);
        line
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"abc="123 456" def"#, '\\'),
            [r#"abc="123 456""#, "def"]
        );
        assert_eq!(parse_words(r"a\ b c\", '\\'), [r"a\ b", "c"]);
        assert_eq!(parse_words(r#"x='a\'b'"#, '\\'), [r#"x='a\'b'"#]);
        assert_eq!(parse_words("''", '\\'), ["''"]);
    }

    #[test]
    fn flags_stop_at_first_argument() {
        let (flags, at) = extract_flags("--from=a --chown='u g' src dst");
        let names: Vec<&str> = flags.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["--from=a", "--chown=u g"]);
        assert_eq!(at, 23);
        let (flags, at) = extract_flags("--x -- --y");
        assert_eq!(flags.len(), 1);
        assert_eq!(&"--x -- --y"[at..], " --y");
    }

    #[test]
    fn node_spans() {
        let node = node_from_line(&line("COPY --from=a  x y"), 0, '\\', false).unwrap();
        assert_eq!(node.flags[0].span, Span::new(5, 13));
        assert_eq!(node.args_span, Span::new(15, 18));
        assert_eq!(node.flags[0].name(), "from");
        assert_eq!(node.flags[0].value(), Some("a"));
    }

    #[test]
    fn nested_json_is_an_error() {
        let error =
            node_from_line(&line(r#"CMD [ "echo", [ "x" ] ]"#), 0, '\\', false).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Syntax);
    }

    #[test]
    fn env_without_value_is_an_error() {
        assert!(node_from_line(&line("ENV PATH"), 0, '\\', false).is_err());
        assert!(node_from_line(&line("ENV a=b c"), 0, '\\', false).is_err());
    }

    #[test]
    fn onbuild_onbuild_is_rejected() {
        let error = node_from_line(&line("ONBUILD onbuild RUN x"), 0, '\\', false).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidOnbuild);
    }
}
