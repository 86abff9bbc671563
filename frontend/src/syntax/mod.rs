//! The syntax layer: Dockerfile text → one spanned [`Node`] per instruction, the way
//! BuildKit's parser sees it (directives, escapes, continuations, JSON or shell form,
//! flags, heredoc bodies). Nothing is expanded or validated beyond the syntax here; the
//! `instructions` layer gives the nodes their meaning.

mod args;
mod dump;
mod heredoc;
mod lines;

pub(crate) use dump::go_quote;
pub(crate) use heredoc::parse_heredoc_word;

use crate::error::{shorten, suggest};
use crate::{Error, ErrorKind, Span};

use lines::{DirectiveScanner, Line, LogicalLine};

/// The parser directives of a Dockerfile's leading comment block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: recorded, never executed (rbuild has one built-in frontend).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=`: build-check configuration (`skip=Rule1,Rule2;error=true`).
    pub check: Option<String>,
    /// Where the `# check=` directive is, for errors about its value.
    pub check_span: Span,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
            check_span: Span::default(),
        }
    }
}

/// Dockerfile instruction keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The upper-case keyword, e.g. `HEALTHCHECK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// Case-insensitive lookup.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A builder flag such as `--from=build`, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The flag as written without quotes, e.g. `--chown=app:app`.
    pub text: String,
    pub span: Span,
}

impl Flag {
    /// The name without the leading `--`.
    pub fn name(&self) -> &str {
        let body = self.text.trim_start_matches("--");
        body.split_once('=').map_or(body, |(name, _)| name)
    }

    /// The value after `=`, if there is one.
    pub fn value(&self) -> Option<&str> {
        self.text
            .trim_start_matches("--")
            .split_once('=')
            .map(|(_, value)| value)
    }
}

/// The arguments of an instruction, in the shape its keyword gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Nothing after the keyword (and flags).
    Empty,
    /// Whitespace-separated words (FROM, EXPOSE, non-JSON ADD/COPY/VOLUME), ARG words
    /// with their quotes, or the single string of MAINTAINER/USER/WORKDIR/STOPSIGNAL.
    Words(Vec<String>),
    /// A JSON array of strings (exec form).
    Json(Vec<String>),
    /// Shell form: the rest of the line.
    Shell(String),
    /// ENV and LABEL pairs, values still quoted as written.
    Pairs(Vec<KeyValue>),
    /// HEALTHCHECK: the type word (`CMD`, `NONE`, ...) and what follows it.
    Health { kind: String, command: Box<Args> },
    /// ONBUILD: the trigger instruction.
    Trigger(Box<Node>),
}

/// One `key=value` (or legacy `key value`) of ENV or LABEL, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form (the whole rest of the line is the value).
    pub legacy: bool,
}

/// A here-document attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The body, each line ending in `\n`, not including the delimiter line.
    pub content: String,
    /// False when (part of) the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
    /// The file descriptor written before `<<`, e.g. `3<<EOF`.
    pub fd: Option<u32>,
    /// The body lines and the delimiter line.
    pub span: Span,
}

impl Heredoc {
    /// The body with `<<-` tab stripping applied.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub keyword: Keyword,
    pub keyword_span: Span,
    /// From the keyword to the end of the last line the instruction uses (continuation
    /// lines and heredoc bodies included).
    pub span: Span,
    pub flags: Vec<Flag>,
    pub args: Args,
    /// The arguments after the flags.
    pub args_span: Span,
    pub heredocs: Vec<Heredoc>,
    /// The instruction text with continuations joined, trimmed.
    pub original: String,
    /// An empty line followed a line continuation inside the instruction (deprecated;
    /// the `NoEmptyContinuation` build check).
    pub empty_continuation: bool,
}

impl Node {
    /// The instruction in BuildKit's parse-tree notation, e.g. `(copy ["--from=a"] "x" "/y")`.
    pub fn dump(&self) -> String {
        dump::dump_node(self)
    }
}

/// A parsed Dockerfile before any meaning is given to the instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxTree {
    pub directives: Directives,
    pub nodes: Vec<Node>,
}

/// Parses `text` and writes each instruction in BuildKit's parse-tree notation, one per
/// line (`(from "alpine")`, `(copy ["--from=a"] "x" "/y")`): a debugging aid, and the
/// format of BuildKit's parser conformance data.
pub fn dump_syntax(text: &str) -> Result<String, Error> {
    Ok(parse(text)?.nodes.iter().map(|n| n.dump() + "\n").collect())
}

