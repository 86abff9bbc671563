//! Where the Dockerfile and the context come from, standard input included: `-f -` reads
//! the Dockerfile from stdin; `-` as the context reads either a tar of the context (plain,
//! or compressed with gzip, bzip2, xz or zstd) or a Dockerfile alone, told apart by
//! content as docker does.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, Result, WrapErr};

use crate::commands::check::{
    decode_dockerfile, dockerfile_path, read_dockerfile, read_ignore_file,
};

/// The name a Dockerfile read from stdin goes by in messages.
const STDIN_NAME: &str = "<stdin>";

/// The Dockerfile and the context of a build, wherever they came from.
pub struct Source {
    /// The Dockerfile's path, for messages (`<stdin>` when it came from standard input).
    pub dockerfile_path: PathBuf,
    pub dockerfile: String,
    /// The context directory: the one given, or one unpacked from standard input.
    pub context: PathBuf,
    /// The ignore file's text.
    pub ignore: Option<String>,
    /// The Dockerfile came alone on stdin, so the context is empty.
    pub empty_context: bool,
    /// The context's own time, for `SOURCE_DATE_EPOCH=context`: a git context's commit
    /// time; `None` for a local directory (which has none that is reproducible).
    pub context_time: Option<i64>,
    /// A git context: where it came from, and the Dockerfile's path in it.
    pub git: Option<(rbuild_builder::GitOrigin, String)>,
    /// Holds what came on stdin (or was fetched) until the build is over.
    _scratch: Option<tempfile::TempDir>,
}

