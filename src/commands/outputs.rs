//! Where `rbuild build` sends its results besides the store: `-o` outputs, and the build
//! cache targets of `--cache-from` and `--cache-to`.

use std::io::IsTerminal;
use std::path::PathBuf;

use miette::Result;
use rbuild_builder::{CacheTarget, Exporter};

use super::registry::parse_reference;

/// Where `-o` sends the result.
pub(super) enum Output {
    Archive(rbuild_store::ArchiveFormat, Destination),
    Tar(Destination),
    Local(PathBuf),
    Registry(rbuild_store::Reference),
    /// `type=docker` without `dest`, `type=image` without `push`: buildx loads the image
    /// into the daemon's store; rbuild's store has it already, so nothing more is done.
    Store,
}

/// Where a tar output goes: a file, or standard output (`dest=-`, or `-o -`).
pub(super) enum Destination {
    File(PathBuf),
    Stdout,
}

impl Output {
    pub(super) fn to_stdout(&self) -> bool {
        matches!(
            self,
            Output::Archive(_, Destination::Stdout) | Output::Tar(Destination::Stdout)
        )
    }

    /// The output type, when it can hold one platform's image only (a tar of the
    /// filesystem; a docker-archive, which `docker load` reads one image per name from).
    pub(super) fn single_platform_only(&self) -> Option<&'static str> {
        match self {
            Output::Tar(_) => Some("tar"),
            Output::Archive(rbuild_store::ArchiveFormat::Docker, _) => Some("docker"),
            _ => None,
        }
    }

    /// The builder's exporter for this output; `None` for the store, which has the image.
    pub(super) fn exporter(self) -> Option<Exporter> {
        let destination = |dest| match dest {
            Destination::File(path) => rbuild_builder::Destination::File(path),
            Destination::Stdout => {
                rbuild_builder::Destination::Writer(Box::new(crate::output::stdout()))
            }
        };
        Some(match self {
            Output::Archive(format, dest) => Exporter::Archive(format, destination(dest)),
            Output::Tar(dest) => Exporter::Tar(destination(dest)),
            Output::Local(dir) => Exporter::Local(dir),
            Output::Registry(target) => Exporter::Registry(target),
            Output::Store => return None,
        })
    }
}

/// All `-o` outputs, checked together as buildx does: at most one may write to stdout,
/// and never to a terminal (a tar would fill the screen).
pub(super) fn parse_outputs(texts: &[String]) -> Result<Vec<Output>> {
    let outputs = texts
        .iter()
        .map(|text| parse_output(text))
        .collect::<Result<Vec<_>>>()?;
    if outputs.iter().filter(|o| o.to_stdout()).count() > 1 {
        return Err(miette::miette!(
            help = "send one of them to a file with `dest=FILE`",
            "more than one `-o` output writes to standard output"
        ));
    }
    if outputs.iter().any(Output::to_stdout) && std::io::stdout().is_terminal() {
        return Err(miette::miette!(
            help = "redirect standard output to a file or a pipe (`rbuild build -o - . > rootfs.tar`), or give `dest=FILE`",
            "refusing to write a tar to the terminal"
        ));
    }
    Ok(outputs)
}