/// Parses Dockerfile text into nodes. Fails only on syntax problems and on a file
/// without instructions.
pub(crate) fn parse(text: &str) -> Result<SyntaxTree, Error> {
    let lines = lines::split_lines(text);
    let mut directives = DirectiveScanner::new();
    let mut nodes = Vec::new();
    let mut index = 0;
    while let Some(&line) = lines.get(index) {
        index += 1;
        let raw = line.text(text);
        let content = raw.trim_start();
        let offset = line.start + (raw.len() - content.len());
        directives.scan(content, Span::new(offset, line.end))?;
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let escape = directives.escape();
        let mut logical = LogicalLine::default();
        let (piece, mut continues) = lines::trim_continuation(content, escape);
        logical.push(piece, offset);
        let mut end = line.end;
        let mut empty_continuation = false;
        while continues && let Some(&next) = lines.get(index) {
            index += 1;
            end = next.end;
            let raw = next.text(text);
            // Comment lines and empty lines inside a continued instruction are dropped.
            if lines::is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, more) = lines::trim_continuation(raw, escape);
            logical.push(piece, next.start);
            continues = more;
        }
        let mut node = args::node_from_line(&logical, 0, escape, false)?;
        node.empty_continuation = empty_continuation;
        // `ONBUILD RUN <<EOF` takes its body from the following lines as RUN does; it
        // belongs to the trigger, whose text the image config keeps for the child.
        let on_trigger =
            matches!(&node.args, Args::Trigger(trigger) if heredoc::may_have_heredocs(trigger));
        if heredoc::may_have_heredocs(&node) || on_trigger {
            for mut heredoc in heredoc::heredocs_from_line(&logical)? {
                let body_start = lines.get(index).map_or(text.len(), |l| l.start);
                index = read_heredoc_body(text, &lines, index, &mut heredoc).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Syntax,
                        Span::new(offset, text.len()),
                        format!("unterminated heredoc `{}`", heredoc.name),
                    )
                    .with_help(format!(
                        "end the here-document with a line containing only `{}`",
                        heredoc.name
                    ))
                })?;
                let last = index.checked_sub(1).and_then(|i| lines.get(i));
                end = last.map_or(end, |l| l.end);
                heredoc.span = Span::new(body_start, end);
                match &mut node.args {
                    Args::Trigger(trigger) if on_trigger => trigger.heredocs.push(heredoc),
                    _ => node.heredocs.push(heredoc),
                }
            }
        }
        node.span = Span::new(offset, end.max(offset));
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(Error::new(
            ErrorKind::Empty,
            Span::new(0, text.len()),
            "the dockerfile has no instructions",
        )
        .with_help("a dockerfile needs at least a `FROM` instruction"));
    }
    Ok(SyntaxTree {
        directives: directives.directives,
        nodes,
    })
}

/// Appends body lines to `heredoc` up to its delimiter line; returns the index of the
/// line after the delimiter, or `None` when the text ends first.
fn read_heredoc_body(
    text: &str,
    lines: &[Line],
    mut index: usize,
    heredoc: &mut Heredoc,
) -> Option<usize> {
    while let Some(line) = lines.get(index) {
        index += 1;
        let raw = line.text(text);
        let candidate = if heredoc.chomp {
            raw.trim_start_matches('\t')
        } else {
            raw
        };
        if candidate == heredoc.name {
            return Some(index);
        }
        heredoc.content.push_str(raw);
        heredoc.content.push('\n');
    }
    None
}

/// The error for a keyword that is not an instruction.
pub(crate) fn unknown_instruction(word: &str, span: Span) -> Error {
    let names: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
    let error = Error::new(
        ErrorKind::UnknownInstruction,
        span,
        format!("unknown instruction `{}`", shorten(word)),
    );
    match suggest(word, &names) {
        Some(name) => error.with_help(format!("did you mean `{name}`?")),
        None => error.with_help(format!("instructions are {}", names.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(text: &str) -> Vec<String> {
        parse(text).unwrap().nodes.iter().map(Node::dump).collect()
    }

    #[test]
    fn parses_basic_instructions() {
        let text = "from alpine AS build\nrun echo hi\nCOPY --from=build [\"a\", \"b\"]\n";
        assert_eq!(
            dumps(text),
            [
                r#"(from "alpine" "AS" "build")"#,
                r#"(run "echo hi")"#,
                r#"(copy ["--from=build"] "a" "b")"#,
            ]
        );
    }

    #[test]
    fn unknown_instruction_has_span_and_help() {
        let text = "FROM a\nRUNN echo\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownInstruction);
        assert_eq!(error.span(), Span::new(7, 11));
        assert_eq!(error.help(), Some("did you mean `RUN`?"));
    }

    #[test]
    fn empty_and_comment_only_files_fail() {
        assert_eq!(parse("").unwrap_err().kind(), ErrorKind::Empty);
        assert_eq!(parse("# hi\n\n").unwrap_err().kind(), ErrorKind::Empty);
    }

    #[test]
    fn heredocs() {
        let text =
            "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN cat <<-\"A\" <<B > f\n\tx $y\n\tA\nb\nB\nCMD x\n";
        let tree = parse(text).unwrap();
        assert_eq!(tree.nodes.len(), 4);
        let run = &tree.nodes[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        assert!(run.heredocs[0].expand);
        let two = &tree.nodes[2].heredocs;
        assert_eq!(two.len(), 2);
        assert_eq!(
            (two[0].name.as_str(), two[0].expand, two[0].chomp),
            ("A", false, true)
        );
        assert_eq!(two[0].body(), "x $y\n");
        assert_eq!(two[1].content, "b\n");
        assert_eq!(tree.nodes[3].dump(), r#"(cmd "x")"#);
    }

    #[test]
    fn unterminated_heredoc_fails() {
        let error = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Syntax);
    }

    #[test]
    fn directives_only_in_leading_comments() {
        let tree = parse("# escape=`\n# syntax=x\nFROM a\n").unwrap();
        assert_eq!(tree.directives.escape, '`');
        assert_eq!(tree.directives.syntax.as_deref(), Some("x"));
        let tree = parse("# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(tree.directives.escape, '\\');
        assert!(parse("# escape=x\nFROM a").is_err());
        assert!(parse("# escape=`\n# escape=`\nFROM a").is_err());
    }

    #[test]
    fn spans_cover_continuations() {
        let text = "FROM a\nRUN a \\\n  b\n";
        let node = &parse(text).unwrap().nodes[1];
        assert_eq!(node.span, Span::new(7, 18));
        assert_eq!(node.keyword_span, Span::new(7, 10));
    }
}
