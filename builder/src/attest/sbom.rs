//! The SBOM statement of an image: its layers scanned (`rbuild_sbom`), the inventory as
//! SPDX or CycloneDX in an in-toto statement about the image manifest.

use rbuild_store::Store;
use rbuild_store::attestations::Statement;
use rbuild_store::oci::Descriptor;
use serde_json::json;

use super::SbomFormat;
use crate::error::BuildError;

pub use rbuild_store::attestations::{PREDICATE_CYCLONEDX, PREDICATE_SPDX};

/// [`sbom_statement`], or the statement an earlier build made of the same image (under
/// the same name), when the store still has it: a rebuild from the cache scans nothing.
pub(crate) fn cached_sbom_statement(
    store: &Store,
    format: SbomFormat,
    manifest: &Descriptor,
    layers: &[Descriptor],
    subject: rbuild_sbom::Subject,
) -> Result<Statement, BuildError> {
    let predicate_type = predicate_type(format);
    let key = format!("sbom:{predicate_type}:{}:{}", manifest.digest, subject.name);
    let known = store
        .get_state(&key)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<rbuild_store::Digest>().ok())
        .filter(|digest| store.has_blob(digest))
        .and_then(|digest| store.read_blob(&digest).ok());
    if let Some(bytes) = known {
        return Ok(Statement {
            predicate_type: predicate_type.to_owned(),
            bytes,
        });
    }
    let statement = sbom_statement(store, format, manifest, layers, subject)?;
    let digest = store.write_blob(&statement.bytes)?;
    store.put_state(&key, digest.to_string().as_bytes())?;
    Ok(statement)
}

/// Scans the image `manifest` (its `layers`) and returns the SBOM statement about it.
/// Runs on a blocking thread: it reads every layer.
pub(crate) fn sbom_statement(
    store: &Store,
    format: SbomFormat,
    manifest: &Descriptor,
    layers: &[Descriptor],
    subject: rbuild_sbom::Subject,
) -> Result<Statement, BuildError> {
    let inventory = image_inventory(store, layers)?;
    let predicate_type = predicate_type(format);
    let predicate = match format {
        SbomFormat::Spdx => rbuild_sbom::spdx(&inventory, &subject),
        SbomFormat::CycloneDx => rbuild_sbom::cyclonedx(&inventory, &subject),
    };
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": subject.name,
            "digest": {"sha256": manifest.digest.hex()},
        }],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    Ok(Statement {
        predicate_type: predicate_type.to_owned(),
        bytes: rbuild_store::oci::canonical_json(&statement),
    })
}

/// The packages the image whose layers are `layers` installs: each layer's tar read from
/// the store, bottom first. Reads every layer: call it on a blocking thread.
pub fn image_inventory(
    store: &Store,
    layers: &[Descriptor],
) -> Result<rbuild_sbom::Inventory, BuildError> {
    let streams = layers
        .iter()
        .map(|layer| store.layer_tar(layer))
        .collect::<Result<Vec<_>, _>>()?;
    rbuild_sbom::Inventory::scan(streams).map_err(|source| BuildError::Sbom { source })
}

fn predicate_type(format: SbomFormat) -> &'static str {
    match format {
        SbomFormat::Spdx => PREDICATE_SPDX,
        SbomFormat::CycloneDx => PREDICATE_CYCLONEDX,
    }
}
