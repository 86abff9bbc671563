//! Build checks that need only the syntax: instruction and `AS` casing, stage names,
//! empty continuation lines, `MAINTAINER`. BuildKit runs these on every stage,
//! whatever the target.

use std::collections::BTreeSet;

use crate::syntax::{Args, Keyword, Node};

use super::{Rule, Warning};

/// The parse-time warnings of a Dockerfile's nodes, in file order (casing last).
pub(crate) fn parse_warnings(nodes: &[Node]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut names = BTreeSet::new();
    let mut in_stage = false;
    // Instruction keywords of the stages as written (global ARGs do not count).
    let mut keywords = Vec::new();
    for node in nodes {
        if node.keyword == Keyword::From {
            in_stage = true;
            from_warnings(node, &mut names, &mut warnings);
        }
        if in_stage {
            keywords.push((written_keyword(node), node));
        }
        if node.empty_continuation {
            warnings.push(
                Warning::new(
                    Rule::NoEmptyContinuation,
                    node.keyword_span,
                    "empty continuation line in this instruction",
                )
                .with_help(
                    "remove the empty line or make it a comment; empty continuation lines will be errors in a future release",
                ),
            );
        }
        if node.keyword == Keyword::Maintainer {
            let maintainer = match &node.args {
                Args::Words(words) => words.join(" "),
                _ => String::new(),
            };
            warnings.push(
                Warning::new(
                    Rule::MaintainerDeprecated,
                    node.keyword_span,
                    "the `MAINTAINER` instruction is deprecated",
                )
                .with_help(format!(
                    "use a label instead: `LABEL org.opencontainers.image.authors=\"{maintainer}\"`"
                )),
            );
        }
    }
    warnings.extend(casing_warnings(&keywords));
    warnings
}

fn written_keyword(node: &Node) -> &str {
    node.original
        .get(..node.keyword.as_str().len())
        .unwrap_or(node.keyword.as_str())
}

fn from_warnings(node: &Node, names: &mut BTreeSet<String>, warnings: &mut Vec<Warning>) {
    let Args::Words(words) = &node.args else {
        return;
    };
    let [_, as_word, name] = words.as_slice() else {
        return;
    };
    if !as_word.eq_ignore_ascii_case("as") {
        return;
    }
    let from = written_keyword(node);
    let mismatch = (is_upper(from) && !is_upper(as_word)) || (is_lower(from) && !is_lower(as_word));
    if mismatch {
        let fix = if is_upper(from) { "AS" } else { "as" };
        warnings.push(
            Warning::new(
                Rule::FromAsCasing,
                node.args_span,
                format!("`{as_word}` and `{from}` keywords' casing do not match"),
            )
            .with_help(format!("write `{from} ... {fix} {name}`")),
        );
    }
    let lower = name.to_ascii_lowercase();
    if *name != lower {
        warnings.push(
            Warning::new(
                Rule::StageNameCasing,
                node.args_span,
                format!("stage name `{name}` should be lowercase"),
            )
            .with_help(format!(
                "write `{lower}`; stage names are case-insensitive anyway"
            )),
        );
    }
    if matches!(lower.as_str(), "scratch" | "context") {
        warnings.push(
            Warning::new(
                Rule::ReservedStageName,
                node.args_span,
                format!("`{lower}` is reserved and should not be used as a stage name"),
            )
            .with_help("choose another name for the stage"),
        );
    }
    if !names.insert(lower.clone()) {
        warnings.push(
            Warning::new(
                Rule::DuplicateStageName,
                node.args_span,
                format!("duplicate stage name `{lower}`"),
            )
            .with_help(
                "stage names should be unique: a later `FROM` or `COPY --from` may pick another stage than you expect",
            ),
        );
    }
}

fn is_upper(word: &str) -> bool {
    !word.bytes().any(|b| b.is_ascii_lowercase())
}

fn is_lower(word: &str) -> bool {
    !word.bytes().any(|b| b.is_ascii_uppercase())
}

/// `ConsistentInstructionCasing`: the case most self-consistent keywords use (upper on
/// a tie) is the norm; every keyword not in it is reported.
fn casing_warnings(keywords: &[(&str, &Node)]) -> Vec<Warning> {
    let lower = keywords.iter().filter(|(k, _)| is_lower(k)).count();
    let upper = keywords.iter().filter(|(k, _)| is_upper(k)).count();
    let majority_lower = lower > upper;
    keywords
        .iter()
        .filter(|(keyword, _)| {
            if majority_lower {
                !is_lower(keyword)
            } else {
                !is_upper(keyword)
            }
        })
        .map(|(keyword, node)| {
            let (case, fixed) = if majority_lower {
                ("lowercase", keyword.to_ascii_lowercase())
            } else {
                ("uppercase", keyword.to_ascii_uppercase())
            };
            Warning::new(
                Rule::ConsistentInstructionCasing,
                node.keyword_span,
                format!("instruction `{keyword}` should match the case of the majority of instructions ({case})"),
            )
            .with_help(format!("write `{fixed}`"))
        })
        .collect()
}
