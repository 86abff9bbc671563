//! `rbuild build --print graph`: the build graph, converted as a build would, without
//! building (base configs from the store, else only the config from the registry).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use miette::Result;
use rbuild_builder::BuildError;

use crate::commands::check::base_configs;
use crate::commands::registry::open_registry;
use crate::report::build_error;

/// Prints the graph of `dockerfile`.
pub(super) async fn print_graph(
    store: &rbuild_store::Store,
    dockerfile_path: &Path,
    dockerfile: &str,
    convert_opts: &rbuild_frontend::ConvertOptions,
    pull: bool,
) -> Result<ExitCode> {
    let df = rbuild_frontend::parse(dockerfile)
        .map_err(|err| build_error(err.into(), dockerfile_path, dockerfile))?;
    let bases = print_base_configs(store, &df, convert_opts, pull)
        .await
        .map_err(|err| build_error(err, dockerfile_path, dockerfile))?;
    let graph = rbuild_frontend::convert(&df, convert_opts, &bases)
        .map_err(|err| build_error(err.into(), dockerfile_path, dockerfile))?;
    print!("{}", rbuild_frontend::dump_graph(&graph));
    Ok(ExitCode::SUCCESS)
}

/// The base configs for `--print graph`: from the store, else (or with `--pull`) only the
/// config from the registry, no layer fetched and nothing kept.
async fn print_base_configs(
    store: &rbuild_store::Store,
    df: &rbuild_frontend::Dockerfile,
    opts: &rbuild_frontend::ConvertOptions,
    pull: bool,
) -> std::result::Result<BTreeMap<String, rbuild_frontend::ImageConfig>, BuildError> {
    let mut bases = if pull {
        BTreeMap::new()
    } else {
        base_configs(store, df, opts, false)?
    };
    let mut registry = None;
    for reference in rbuild_frontend::image_references(df, opts)? {
        if bases.contains_key(&reference) {
            continue;
        }
        let parsed: rbuild_store::Reference =
            reference
                .parse()
                .map_err(|source| BuildError::InvalidReference {
                    reference: reference.clone(),
                    source,
                })?;
        let registry =
            match &registry {
                Some(registry) => registry,
                None => registry.insert(open_registry(true).map_err(|_| {
                    BuildError::BaseImageNotFound {
                        reference: reference.clone(),
                    }
                })?),
            };
        let pulled = registry
            .pull(
                store,
                &parsed,
                &rbuild_registry::PullOptions {
                    config_only: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| BuildError::Pull {
                reference: reference.clone(),
                missing: true,
                source: Box::new(source),
            })?;
        bases.insert(
            reference,
            rbuild_builder::frontend_config(&pulled.image.config.config),
        );
    }
    Ok(bases)
}
