//! `RUN --mount` options in BuildKit's syntax: one CSV record of `key=value` fields and
//! bare words (`ro`, `rw`, `required`). The record is split and its keys checked when the
//! Dockerfile is parsed; values are expanded and given their meaning during conversion,
//! when the stage's variables are known. `from` is never expanded (BuildKit refuses a
//! variable there: stages must be known before any is converted).

use crate::error::suggest;
use crate::{CacheSharing, Error, ErrorKind, Span};

/// One `--mount=...` of a RUN, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// `(key, value)` in order; keys lower-cased, `None` for a bare word such as `ro`.
    pub fields: Vec<(String, Option<String>)>,
    /// The whole flag.
    pub span: Span,
}

/// Every key BuildKit accepts, aliases included.
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
];

const TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

/// `type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A mount's options after expansion and validation, before paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub required: bool,
    pub size: Option<u64>,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: Option<String>,
}

impl RunMount {
    /// Splits `--mount`'s value and checks its keys.
    pub(crate) fn parse(value: &str, span: Span) -> Result<RunMount, Error> {
        let invalid = |message: String| Error::new(ErrorKind::InvalidFlag, span, message);
        let record = split_csv(value)
            .map_err(|message| invalid(format!("failed to parse `--mount`: {message}")))?;
        let mut fields = Vec::with_capacity(record.len());
        for field in record {
            let (key, value) = match field.split_once('=') {
                Some((key, value)) => (key.to_ascii_lowercase(), Some(value.to_owned())),
                None => (field.to_ascii_lowercase(), None),
            };
            if !KEYS.contains(&key.as_str()) {
                let error = invalid(format!("unexpected key `{key}` in `--mount`"));
                return Err(match suggest(&key, &KEYS) {
                    Some(known) => error.with_help(format!("did you mean `{known}`?")),
                    None => error.with_help(format!(
                        "the keys are {}",
                        KEYS.map(|k| format!("`{k}`")).join(", ")
                    )),
                });
            }
            if key == "from"
                && let Some(from) = &value
                && from
                    .char_indices()
                    .any(|(i, c)| c == '$' && i + 1 < from.len())
            {
                return Err(invalid(format!(
                    "`from` doesn't support variable expansion (`{from}`)"
                ))
                .with_help("define an alias stage instead: `FROM <image> AS <name>`"));
            }
            fields.push((key, value));
        }
        Ok(RunMount { fields, span })
    }