impl Source {
    /// `context` and `-f FILE` as given on the command line.
    pub fn open(context: &Path, file: Option<&Path>) -> Result<Source> {
        let file_is_stdin = file.is_some_and(|f| f == Path::new("-"));
        if context == Path::new("-") {
            if file_is_stdin {
                return Err(miette::miette!(
                    help = "give the context as a directory (`rbuild build -f - DIR`), or send a tar of the context holding the Dockerfile",
                    "standard input cannot be both the context (`-`) and the Dockerfile (`-f -`)"
                ));
            }
            return Source::from_stdin(file);
        }
        if file_is_stdin {
            let dockerfile = decode_dockerfile(Path::new(STDIN_NAME), read_stdin()?)?;
            // No Dockerfile beside which to look for `<Dockerfile>.dockerignore`: only the
            // context's own ignore file applies, as with docker.
            let path = context.join(".dockerignore");
            let ignore = match std::fs::read(&path) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => {
                    return Err(miette::Report::from_err(err)
                        .wrap_err(format!("cannot read {}", path.display())));
                }
            };
            return Ok(Source {
                dockerfile_path: PathBuf::from(STDIN_NAME),
                dockerfile,
                context: context.to_owned(),
                ignore,
                empty_context: false,
                context_time: None,
                git: None,
                _scratch: None,
            });
        }
        let dockerfile_path = dockerfile_path(file, context);
        Ok(Source {
            dockerfile: read_dockerfile(&dockerfile_path)?,
            ignore: read_ignore_file(&dockerfile_path, context)?,
            dockerfile_path,
            context: context.to_owned(),
            empty_context: false,
            context_time: None,
            git: None,
            _scratch: None,
        })
    }

    /// A context fetched into `scratch` (a git repository), held until the build is over.
    pub fn fetched(
        dockerfile_path: PathBuf,
        dockerfile: String,
        context: PathBuf,
        ignore: Option<String>,
        scratch: tempfile::TempDir,
    ) -> Source {
        Source {
            dockerfile_path,
            dockerfile,
            context,
            ignore,
            empty_context: false,
            context_time: None,
            git: None,
            _scratch: Some(scratch),
        }
    }

    /// `-` as the context: stdin is a tar of the context when it starts with a compression
    /// magic number or a tar header, and a Dockerfile otherwise (buildx's test).
    fn from_stdin(file: Option<&Path>) -> Result<Source> {
        let scratch = tempfile::Builder::new()
            .prefix("rbuild-stdin-")
            .tempdir()
            .into_diagnostic()
            .wrap_err("cannot make a directory for the context from standard input")?;
        let context = scratch.path().join("context");
        std::fs::create_dir(&context)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", context.display()))?;
        // Spilled to a file: a context may be larger than memory, and the archive reader
        // takes a path.
        let input = scratch.path().join("stdin");
        {
            let mut out = std::fs::File::create(&input)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", input.display()))?;
            io::copy(&mut io::stdin().lock(), &mut out)
                .into_diagnostic()
                .wrap_err("cannot read the context from standard input")?;
        }
        let mut head = [0u8; 6];
        let head_len = std::fs::File::open(&input)
            .and_then(|mut f| read_up_to(&mut f, &mut head))
            .into_diagnostic()?;
        let compressed = is_compressed(&head[..head_len]);
        let archive = rbuild_builder::open_archive(&input)
            .into_diagnostic()
            .wrap_err("cannot read the context from standard input")?;
        match archive {
            Some(tar) => {
                let mut archive = tar::Archive::new(tar);
                archive.set_preserve_permissions(true);
                archive.unpack(&context).map_err(|err| {
                    miette::miette!(
                        help = "send a tar of the context (plain, gzip, bzip2, xz or zstd), e.g. `tar -C DIR -c . | rbuild build -`",
                        "cannot unpack the context from standard input: {err}"
                    )
                })?;
                // As for a context directory: `Dockerfile`, else a lower-case `dockerfile`.
                let dockerfile_path = match file {
                    Some(name) => context.join(name),
                    None => dockerfile_path(None, &context),
                };
                if !dockerfile_path.is_file() {
                    return Err(miette::miette!(
                        help =
                            "put the Dockerfile in the tar, or name it with `-f PATH-IN-THE-TAR`",
                        "the context from standard input has no `{}`",
                        file.unwrap_or(Path::new("Dockerfile")).display()
                    ));
                }
                Ok(Source {
                    dockerfile: read_dockerfile(&dockerfile_path)?,
                    ignore: read_ignore_file(&dockerfile_path, &context)?,
                    dockerfile_path,
                    context,
                    empty_context: false,
                    context_time: None,
                    git: None,
                    _scratch: Some(scratch),
                })
            }
            None if compressed => Err(miette::miette!(
                help =
                    "send a tar of the context (plain, gzip, bzip2, xz or zstd), or a Dockerfile",
                "standard input is compressed but holds no tar archive"
            )),
            None => {
                if let Some(file) = file {
                    return Err(miette::miette!(
                        help = "leave out `-f`, or send a tar of the context on standard input",
                        "standard input is a Dockerfile, and so is `-f {}`: which to build is ambiguous",
                        file.display()
                    ));
                }
                let bytes = std::fs::read(&input)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot read {}", input.display()))?;
                Ok(Source {
                    dockerfile: decode_dockerfile(Path::new(STDIN_NAME), bytes)?,
                    dockerfile_path: PathBuf::from(STDIN_NAME),
                    context,
                    ignore: None,
                    empty_context: true,
                    context_time: None,
                    git: None,
                    _scratch: Some(scratch),
                })
            }
        }
    }

    /// For a build that failed at a COPY or ADD from the context: why it found nothing,
    /// when the Dockerfile came alone on stdin (docker's own message names only the
    /// missing file).
    pub fn failure_note(&self, err: &rbuild_builder::BuildError) -> Option<&'static str> {
        let step = err
            .span()
            .and_then(|span| self.dockerfile.get(span.start..span.end))?;
        let keyword = step.split_whitespace().next()?.to_ascii_uppercase();
        let from_context = (keyword == "COPY" || keyword == "ADD") && !step.contains("--from");
        (self.empty_context && from_context).then_some(
            "note: the Dockerfile came on standard input without a context, so COPY and ADD have no files to copy; give a context directory with `rbuild build -f - DIR`, or send a tar of the context with the Dockerfile inside",
        )
    }
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .into_diagnostic()
        .wrap_err("cannot read the Dockerfile from standard input")?;
    Ok(bytes)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// gzip, bzip2, xz or zstd, by magic number.
fn is_compressed(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [
        &[0x1f, 0x8b, 0x08],
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    MAGICS.iter().any(|magic| head.starts_with(magic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_number() {
        assert!(is_compressed(&[0x1f, 0x8b, 0x08, 0]));
        assert!(is_compressed(b"BZh91AY"));
        assert!(is_compressed(&[0x28, 0xb5, 0x2f, 0xfd, 0]));
        assert!(!is_compressed(b"FROM b"));
    }
}
