//! OCI 1.1 referrers: artifacts that name the manifest they are about as their `subject`
//! (rbuild's attestations with `--attest-format oci`). The image keeps its own digest; the
//! store remembers each manifest's referrers, keeps them while the manifest is kept, and
//! push and pull carry them along.

use crate::attestations::{ANNOTATION_PREDICATE_TYPE, MEDIA_TYPE_IN_TOTO, Statement};
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Manifest};
use crate::{Digest, Store};

/// The empty config of an artifact (`{}`).
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The state key of the list of `subject`'s referrers.
fn state_key(subject: &Digest) -> String {
    format!("referrers:{subject}")
}

impl Store {
    /// Writes `statement` as an artifact whose subject is `subject` and records it among
    /// the subject's referrers; returns its descriptor as a referrers list shows it.
    pub fn write_referrer(
        &self,
        subject: &Descriptor,
        statement: &Statement,
    ) -> Result<Descriptor> {
        let empty = self.write_blob(b"{}")?;
        let layer_digest = self.write_blob(&statement.bytes)?;
        let mut layer = Descriptor::new(
            MEDIA_TYPE_IN_TOTO,
            layer_digest,
            statement.bytes.len() as u64,
        );
        layer.annotations.insert(
            ANNOTATION_PREDICATE_TYPE.to_owned(),
            statement.predicate_type.clone(),
        );
        let mut manifest = Manifest::new(Descriptor::new(MEDIA_TYPE_EMPTY, empty, 2), vec![layer]);
        manifest.artifact_type = Some(MEDIA_TYPE_IN_TOTO.to_owned());
        manifest.subject = Some(Descriptor::new(
            &subject.media_type,
            subject.digest.clone(),
            subject.size,
        ));
        manifest.annotations.insert(
            ANNOTATION_PREDICATE_TYPE.to_owned(),
            statement.predicate_type.clone(),
        );
        let bytes = oci::canonical_json(&manifest);
        let digest = self.write_blob(&bytes)?;
        let mut descriptor = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, digest, bytes.len() as u64);
        descriptor.artifact_type = manifest.artifact_type.clone();
        descriptor.annotations = manifest.annotations.clone();
        self.add_referrer(&subject.digest, descriptor.clone())?;
        Ok(descriptor)
    }

    /// Records `referrer` (an artifact manifest in the store) as one of `subject`'s.
    pub fn add_referrer(&self, subject: &Digest, referrer: Descriptor) -> Result<()> {
        let mut list = self.referrers(subject)?;
        if list.iter().any(|r| r.digest == referrer.digest) {
            return Ok(());
        }
        list.push(referrer);
        self.put_referrers(subject, &list)
    }

    /// Forgets `subject`'s referrers that hold a statement a build writes (provenance,
    /// SBOMs): a build's own attestations replace the ones an earlier build of the same
    /// image left (others, such as signatures, stay).
    pub fn remove_build_referrers(&self, subject: &Digest) -> Result<()> {
        let list = self.referrers(subject)?;
        let kept: Vec<Descriptor> = list
            .iter()
            .filter(|r| !crate::attestations::is_build_statement(r))
            .cloned()
            .collect();
        if kept.len() == list.len() {
            return Ok(());
        }
        self.put_referrers(subject, &kept)
    }

    /// Records `list` as `subject`'s referrers, replacing what was recorded.
    fn put_referrers(&self, subject: &Digest, list: &[Descriptor]) -> Result<()> {
        let bytes = serde_json::to_vec(list).map_err(|source| Error::InvalidJson {
            what: "referrers",
            digest: subject.clone(),
            source,
        })?;
        self.put_state(&state_key(subject), &bytes)
    }

    /// The referrers the store has of `subject` (none when it has none).
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let Some(bytes) = self.get_state(&state_key(subject))? else {
            return Ok(Vec::new());
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "referrers",
            digest: subject.clone(),
            source,
        })
    }

    /// The referrer `referrer` about an image now known as `subject` (pushed with its
    /// layers compressed, another digest): written again with the new subject, in its
    /// manifest and in its statements, and recorded among the new subject's referrers.
    /// Returned as it is when its subject is `subject` already.
    pub fn rename_referrer(
        &self,
        referrer: &Descriptor,
        subject: &Descriptor,
    ) -> Result<Descriptor> {
        let mut manifest: Manifest = self.read_json("referrer", &referrer.digest)?;
        let Some(old) = manifest.subject.clone() else {
            return Ok(referrer.clone());
        };
        if old.digest == subject.digest {
            return Ok(referrer.clone());
        }
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            let statement =
                self.renamed_statement(layer, old.digest.hex(), subject.digest.hex())?;
            let bytes = statement.bytes;
            let digest = self.write_blob(&bytes)?;
            layers.push(Descriptor {
                digest,
                size: bytes.len() as u64,
                ..layer.clone()
            });
        }
        manifest.layers = layers;
        manifest.subject = Some(Descriptor::new(
            &subject.media_type,
            subject.digest.clone(),
            subject.size,
        ));
        let bytes = oci::canonical_json(&manifest);
        let digest = self.write_blob(&bytes)?;
        let descriptor = Descriptor {
            digest,
            size: bytes.len() as u64,
            ..referrer.clone()
        };
        self.add_referrer(&subject.digest, descriptor.clone())?;
        Ok(descriptor)
    }

    /// The statements of `subject`'s referrers that are in the store.
    pub(crate) fn referrer_statements(&self, subject: &Digest) -> Result<Vec<Statement>> {
        let mut statements = Vec::new();
        for referrer in self.referrers(subject)? {
            let Ok(manifest) = self.read_json::<Manifest>("referrer", &referrer.digest) else {
                continue;
            };
            statements.extend(self.statements_of(&manifest)?);
        }
        Ok(statements)
    }
}