/// `type=registry,ref=REF[,mode=min|max]`, or a bare `REF`.
pub(super) fn parse_cache(text: &str, flag: &str) -> Result<CacheTarget> {
    if !text.contains('=') {
        return Ok(CacheTarget {
            reference: parse_reference(text)?,
            max: false,
            mounts: false,
            ignore_error: false,
        });
    }
    let mut reference = None;
    let mut max = false;
    let mut mounts = false;
    let mut ignore_error = false;
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("type", "registry")) => {}
            Some(("type", other)) => {
                return Err(miette::miette!(
                    help = "the cache type rbuild supports is `registry`",
                    "{flag} `{text}`: unknown type `{other}`"
                ));
            }
            Some(("ref", value)) => reference = Some(parse_reference(value)?),
            Some(("mode", "min")) => max = false,
            Some(("mode", "max")) => max = true,
            Some(("mode", other)) => {
                return Err(miette::miette!(
                    "{flag} `{text}`: mode is `min` or `max`, not `{other}`"
                ));
            }
            Some(("ignore-error", "true")) => ignore_error = true,
            Some(("ignore-error", "false")) => ignore_error = false,
            Some(("mounts", "true")) => mounts = true,
            Some(("mounts", "false")) => mounts = false,
            Some(("mounts", other)) => {
                return Err(miette::miette!(
                    "{flag} `{text}`: mounts is `true` or `false`, not `{other}`"
                ));
            }
            _ => return Err(miette::miette!("{flag} `{text}`: unknown field `{field}`")),
        }
    }
    let reference =
        reference.ok_or_else(|| miette::miette!("{flag} `{text}`: `ref=` is missing"))?;
    Ok(CacheTarget {
        reference,
        max,
        mounts,
        ignore_error,
    })
}

/// `type=oci|docker|tar|local,dest=PATH`, `type=registry,name=REF`, a bare `PATH` for
/// `type=local`, or `-` for a tar of the filesystem on stdout, as buildx does. `dest=-`
/// (or no `dest` for `tar` and `oci`) means stdout.
fn parse_output(text: &str) -> Result<Output> {
    if text == "-" {
        return Ok(Output::Tar(Destination::Stdout));
    }
    if !text.contains('=') {
        return Ok(Output::Local(PathBuf::from(text)));
    }
    let mut kind = None;
    let mut dest = None;
    let mut name = None;
    let mut push = false;
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("type", value)) => kind = Some(value.to_owned()),
            Some(("dest", value)) => dest = Some(PathBuf::from(value)),
            Some(("name", value)) => name = Some(value.to_owned()),
            Some(("push", "true")) => push = true,
            Some(("push", "false")) => push = false,
            _ => return Err(miette::miette!("-o `{text}`: unknown field `{field}`")),
        }
    }
    if kind.as_deref() == Some("image") && !push {
        if name.is_some() {
            return Err(miette::miette!(
                help = "name the image with `-t NAME`, or add `push=true` to push it",
                "-o `{text}`: the image goes to rbuild's store under the `-t` names"
            ));
        }
        return Ok(Output::Store);
    }
    if matches!(kind.as_deref(), Some("registry") | Some("image")) {
        let name = name.ok_or_else(|| miette::miette!("-o `{text}`: `name=` is missing"))?;
        return Ok(Output::Registry(parse_reference(&name)?));
    }
    let file = |dest: Option<PathBuf>| match dest {
        Some(path) if path.as_os_str() == "-" => Destination::Stdout,
        Some(path) => Destination::File(path),
        None => Destination::Stdout,
    };
    match kind.as_deref() {
        Some("oci") => Ok(Output::Archive(
            rbuild_store::ArchiveFormat::Oci,
            file(dest),
        )),
        // docker's exporter without `dest` loads into the daemon: rbuild's store already
        // has the image.
        Some("docker") if dest.is_none() => Ok(Output::Store),
        Some("docker") => Ok(Output::Archive(
            rbuild_store::ArchiveFormat::Docker,
            file(dest),
        )),
        Some("tar") => Ok(Output::Tar(file(dest))),
        Some("local") | None => match dest {
            Some(dest) if dest.as_os_str() == "-" => Err(miette::miette!(
                help = "`type=local` writes a directory; for a tar on standard output use `-o -` (`type=tar,dest=-`)",
                "-o `{text}`: a local output cannot go to standard output"
            )),
            Some(dest) => Ok(Output::Local(dest)),
            None => Err(miette::miette!("-o `{text}`: `dest=` is missing")),
        },
        Some(other) => Err(miette::miette!(
            help = "the output types are `oci`, `docker`, `tar`, `local`, `image` and `registry`",
            "-o `{text}`: unknown type `{other}`"
        )),
    }
}