    /// `from=` as written; the last one wins.
    pub fn from(&self) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(key, _)| key == "from")
            .and_then(|(_, value)| value.as_deref())
    }

    /// Whether the mount reads `from` (a tmpfs ignores it, as in BuildKit). A `type`
    /// written with a variable is taken as one that does.
    pub(crate) fn reads_from(&self) -> bool {
        let kind = self
            .fields
            .iter()
            .rev()
            .find(|(key, _)| key == "type")
            .and_then(|(_, value)| value.as_deref());
        self.from().is_some() && !kind.is_some_and(|kind| kind.eq_ignore_ascii_case("tmpfs"))
    }

    /// Expands the values (not `from`) with `expand` and checks them as BuildKit does.
    pub(crate) fn options(
        &self,
        mut expand: impl FnMut(&str) -> Result<String, Error>,
    ) -> Result<MountOptions, Error> {
        let invalid = |message: String| Error::new(ErrorKind::InvalidFlag, self.span, message);
        let mut kind = MountType::Bind;
        for (key, value) in &self.fields {
            if key == "type"
                && let Some(value) = value
            {
                let value = expand(value)?.to_ascii_lowercase();
                kind = match value.as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let error = invalid(format!("unsupported mount type `{value}`"));
                        return Err(match suggest(&value, &TYPES) {
                            Some(known) => error.with_help(format!("did you mean `{known}`?")),
                            None => error.with_help(
                                "the types are `bind`, `cache`, `tmpfs`, `secret` and `ssh`",
                            ),
                        });
                    }
                };
            }
        }
        let mut options = MountOptions {
            kind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            required: false,
            size: None,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            env: None,
        };
        let unexpected = |key: &str| {
            invalid(format!(
                "unexpected key `{key}` for mount type `{}`",
                kind.name()
            ))
        };
        let mut readonly = None;
        for (key, value) in &self.fields {
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => readonly = Some(true),
                    "readwrite" | "rw" => readonly = Some(false),
                    "required" if matches!(kind, MountType::Secret | MountType::Ssh) => {
                        options.required = true
                    }
                    "required" => return Err(unexpected(key)),
                    _ => {
                        return Err(invalid(format!(
                            "mount option `{key}` must be a `key=value` pair"
                        )));
                    }
                }
                continue;
            };
            if key == "type" {
                continue;
            }
            if key == "from" {
                options.from = Some(value.clone());
                continue;
            }
            let value = expand(value)?;
            let boolean = |value: &str| {
                parse_bool(value)
                    .ok_or_else(|| invalid(format!("invalid value for `{key}`: `{value}`")))
            };
            let number = |value: &str, radix: u32| {
                u32::from_str_radix(value, radix)
                    .map_err(|_| invalid(format!("invalid value `{value}` for `{key}`")))
            };
            match key.as_str() {
                "source" | "src" => options.source = Some(value),
                "target" | "dst" | "destination" => options.target = Some(value),
                "readonly" | "ro" => readonly = Some(boolean(&value)?),
                "readwrite" | "rw" => readonly = Some(!boolean(&value)?),
                "required" if matches!(kind, MountType::Secret | MountType::Ssh) => {
                    options.required = boolean(&value)?
                }
                "size" if kind == MountType::Tmpfs => {
                    options.size = Some(parse_ram_bytes(&value).ok_or_else(|| {
                        invalid(format!("invalid value for `size`: `{value}`"))
                            .with_help("give a size such as `64m` or `1g`")
                    })?)
                }
                "id" => options.id = Some(value),
                "sharing" => {
                    options.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            return Err(invalid(format!("unsupported sharing value `{value}`"))
                                .with_help("use `shared`, `private` or `locked`"));
                        }
                    })
                }
                "mode" => options.mode = Some(number(&value, 8)?),
                "uid" => options.uid = Some(number(&value, 10)?),
                "gid" => options.gid = Some(number(&value, 10)?),
                "env" if kind == MountType::Secret => options.env = Some(value),
                _ => return Err(unexpected(key)),
            }
        }
        // As BuildKit: cache and tmpfs mounts are writable unless told otherwise, binds
        // and secrets read-only.
        options.readonly = readonly.unwrap_or(!matches!(kind, MountType::Cache | MountType::Tmpfs));
        validate(&options).map_err(invalid)?;
        Ok(options)
    }
}

fn validate(options: &MountOptions) -> Result<(), String> {
    let kind = options.kind.name();
    if !matches!(
        options.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (name, set) in [
            ("mode", options.mode.is_some()),
            ("uid", options.uid.is_some()),
            ("gid", options.gid.is_some()),
        ] {
            if set {
                return Err(format!("`{name}` not allowed for `{kind}` mounts"));
            }
        }
    }
    if options.sharing.is_some() && options.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for `{kind}` mount"));
    }
    if options.kind == MountType::Secret {
        if options.from.is_some() {
            return Err("secret mount should not have a `from`".into());
        }
        if options.source.is_none() && options.target.is_none() && options.id.is_none() {
            return Err(
                "invalid secret mount: one of `id`, `source` or `target` is required".into(),
            );
        }
        if options.source.is_some() && options.id.is_some() {
            return Err("a secret mount cannot have both `source` and `id`".into());
        }
    }
    Ok(())
}

