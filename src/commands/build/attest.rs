//! `--provenance`, `--sbom`, `--attest` and `--annotation`: what the build attaches to its
//! images, read as buildx reads them.

use miette::Result;
use rbuild_builder::{
    Annotation, AnnotationLevel, AttestFormat, AttestOptions, BuildOptions, Invocation,
    ProvenanceMode, SbomFormat,
};

use super::BuildArgs;
use super::stdin::Source;

/// The attestations asked for: provenance `mode=min` unless turned off (`--provenance=false`
/// or `BUILDX_NO_DEFAULT_ATTESTATIONS`), an SBOM when asked.
pub(super) fn options(args: &BuildArgs, source: &Source) -> Result<AttestOptions> {
    let default_off = std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
        .is_ok_and(|value| !value.is_empty() && value != "0" && value != "false");
    let mut provenance = (!default_off).then_some(ProvenanceMode::Min);
    let mut sbom = None;
    if let Some(value) = &args.provenance {
        provenance = parse_provenance("--provenance", value)?;
    }
    if let Some(value) = &args.sbom {
        sbom = parse_sbom("--sbom", value)?;
    }
    for text in &args.attest {
        let fields = fields(text)?;
        let kind = fields
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.as_str());
        let rest: Vec<String> = fields
            .iter()
            .filter(|(k, _)| k != "type")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let rest = if rest.is_empty() {
            "true".to_owned()
        } else {
            rest.join(",")
        };
        match kind {
            Some("provenance") => provenance = parse_provenance("--attest", &rest)?,
            Some("sbom") => sbom = parse_sbom("--attest", &rest)?,
            _ => {
                return Err(miette::miette!(
                    help = "write `--attest type=provenance,mode=max` or `--attest type=sbom`",
                    "--attest `{text}`: the types are `provenance` and `sbom`"
                ));
            }
        }
    }
    Ok(AttestOptions {
        provenance,
        sbom,
        format: match args.attest_format {
            super::flags::AttestFormatArg::Index => AttestFormat::Index,
            super::flags::AttestFormatArg::Oci => AttestFormat::Oci,
        },
        invocation: invocation(source),
    })
}

/// `true`, `false`, `min`, `max`, or fields `mode=…`, `disabled=…`, `version=v1`.
fn parse_provenance(flag: &str, value: &str) -> Result<Option<ProvenanceMode>> {
    let mut mode = Some(ProvenanceMode::Min);
    for (key, field) in fields_or_word(value)? {
        match (key.as_str(), field.to_ascii_lowercase().as_str()) {
            ("", "true" | "1" | "min") | ("mode", "min") => {
                mode = mode.map(|_| ProvenanceMode::Min)
            }
            ("", "max") | ("mode", "max") => mode = mode.map(|_| ProvenanceMode::Max),
            ("", "false" | "0") | ("disabled", "true") => mode = None,
            ("disabled", "false") => {}
            // The only version rbuild writes; buildx's `v0.2` is not.
            ("version", "v1") => {}
            _ => {
                return Err(miette::miette!(
                    help = "give `min`, `max`, `mode=max`, `false` or `disabled=true`",
                    "{flag}: `{}` is not a provenance setting rbuild knows",
                    if key.is_empty() {
                        field
                    } else {
                        format!("{key}={field}")
                    }
                ));
            }
        }
    }
    Ok(mode)
}

