//! Image archives: OCI image layout tars (`save`, `load`) and rootfs tarballs (`import`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use crate::error::{Error, Result};
use crate::layer::{Compression, decompress, detect_compression};
use crate::oci::{self, Descriptor, History, ImageConfiguration, Index, RootFs};
use crate::{Digest, HashingWriter, ImageName, Store};

/// An image found in an archive by [`Store::load`] (or in a layout directory by
/// [`Store::load_layout_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The manifest loaded for it (this machine's platform, for an index; the name goes
    /// to the whole index when the archive held every platform of it).
    pub manifest: Digest,
    /// The name it was tagged with, if the archive or the caller gave one.
    pub name: Option<ImageName>,
    /// The digest the archive's index gives it (a manifest's, or an index's); a
    /// docker-archive's image has no other than its manifest.
    pub descriptor: Digest,
    /// Its `org.opencontainers.image.ref.name` in the index, as written (a tag, usually).
    pub ref_name: Option<String>,
}

/// The kind of image archive `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// An OCI image layout.
    #[default]
    Oci,
    /// An OCI image layout plus docker's `manifest.json` and `repositories`, which
    /// `docker load` reads.
    Docker,
}

/// An image's manifest, config and layers among the blobs an archive holds (the size
/// when the descriptor gives it).
fn add_image_blobs(blobs: &mut BTreeMap<Digest, Option<u64>>, image: &crate::Image) {
    add_manifest_blobs(blobs, &image.manifest_digest, &image.manifest);
}

