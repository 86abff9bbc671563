//! `rbuild verify-build IMAGE [CONTEXT]`: builds the image again from what its provenance
//! records, in a scratch store, and says whether the same digest came out, or where the
//! two images first differ.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_builder::Provenance;
use rbuild_store::{Digest, Image, Store};

use super::images::{attached_to, find_digest};
use super::{key_value, open_store};

#[derive(Debug, Args)]
pub struct VerifyBuildArgs {
    /// The image: a name or an IMAGE ID from `rbuild images`, or a registry's image
    /// (`registry/repository:tag`, pulled with its attestations when the store lacks it)
    pub image: String,
    /// The context it was built from (default: the git repository and commit its
    /// provenance names; a local directory must be given)
    pub context: Option<PathBuf>,
    /// The Dockerfile, when it is not at the path the provenance records in the context
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build argument's value (`KEY=VALUE`): the provenance of `mode=min` names the
    /// build arguments without their values
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The platform's image of a multi-platform image (default: this machine's)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

pub fn verify_build(args: VerifyBuildArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let platform = super::platform_flag(args.platform.as_deref())?;
    let (image, provenance) = image_and_provenance(&store, &args.image, platform.as_ref())?;
    let plan = plan(&args, &provenance)?;
    let scratch = tempfile::Builder::new()
        .prefix("rbuild-verify-")
        .tempdir()
        .into_diagnostic()
        .wrap_err("cannot make a directory for the scratch store")?;
    let scratch_root = scratch.path().join("store");
    let scratch_store = Store::open(&scratch_root)
        .into_diagnostic()
        .wrap_err("cannot open the scratch store")?;
    copy_bases(&store, &scratch_store, &provenance)?;
    eprintln!(
        "rebuilding {} ({}) from its provenance in a scratch store",
        args.image, provenance.platform
    );
    rebuild(&plan, &scratch_root)?;
    let rebuilt = scratch_store
        .image_for(
            &REBUILT.parse().expect("a valid name"),
            Some(&super::parse_platform(&provenance.platform)?),
        )
        .into_diagnostic()
        .wrap_err("the rebuild left no image")?;
    if rebuilt.manifest_digest == image.manifest_digest {
        outln!(
            "reproduced: {} ({}) is {}, and the rebuild made the same digest",
            args.image,
            provenance.platform,
            image.manifest_digest
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A pushed (or pulled) image has its layers compressed, so another manifest digest
    // over the same config: the config names every layer's uncompressed digest.
    if rebuilt.config_digest == image.config_digest {
        outln!(
            "reproduced: {} ({}) has config {}, and the rebuild made the same config (the same \
             layers, compressed otherwise)",
            args.image,
            provenance.platform,
            image.config_digest
        );
        return Ok(ExitCode::SUCCESS);
    }
    let difference = first_difference(&store, &image, &scratch_store, &rebuilt)?;
    outln!(
        "not reproduced: {} ({}) is {}, the rebuild made {}\n{difference}",
        args.image,
        provenance.platform,
        image.manifest_digest,
        rebuilt.manifest_digest
    );
    if provenance.source_date_epoch.is_none() {
        eprintln!(
            "note: the image was built without SOURCE_DATE_EPOCH, so its times are those of its \
             build; build with `--build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)` (a git \
             context's build takes its commit's time) to make it reproducible"
        );
    }
    Ok(ExitCode::from(1))
}

const REBUILT: &str = "rbuild-verify/rebuilt:latest";

/// The image `text` names (its `platform`'s of an index; pulled first when it is a
/// registry's the store lacks) and its provenance, which must be about that image.
fn image_and_provenance(
    store: &Store,
    text: &str,
    platform: Option<&rbuild_store::oci::Platform>,
) -> Result<(Image, Provenance)> {
    let digest = match find_digest(store, text) {
        Ok(digest) => digest,
        // A registry's image: pulled with its attestations, then verified.
        Err(_) if names_a_registry(text) => {
            pull(text)?;
            find_digest(store, text)?
        }
        Err(err) => return Err(err),
    };
    let image = store
        .image_by_digest_for(&digest, platform)
        .into_diagnostic()?;
    let statement = attached_to(
        store,
        text,
        &digest,
        &image,
        "provenance",
        &[rbuild_builder::PREDICATE_SLSA_PROVENANCE_V1],
    )?;
    let provenance = Provenance::parse(&statement)
        .map_err(|reason| miette::miette!("the provenance of `{text}` cannot be read: {reason}"))?;
    if provenance.subject != image.manifest_digest.to_string() {
        return Err(miette::miette!(
            "the provenance attached to `{text}` is about {}, and the image is {}: they do not belong together",
            provenance.subject,
            image.manifest_digest
        ));
    }
    Ok((image, provenance))
}

/// Whether `text` names a registry (`host.name/…`, `host:port/…`, `localhost/…`).
fn names_a_registry(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

/// `rbuild pull IMAGE`, which keeps the image's attestations.
fn pull(image: &str) -> Result<()> {
    let exe = std::env::current_exe().into_diagnostic()?;
    let status = std::process::Command::new(exe)
        .args(["pull", "-q", image])
        .stdout(std::process::Stdio::null())
        .status()
        .into_diagnostic()?;
    if !status.success() {
        return Err(miette::miette!("cannot pull {image} to verify it"));
    }
    Ok(())
}

/// The rebuild's command line, from the provenance and the flags.
struct Plan {
    args: Vec<String>,
    /// Holds a Dockerfile the provenance carries (`mode=max`).
    _dockerfile: Option<tempfile::NamedTempFile>,
}

fn plan(args: &VerifyBuildArgs, provenance: &Provenance) -> Result<Plan> {
    if !provenance.named_contexts.is_empty() {
        return Err(miette::miette!(
            "the build used the named contexts {}, which verify-build cannot supply",
            provenance.named_contexts.join(", ")
        ));
    }
    let mut command: Vec<String> = vec![
        "build".into(),
        "-q".into(),
        // Min provenance keeps the image an index, as `index:` annotations need.
        "--provenance=min".into(),
        "--platform".into(),
        provenance.platform.clone(),
        "-t".into(),
        REBUILT.into(),
    ];
    let context = context_arg(args, provenance)?;
    let (file, held) = dockerfile_arg(args, provenance, &context)?;
    if let Some(file) = file {
        command.push("-f".into());
        command.push(file);
    }
    for (key, value) in build_args(args, provenance)? {
        command.push("--build-arg".into());
        command.push(format!("{key}={value}"));
    }
    if let Some(target) = &provenance.target {
        command.push("--target".into());
        command.push(target.clone());
    }
    for (key, value) in &provenance.labels {
        command.push("--label".into());
        command.push(format!("{key}={value}"));
    }
    for annotation in &provenance.annotations {
        command.push("--annotation".into());
        command.push(annotation.clone());
    }
    command.push(context);
    Ok(Plan {
        args: command,
        _dockerfile: held,
    })
}

/// The context to build: the directory given, else the git repository and commit the
/// provenance names (a local directory must be given).
fn context_arg(args: &VerifyBuildArgs, provenance: &Provenance) -> Result<String> {
    match (&args.context, &provenance.git_context) {
        (Some(dir), _) => Ok(dir.to_string_lossy().into_owned()),
        (None, Some((uri, subdir))) => {
            let (remote, commit) = uri.rsplit_once('@').unwrap_or((uri, ""));
            Ok(match subdir {
                Some(dir) => format!("{remote}#{commit}:{dir}"),
                None => format!("{remote}#{commit}"),
            })
        }
        (None, None) => {
            let digest = provenance
                .materials
                .iter()
                .find(|(uri, _)| uri == "context")
                .and_then(|(_, digest)| digest.get("sha256"))
                .map(|hex| format!(" (its files' digest: sha256:{hex})"))
                .unwrap_or_default();
            Err(miette::miette!(
                help = "give the directory: `rbuild verify-build IMAGE DIR`",
                "the image was built from a local directory{digest}, and verify-build needs it"
            ))
        }
    }
}

/// The rebuild's `-f`: the Dockerfile given, the one the provenance carries (`mode=max`,
/// written to a file held as long as the plan), or the context's at the recorded path;
/// checked against the recorded digest. In a git context, the recorded path in the
/// repository.
fn dockerfile_arg(
    args: &VerifyBuildArgs,
    provenance: &Provenance,
    context: &str,
) -> Result<(Option<String>, Option<tempfile::NamedTempFile>)> {
    let local = args.context.is_some();
    let mut held = None;
    let path: PathBuf = match (&args.file, &provenance.dockerfile) {
        (Some(file), _) => file.clone(),
        (None, Some(text)) if local => {
            let mut file = tempfile::NamedTempFile::new().into_diagnostic()?;
            std::io::Write::write_all(&mut file, text.as_bytes()).into_diagnostic()?;
            let path = file.path().to_owned();
            held = Some(file);
            path
        }
        (None, _) if local => Path::new(context).join(&provenance.dockerfile_path),
        (None, _) => {
            let file = (provenance.dockerfile_path != "Dockerfile")
                .then(|| provenance.dockerfile_path.clone());
            return Ok((file, None));
        }
    };
    let text = std::fs::read(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the Dockerfile {}", path.display()))?;
    let sha = sha256_hex(&text);
    if sha != provenance.dockerfile_sha256 {
        return Err(miette::miette!(
            help = "give the Dockerfile it was built from with `-f`",
            "{} is not the Dockerfile the image was built from: its sha256 is {sha}, the provenance records {}",
            path.display(),
            provenance.dockerfile_sha256
        ));
    }
    Ok((Some(path.to_string_lossy().into_owned()), held))
}

/// The rebuild's build arguments: those the provenance records, the flags' (which must be
/// ones the build was given), and the recorded `SOURCE_DATE_EPOCH`.
fn build_args(args: &VerifyBuildArgs, provenance: &Provenance) -> Result<BTreeMap<String, String>> {
    let given: BTreeMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| key_value(a))
        .collect();
    for (name, value) in &given {
        if name == "SOURCE_DATE_EPOCH" {
            if provenance
                .source_date_epoch
                .map(|e| e.to_string())
                .as_deref()
                == Some(value)
            {
                continue;
            }
            return Err(miette::miette!(
                help = "leave out `--build-arg SOURCE_DATE_EPOCH`",
                "SOURCE_DATE_EPOCH is the one the provenance records ({}): the rebuild uses it",
                provenance
                    .source_date_epoch
                    .map_or_else(|| "none".to_owned(), |epoch| epoch.to_string())
            ));
        }
        match provenance.build_args.get(name) {
            Some(recorded) if recorded != value => eprintln!(
                "note: --build-arg {name} replaces the value the provenance records ({recorded})"
            ),
            Some(_) => {}
            None if provenance.build_arg_names.contains(name) => {}
            None => {
                return Err(miette::miette!(
                    help = "give only the build arguments the image's build was given",
                    "the image's build was not given the build argument `{name}`"
                ));
            }
        }
    }
    let mut build_args = provenance.build_args.clone();
    build_args.extend(given);
    let missing: Vec<&String> = provenance
        .build_arg_names
        .iter()
        .filter(|name| !build_args.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(miette::miette!(
            help =
                "give each with `--build-arg NAME=VALUE` (a `--provenance=max` build records them)",
            "the build was given the build arguments {}, and its provenance (mode=min) does not record their values",
            missing
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(epoch) = provenance.source_date_epoch {
        build_args.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    }
    Ok(build_args)
}

/// Copies each base image the provenance names (by its manifest digest) from the store
/// into the scratch store, named as the Dockerfile names it.
fn copy_bases(store: &Store, scratch: &Store, provenance: &Provenance) -> Result<()> {
    for (uri, digest) in &provenance.materials {
        let Some(rest) = uri.strip_prefix("pkg:docker/") else {
            continue;
        };
        let reference = rest.split('?').next().unwrap_or(rest);
        let Some(hex) = digest.get("sha256") else {
            continue;
        };
        let manifest = Digest::from_hex(hex).into_diagnostic()?;
        let (name, version) = reference.rsplit_once('@').unwrap_or((reference, "latest"));
        let image = store.image_by_manifest(&manifest).map_err(|_| {
            miette::miette!(
                help = format!(
                    "pull it (`rbuild pull {name}@{manifest}`), or load it from a store that has it (`rbuild save` there, `rbuild load` here)"
                ),
                "the base image {name}:{version} the image was built from ({manifest}) is not in the store"
            )
        })?;
        let mut blobs = vec![
            (image.manifest_digest.clone(), None),
            (image.config_digest.clone(), None),
        ];
        blobs.extend(
            image
                .manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), Some(l.size))),
        );
        for (digest, size) in blobs {
            let mut reader = store.open_content(&digest, size).into_diagnostic()?;
            let mut ingest = scratch.ingest().into_diagnostic()?;
            std::io::copy(&mut reader, &mut ingest).into_diagnostic()?;
            ingest.commit(Some(&digest)).into_diagnostic()?;
        }
        if !version.starts_with("sha256:") {
            let name: rbuild_store::ImageName =
                format!("{name}:{version}").parse().into_diagnostic()?;
            scratch.tag(&name, &manifest).into_diagnostic()?;
        }
    }
    Ok(())
}

/// Runs `rbuild build` on the scratch store; its errors are the rebuild's.
fn rebuild(plan: &Plan, scratch_root: &Path) -> Result<()> {
    let exe = std::env::current_exe().into_diagnostic()?;
    let status = std::process::Command::new(exe)
        .args(&plan.args)
        .env("RBUILD_ROOT", scratch_root)
        // The epoch and attestations are the provenance's, not this shell's.
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS")
        .stdout(std::process::Stdio::null())
        .status()
        .into_diagnostic()
        .wrap_err("cannot start the rebuild")?;
    if !status.success() {
        return Err(miette::miette!(
            "the rebuild failed (rbuild {})",
            plan.args.join(" ")
        ));
    }
    Ok(())
}

/// Where the rebuilt image first differs from the original: a config field, or a layer
/// and the first file in it that differs.
fn first_difference(
    store: &Store,
    original: &Image,
    scratch: &Store,
    rebuilt: &Image,
) -> Result<String> {
    let a = serde_json::to_value(&original.config).into_diagnostic()?;
    let b = serde_json::to_value(&rebuilt.config).into_diagnostic()?;
    let a_layers = &original.config.rootfs.diff_ids;
    let b_layers = &rebuilt.config.rootfs.diff_ids;
    for index in 0..a_layers.len().max(b_layers.len()) {
        if a_layers.get(index) == b_layers.get(index) {
            continue;
        }
        let step = original
            .config
            .history
            .iter()
            .filter(|h| !h.empty_layer)
            .nth(index)
            .and_then(|h| h.created_by.clone())
            .unwrap_or_default();
        let (Some(_), Some(_)) = (a_layers.get(index), b_layers.get(index)) else {
            return Ok(format!(
                "the image has {} layers, the rebuild {}",
                a_layers.len(),
                b_layers.len()
            ));
        };
        let files =
            |store: &Store, image: &Image| layer_files(store, &image.manifest.layers[index]);
        let file = first_file_difference(&files(store, original)?, &files(scratch, rebuilt)?);
        return Ok(format!("layer {} ({step}) differs: {file}", index + 1));
    }
    let path = first_json_difference(&a, &b, "config").unwrap_or_else(|| "the manifest".to_owned());
    Ok(format!("the layers are the same; {path} differs"))
}

/// Each file of a layer: its header fields and content hash, by path.
fn layer_files(
    store: &Store,
    layer: &rbuild_store::oci::Descriptor,
) -> Result<BTreeMap<String, String>> {
    let tar = store.layer_tar(layer).into_diagnostic()?;
    let mut archive = tar::Archive::new(tar);
    let mut files = BTreeMap::new();
    for entry in archive.entries().into_diagnostic()? {
        let mut entry = entry.into_diagnostic()?;
        let header = entry.header();
        let path = entry
            .path()
            .into_diagnostic()?
            .to_string_lossy()
            .into_owned();
        let description = format!(
            "mode {:o}, owner {}:{}, mtime {}, size {}",
            header.mode().unwrap_or(0),
            header.uid().unwrap_or(0),
            header.gid().unwrap_or(0),
            header.mtime().unwrap_or(0),
            header.size().unwrap_or(0)
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content).into_diagnostic()?;
        files.insert(
            path,
            format!("{description}, sha256 {}", sha256_hex(&content)),
        );
    }
    Ok(files)
}

fn first_file_difference(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    for (path, left) in a {
        match b.get(path) {
            None => return format!("/{path} is in the image and not in the rebuild"),
            Some(right) if right != left => {
                return format!("/{path}: the image has {left}; the rebuild {right}");
            }
            _ => {}
        }
    }
    match b.keys().find(|path| !a.contains_key(*path)) {
        Some(path) => format!("/{path} is in the rebuild and not in the image"),
        None => "the same files, in another order or encoding".to_owned(),
    }
}

fn first_json_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|key| {
                first_json_difference(
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(index, (l, r))| {
                first_json_difference(l, r, &format!("{path}[{index}]"))
            })
        }
        _ if a == b => None,
        _ => Some(format!("{path} ({a} in the image, {b} in the rebuild)")),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    rbuild_store::Digest::of(bytes).hex().to_owned()
}
