//! The SBOM statement of an image: its layers scanned (`rbuild_sbom`), the inventory as
//! SPDX or CycloneDX in an in-toto statement about the image manifest.

use rbuild_store::Store;
use rbuild_store::attestations::Statement;
use rbuild_store::oci::Descriptor;
use serde_json::json;

use super::SbomFormat;
use crate::error::BuildError;

pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";

/// Scans the image `manifest` (its `layers`) and returns the SBOM statement about it.
/// Runs on a blocking thread: it reads every layer.
pub(crate) fn sbom_statement(
    store: &Store,
    format: SbomFormat,
    manifest: &Descriptor,
    layers: &[Descriptor],
    subject: rbuild_sbom::Subject,
) -> Result<Statement, BuildError> {
    let streams = layers
        .iter()
        .map(|layer| store.layer_tar(layer))
        .collect::<Result<Vec<_>, _>>()?;
    let inventory =
        rbuild_sbom::Inventory::scan(streams).map_err(|source| BuildError::Sbom { source })?;
    let (predicate_type, predicate) = match format {
        SbomFormat::Spdx => (PREDICATE_SPDX, rbuild_sbom::spdx(&inventory, &subject)),
        SbomFormat::CycloneDx => (
            PREDICATE_CYCLONEDX,
            rbuild_sbom::cyclonedx(&inventory, &subject),
        ),
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
