//! Attestations attached to images as BuildKit attaches them: an attestation manifest per
//! platform image in the image's index, marked `unknown/unknown` (so that no runtime picks
//! it) and pointing at its image with `vnd.docker.reference.digest`; each layer an in-toto
//! statement (`application/vnd.in-toto+json`) whose predicate type is annotated.

use std::io::Read;

use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, ImageConfiguration, Manifest, Platform, RootFs};
use crate::{Digest, Store};

pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// On an index entry: what the entry is (`attestation-manifest`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// On an index entry: the manifest the attestation is about.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";
/// On an attestation layer: the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

pub const PREDICATE_SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";
/// The statements a build writes: a later build of the same image replaces these among
/// its referrers (and in a registry's referrers tag), and leaves others (signatures).
pub const BUILD_PREDICATE_TYPES: &[&str] = &[
    PREDICATE_SLSA_PROVENANCE_V1,
    PREDICATE_SPDX,
    PREDICATE_CYCLONEDX,
];

/// One in-toto statement: its predicate type and its JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// Replaces the digest `old` (hex) by `new` wherever `value` holds it, bare (a subject's
/// `sha256`) or as `sha256:…` (an SBOM's version of the image): the statement is about the
/// image under its new digest.
pub(crate) fn rename_digest(value: &mut serde_json::Value, old: &str, new: &str) {
    match value {
        serde_json::Value::String(text) => {
            if text == old {
                *text = new.to_owned();
            } else if text.strip_prefix("sha256:") == Some(old) {
                *text = format!("sha256:{new}");
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| rename_digest(v, old, new))
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| rename_digest(v, old, new)),
        _ => {}
    }
}

/// The attestation manifests of `index` about the image `subject`.
pub fn attestations_about<'a>(
    index: &'a oci::Index,
    subject: &'a Digest,
) -> impl Iterator<Item = &'a Descriptor> + 'a {
    index.manifests.iter().filter(move |entry| {
        is_attestation(entry)
            && entry
                .annotations
                .get(ANNOTATION_REFERENCE_DIGEST)
                .is_some_and(|about| *about == subject.to_string())
    })
}

/// Whether `descriptor` (a referrer, an attestation layer) holds one of the statements a
/// build writes ([`BUILD_PREDICATE_TYPES`]).
pub fn is_build_statement(descriptor: &Descriptor) -> bool {
    BUILD_PREDICATE_TYPES.contains(&predicate_type_of(descriptor))
}

/// The predicate type an attestation layer or referrer is annotated with (empty when it
/// has none).
fn predicate_type_of(descriptor: &Descriptor) -> &str {
    descriptor
        .annotations
        .get(ANNOTATION_PREDICATE_TYPE)
        .map_or("", String::as_str)
}

/// Whether an index entry is an attestation manifest rather than a platform's image.
pub fn is_attestation(descriptor: &Descriptor) -> bool {
    descriptor
        .annotations
        .get(ANNOTATION_REFERENCE_TYPE)
        .is_some_and(|kind| kind == REFERENCE_TYPE_ATTESTATION)
}

