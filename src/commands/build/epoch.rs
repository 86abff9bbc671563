//! The build's `SOURCE_DATE_EPOCH`, from where BuildKit takes it, first found first:
//! `--build-arg SOURCE_DATE_EPOCH=…`, the environment variable (which `docker buildx`
//! passes as that build argument), and the Dockerfile's global `ARG SOURCE_DATE_EPOCH=…`.
//! The value is seconds since 1970, or `context`: the context's own time, a git context's
//! commit time (a local directory has none: no epoch). With none given, a git context's
//! build takes its commit time.

use std::collections::BTreeMap;

use miette::Result;

const NAME: &str = "SOURCE_DATE_EPOCH";

/// 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: i64 = 253_402_300_799;

const HELP: &str = "give the seconds since 1970-01-01 UTC, up to the end of year 9999 (e.g. \
                    `$(git log -1 --format=%ct)`), or `context` for a git context's commit time";

/// The epoch of the build, if any. A value resolved from `context` replaces the build
/// argument, so an `ARG SOURCE_DATE_EPOCH` of the Dockerfile sees the number.
pub(crate) fn resolve(
    build_args: &mut BTreeMap<String, String>,
    dockerfile: &str,
    dockerfile_path: &std::path::Path,
    context_time: Option<i64>,
) -> Result<Option<i64>> {
    // Where the value came from, and for a Dockerfile default, the line to show.
    let given = match build_args.get(NAME) {
        Some(value) => Some(("--build-arg SOURCE_DATE_EPOCH", value.clone(), None)),
        None => std::env::var(NAME)
            .ok()
            .map(|value| ("the environment variable SOURCE_DATE_EPOCH", value, None))
            .or_else(|| {
                dockerfile_default(dockerfile).map(|(value, span)| {
                    (
                        "the Dockerfile's `ARG SOURCE_DATE_EPOCH`",
                        value,
                        Some(span),
                    )
                })
            }),
    };
    let Some((from, value, span)) = given.filter(|(_, value, _)| !value.is_empty()) else {
        // None given: a git context's commit time, so that a build of a commit is the
        // same image whoever builds it (and `verify-build` can repeat it).
        return Ok(context_time);
    };
    if value == "context" {
        // The build argument says what the build used: the number, or nothing.
        let resolved = context_time
            .map(|time| time.to_string())
            .unwrap_or_default();
        build_args.insert(NAME.to_owned(), resolved);
        if context_time.is_none() {
            eprintln!(
                "SOURCE_DATE_EPOCH=context: a local directory has no time of its own, so the \
                 build has no epoch (a git context's is its commit's time)"
            );
        }
        return Ok(context_time);
    }
    if let Some(epoch) = seconds(&value) {
        return Ok(Some(epoch));
    }
    let message = format!("invalid SOURCE_DATE_EPOCH: {value} (from {from})");
    Err(match span {
        Some(span) => crate::report::dockerfile_message(
            message,
            Some(HELP.to_owned()),
            span,
            dockerfile_path,
            dockerfile,
        ),
        None => miette::miette!(help = HELP, "{message}"),
    })
}

/// The environment variable alone, for commands without a Dockerfile (`rbuild export`).
pub(crate) fn from_environment() -> Result<Option<i64>> {
    match std::env::var(NAME) {
        Ok(value) if !value.is_empty() => seconds(&value).map(Some).ok_or_else(|| {
            miette::miette!(
                help = HELP,
                "invalid SOURCE_DATE_EPOCH: {value} (from the environment variable SOURCE_DATE_EPOCH)"
            )
        }),
        _ => Ok(None),
    }
}

/// `value` as an epoch: whole seconds from 0 to the end of year 9999, as RFC 3339 times
/// (the config's `created`) have four digits of year, and tools fail to read more.
fn seconds(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|epoch| (0..=LAST_RFC3339_SECOND).contains(epoch))
}

/// The default of a global `ARG SOURCE_DATE_EPOCH=…` (before the first FROM), as written,
/// and where its ARG is.
fn dockerfile_default(dockerfile: &str) -> Option<(String, rbuild_frontend::Span)> {
    let parsed = rbuild_frontend::parse(dockerfile).ok()?;
    parsed
        .global_args
        .iter()
        .filter_map(|instruction| match &instruction.kind {
            rbuild_frontend::InstructionKind::Arg(decls) => {
                Some(decls.iter().map(|decl| (decl, instruction.span)))
            }
            _ => None,
        })
        .flatten()
        .rfind(|(decl, _)| decl.name == NAME)
        .and_then(|(decl, span)| decl.default.clone().map(|value| (value, span)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static std::path::Path {
        std::path::Path::new("Dockerfile")
    }

    fn args(value: Option<&str>) -> BTreeMap<String, String> {
        value
            .map(|value| (NAME.to_owned(), value.to_owned()))
            .into_iter()
            .collect()
    }

    // The environment is the test process's: these cases give a build argument, which
    // is read first, or a Dockerfile default only where the variable is not set.
    #[test]
    fn build_args_context_and_invalid_values() {
        let dockerfile = "ARG SOURCE_DATE_EPOCH=1445412480\nFROM scratch\n";
        let mut given = args(Some("1700000000"));
        assert_eq!(
            resolve(&mut given, dockerfile, path(), None).unwrap(),
            Some(1_700_000_000)
        );

        let mut from_context = args(Some("context"));
        assert_eq!(
            resolve(
                &mut from_context,
                "FROM scratch\n",
                path(),
                Some(1_700_000_101)
            )
            .unwrap(),
            Some(1_700_000_101)
        );
        assert_eq!(from_context[NAME], "1700000101");
        let mut local = args(Some("context"));
        assert_eq!(
            resolve(&mut local, "FROM scratch\n", path(), None).unwrap(),
            None
        );
        assert_eq!(local[NAME], "");

        for beyond in ["253402300800", "99999999999999", "-1"] {
            assert!(
                resolve(&mut args(Some(beyond)), dockerfile, path(), None).is_err(),
                "{beyond}"
            );
        }
        assert_eq!(
            resolve(&mut args(Some("253402300799")), dockerfile, path(), None).unwrap(),
            Some(LAST_RFC3339_SECOND)
        );
        let error =
            resolve(&mut args(Some("not-a-timestamp")), dockerfile, path(), None).unwrap_err();
        assert!(
            error.to_string().contains(
                "invalid SOURCE_DATE_EPOCH: not-a-timestamp (from --build-arg SOURCE_DATE_EPOCH)"
            ),
            "{error}"
        );
        assert_eq!(
            dockerfile_default(dockerfile)
                .map(|(value, _)| value)
                .as_deref(),
            Some("1445412480")
        );
        assert!(dockerfile_default("FROM scratch\nARG SOURCE_DATE_EPOCH=5\n").is_none());
    }
}
