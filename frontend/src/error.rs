//! The frontend's one error type: a message, a stable code, the span it points at and an
//! optional hint, so the CLI can render it with miette.

use crate::Span;

/// What went wrong, as a closed set callers can branch on (never on message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file has no instructions at all (empty, or only comments).
    Empty,
    /// A keyword that is not a Dockerfile instruction.
    UnknownInstruction,
    /// Malformed syntax: bad directive, unterminated heredoc, non-string JSON array, ...
    Syntax,
    /// An instruction has the wrong number or shape of arguments.
    InvalidArguments,
    /// A flag the instruction does not accept.
    UnknownFlag,
    /// A flag with a bad or duplicate value.
    InvalidFlag,
    /// The file has no `FROM`.
    NoStages,
    /// An instruction other than `ARG` before the first `FROM`.
    InstructionBeforeFrom,
    /// Variable expansion failed (`${v:?msg}`, bad substitution, unterminated quote).
    Expansion,
    /// `--target` names no stage.
    UnknownTarget,
    /// `COPY --from` names a stage that is not defined before the current one.
    StageOrder,
    /// An image reference that cannot be used.
    InvalidReference,
    /// `convert` was not given the config of a base image it needs.
    MissingBaseConfig,
    /// An `ONBUILD` trigger that is not allowed.
    InvalidOnbuild,
    /// A value that is not valid for its instruction (port, signal, duration, mode, path).
    InvalidValue,
    /// A Dockerfile feature rbuild does not support yet.
    Unsupported,
}

impl ErrorKind {
    /// The stable diagnostic code, e.g. `dockerfile::unknown_instruction`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Empty => "dockerfile::empty",
            ErrorKind::UnknownInstruction => "dockerfile::unknown_instruction",
            ErrorKind::Syntax => "dockerfile::syntax",
            ErrorKind::InvalidArguments => "dockerfile::invalid_arguments",
            ErrorKind::UnknownFlag => "dockerfile::unknown_flag",
            ErrorKind::InvalidFlag => "dockerfile::invalid_flag",
            ErrorKind::NoStages => "dockerfile::no_stages",
            ErrorKind::InstructionBeforeFrom => "dockerfile::instruction_before_from",
            ErrorKind::Expansion => "dockerfile::expansion",
            ErrorKind::UnknownTarget => "dockerfile::unknown_target",
            ErrorKind::StageOrder => "dockerfile::stage_order",
            ErrorKind::InvalidReference => "dockerfile::invalid_reference",
            ErrorKind::MissingBaseConfig => "dockerfile::missing_base_config",
            ErrorKind::InvalidOnbuild => "dockerfile::invalid_onbuild",
            ErrorKind::InvalidValue => "dockerfile::invalid_value",
            ErrorKind::Unsupported => "dockerfile::unsupported",
        }
    }
}

/// A problem with a Dockerfile, pointing at the bytes it is about.
///
/// `Display` prints only the message (lowercase, no trailing period); the CLI renders the
/// span as line:column with the source, the code and the help line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    span: Span,
    help: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, span: Span, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            span,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable diagnostic code, e.g. `dockerfile::unknown_instruction`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The bytes of the Dockerfile the error is about.
    pub fn span(&self) -> Span {
        self.span
    }

    /// What to do about it, if there is something to say.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The candidate closest to `word` by edit distance (case-insensitive), if it is close
/// enough to be a plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Edit distance costs len × len; a word far longer than every candidate is no typo.
    let longest = candidates.iter().map(|c| c.len()).max().unwrap_or(0);
    if word.len() > 2 * longest + 8 {
        return None;
    }
    let word = word.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&word, &candidate.to_ascii_lowercase());
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    let (distance, candidate) = best?;
    let limit = (word.chars().count().max(candidate.len()) / 3).max(1);
    (distance <= limit).then_some(candidate)
}

/// `text` for a message: at most 40 characters, the rest elided.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// adjacent characters each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut table = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            table[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (table[(i - 1) * width + j] + 1)
                    .min(table[i * width + j - 1] + 1)
                    .min(table[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(table[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    table[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_nearest_keyword() {
        let keywords = ["FROM", "RUN", "COPY", "WORKDIR"];
        assert_eq!(suggest("RUNN", &keywords), Some("RUN"));
        assert_eq!(suggest("workdri", &keywords), Some("WORKDIR"));
        assert_eq!(suggest("banana", &keywords), None);
        assert_eq!(suggest("chwon", &["from", "chown"]), Some("chown"));
        assert_eq!(suggest(&"R".repeat(100), &keywords), None);
    }

    #[test]
    fn shortens_long_literals() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"x".repeat(100)), format!("{}…", "x".repeat(40)));
    }

    #[test]
    fn accessors() {
        let error =
            Error::new(ErrorKind::NoStages, Span::new(1, 2), "no stage").with_help("add one");
        assert_eq!(error.code(), "dockerfile::no_stages");
        assert_eq!(error.help(), Some("add one"));
        assert_eq!(error.to_string(), "no stage");
        assert_eq!(error.span(), Span::new(1, 2));
    }
}
