//! `rbuild sbom IMAGE`: the packages an image in the store installs, scanned now (any
//! image: built, pulled, loaded or imported), as SPDX 2.3 or CycloneDX 1.5 JSON.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};

use super::images::find_image_for;
use super::open_store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormatArg {
    /// SPDX 2.3 JSON
    Spdx,
    /// CycloneDX 1.5 JSON
    Cyclonedx,
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// The document's format
    #[arg(long, value_enum, default_value_t = SbomFormatArg::Spdx)]
    pub format: SbomFormatArg,
    /// The platform's image of a multi-platform image (default: this machine's)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// A name, or an IMAGE ID from `rbuild images` (or its start)
    pub image: String,
}

pub fn sbom(args: SbomArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let platform = super::platform_flag(args.platform.as_deref())?;
    let image = find_image_for(&store, &args.image, platform.as_ref())?;
    let inventory = rbuild_builder::image_inventory(&store, &image.manifest.layers)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot list the packages of `{}`", args.image))?;
    let subject = rbuild_sbom::Subject {
        name: args.image.clone(),
        digest: Some(image.manifest_digest.to_string()),
        created: image
            .config
            .created
            .clone()
            .unwrap_or_else(|| rbuild_store::time::rfc3339(0)),
    };
    let document = match args.format {
        SbomFormatArg::Spdx => rbuild_sbom::spdx(&inventory, &subject),
        SbomFormatArg::Cyclonedx => rbuild_sbom::cyclonedx(&inventory, &subject),
    };
    let mut text = serde_json::to_string_pretty(&document).into_diagnostic()?;
    text.push('\n');
    crate::output::stdout()
        .write_all(text.as_bytes())
        .into_diagnostic()?;
    let counts: Vec<String> = inventory
        .counts()
        .into_iter()
        .map(|(ecosystem, count)| format!("{count} {}", ecosystem.as_str()))
        .collect();
    eprintln!(
        "{} packages{}",
        inventory.packages.len(),
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}