/// The manifest `digest` and the blobs it names (its config and layers, with their sizes).
fn add_manifest_blobs(
    blobs: &mut BTreeMap<Digest, Option<u64>>,
    digest: &Digest,
    manifest: &oci::Manifest,
) {
    blobs.insert(digest.clone(), None);
    blobs.insert(manifest.config.digest.clone(), Some(manifest.config.size));
    for layer in &manifest.layers {
        blobs.insert(layer.digest.clone(), Some(layer.size));
    }
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

impl Store {
    /// Writes `names` as an OCI image layout tar to `out`. The file appears whole or not at
    /// all: it is written next to `out` and renamed when complete (a device or a FIFO is
    /// written into: see [`Store::save_manifests`]).
    pub fn save(&self, names: &[ImageName], out: &Path, format: ArchiveFormat) -> Result<()> {
        let images = self.named_images(names)?;
        self.save_manifests(&images, out, format)
    }

    /// [`Store::save`] into `out` (standard output); `-` names it in errors.
    pub fn save_to(
        &self,
        names: &[ImageName],
        out: impl Write,
        format: ArchiveFormat,
    ) -> Result<()> {
        let images = self.named_images(names)?;
        self.write_archive(&images, out, format, Path::new("-"))
    }

    /// The manifest each name points at, with the name; each image read now, so a broken
    /// one fails before anything is written.
    fn named_images(&self, names: &[ImageName]) -> Result<Vec<(Digest, Vec<ImageName>)>> {
        let mut images = Vec::new();
        for name in names {
            let record = self
                .image_record(name)?
                .ok_or_else(|| Error::ImageNotFound { name: name.clone() })?;
            self.image_by_digest(&record.manifest)?;
            images.push((record.manifest, vec![name.clone()]));
        }
        Ok(images)
    }

    /// Writes images given by manifest digest, each with the names to record for it
    /// (possibly none), as an archive at `out`: whole or not at all (written aside, then
    /// renamed over it; a symlink is followed, not replaced). A device or a FIFO
    /// (`/dev/null`, `/dev/stdout`) is written into, never replaced.
    pub fn save_manifests(
        &self,
        images: &[(Digest, Vec<ImageName>)],
        out: &Path,
        format: ArchiveFormat,
    ) -> Result<()> {
        let out = through_links(out);
        if fs::metadata(&out).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&out)
                .map_err(Error::io("open", &out))?;
            let writer = io::BufWriter::with_capacity(1 << 20, file);
            return self.write_archive(images, writer, format, &out);
        }
        let layout = self.layout(images, format)?;
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile_in(dir, &out)?;
        let result = (|| -> Result<()> {
            let file = File::create(&tmp).map_err(Error::io("create", &tmp))?;
            let writer = io::BufWriter::with_capacity(1 << 20, file);
            let file = self
                .write_layout(&layout, writer, &tmp)?
                .into_inner()
                .map_err(|e| Error::io("write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(Error::io("fsync", &tmp))?;
            fs::rename(&tmp, &out).map_err(Error::io("rename to", &out))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// [`Store::save_manifests`] into `out` (standard output): everything is read and
    /// checked before the first byte is written, but a failure while blobs are written
    /// leaves a partial archive behind.
    pub fn write_archive(
        &self,
        images: &[(Digest, Vec<ImageName>)],
        out: impl Write,
        format: ArchiveFormat,
        what: &Path,
    ) -> Result<()> {
        let layout = self.layout(images, format)?;
        let mut out = self.write_layout(&layout, out, what)?;
        out.flush().map_err(Error::io("write", what))
    }

    /// What an archive of `images` holds.
    fn layout(&self, images: &[(Digest, Vec<ImageName>)], format: ArchiveFormat) -> Result<Layout> {
        let mut manifests = Vec::new();
        let mut blobs = BTreeMap::new();
        // docker-archive: `manifest.json` (config and layer paths per image, with its names)
        // and `repositories`, beside the OCI layout, as docker itself writes since v25.
        let mut docker_manifest: Vec<serde_json::Value> = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut named: Vec<(Option<&ImageName>, &Digest)> = Vec::new();
        // Every image manifest saved, whose referrers go along.
        let mut subjects: Vec<Digest> = Vec::new();
        for (manifest, names) in images {
            if names.is_empty() {
                named.push((None, manifest));
            }
            named.extend(names.iter().map(|name| (Some(name), manifest)));
        }
        for (name, manifest) in named {
            // A multi-platform image: in an OCI layout, its index and every platform's
            // image; a docker-archive holds one platform (this machine's), as docker's.
            if format == ArchiveFormat::Oci
                && let Some(index) = self.read_index(manifest)
            {
                let mut descriptor = Descriptor::new(
                    oci::MEDIA_TYPE_INDEX,
                    manifest.clone(),
                    self.read_blob(manifest)?.len() as u64,
                );
                if let Some(name) = name {
                    descriptor
                        .annotations
                        .insert(oci::ANNOTATION_REF_NAME.to_owned(), name.to_string());
                }
                manifests.push(descriptor);
                blobs.insert(manifest.clone(), None);
                for child in &index.manifests {
                    add_image_blobs(&mut blobs, &self.image_by_manifest(&child.digest)?);
                    subjects.push(child.digest.clone());
                }
                continue;
            }
            let image = self.image_by_digest(manifest)?;
            if format == ArchiveFormat::Docker {
                let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
                let tags: Vec<serde_json::Value> =
                    name.iter().map(|n| n.to_string().into()).collect();
                match docker_manifest
                    .iter_mut()
                    .find(|entry| entry["Config"] == path(&image.config_digest))
                {
                    Some(entry) => {
                        if let Some(existing) = entry["RepoTags"].as_array_mut() {
                            existing.extend(tags);
                        }
                    }
                    None => docker_manifest.push(serde_json::json!({
                        "Config": path(&image.config_digest),
                        "RepoTags": tags,
                        "Layers": image.manifest.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
                    })),
                }
                if let Some(name) = name {
                    repositories
                        .entry(name.repository().to_owned())
                        .or_default()
                        .insert(name.tag().to_owned(), image.config_digest.hex().to_owned());
                }
            }
            let mut descriptor = Descriptor::new(
                oci::MEDIA_TYPE_MANIFEST,
                image.manifest_digest.clone(),
                self.read_blob(&image.manifest_digest)?.len() as u64,
            );
            if let Some(name) = name {
                descriptor
                    .annotations
                    .insert(oci::ANNOTATION_REF_NAME.to_owned(), name.to_string());
            }
            manifests.push(descriptor);
            add_image_blobs(&mut blobs, &image);
            subjects.push(image.manifest_digest.clone());
        }
        // The images' referrers (OCI 1.1 attestations): in an OCI layout, manifests listed
        // in index.json whose `subject` names the image.
        if format == ArchiveFormat::Oci {
            for subject in &subjects {
                for referrer in self.referrers(subject)? {
                    if blobs.contains_key(&referrer.digest) {
                        continue;
                    }
                    let artifact: oci::Manifest = self.read_json("referrer", &referrer.digest)?;
                    add_manifest_blobs(&mut blobs, &referrer.digest, &artifact);
                    manifests.push(referrer);
                }
            }
        }
        let index = oci::canonical_json(&Index::new(manifests));
        let mut extra_files: Vec<(&'static str, Vec<u8>)> = Vec::new();
        if format == ArchiveFormat::Docker {
            extra_files.push(("manifest.json", oci::canonical_json(&docker_manifest)));
            extra_files.push(("repositories", oci::canonical_json(&repositories)));
        }
        Ok(Layout {
            index,
            extra_files,
            blobs,
        })
    }

    /// Writes `layout` as a tar into `out`; `what` names it in errors.
    fn write_layout<W: Write>(&self, layout: &Layout, out: W, what: &Path) -> Result<W> {
        let Layout {
            index,
            extra_files,
            blobs,
        } = layout;
        let mut tar = tar::Builder::new(out);
        let werr = Error::io("write", what);
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
            for (path, bytes) in extra_files {
                append(&mut tar, path, bytes.len() as u64, &mut bytes.as_slice())?;
            }
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
        for (digest, size) in blobs {
            let size = match size {
                Some(size) => *size,
                None => fs::metadata(self.blob_path(digest))
                    .map_err(Error::io("stat blob", self.blob_path(digest)))?
                    .len(),
            };
            let mut blob = self.open_content(digest, Some(size))?;
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
                _ => Error::io("write", what)(source),
            })?;
        }
        tar.into_inner().map_err(Error::io("write", what))
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
        let loaded = self.load_images(input, source)?;
        self.name_loaded(loaded, tag, source)
    }

    /// Loads the images of an OCI image layout *directory* (`--build-context
    /// NAME=oci-layout://DIR`) as [`Store::load`] loads a layout tar, every blob verified,
    /// but names none of them: the caller refers to them by digest. Returns the layout's
    /// images in the order of its `index.json`.
    pub fn load_layout_dir(&self, dir: &Path) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: dir.to_owned(),
            reason,
        };
        if !dir.is_dir() {
            return Err(invalid(
                "not a directory: an OCI image layout directory is expected (an archive of one \
                 loads with `rbuild load -i`, or extract it first)"
                    .into(),
            ));
        }
        // Checked here for a clear message; read (with its size bound) by `load_images`.
        if !dir.join("index.json").is_file() {
            return Err(invalid(
                "not an OCI image layout: it has no index.json".into(),
            ));
        }
        // The directory as a tar stream, written by a thread while `load_images` reads
        // it: nothing of the layout is held whole in memory or copied to disk first.
        let (reader, writer) = io::pipe().map_err(Error::io("make a pipe for", dir))?;
        let root = dir.to_owned();
        let writer = std::thread::spawn(move || -> io::Result<()> {
            let mut tar = tar::Builder::new(writer);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &root)?;
            tar.finish()
        });
        let loaded = self.load_images(reader, dir);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the layout reader panicked")));
        // A directory that could not be read explains a short archive better.
        if let Err(source) = written
            && source.kind() != io::ErrorKind::BrokenPipe
        {
            return Err(Error::io("read", dir)(source));
        }
        loaded
    }

    /// Copies `from` (read from `source`) into `into` (a blob being written): a failure to
    /// read is `source`'s, a failure to write the store's (a full disk), each named so.
    fn copy_in(&self, from: &mut impl Read, into: &mut impl Write, source: &Path) -> Result<u64> {
        let mut buffer = vec![0; 1 << 16];
        let mut copied = 0;
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) => return Ok(copied),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(Error::io("read", source)(err)),
            };
            into.write_all(&buffer[..read])
                .map_err(Error::io("write into the store at", self.root()))?;
            copied += read as u64;
        }
    }

    /// Reads an image archive's blobs into the store and returns its images, unnamed.
    fn load_images(&self, input: impl Read, source: &Path) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: source.to_owned(),
            reason,
        };
        let read_err = |e: io::Error| Error::io("read", source)(e);
        let (_, stream) = decompress(BufReader::with_capacity(1 << 20, input)).map_err(read_err)?;
        let mut archive = tar::Archive::new(stream);
        let mut index_bytes = None;
        let mut docker_manifest = None;
        // Every file of the archive that may be a blob, by path (docker-archives name layers
        // and configs by path, not by digest).
        let mut files: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
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
                let size = entry.header().size().map_err(read_err)?;
                files.insert(path.to_owned(), (digest.clone(), size));
                if self.keep_existing_blob(&digest)? {
                    continue;
                }
                let mut ingest = self.ingest()?;
                self.copy_in(&mut entry, &mut ingest, source)?;
                ingest.commit(Some(&digest))?;
            } else if path == "index.json" || path == "manifest.json" {
                let size = entry.header().size().map_err(read_err)?;
                if size > crate::MAX_JSON_BLOB {
                    return Err(Error::TooLarge {
                        what: "an archive's index",
                        size,
                        limit: crate::MAX_JSON_BLOB,
                    });
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(read_err)?;
                if path == "index.json" {
                    index_bytes = Some(bytes);
                } else {
                    docker_manifest = Some(bytes);
                }
            } else if path != "oci-layout" && path != "repositories" {
                // A docker-archive's config or layer under its own name.
                let mut ingest = self.ingest()?;
                self.copy_in(&mut entry, &mut ingest, source)?;
                let (digest, size) = ingest.commit(None)?;
                files.insert(path.to_owned(), (digest, size));
            }
        }
        match (index_bytes, docker_manifest) {
            (Some(index), _) => self.load_oci_index(&index, source),
            (None, Some(manifest)) => self.load_docker_manifest(&manifest, &files, source),
            (None, None) => Err(invalid(
                "neither an OCI image layout (no index.json) nor a docker-archive (no manifest.json)".into(),
            )),
        }
    }

    fn load_oci_index(&self, index_bytes: &[u8], source: &Path) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: source.to_owned(),
            reason,
        };
        let index: Index = serde_json::from_slice(index_bytes)
            .map_err(|e| invalid(format!("index.json is not a valid OCI index: {e}")))?;
        let mut loaded = Vec::new();
        for descriptor in &index.manifests {
            // An artifact about an image (OCI 1.1): one of its referrers, not an image.
            if descriptor.media_type == oci::MEDIA_TYPE_MANIFEST
                && let Ok(artifact) =
                    self.read_json::<oci::Manifest>("manifest", &descriptor.digest)
                && let Some(subject) = &artifact.subject
            {
                self.add_referrer(&subject.digest, descriptor.clone())?;
                continue;
            }
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
            loaded.push(LoadedImage {
                manifest,
                name,
                descriptor: descriptor.digest.clone(),
                ref_name: descriptor
                    .annotations
                    .get(oci::ANNOTATION_REF_NAME)
                    .cloned(),
            });
        }
        Ok(loaded)
    }

    /// Makes OCI manifests for the images a docker-archive's `manifest.json` lists.
    fn load_docker_manifest(
        &self,
        manifest_bytes: &[u8],
        files: &BTreeMap<String, (Digest, u64)>,
        source: &Path,
    ) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: source.to_owned(),
            reason,
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(manifest_bytes).map_err(|e| {
            invalid(format!(
                "manifest.json is not a docker-archive manifest: {e}"
            ))
        })?;
        let file = |path: &str| {
            files
                .get(path.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| {
                    invalid(format!(
                        "manifest.json names `{path}`, which the archive lacks"
                    ))
                })
        };
        let mut loaded = Vec::new();
        for entry in entries {
            let (config_digest, config_size) = file(&entry.config)?;
            let config: ImageConfiguration = self.read_json("image config", &config_digest)?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(invalid(format!(
                    "`{}` lists {} diff ids for {} layers",
                    entry.config,
                    config.rootfs.diff_ids.len(),
                    entry.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                let (digest, size) = file(path)?;
                let mut head = [0u8; 4];
                let mut blob = self.open_blob(&digest, Some(size))?;
                let read = blob
                    .read(&mut head)
                    .map_err(Error::io("read", self.blob_path(&digest)))?;
                let media_type = match detect_compression(&head[..read]) {
                    Compression::Gzip => oci::MEDIA_TYPE_LAYER_GZIP,
                    Compression::Zstd => oci::MEDIA_TYPE_LAYER_ZSTD,
                    Compression::None => oci::MEDIA_TYPE_LAYER,
                };
                layers.push(Descriptor::new(media_type, digest, size));
            }
            let manifest = crate::oci::Manifest::new(
                Descriptor::new(oci::MEDIA_TYPE_CONFIG, config_digest, config_size),
                layers,
            );
            let manifest = self.write_blob(&oci::canonical_json(&manifest))?;
            let names = entry.repo_tags.unwrap_or_default();
            if names.is_empty() {
                loaded.push(LoadedImage {
                    manifest: manifest.clone(),
                    name: None,
                    descriptor: manifest.clone(),
                    ref_name: None,
                });
            }
            for name in names {
                let name = name.parse::<ImageName>().map_err(|_| {
                    invalid(format!(
                        "`{name}` in manifest.json is not a valid image name"
                    ))
                })?;
                loaded.push(LoadedImage {
                    manifest: manifest.clone(),
                    name: Some(name),
                    descriptor: manifest.clone(),
                    ref_name: None,
                });
            }
        }
        Ok(loaded)
    }

    fn name_loaded(
        &self,
        mut loaded: Vec<LoadedImage>,
        tag: Option<&ImageName>,
        source: &Path,
    ) -> Result<Vec<LoadedImage>> {
        let invalid = |reason: String| Error::InvalidArchive {
            path: source.to_owned(),
            reason,
        };
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
                // A multi-platform image whose every platform the archive held keeps them
                // all under the name (as `rbuild save` and `-o type=oci` write them);
                // else the one for this machine.
                let named = if image.descriptor != image.manifest
                    && self.has_every_platform(&image.descriptor)
                {
                    &image.descriptor
                } else {
                    &image.manifest
                };
                self.tag(name, named)?;
            }
        }
        Ok(loaded)
    }

    /// Whether the store has every blob of every platform's image of the index `digest`.
    fn has_every_platform(&self, digest: &Digest) -> bool {
        let Some(children) = self.index_children(digest) else {
            return false;
        };
        children.iter().all(|child| {
            self.image_by_manifest(child).is_ok_and(|image| {
                self.has_blob(&image.config_digest)
                    && image
                        .manifest
                        .layers
                        .iter()
                        .all(|l| self.has_blob(&l.digest))
            })
        })
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
    /// `docker import`, and names it. Its platform is `platform`, else this machine's; its
    /// time `created` (Unix seconds), else now: with a given time, the same tarball is the
    /// same image in every store.
    pub fn import(
        &self,
        input: impl Read,
        source: &Path,
        name: &ImageName,
        platform: Option<&oci::Platform>,
        created: Option<i64>,
    ) -> Result<Digest> {
        let read_err = |e: io::Error| Error::io("read", source)(e);
        let (_, mut stream) =
            decompress(BufReader::with_capacity(1 << 20, input)).map_err(read_err)?;
        let ingest = self.ingest()?;
        let mut hashing = HashingWriter::new(GzEncoder::new(ingest, flate2::Compression::new(6)));
        self.copy_in(&mut stream, &mut hashing, source)?;
        let write_err = |err| Error::io("write into the store at", self.root())(err);
        hashing.flush().map_err(write_err)?;
        let (gzip, diff_id, _) = hashing.finish();
        let ingest = gzip.finish().map_err(write_err)?;
        let (layer_digest, layer_size) = ingest.commit(None)?;
        let now = crate::time::rfc3339(created.unwrap_or_else(crate::time::now_unix));
        let config = ImageConfiguration {
            created: Some(now.clone()),
            author: None,
            architecture: platform.map_or_else(
                || host_architecture().to_owned(),
                |p| p.architecture.clone(),
            ),
            os: platform.map_or_else(|| "linux".to_owned(), |p| p.os.clone()),
            variant: platform.and_then(|p| p.variant.clone()),
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
    oci_architecture(std::env::consts::ARCH)
}

/// The OCI name of an architecture given by another of its names (Rust's, the kernel's,
/// `uname -m`'s): `x86_64` is `amd64`, `aarch64` is `arm64`; OCI names stay as they are.
pub fn oci_architecture(name: &str) -> &str {
    match name {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The file `path` names through symlinks: itself when it is none, the file a symlink
/// leads to (made there when it does not exist yet, as a shell's `>` would).
fn through_links(path: &Path) -> std::path::PathBuf {
    if let Ok(target) = fs::canonicalize(path) {
        return target;
    }
    let mut path = path.to_owned();
    // A dangling link (a chain of them, at most a few): where it points.
    for _ in 0..8 {
        let Ok(target) = fs::read_link(&path) else {
            break;
        };
        path = match path.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
    }
    path
}

/// What an archive holds: its `index.json`, docker's files beside it, and its blobs (with
/// their sizes where the manifests give them).
struct Layout {
    index: Vec<u8>,
    extra_files: Vec<(&'static str, Vec<u8>)>,
    blobs: BTreeMap<Digest, Option<u64>>,
}

fn tempfile_in(dir: &Path, out: &Path) -> Result<std::path::PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    Ok(dir.join(format!(".{name}.{}.tmp", crate::blobs::unique_name())))
}
