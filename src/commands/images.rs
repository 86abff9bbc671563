//! `rbuild images`, `inspect`, `tag`, `rmi`, `history`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_store::{Image, ImageName, Store, time};

use super::{open_store, parse_name};
use crate::table::{self, Align};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print the manifest instead of the config
    #[arg(long, conflicts_with_all = ["provenance", "sbom"])]
    pub manifest: bool,
    /// Print the image's SLSA provenance (the in-toto statement the build attached)
    #[arg(long, conflicts_with = "sbom")]
    pub provenance: bool,
    /// Print the image's SBOM (the in-toto statement `--sbom` attached)
    #[arg(long)]
    pub sbom: bool,
    /// The platform of a multi-platform image (`os/arch[/variant]`; default: this
    /// machine's)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// A name, or an IMAGE ID from `rbuild images` (or its start)
    pub image: String,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to name: a name, or an IMAGE ID from `rbuild images` (or its start)
    pub source: String,
    /// The new name
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Show full `CREATED BY` commands
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// A name, or an IMAGE ID from `rbuild images` (or its start)
    pub image: String,
}

pub fn images(args: ImagesArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let mut records = store.images().into_diagnostic()?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for record in records {
        let cannot = || format!("cannot read image `{}`", record.name);
        // A multi-platform image is listed once: its index's digest as its ID, every
        // platform's size together, this machine's platform's (else the first's) time.
        let images: Vec<Image> = match store.index_images(&record.manifest) {
            Some(children) => children
                .iter()
                .map(|child| store.image_by_manifest(child))
                .collect::<Result<_, _>>()
                .into_diagnostic()
                .wrap_err_with(cannot)?,
            None => vec![
                store
                    .image_by_manifest(&record.manifest)
                    .into_diagnostic()
                    .wrap_err_with(cannot)?,
            ],
        };
        let mut size = 0;
        for image in &images {
            size += store
                .image_size(image)
                .into_diagnostic()
                .wrap_err_with(cannot)?;
        }
        let platforms: Vec<String> = images.iter().map(platform_of).collect();
        // One platform (with or without attestations): its config, as docker shows it.
        let id = match images.len() {
            1 => images[0].config_digest.clone(),
            _ => record.manifest.clone(),
        };
        let host = format!("linux/{}", rbuild_store::host_architecture());
        let shown = images
            .iter()
            .position(|image| platform_of(image) == host)
            .unwrap_or(0);
        let created = images[shown].config.created.clone();
        rows.push((record, id, created, platforms, size));
    }
    let mut out = crate::output::stdout();
    match args.format {
        FormatArg::Json => {
            for (record, id, created, platforms, size) in &rows {
                let row = serde_json::json!({
                    "Repository": record.name.repository(),
                    "Tag": record.name.tag(),
                    "ID": id.to_string(),
                    "Digest": record.manifest.to_string(),
                    "CreatedAt": created,
                    "Size": size,
                    "Platforms": platforms,
                });
                writeln!(out, "{row}").into_diagnostic()?;
            }
        }
        FormatArg::Table => {
            let now = time::now_unix();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(record, id, created, platforms, size)| {
                    vec![
                        record.name.repository().to_owned(),
                        record.name.tag().to_owned(),
                        id.short().to_owned(),
                        created
                            .as_deref()
                            .and_then(time::parse_rfc3339)
                            .map_or_else(|| "N/A".to_owned(), |t| ago(now - t)),
                        human_size(*size),
                        platforms.join(","),
                    ]
                })
                .collect();
            let columns = [
                ("REPOSITORY", Align::Left),
                ("TAG", Align::Left),
                ("IMAGE ID", Align::Left),
                ("CREATED", Align::Left),
                ("SIZE", Align::Left),
                ("PLATFORM", Align::Left),
            ];
            out.write_all(table::render(&columns, &table).as_bytes())
                .into_diagnostic()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `os/arch[/variant]` of an image's config.
fn platform_of(image: &Image) -> String {
    rbuild_registry::platform_string(&image.config.platform())
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let platform = super::platform_flag(args.platform.as_deref())?;
    if args.provenance || args.sbom {
        let (kind, types) = if args.provenance {
            (
                "provenance",
                &[rbuild_builder::PREDICATE_SLSA_PROVENANCE_V1][..],
            )
        } else {
            (
                "SBOM",
                &[
                    rbuild_builder::PREDICATE_SPDX,
                    rbuild_builder::PREDICATE_CYCLONEDX,
                ][..],
            )
        };
        let bytes = attached(&store, &args.image, platform.as_ref(), kind, types)?;
        return print_json(&bytes);
    }
    let image = find_image_for(&store, &args.image, platform.as_ref())?;
    let digest = if args.manifest {
        &image.manifest_digest
    } else {
        &image.config_digest
    };
    let bytes = store.read_blob(digest).into_diagnostic()?;
    print_json(&bytes)
}

/// A JSON document on stdout, indented.
fn print_json(bytes: &[u8]) -> Result<ExitCode> {
    let value: serde_json::Value = serde_json::from_slice(bytes).into_diagnostic()?;
    let mut text = serde_json::to_string_pretty(&value).into_diagnostic()?;
    text.push('\n');
    crate::output::stdout()
        .write_all(text.as_bytes())
        .into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

/// A missing image as the user sees it: with the closest name in the store when one is
/// likely what was meant; other errors as they are.
pub(super) fn not_found(store: &Store) -> impl Fn(rbuild_store::Error) -> miette::Report + '_ {
    move |err| match err {
        rbuild_store::Error::ImageNotFound { name } => image_not_found(store, &name),
        other => miette::Report::from_err(other),
    }
}

pub(super) fn image_not_found(store: &Store, name: &ImageName) -> miette::Report {
    let names: Vec<ImageName> = store
        .images()
        .map(|records| records.into_iter().map(|r| r.name).collect())
        .unwrap_or_default();
    let texts: Vec<String> = names.iter().map(ToString::to_string).collect();
    // A typo in the name (`busybx`, `busybox:latst`), else the same repository under
    // another tag (`alpine` when only `alpine:3.20` is here).
    let suggestion =
        rbuild_builder::suggest::closest(&name.to_string(), texts.iter().map(String::as_str))
            .map(str::to_owned)
            .or_else(|| {
                names
                    .iter()
                    .find(|other| other.repository() == name.repository())
                    .map(ToString::to_string)
            });
    match suggestion {
        Some(suggestion) => miette::miette!(
            help = format!(
                "did you mean `{suggestion}`? (`rbuild images` lists the images in the store)"
            ),
            "image `{name}` not found"
        ),
        None => miette::miette!(
            help = "`rbuild images` lists the images in the store",
            "image `{name}` not found"
        ),
    }
}

/// The image `text` names: a name, else an IMAGE ID as `rbuild images` shows it, in full
/// (`sha256:…`) or any start of it of at least 4 digits that only one image has, as docker
/// takes them. A name wins over an id that would read the same.
pub(super) fn find_image(store: &Store, text: &str) -> Result<Image> {
    find_image_for(store, text, None)
}

/// [`find_image`] for `platform` of a multi-platform image (this machine's when `None`).
/// The statement of one of `types` attached to the image `text` (its `platform`'s image
/// of an index); the error says when the image has none.
pub(crate) fn attached(
    store: &Store,
    text: &str,
    platform: Option<&rbuild_store::oci::Platform>,
    kind: &str,
    types: &[&str],
) -> Result<Vec<u8>> {
    let digest = find_digest(store, text)?;
    let image = store
        .image_by_digest_for(&digest, platform)
        .into_diagnostic()?;
    attached_to(store, text, &digest, &image, kind, types)
}

/// [`attached`] for the image `image`, found as `text` under `digest` (its index, or
/// itself).
pub(crate) fn attached_to(
    store: &Store,
    text: &str,
    digest: &rbuild_store::Digest,
    image: &Image,
    kind: &str,
    types: &[&str],
) -> Result<Vec<u8>> {
    let statements = store
        .attestations(digest, &image.manifest_digest)
        .into_diagnostic()?;
    statements
        .into_iter()
        .find(|s| types.contains(&s.predicate_type.as_str()))
        .map(|s| s.bytes)
        .ok_or_else(|| {
            let help = if kind == "SBOM" {
                "build it with `--sbom`"
            } else {
                "build it with provenance on (the default, unless BUILDX_NO_DEFAULT_ATTESTATIONS is set or `--provenance=false` given)"
            };
            miette::miette!(help = help, "image `{text}` has no {kind} attached")
        })
}

pub(crate) fn find_image_for(
    store: &Store,
    text: &str,
    platform: Option<&rbuild_store::oci::Platform>,
) -> Result<Image> {
    let digest = find_digest(store, text)?;
    store
        .image_by_digest_for(&digest, platform)
        .into_diagnostic()
}

/// What a name or an IMAGE ID (or its start) stands for: an image's manifest, or the
/// index of a multi-platform image (whose IMAGE ID is the index's digest).
pub(crate) fn find_digest(store: &Store, text: &str) -> Result<rbuild_store::Digest> {
    let name = parse_name(text);
    if let Ok(name) = &name
        && let Some(record) = store.image_record(name).into_diagnostic()?
    {
        return Ok(record.manifest);
    }
    let prefix = text.strip_prefix("sha256:").unwrap_or(text);
    let is_id = (4..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_id {
        return Err(image_not_found(store, &name?));
    }
    let mut records = store.images().into_diagnostic()?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    // One image may have several names and manifests: the first name's is taken.
    let mut found: Vec<(rbuild_store::Digest, rbuild_store::Digest)> = Vec::new();
    for record in records {
        let id = match store.index_images(&record.manifest) {
            Some(children) if children.len() != 1 => record.manifest.clone(),
            Some(children) => match store.image_by_manifest(&children[0]) {
                Ok(image) => image.config_digest,
                Err(_) => continue,
            },
            None => match store.image_by_manifest(&record.manifest) {
                Ok(image) => image.config_digest,
                Err(_) => continue,
            },
        };
        if id.hex().starts_with(prefix) && !found.iter().any(|(f, _)| *f == id) {
            found.push((id, record.manifest));
        }
    }
    match found.len() {
        // Looked up as a name and as an IMAGE ID: said as the user typed it.
        0 => Err(miette::miette!(
            help = "`rbuild images` lists the images in the store",
            "image `{text}` not found"
        )),
        1 => Ok(found.remove(0).1),
        _ => Err(miette::miette!(
            help = "give more of the IMAGE ID",
            "`{text}` is the start of {} images' IDs",
            found.len()
        )),
    }
}

pub(crate) fn ago(seconds: i64) -> String {
    let (value, unit) = match seconds.max(0) {
        s if s < 60 => return "Less than a minute ago".to_owned(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 30 => (s / 86_400, "day"),
        s if s < 86_400 * 365 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    let plural = if value == 1 { "" } else { "s" };
    format!("{value} {unit}{plural} ago")
}

pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}{}", UNITS[unit]).replace(".000", "")
    }
}

pub fn tag(args: TagArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let target = parse_name(&args.target)?;
    // A multi-platform image's index: the new name has every platform too.
    let source = find_digest(&store, &args.source)?;
    store.image_by_digest(&source).into_diagnostic()?;
    store.tag(&target, &source).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

/// Removes names; the space their layers used comes back right away unless another image
/// or a running build still uses them.
pub fn rmi(args: RmiArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let names = args
        .images
        .iter()
        .map(|n| parse_name(n))
        .collect::<Result<Vec<_>>>()?;
    let mut failed = false;
    for name in &names {
        if store.untag(name).into_diagnostic()? {
            outln!("Untagged: {name}");
        } else {
            eprintln!("error: image `{name}` not found");
            failed = true;
        }
    }
    let report = store
        .gc(&rbuild_store::GcOptions::default())
        .into_diagnostic()?;
    if report.bytes > 0 {
        eprintln!("freed {}", human_size(report.bytes));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn history(args: HistoryArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let image = find_image(&store, &args.image)?;
    let mut layers = store.layer_sizes(&image).into_diagnostic()?.into_iter();
    let now = time::now_unix();
    let mut rows = Vec::new();
    for entry in image
        .config
        .history
        .iter()
        .rev()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let size = if entry.empty_layer {
            0
        } else {
            layers.next().unwrap_or(0)
        };
        rows.push((entry, size));
    }
    let mut out = crate::output::stdout();
    match args.format {
        FormatArg::Json => {
            for (entry, size) in rows.iter().rev() {
                let row = serde_json::json!({
                    "CreatedAt": entry.created,
                    "CreatedBy": entry.created_by,
                    "Comment": entry.comment,
                    "EmptyLayer": entry.empty_layer,
                    "Size": size,
                });
                writeln!(out, "{row}").into_diagnostic()?;
            }
        }
        FormatArg::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .rev()
                .map(|(entry, size)| {
                    let created = entry
                        .created
                        .as_deref()
                        .and_then(time::parse_rfc3339)
                        .map_or_else(|| "N/A".to_owned(), |t| ago(now - t));
                    let mut created_by = entry
                        .created_by
                        .clone()
                        .unwrap_or_default()
                        .replace('\n', " ");
                    if !args.no_trunc && created_by.chars().count() > 45 {
                        created_by = created_by.chars().take(44).collect::<String>() + "…";
                    }
                    vec![
                        created,
                        created_by,
                        human_size(*size),
                        entry.comment.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let columns = [
                ("CREATED", Align::Left),
                ("CREATED BY", Align::Left),
                ("SIZE", Align::Right),
                ("COMMENT", Align::Left),
            ];
            out.write_all(table::render(&columns, &table).as_bytes())
                .into_diagnostic()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