/// `true`, `false`, or fields `format=spdx|cyclonedx`, `disabled=…`; `generator=IMAGE`
/// (BuildKit's scanner image) is refused: rbuild scans with its own code.
fn parse_sbom(flag: &str, value: &str) -> Result<Option<SbomFormat>> {
    let mut format = Some(SbomFormat::Spdx);
    let mut chosen = SbomFormat::Spdx;
    for (key, field) in fields_or_word(value)? {
        match (key.as_str(), field.to_ascii_lowercase().as_str()) {
            ("", "true" | "1") | ("disabled", "false") => {}
            ("", "false" | "0") | ("disabled", "true") => format = None,
            ("format", "spdx" | "spdx-json") => chosen = SbomFormat::Spdx,
            ("format", "cyclonedx" | "cyclonedx-json") => chosen = SbomFormat::CycloneDx,
            ("generator", _) => {
                return Err(miette::miette!(
                    help = "leave out `generator`: rbuild's scanner reads dpkg, apk, Python, Node, Go and Rust packages",
                    "{flag}: rbuild makes SBOMs with its own scanner, not a scanner image"
                ));
            }
            _ => {
                return Err(miette::miette!(
                    help = "give `true`, `format=cyclonedx` or `false`",
                    "{flag}: `{}` is not an SBOM setting rbuild knows",
                    if key.is_empty() {
                        field
                    } else {
                        format!("{key}={field}")
                    }
                ));
            }
        }
    }
    Ok(format.map(|_| chosen))
}

/// `a=b,c=d` as pairs; a lone word as `("", word)`.
fn fields_or_word(value: &str) -> Result<Vec<(String, String)>> {
    if !value.contains('=') {
        return Ok(vec![(String::new(), value.to_owned())]);
    }
    fields(value)
}

fn fields(text: &str) -> Result<Vec<(String, String)>> {
    text.split(',')
        .map(|field| {
            field
                .split_once('=')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .ok_or_else(|| miette::miette!("`{text}`: `{field}` is not `key=value`"))
        })
        .collect()
}

/// What the provenance records of how the build was asked for.
fn invocation(source: &Source) -> Invocation {
    let (git, dockerfile_path) = match &source.git {
        Some((origin, name)) => (Some(origin.clone()), name.clone()),
        None => {
            let inside = std::fs::canonicalize(&source.dockerfile_path)
                .ok()
                .zip(std::fs::canonicalize(&source.context).ok())
                .and_then(|(file, context)| {
                    file.strip_prefix(context)
                        .ok()
                        .map(|p| p.to_string_lossy().into_owned())
                });
            (
                None,
                inside.unwrap_or_else(|| source.dockerfile_path.to_string_lossy().into_owned()),
            )
        }
    };
    Invocation {
        dockerfile_path,
        git,
        builder_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

pub(super) fn annotations(texts: &[String]) -> Result<Vec<Annotation>> {
    texts
        .iter()
        .map(|text| {
            Annotation::parse(text).map_err(|message| {
                miette::miette!(
                    help = "write `--annotation KEY=VALUE`, or `index:KEY=VALUE`, `manifest[linux/arm64]:KEY=VALUE`",
                    "--annotation: {message}"
                )
            })
        })
        .collect()
}

/// Annotations that could go nowhere are refused: `index:` ones when the build makes a
/// single manifest, and ones for a platform the build is not for.
pub(super) fn check_annotations(opts: &BuildOptions) -> Result<()> {
    let wants_index = opts.annotations.iter().any(|a| {
        a.levels.contains(&AnnotationLevel::Index)
            || a.levels.contains(&AnnotationLevel::ManifestDescriptor)
    });
    if wants_index && opts.platforms.len() <= 1 && !opts.attest.in_index() {
        return Err(miette::miette!(
            help = "build for several platforms, or leave provenance on: either makes an index",
            "`index:` and `manifest-descriptor:` annotations need an image index, and this build makes a single manifest"
        ));
    }
    let platforms = match opts.platforms.as_slice() {
        [] => vec![rbuild_frontend::Platform::default()],
        given => given.to_vec(),
    };
    for annotation in &opts.annotations {
        if let Some(platform) = annotation
            .platform
            .as_ref()
            .filter(|p| !platforms.contains(p))
        {
            return Err(miette::miette!(
                help = "name one of the build's platforms, or leave out `[…]` for every platform",
                "--annotation `{}`: this build is not for {platform} (it is for {})",
                annotation.key,
                platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}
