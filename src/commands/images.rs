//! `rbuild images`, `inspect`, `save`, `load`, `import`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_store::time;

use super::{open_store, parse_name};

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
    #[arg(long)]
    pub manifest: bool,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Output file
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Input file (`-` for stdin)
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: PathBuf,
    /// Name the loaded image
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Filesystem tarball (plain or gzip; `-` for stdin)
    pub file: PathBuf,
    /// Name for the image
    pub name: String,
}

pub fn images(args: ImagesArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let mut records = store.images().into_diagnostic()?;
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for record in records {
        let image = store
            .image_by_manifest(&record.manifest)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read image `{}`", record.name))?;
        rows.push((record, image));
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.format {
        FormatArg::Json => {
            for (record, image) in &rows {
                let row = serde_json::json!({
                    "Repository": record.name.repository(),
                    "Tag": record.name.tag(),
                    "ID": image.config_digest.to_string(),
                    "Digest": record.manifest.to_string(),
                    "CreatedAt": image.config.created,
                    "Size": image.size(),
                });
                writeln!(out, "{row}").into_diagnostic()?;
            }
        }
        FormatArg::Table => {
            let now = time::now_unix();
            let table: Vec<[String; 5]> = rows
                .iter()
                .map(|(record, image)| {
                    [
                        record.name.repository().to_owned(),
                        record.name.tag().to_owned(),
                        image.config_digest.short().to_owned(),
                        image
                            .config
                            .created
                            .as_deref()
                            .and_then(time::parse_rfc3339)
                            .map_or_else(|| "N/A".to_owned(), |t| ago(now - t)),
                        human_size(image.size()),
                    ]
                })
                .collect();
            let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &table {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&table) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .enumerate()
                    .map(|(i, (cell, width))| {
                        if i == 4 {
                            cell.clone()
                        } else {
                            format!("{cell:<width$}")
                        }
                    })
                    .collect();
                writeln!(out, "{}", line.join("   ")).into_diagnostic()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let name = parse_name(&args.image)?;
    let image = store.image(&name).map_err(not_found)?;
    let digest = if args.manifest {
        &image.manifest_digest
    } else {
        &image.config_digest
    };
    let bytes = store.read_blob(digest).into_diagnostic()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).into_diagnostic()?;
    let mut text = serde_json::to_string_pretty(&value).into_diagnostic()?;
    text.push('\n');
    io::stdout().write_all(text.as_bytes()).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

pub fn save(args: SaveArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let names = args
        .images
        .iter()
        .map(|n| parse_name(n))
        .collect::<Result<Vec<_>>>()?;
    store.save(&names, &args.output).map_err(not_found)?;
    eprintln!(
        "saved {} image(s) to {}",
        names.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn load(args: LoadArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let tag = args.tag.as_deref().map(parse_name).transpose()?;
    let input = open_input(&args.input)?;
    let loaded = store
        .load(input, &args.input, tag.as_ref())
        .into_diagnostic()?;
    for image in loaded {
        match image.name {
            Some(name) => println!("Loaded image: {name}"),
            None => println!("Loaded image ID: {}", image.manifest),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let name = parse_name(&args.name)?;
    let input = open_input(&args.file)?;
    let manifest = store.import(input, &args.file, &name).into_diagnostic()?;
    let image = store.image_by_manifest(&manifest).into_diagnostic()?;
    println!("{}", image.config_digest);
    Ok(ExitCode::SUCCESS)
}

fn open_input(path: &std::path::Path) -> Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(file))
}

fn not_found(err: rbuild_store::Error) -> miette::Report {
    match err {
        rbuild_store::Error::ImageNotFound { name } => miette::miette!(
            help = "`rbuild images` lists the images in the store",
            "image `{name}` not found"
        ),
        other => miette::Report::from_err(other),
    }
}

fn ago(seconds: i64) -> String {
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

fn human_size(bytes: u64) -> String {
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
