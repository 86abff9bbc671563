//! `--chmod` values: octal (`0755`, `0` for 0000) or symbolic (`u=rwX,go=rX`, `a+x`,
//! `g-w`), applied per file as chmod(1) does: `X` adds execute only to directories and to
//! files that already have an execute bit.

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid --chmod value `{value}`: use an octal mode up to 7777 or a symbolic mode such as `u=rwX,go=rX`"
)]
pub(crate) struct InvalidChmod {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Which of user (0o4700), group (0o2070), other (0o0007) bits the clause touches.
    who: u32,
    op: char,
    perms: Vec<char>,
}

impl Chmod {
    pub(crate) fn parse(value: &str) -> Result<Chmod, InvalidChmod> {
        let invalid = || InvalidChmod {
            value: value.to_owned(),
        };
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| invalid())?;
            return if mode <= 0o7777 {
                Ok(Chmod::Octal(mode))
            } else {
                Err(invalid())
            };
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o0007,
                    'a' => 0o6777,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                // No `who`: all, as chmod(1) does without a umask.
                who = 0o6777;
            }
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(invalid());
                }
                let mut perms = Vec::new();
                while let Some(&c) = chars.peek() {
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        break;
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause { who, op, perms });
                any = true;
            }
            if !any {
                return Err(invalid());
            }
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits for a file with `mode` (its current bits).
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(mode) => *mode,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    let had_exec = mode & 0o111 != 0;
                    let mut bits = 0;
                    for perm in &clause.perms {
                        bits |= match perm {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || had_exec => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    // `t` belongs to `o`/`a` only; the special bits follow `who`.
                    let mask = clause.who | if clause.who & 0o0007 != 0 { 0o1000 } else { 0 };
                    let bits = bits & mask;
                    mode = match clause.op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(mask & 0o7777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(value: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(value).unwrap().apply(mode, is_dir)
    }

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(apply("0", 0o644, false), 0);
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("a+x", 0o644, false), 0o755);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(
            apply("u=rwX,go=rX", 0o600, false),
            0o644,
            "X: no execute on a plain file"
        );
        assert_eq!(
            apply("u=rwX,go=rX", 0o700, false),
            0o755,
            "X: execute where some was"
        );
        assert_eq!(
            apply("u=rwX,go=rX", 0o600, true),
            0o755,
            "X: execute on directories"
        );
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("o+t", 0o777, true), 0o1777);
        assert_eq!(apply("a=r", 0o4755, false), 0o444);
        for bad in ["", "8", "77777", "u", "u*x", "z+x", "u+q"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
