//! BuildKit's parse-tree notation for nodes, `(copy ["--from=a"] "x" "/y")`, used by
//! the conformance tests and for debugging.

use super::{Args, Node};

pub(super) fn dump_node(node: &Node) -> String {
    format!("({})", dump_inner(node))
}

fn dump_inner(node: &Node) -> String {
    let mut out = node.keyword.as_str().to_ascii_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.text)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    dump_args(&node.args, &mut out);
    out
}

fn dump_args(args: &Args, out: &mut String) {
    let mut push = |text: &str| {
        out.push(' ');
        out.push_str(&go_quote(text));
    };
    match args {
        Args::Empty => {}
        Args::Words(words) | Args::Json(words) => words.iter().for_each(|w| push(w)),
        Args::Shell(text) => push(text),
        Args::Pairs(pairs) => {
            for pair in pairs {
                push(&pair.key);
                push(&pair.value);
                push(if pair.legacy { "" } else { "=" });
            }
        }
        Args::Health { kind, command } => {
            push(kind);
            dump_args(command, out);
        }
        Args::Trigger(node) => {
            out.push_str(&format!(" ({})", dump_inner(node)));
        }
    }
}

/// Quotes like Go's `strconv.Quote`: `"` and `\` escaped, non-printable characters as
/// `\n`, `\x00`, `\u00a0` and so on.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: no controls, no spaces other than U+0020,
/// no common format characters.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{8}\u{c}\n\r\t\0"), r#""\b\f\n\r\t\x00""#);
        assert_eq!(go_quote("♥ \u{a0}"), "\"♥ \\u00a0\"");
    }
}
