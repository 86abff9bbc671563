//! Image archives: OCI image layout tars (`save`, `load`) and rootfs tarballs (`import`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::layer::{Compression, detect_compression};
use crate::oci::{self, Descriptor, History, ImageConfiguration, Index, RootFs};
use crate::{Digest, HashingWriter, ImageName, Store};

/// An image found in an archive by [`Store::load`].
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub manifest: Digest,
    /// The name it was tagged with, if the archive or the caller gave one.
    pub name: Option<ImageName>,
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

impl Store {
    /// Writes `names` as an OCI image layout tar to `out`. The file appears whole or not at
    /// all: it is written next to `out` and renamed when complete.
    pub fn save(&self, names: &[ImageName], out: &Path) -> Result<()> {
        let mut manifests = Vec::new();
        let mut blobs = BTreeMap::new();
        for name in names {
            let image = self.image(name)?;
            let mut descriptor = Descriptor::new(
                oci::MEDIA_TYPE_MANIFEST,
                image.manifest_digest.clone(),
                self.read_blob(&image.manifest_digest)?.len() as u64,
            );
            descriptor
                .annotations
                .insert(oci::ANNOTATION_REF_NAME.to_owned(), name.to_string());
            manifests.push(descriptor);
            blobs.insert(image.manifest_digest.clone(), None);
            blobs.insert(
                image.config_digest.clone(),
                Some(image.manifest.config.size),
            );
            for layer in &image.manifest.layers {
                blobs.insert(layer.digest.clone(), Some(layer.size));
            }
        }
        let index = oci::canonical_json(&Index::new(manifests));

        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile_in(dir, out)?;
        let result = (|| -> Result<()> {
            let file = File::create(&tmp).map_err(Error::io("create", &tmp))?;
            let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
            let werr = Error::io("write", &tmp);
            let append = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn Read| {
                let mut header = Header::new_gnu();
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_size(size);
                header.set_entry_type(EntryType::Regular);
                tar.append_data(&mut header, path, data)
            };
            (|| -> io::Result<()> {
                append(
                    &mut tar,
                    "oci-layout",
                    OCI_LAYOUT.len() as u64,
                    &mut &OCI_LAYOUT[..],
                )?;
                append(
                    &mut tar,
                    "index.json",
                    index.len() as u64,
                    &mut index.as_slice(),
                )?;
                for dir in ["blobs/", "blobs/sha256/"] {
                    let mut header = Header::new_gnu();
                    header.set_mode(0o755);
                    header.set_mtime(0);
                    header.set_entry_type(EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, dir, io::empty())?;
                }
                Ok(())
            })()
            .map_err(werr)?;
            for (digest, size) in &blobs {
                let size = match size {
                    Some(size) => *size,
                    None => fs::metadata(self.blob_path(digest))
                        .map_err(Error::io("stat blob", self.blob_path(digest)))?
                        .len(),
                };
                let mut blob = self.open_blob(digest, Some(size))?;
                append(
                    &mut tar,
                    &format!("blobs/sha256/{}", digest.hex()),
                    size,
                    &mut blob,
                )
                .map_err(|source| match source.kind() {
                    io::ErrorKind::InvalidData => Error::CorruptBlob {
                        digest: digest.clone(),
                        source,
                    },
                    _ => Error::io("write", &tmp)(source),
                })?;
            }
            let file = tar
                .into_inner()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .map_err(Error::io("write", &tmp))?;
            file.sync_all().map_err(Error::io("fsync", &tmp))?;
            fs::rename(&tmp, out).map_err(Error::io("rename to", out))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Loads an OCI image layout tar (plain or gzip-compressed). Every blob is verified
    /// against its name; names are set only once every blob they need is in the store.
    /// `tag` names the archive's only image (an error when it holds several).
    pub fn load(
        &self,
        input: impl Read,
        source: &Path,
        tag: Option<&ImageName>,
    ) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: source.to_owned(),
            reason,
        };
        let read_err = |e: io::Error| Error::io("read", source)(e);
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let head = reader.fill_buf().map_err(read_err)?.to_vec();
        let stream: Box<dyn Read> = match detect_compression(&head) {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::None => Box::new(reader),
            Compression::Zstd => {
                return Err(invalid("zstd-compressed archives are not supported".into()));
            }
        };
        let mut archive = tar::Archive::new(stream);
        let mut index_bytes = None;
        let mut saw_docker_manifest = false;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            if entry.header().entry_type() != EntryType::Regular {
                continue;
            }
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = path.trim_start_matches("./");
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                let digest = Digest::from_hex(hex)
                    .map_err(|_| invalid(format!("`{path}` is not named by a sha256 digest")))?;
                if self.keep_existing_blob(&digest)? {
                    continue;
                }
                let mut ingest = self.ingest()?;
                io::copy(&mut entry, &mut ingest).map_err(read_err)?;
                ingest.commit(Some(&digest))?;
            } else if path == "index.json" {
                let size = entry.header().size().map_err(read_err)?;
                if size > crate::MAX_JSON_BLOB {
                    return Err(Error::TooLarge {
                        what: "index.json",
                        size,
                        limit: crate::MAX_JSON_BLOB,
                    });
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(read_err)?;
                index_bytes = Some(bytes);
            } else if path == "manifest.json" {
                saw_docker_manifest = true;
            }
        }
        let Some(index_bytes) = index_bytes else {
            let reason = if saw_docker_manifest {
                "a docker-archive; only OCI image layout archives are supported for now"
            } else {
                "not an OCI image layout (no index.json)"
            };
            return Err(invalid(reason.into()));
        };
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| invalid(format!("index.json is not a valid OCI index: {e}")))?;
        let mut loaded = Vec::new();
        for descriptor in &index.manifests {
            let manifest = self.platform_manifest(descriptor)?;
            let image = self.image_by_manifest(&manifest)?;
            let mut needed = vec![&image.manifest.config];
            needed.extend(&image.manifest.layers);
            for blob in needed {
                if !self.has_blob(&blob.digest) {
                    return Err(invalid(format!("the archive lacks blob {}", blob.digest)));
                }
            }
            let name = descriptor
                .annotations
                .get(CONTAINERD_IMAGE_NAME)
                .or_else(|| descriptor.annotations.get(oci::ANNOTATION_REF_NAME))
                // A bare ref.name like `latest` is only a tag, not an image name.
                .filter(|name| name.contains([':', '/']))
                .and_then(|name| name.parse::<ImageName>().ok());
            loaded.push(LoadedImage { manifest, name });
        }
        if let Some(tag) = tag {
            let unique: BTreeSet<_> = loaded.iter().map(|l| l.manifest.clone()).collect();
            if unique.len() != 1 {
                return Err(invalid(format!(
                    "`-t` needs an archive with one image, this one has {}",
                    unique.len()
                )));
            }
            loaded.truncate(1);
            loaded[0].name = Some(tag.clone());
        }
        for image in &loaded {
            if let Some(name) = &image.name {
                self.tag(name, &image.manifest)?;
            }
        }
        Ok(loaded)
    }

    /// The manifest for this machine's platform behind `descriptor` (a manifest, or an
    /// index whose entries are manifests).
    fn platform_manifest(&self, descriptor: &Descriptor) -> Result<Digest> {
        if descriptor.media_type != oci::MEDIA_TYPE_INDEX
            && descriptor.media_type != "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            return Ok(descriptor.digest.clone());
        }
        let index: Index = self.read_json("image index", &descriptor.digest)?;
        let arch = host_architecture();
        index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == arch)
            })
            .map(|m| m.digest.clone())
            .ok_or_else(|| Error::InvalidLayer {
                digest: descriptor.digest.clone(),
                reason: format!("the image index has no manifest for linux/{arch}"),
            })
    }

    /// Makes a one-layer image from a filesystem tarball (plain or gzip), like
    /// `docker import`, and names it.
    pub fn import(&self, input: impl Read, source: &Path, name: &ImageName) -> Result<Digest> {
        let read_err = |e: io::Error| Error::io("read", source)(e);
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let head = reader.fill_buf().map_err(read_err)?.to_vec();
        let mut stream: Box<dyn Read> = match detect_compression(&head) {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::None => Box::new(reader),
            Compression::Zstd => {
                return Err(Error::InvalidArchive {
                    path: source.to_owned(),
                    reason: "zstd-compressed tarballs are not supported".into(),
                });
            }
        };
        let ingest = self.ingest()?;
        let mut hashing = HashingWriter::new(GzEncoder::new(ingest, flate2::Compression::new(6)));
        io::copy(&mut stream, &mut hashing).map_err(read_err)?;
        hashing.flush().map_err(read_err)?;
        let (gzip, diff_id, _) = hashing.finish();
        let ingest = gzip.finish().map_err(read_err)?;
        let (layer_digest, layer_size) = ingest.commit(None)?;
        let now = crate::time::rfc3339(crate::time::now_unix());
        let config = ImageConfiguration {
            created: Some(now.clone()),
            author: None,
            architecture: host_architecture().to_owned(),
            os: "linux".to_owned(),
            variant: None,
            config: serde_json::Value::Null,
            rootfs: RootFs::layers(vec![diff_id]),
            history: vec![History {
                created: Some(now),
                created_by: Some(format!("rbuild import {}", source.display())),
                comment: Some("imported from a filesystem tarball".to_owned()),
                ..Default::default()
            }],
        };
        let manifest = self.write_image(
            &config,
            vec![Descriptor::new(
                oci::MEDIA_TYPE_LAYER_GZIP,
                layer_digest,
                layer_size,
            )],
        )?;
        // Fail now rather than at the first build if the tarball cannot be unpacked.
        self.unpack(&self.image_by_manifest(&manifest.digest)?)?;
        self.tag(name, &manifest.digest)?;
        Ok(manifest.digest)
    }
}

/// The OCI architecture name of this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn tempfile_in(dir: &Path, out: &Path) -> Result<std::path::PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    Ok(dir.join(format!(".{name}.{}.tmp", crate::blobs::unique_name())))
}