impl Store {
    /// Writes an attestation manifest about the image `subject` holding `statements`;
    /// returns its descriptor as the image's index lists it.
    pub fn write_attestations(
        &self,
        subject: &Descriptor,
        statements: &[Statement],
    ) -> Result<Descriptor> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for statement in statements {
            let digest = self.write_blob(&statement.bytes)?;
            let mut layer = Descriptor::new(
                MEDIA_TYPE_IN_TOTO,
                digest.clone(),
                statement.bytes.len() as u64,
            );
            layer.annotations.insert(
                ANNOTATION_PREDICATE_TYPE.to_owned(),
                statement.predicate_type.clone(),
            );
            layers.push(layer);
            diff_ids.push(digest);
        }
        // As BuildKit's: a config no runtime would run, listing the statements.
        let config = ImageConfiguration {
            created: None,
            author: None,
            architecture: "unknown".to_owned(),
            os: "unknown".to_owned(),
            variant: None,
            config: serde_json::json!({}),
            rootfs: RootFs::layers(diff_ids),
            history: Vec::new(),
        };
        let mut descriptor = self.write_image(&config, layers)?;
        descriptor.platform = Some(Platform {
            architecture: "unknown".to_owned(),
            os: "unknown".to_owned(),
            variant: None,
        });
        descriptor.annotations.insert(
            ANNOTATION_REFERENCE_TYPE.to_owned(),
            REFERENCE_TYPE_ATTESTATION.to_owned(),
        );
        descriptor.annotations.insert(
            ANNOTATION_REFERENCE_DIGEST.to_owned(),
            subject.digest.to_string(),
        );
        Ok(descriptor)
    }

    /// The statements attached to the image `manifest`: in the index `index` (which may
    /// be the manifest itself), and as its referrers; empty when it has none. Each
    /// statement is read and verified against its digest.
    pub fn attestations(&self, index: &Digest, manifest: &Digest) -> Result<Vec<Statement>> {
        // The index's own first: they came with this name; referrers are about the
        // manifest, whatever name it has.
        let mut statements = Vec::new();
        let Some(index) = self.read_index(index) else {
            return self.referrer_statements(manifest);
        };
        for entry in attestations_about(&index, manifest) {
            let attestation: Manifest = self.read_json("attestation manifest", &entry.digest)?;
            statements.extend(self.statements_of(&attestation)?);
        }
        statements.extend(self.referrer_statements(manifest)?);
        Ok(statements)
    }

    /// The in-toto statements an attestation manifest or a referrer holds, read and
    /// verified.
    pub(crate) fn statements_of(&self, manifest: &Manifest) -> Result<Vec<Statement>> {
        manifest
            .layers
            .iter()
            .filter(|layer| layer.media_type == MEDIA_TYPE_IN_TOTO)
            .map(|layer| {
                Ok(Statement {
                    predicate_type: predicate_type_of(layer).to_owned(),
                    bytes: self.read_blob(&layer.digest)?,
                })
            })
            .collect()
    }

    /// The statement of the attestation layer `layer` with the image digest `old` (hex)
    /// replaced by `new` wherever it names it (see [`rename_digest`]).
    pub(crate) fn renamed_statement(
        &self,
        layer: &Descriptor,
        old: &str,
        new: &str,
    ) -> Result<Statement> {
        let mut statement: serde_json::Value = self.read_json("attestation", &layer.digest)?;
        rename_digest(&mut statement, old, new);
        Ok(Statement {
            predicate_type: predicate_type_of(layer).to_owned(),
            bytes: oci::canonical_json(&statement),
        })
    }

    /// The attestation manifest `entry` (an index entry) about an image that is `renamed`
    /// elsewhere (pushed with its layers compressed, so under another digest): written
    /// again with each statement's subject and the entry's reference naming the new
    /// digest. An attestation about an image not renamed is returned as it is.
    pub fn rename_attestation_subject(
        &self,
        entry: &Descriptor,
        renamed: &std::collections::HashMap<Digest, Digest>,
    ) -> Result<Descriptor> {
        let Some(new) = entry
            .annotations
            .get(ANNOTATION_REFERENCE_DIGEST)
            .and_then(|old| old.parse::<Digest>().ok())
            .and_then(|old| renamed.get(&old).filter(|new| **new != old).cloned())
        else {
            return Ok(entry.clone());
        };
        let old = entry.annotations[ANNOTATION_REFERENCE_DIGEST].clone();
        let old_hex = old.trim_start_matches("sha256:").to_owned();
        let attestation: Manifest = self.read_json("attestation manifest", &entry.digest)?;
        let statements = attestation
            .layers
            .iter()
            .map(|layer| self.renamed_statement(layer, &old_hex, new.hex()))
            .collect::<Result<Vec<_>>>()?;
        let subject = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, new, 0);
        let mut written = self.write_attestations(&subject, &statements)?;
        // Whatever else the entry said (a `manifest-descriptor:` annotation) stays.
        for (key, value) in &entry.annotations {
            written
                .annotations
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        Ok(written)
    }

    /// A layer's tar stream, decompressed and checked against its digest as it is read:
    /// for reading an image's files without unpacking it.
    pub fn layer_tar(&self, layer: &Descriptor) -> Result<Box<dyn Read>> {
        if !oci::is_layer_media_type(&layer.media_type) {
            return Err(Error::InvalidLayer {
                digest: layer.digest.clone(),
                reason: format!("unsupported media type `{}`", layer.media_type),
            });
        }
        let content = self.open_content(&layer.digest, Some(layer.size))?;
        let (_, tar) = crate::layer::decompress(content).map_err(|err| Error::InvalidLayer {
            digest: layer.digest.clone(),
            reason: err.to_string(),
        })?;
        Ok(tar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(kind: &str, text: &str) -> Statement {
        Statement {
            predicate_type: kind.to_owned(),
            bytes: format!("{{\"note\":\"{text}\"}}").into_bytes(),
        }
    }

    #[test]
    fn an_index_s_own_statements_come_before_the_manifest_s_referrers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = ImageConfiguration {
            created: None,
            author: None,
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            variant: None,
            config: serde_json::Value::Null,
            rootfs: RootFs::layers(Vec::new()),
            history: Vec::new(),
        };
        let image = store.write_image(&config, Vec::new()).unwrap();
        // Attached to the manifest by another name's build.
        store
            .write_referrer(&image, &statement(PREDICATE_SPDX, "referrer"))
            .unwrap();
        let attestation = store
            .write_attestations(&image, &[statement(PREDICATE_SPDX, "index")])
            .unwrap();
        let index = store.write_index(vec![image.clone(), attestation]).unwrap();
        let found = store.attestations(&index.digest, &image.digest).unwrap();
        let notes: Vec<String> = found
            .iter()
            .map(|s| String::from_utf8(s.bytes.clone()).unwrap())
            .collect();
        assert_eq!(notes, [r#"{"note":"index"}"#, r#"{"note":"referrer"}"#]);
        // The manifest alone: its referrers.
        let alone = store.attestations(&image.digest, &image.digest).unwrap();
        assert_eq!(alone.len(), 1);

        // A later build's statements replace the build's types, and leave others.
        store
            .write_referrer(&image, &statement("https://example.com/signature", "sig"))
            .unwrap();
        store.remove_build_referrers(&image.digest).unwrap();
        let left = store.referrers(&image.digest).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0].annotations[ANNOTATION_PREDICATE_TYPE],
            "https://example.com/signature"
        );
    }
}