/// One record of Go's `encoding/csv` (what BuildKit reads `--mount` with): fields split
/// on `,`; a field that starts with `"` is quoted, `""` inside it being one `"`.
fn split_csv(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err("the value is empty".into());
    }
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field has no closing `\"`".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("extraneous `\"` in a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some('"') => return Err("bare `\"` in a field that is not quoted".into()),
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
        }
        fields.push(field);
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// docker's `units.RAMInBytes`: a number, an optional space, then an optional binary
/// unit (`k`, `m`, `g`, `t`, `p`, any case) with optional `i` and `b` (`64m`, `1.5GiB`).
pub(crate) fn parse_ram_bytes(text: &str) -> Option<u64> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(number_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut unit = rest.chars();
    let multiplier: u64 = match unit.clone().next().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some('p') => 1 << 50,
        _ => 1,
    };
    if multiplier > 1 {
        unit.next();
    }
    let rest = unit.as_str();
    let rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
    let rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunMount, Error> {
        RunMount::parse(text, Span::new(0, text.len()))
    }

    fn options(text: &str) -> Result<MountOptions, Error> {
        parse(text)?.options(|word| Ok(word.replace("$DIR", "/expanded")))
    }

    fn message(result: Result<MountOptions, Error>) -> String {
        result.unwrap_err().message().to_string()
    }

    #[test]
    fn splits_csv_like_go() {
        assert_eq!(
            split_csv("type=bind,target=/a").unwrap(),
            ["type=bind", "target=/a"]
        );
        assert_eq!(
            split_csv(r#""target=/a,b",ro"#).unwrap(),
            ["target=/a,b", "ro"]
        );
        assert_eq!(split_csv(r#""say ""hi""""#).unwrap(), [r#"say "hi""#]);
        assert_eq!(split_csv("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(split_csv("a,").unwrap(), ["a", ""]);
        assert!(split_csv("").is_err());
        assert!(split_csv(r#"a"b"#).is_err());
        assert!(split_csv(r#""a"b"#).is_err());
        assert!(split_csv(r#""open"#).is_err());
    }

    #[test]
    fn defaults_follow_buildkit() {
        let bind = options("target=/src").unwrap();
        assert_eq!(bind.kind, MountType::Bind);
        assert!(bind.readonly);
        let cache = options("type=cache,target=/root/.cache").unwrap();
        assert_eq!(cache.kind, MountType::Cache);
        assert!(!cache.readonly);
        assert_eq!(cache.sharing, None);
        let tmpfs = options("type=TMPFS,dst=/tmp,size=64m").unwrap();
        assert_eq!(tmpfs.kind, MountType::Tmpfs);
        assert_eq!(tmpfs.size, Some(64 << 20));
        assert_eq!(tmpfs.target.as_deref(), Some("/tmp"));
        assert!(!tmpfs.readonly);
        let secret = options("type=secret,id=aws").unwrap();
        assert!(secret.readonly);
        assert!(!secret.required);
    }

    #[test]
    fn reads_every_key_and_alias() {
        let cache = options(
            "type=cache,id=pip,destination=$DIR/c,from=base,source=/seed,sharing=LOCKED,mode=0700,uid=1000,gid=50,ro",
        )
        .unwrap();
        assert_eq!(cache.id.as_deref(), Some("pip"));
        assert_eq!(cache.target.as_deref(), Some("/expanded/c"));
        assert_eq!(cache.from.as_deref(), Some("base"));
        assert_eq!(cache.source.as_deref(), Some("/seed"));
        assert_eq!(cache.sharing, Some(CacheSharing::Locked));
        assert_eq!(
            (cache.mode, cache.uid, cache.gid),
            (Some(0o700), Some(1000), Some(50))
        );
        assert!(cache.readonly);
        let bind = options("src=a,dst=/b,rw=true").unwrap();
        assert!(!bind.readonly);
        assert_eq!(bind.source.as_deref(), Some("a"));
        let bind = options("target=/b,readwrite").unwrap();
        assert!(!bind.readonly);
        let bind = options("target=/b,readonly=false").unwrap();
        assert!(!bind.readonly);
        let secret =
            options("type=secret,id=token,env=TOKEN,required,mode=0440,uid=1,gid=2").unwrap();
        assert_eq!(secret.env.as_deref(), Some("TOKEN"));
        assert!(secret.required);
        assert!(!options("type=secret,id=t,required=false").unwrap().required);
        // `type` may come after the keys that depend on it.
        assert_eq!(
            options("size=1g,type=tmpfs,target=/t").unwrap().size,
            Some(1 << 30)
        );
    }

    #[test]
    fn rejects_what_buildkit_rejects() {
        let error = parse("type=cache,taget=/x").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidFlag);
        assert_eq!(error.message(), "unexpected key `taget` in `--mount`");
        assert_eq!(error.help(), Some("did you mean `target`?"));
        let error = parse("type=bind,from=$STAGE,target=/x").unwrap_err();
        assert!(error.message().contains("variable expansion"), "{error}");
        assert_eq!(
            message(options("type=volume,target=/x")),
            "unsupported mount type `volume`"
        );
        assert_eq!(
            message(options("type=bind,target=/x,size=1m")),
            "unexpected key `size` for mount type `bind`"
        );
        assert_eq!(
            message(options("type=cache,target=/x,required")),
            "unexpected key `required` for mount type `cache`"
        );
        assert_eq!(
            message(options("type=bind,target=/x,mode=0755")),
            "`mode` not allowed for `bind` mounts"
        );
        assert_eq!(
            message(options("type=tmpfs,target=/x,uid=1")),
            "`uid` not allowed for `tmpfs` mounts"
        );
        assert_eq!(
            message(options("type=bind,target=/x,sharing=locked")),
            "invalid cache sharing set for `bind` mount"
        );
        assert_eq!(
            message(options("type=cache,target=/x,sharing=sometimes")),
            "unsupported sharing value `sometimes`"
        );
        assert_eq!(
            message(options("type=cache,target=/x,mode=999")),
            "invalid value `999` for `mode`"
        );
        assert_eq!(
            message(options("type=bind,target=/x,ro=maybe")),
            "invalid value for `ro`: `maybe`"
        );
        assert_eq!(
            message(options("type=tmpfs,target=/x,size=lots")),
            "invalid value for `size`: `lots`"
        );
        assert_eq!(
            message(options("type=bind,target")),
            "mount option `target` must be a `key=value` pair"
        );
        assert_eq!(
            message(options("type=secret,id=a,from=b")),
            "secret mount should not have a `from`"
        );
        assert_eq!(
            message(options("type=secret,mode=0400")),
            "invalid secret mount: one of `id`, `source` or `target` is required"
        );
        assert_eq!(
            message(options("type=secret,id=a,source=b")),
            "a secret mount cannot have both `source` and `id`"
        );
        assert_eq!(
            message(options("type=bind,target=/x,env=A")),
            "unexpected key `env` for mount type `bind`"
        );
    }

    #[test]
    fn from_is_literal() {
        let mount = parse("type=bind,from=build,target=/x").unwrap();
        assert_eq!(mount.from(), Some("build"));
        assert!(mount.reads_from());
        let tmpfs = parse("type=tmpfs,from=build,target=/x").unwrap();
        assert!(!tmpfs.reads_from());
        // A lone `$` at the end is no variable.
        assert_eq!(parse("from=a$,target=/x").unwrap().from(), Some("a$"));
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_bytes("1024"), Some(1024));
        assert_eq!(parse_ram_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_ram_bytes("64 MiB"), Some(64 << 20));
        assert_eq!(parse_ram_bytes("1.5g"), Some(3 << 29));
        assert_eq!(parse_ram_bytes("2KB"), Some(2048));
        assert_eq!(parse_ram_bytes("1b"), Some(1));
        assert_eq!(parse_ram_bytes(""), None);
        assert_eq!(parse_ram_bytes("m"), None);
        assert_eq!(parse_ram_bytes("1x"), None);
        assert_eq!(parse_ram_bytes("1.2.3"), None);
        assert_eq!(parse_ram_bytes("-1"), None);
    }
}
