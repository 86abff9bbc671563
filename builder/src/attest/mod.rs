//! What a build says about its images besides the images themselves: SLSA provenance and
//! SBOMs attached as in-toto statements (see `rbuild_store::attestations`), and the OCI
//! annotations of manifests and indexes.
//!
//! The provenance of `mode=min` is a function of the build's inputs only (no times, no
//! invocation id), so a rebuild from the cache gives the same index digest; `mode=max`
//! adds the times, the build arguments' values and the Dockerfile itself.

mod annotations;
mod materials;
mod provenance;
mod sbom;

pub use annotations::{Annotation, AnnotationLevel};
pub(crate) use annotations::{annotations_for, default_annotations};
pub(crate) use materials::{Material, OpInputs, materials};
pub use provenance::{PREDICATE_SLSA_PROVENANCE_V1, Provenance};
pub use sbom::{PREDICATE_CYCLONEDX, PREDICATE_SPDX, image_inventory};

use rbuild_store::Store;
use rbuild_store::attestations::Statement;
use rbuild_store::oci::{Descriptor, ImageConfiguration};

use crate::error::BuildError;
use crate::solve::BuildOptions;

/// The attestations a build attaches to each of its images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestOptions {
    /// `--provenance`: a SLSA v1 provenance statement.
    pub provenance: Option<ProvenanceMode>,
    /// `--sbom`: an SBOM of each image.
    pub sbom: Option<SbomFormat>,
    /// How the statements are attached.
    pub format: AttestFormat,
    /// How the build was asked for, as the provenance records it.
    pub invocation: Invocation,
}

impl AttestOptions {
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom.is_some()
    }

    /// Whether attestations make the image an index (BuildKit's way).
    pub fn in_index(&self) -> bool {
        self.any() && self.format == AttestFormat::Index
    }
}

/// Where attestations go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttestFormat {
    /// In the image's index, as attestation manifests (BuildKit's form, read by docker,
    /// buildx imagetools, Docker Scout): the image becomes an index.
    #[default]
    Index,
    /// As OCI 1.1 referrers (artifacts whose `subject` is the image), read by cosign,
    /// oras, notation, Trivy and Kyverno: the image keeps its single manifest.
    Oci,
}

/// How much the provenance says (as BuildKit's `mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// The inputs by digest, the build arguments by name.
    #[default]
    Min,
    /// Also the build arguments' values (never secrets), the Dockerfile's text and when
    /// the build started and finished.
    Max,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON (`https://spdx.dev/Document`), what BuildKit attaches.
    #[default]
    Spdx,
    /// CycloneDX 1.5 JSON (`https://cyclonedx.org/bom`).
    CycloneDx,
}

/// How the build was asked for, beyond its options: what the provenance records so that
/// the build can be repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The Dockerfile's path as the build read it: relative to the context when it is in
    /// the context (`Dockerfile`, `docker/app.Dockerfile`), else as given.
    pub dockerfile_path: String,
    /// The context is a git repository: where it came from.
    pub git: Option<GitOrigin>,
    /// rbuild's version.
    pub builder_version: String,
}

/// A git repository the context was fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOrigin {
    pub remote: String,
    pub commit: String,
    pub subdir: Option<String>,
}

/// The statements the build attaches to one platform's image `manifest`: its provenance
/// and its SBOM, as `opts.attest` asks. Reads the image's layers for the SBOM: call it on
/// a blocking thread.
#[allow(clippy::too_many_arguments)] // one image's parts, as `write_images` has them
pub(crate) fn statements(
    store: &Store,
    opts: &BuildOptions,
    platform: &rbuild_frontend::Platform,
    manifest: &Descriptor,
    config: &ImageConfiguration,
    layers: &[Descriptor],
    materials: Vec<Material>,
    started: i64,
) -> Result<Vec<Statement>, BuildError> {
    let mut statements = Vec::new();
    if let Some(mode) = opts.attest.provenance {
        let input = provenance::ProvenanceInput {
            mode,
            opts,
            invocation: &opts.attest.invocation,
            platform,
            subject: &manifest.digest,
            materials,
            started,
            finished: rbuild_store::time::now_unix(),
        };
        statements.push(Statement {
            predicate_type: PREDICATE_SLSA_PROVENANCE_V1.to_owned(),
            bytes: provenance::statement(&input),
        });
    }
    if let Some(format) = opts.attest.sbom {
        let subject = rbuild_sbom::Subject {
            name: opts
                .tags
                .first()
                .map_or_else(|| "image".to_owned(), ToString::to_string),
            digest: Some(manifest.digest.to_string()),
            created: config
                .created
                .clone()
                .unwrap_or_else(|| rbuild_store::time::rfc3339(0)),
        };
        statements.push(sbom::cached_sbom_statement(
            store, format, manifest, layers, subject,
        )?);
    }
    Ok(statements)
}
