//! The image's files that describe packages, as the last layer leaves them: read from each
//! layer's tar stream in turn, with OCI whiteouts applied.

use std::collections::BTreeMap;
use std::io::Read;

use crate::{Package, ScanError};

/// Executables larger than this are not read for build information: build information
/// is in the executable's first sections, but finding them needs the whole file in
/// memory, and an image may hold multi-gigabyte blobs with the executable bit set.
const MAX_EXECUTABLE: u64 = 512 << 20;

/// What a file of the image told the scan.
#[derive(Debug)]
enum Kept {
    /// A metadata file's content.
    Content(Vec<u8>),
    /// The packages compiled into an executable.
    Binary(Vec<Package>),
}

/// The kept files of the image, by path from the root without a leading `/`.
pub(crate) struct Files {
    /// Path → (the layer that wrote it, what it holds).
    kept: BTreeMap<String, (usize, Kept)>,
}

impl Files {
    pub(crate) fn read<R: Read>(layers: impl IntoIterator<Item = R>) -> Result<Files, ScanError> {
        let mut files = Files {
            kept: BTreeMap::new(),
        };
        for (index, layer) in layers.into_iter().enumerate() {
            let number = index + 1;
            files
                .read_layer(number, layer)
                .map_err(|source| ScanError::Layer {
                    layer: number,
                    source,
                })?;
        }
        Ok(files)
    }

    fn read_layer(&mut self, layer: usize, reader: impl Read) -> std::io::Result<()> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = normalize(&entry.path_bytes());
            let (dir, name) = match path.rsplit_once('/') {
                Some((dir, name)) => (dir.to_owned(), name.to_owned()),
                None => (String::new(), path.clone()),
            };
            if name == ".wh..wh..opq" {
                self.remove_under(&dir, |l| l < layer);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let hidden = join(&dir, hidden);
                self.kept.remove(&hidden);
                self.remove_under(&hidden, |_| true);
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                // A directory over a lower layer's file of the same name hides it.
                self.kept.remove(&path);
                continue;
            }
            // Anything else at this path replaces what was there, a directory included.
            self.kept.remove(&path);
            self.remove_under(&path, |l| l < layer);
            if kind.is_hard_link() {
                if let Some(target) = entry.link_name_bytes() {
                    let target = normalize(&target);
                    if let Some((_, kept)) = self.kept.get(&target) {
                        let copy = match kept {
                            Kept::Content(bytes) => Kept::Content(bytes.clone()),
                            Kept::Binary(packages) => Kept::Binary(rehome(packages, &path)),
                        };
                        self.kept.insert(path, (layer, copy));
                    }
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.header().size()?;
            let mode = entry.header().mode()?;
            if is_metadata(&path) {
                let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
                entry.read_to_end(&mut bytes)?;
                self.kept.insert(path, (layer, Kept::Content(bytes)));
            } else if mode & 0o111 != 0 && (64..=MAX_EXECUTABLE).contains(&size) {
                let mut head = [0u8; 4];
                entry.read_exact(&mut head)?;
                if head != *b"\x7fELF" {
                    continue;
                }
                let mut bytes = Vec::with_capacity(size as usize);
                bytes.extend_from_slice(&head);
                entry.read_to_end(&mut bytes)?;
                let packages = crate::elf::packages(&bytes, &format!("/{path}"));
                if !packages.is_empty() {
                    self.kept.insert(path, (layer, Kept::Binary(packages)));
                }
            }
        }
        Ok(())
    }

    /// Forgets what is under the directory `dir` and was written by a layer `which` picks.
    fn remove_under(&mut self, dir: &str, which: impl Fn(usize) -> bool) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let under: Vec<String> = self
            .kept
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .filter(|(_, (layer, _))| which(*layer))
            .map(|(path, _)| path.clone())
            .collect();
        for path in under {
            self.kept.remove(&path);
        }
    }

    /// The content of the metadata file at `path`.
    pub(crate) fn get(&self, path: &str) -> Option<&[u8]> {
        match self.kept.get(path) {
            Some((_, Kept::Content(bytes))) => Some(bytes),
            _ => None,
        }
    }

    /// Every kept metadata file, by path.
    pub(crate) fn contents(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.kept.iter().filter_map(|(path, (_, kept))| match kept {
            Kept::Content(bytes) => Some((path.as_str(), bytes.as_slice())),
            Kept::Binary(_) => None,
        })
    }

    /// The packages compiled into the image's executables.
    pub(crate) fn binaries(&self) -> impl Iterator<Item = &Package> {
        self.kept.values().flat_map(|(_, kept)| match kept {
            Kept::Binary(packages) => packages.as_slice(),
            Kept::Content(_) => &[],
        })
    }
}

/// Whether the file at `path` describes packages.
fn is_metadata(path: &str) -> bool {
    matches!(
        path,
        "etc/os-release" | "usr/lib/os-release" | "var/lib/dpkg/status" | "lib/apk/db/installed"
    ) || path
        .strip_prefix("var/lib/dpkg/status.d/")
        .is_some_and(|rest| !rest.contains('/'))
        || crate::dpkg::is_copyright(path)
        || crate::python::is_metadata(path)
        || crate::node::is_manifest(path)
}

fn rehome(packages: &[Package], path: &str) -> Vec<Package> {
    packages
        .iter()
        .cloned()
        .map(|mut package| {
            package.found_in = format!("/{path}");
            package
        })
        .collect()
}

/// A tar path as a path from the root: no `./`, no leading or trailing `/`.
fn normalize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}
