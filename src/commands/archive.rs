//! Image archives: `rbuild save`, `load`, `import`, `export`.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_store::ArchiveFormat;

use super::images::not_found;
use super::{open_store, parse_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormatArg {
    /// An OCI image layout
    Oci,
    /// An OCI image layout with docker's manifest.json, for `docker load`
    Docker,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Output file (`-`, or none, for stdout, which must not be a terminal); a device or
    /// a FIFO is written into, a file is replaced whole once the archive is complete
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value_t = ArchiveFormatArg::Oci)]
    pub format: ArchiveFormatArg,
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
    /// The platform the files are for (`os/arch[/variant]`; default: this machine's)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

pub fn save(args: SaveArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let names = args
        .images
        .iter()
        .map(|n| parse_name(n))
        .collect::<Result<Vec<_>>>()?;
    let format = match args.format {
        ArchiveFormatArg::Oci => ArchiveFormat::Oci,
        ArchiveFormatArg::Docker => ArchiveFormat::Docker,
    };
    match args.output.filter(|path| path.as_os_str() != "-") {
        Some(path) => {
            store
                .save(&names, &path, format)
                .map_err(not_found(&store))?;
            eprintln!("saved {} image(s) to {}", names.len(), path.display());
        }
        None => {
            if io::stdout().is_terminal() {
                return Err(miette::miette!(
                    help = "redirect standard output to a file or a pipe (`rbuild save IMAGE > image.tar`), or give `-o FILE`",
                    "refusing to write an archive to the terminal"
                ));
            }
            let out = io::BufWriter::new(crate::output::stdout());
            store
                .save_to(&names, out, format)
                .map_err(not_found(&store))?;
            eprintln!("saved {} image(s) to standard output", names.len());
        }
    }
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
            Some(name) => outln!("Loaded image: {name}"),
            None => outln!("Loaded image ID: {}", image.manifest),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let name = parse_name(&args.name)?;
    let platform = super::platform_flag(args.platform.as_deref())?;
    // As a build reads it: the image's time, for the same image from the same tarball.
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => Some(value.parse::<i64>().map_err(|_| {
            miette::miette!("invalid SOURCE_DATE_EPOCH: {value} (seconds since 1970 expected)")
        })?),
        _ => None,
    };
    let input = open_input(&args.file)?;
    let manifest = store
        .import(input, &args.file, &name, platform.as_ref(), created)
        .into_diagnostic()?;
    let image = store.image_by_manifest(&manifest).into_diagnostic()?;
    outln!("{}", image.config_digest);
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

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output file (`-` for stdout)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    pub image: String,
}

/// Writes the image's filesystem, all layers applied, as one tar.
pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let name = parse_name(&args.image)?;
    let image = store.image(&name).map_err(not_found(&store))?;
    let out: Box<dyn io::Write + Send> = if args.output.as_os_str() == "-" {
        Box::new(io::BufWriter::new(crate::output::stdout()))
    } else {
        let file = File::create(&args.output)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", args.output.display()))?;
        Box::new(io::BufWriter::new(file))
    };
    let snapshotter = rbuild_builder::Snapshotter::detect(&store);
    // As a build's `-o type=tar`: file times clamped to SOURCE_DATE_EPOCH when it is set.
    let clamp_mtime = super::build::epoch::from_environment()?;
    rbuild_builder::export_rootfs(
        &store,
        &snapshotter,
        &image,
        rbuild_builder::RootfsOutput::Tar(out),
        clamp_mtime,
    )
    .map_err(crate::rootless::report)?;
    Ok(ExitCode::SUCCESS)
}
