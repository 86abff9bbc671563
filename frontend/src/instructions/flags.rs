//! Reading an instruction's `--name=value` flags: each instruction asks for the flags it
//! knows, and whatever is left over is an unknown flag.

use crate::error::{shorten, suggest};
use crate::syntax::{Flag, Node};
use crate::{Error, ErrorKind, Span};

pub(super) struct Flags<'a> {
    node: &'a Node,
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a> Flags<'a> {
    pub fn new(node: &'a Node) -> Self {
        Flags {
            node,
            used: vec![false; node.flags.len()],
            known: Vec::new(),
        }
    }

    /// The one occurrence of `--name`, if any.
    fn take(&mut self, name: &'static str) -> Result<Option<&'a Flag>, Error> {
        self.known.push(name);
        let mut found: Option<&'a Flag> = None;
        for (flag, used) in self.node.flags.iter().zip(self.used.iter_mut()) {
            if flag.name() != name {
                continue;
            }
            if found.is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidFlag,
                    flag.span,
                    format!("duplicate flag `--{name}`"),
                ));
            }
            *used = true;
            found = Some(flag);
        }
        Ok(found)
    }

    /// A string flag: `--name=value`.
    pub fn string(&mut self, name: &'static str) -> Result<Option<(String, Span)>, Error> {
        let Some(flag) = self.take(name)? else {
            return Ok(None);
        };
        match flag.value() {
            Some(value) => Ok(Some((value.to_string(), flag.span))),
            None => Err(Error::new(
                ErrorKind::InvalidFlag,
                flag.span,
                format!("flag `--{name}` needs a value"),
            )
            .with_help(format!("write `--{name}=<value>`"))),
        }
    }

    /// A flag that may be given several times: `--name=a --name=b`, in order.
    pub fn strings(&mut self, name: &'static str) -> Result<Vec<String>, Error> {
        Ok(self
            .spanned_strings(name)?
            .into_iter()
            .map(|(value, _)| value)
            .collect())
    }

    /// [`Flags::strings`] with where each one is (`--mount`).
    pub fn spanned_strings(&mut self, name: &'static str) -> Result<Vec<(String, Span)>, Error> {
        self.known.push(name);
        let mut values = Vec::new();
        for (flag, used) in self.node.flags.iter().zip(self.used.iter_mut()) {
            if flag.name() != name {
                continue;
            }
            *used = true;
            match flag.value() {
                Some(value) => values.push((value.to_string(), flag.span)),
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidFlag,
                        flag.span,
                        format!("flag `--{name}` needs a value"),
                    )
                    .with_help(format!("write `--{name}=<value>`")));
                }
            }
        }
        Ok(values)
    }

    /// A boolean flag: `--name`, `--name=true` or `--name=false`.
    pub fn boolean(&mut self, name: &'static str) -> Result<bool, Error> {
        Ok(self.optional_boolean(name)?.unwrap_or(false))
    }

    /// [`Flags::boolean`] where leaving the flag out means something else than `false`
    /// (ADD `--unpack`: it depends on the source).
    pub fn optional_boolean(&mut self, name: &'static str) -> Result<Option<bool>, Error> {
        let Some(flag) = self.take(name)? else {
            return Ok(None);
        };
        match flag.value().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(Error::new(
                ErrorKind::InvalidFlag,
                flag.span,
                format!("flag `--{name}` expects `true` or `false`, not `{other}`"),
            )),
        }
    }

    /// A flag rbuild knows but does not implement yet.
    pub fn unsupported(&mut self, name: &'static str) -> Result<(), Error> {
        match self.take(name)? {
            Some(flag) => Err(Error::new(
                ErrorKind::Unsupported,
                flag.span,
                format!(
                    "`{} --{name}` is not supported by rbuild yet",
                    self.node.keyword
                ),
            )),
            None => Ok(()),
        }
    }

    /// Fails on the first flag nobody asked for.
    pub fn finish(self) -> Result<(), Error> {
        let Some(flag) = self
            .node
            .flags
            .iter()
            .zip(&self.used)
            .find(|(_, used)| !**used)
        else {
            return Ok(());
        };
        let flag = flag.0;
        let error = Error::new(
            ErrorKind::UnknownFlag,
            flag.span,
            format!(
                "unknown flag `--{}` for `{}`",
                shorten(flag.name()),
                self.node.keyword
            ),
        );
        if self.known.is_empty() {
            return Err(error.with_help(format!("`{}` takes no flags", self.node.keyword)));
        }
        Err(match suggest(flag.name(), &self.known) {
            Some(name) => error.with_help(format!("did you mean `--{name}`?")),
            None => error.with_help(format!(
                "`{}` takes {}",
                self.node.keyword,
                self.known
                    .iter()
                    .map(|k| format!("`--{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
    }
}
