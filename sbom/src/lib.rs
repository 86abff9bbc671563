//! The packages an image installs, read from its layers, and the documents that list them
//! (SPDX 2.3 and CycloneDX 1.5 JSON).
//!
//! The scan reads each layer's tar stream once, bottom layer first, keeping the files that
//! describe packages (package databases, Python and Node metadata, Go and Rust build
//! information in executables) and applying whiteouts, so that what a later layer removes
//! or replaces is not listed. It needs no mount and no root, and it reads pulled images as
//! well as built ones.
//!
//! ```
//! let inventory = rbuild_sbom::Inventory::scan(std::iter::empty::<&[u8]>()).unwrap();
//! assert!(inventory.packages.is_empty());
//! ```

mod apk;
mod cyclonedx;
mod dpkg;
mod elf;
mod error;
mod golang;
mod layers;
mod license;
mod node;
mod purl;
mod python;
mod rust;
mod spdx;

use std::collections::BTreeMap;
use std::io::Read;

pub use cyclonedx::cyclonedx;
pub use error::ScanError;
pub use spdx::spdx;

/// Where a package came from: its ecosystem, which decides its purl type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// A Debian or Ubuntu package (dpkg's database).
    Deb,
    /// An Alpine package (apk's database).
    Apk,
    /// A Python distribution (`*.dist-info` or `*.egg-info`).
    Python,
    /// A Node package (`node_modules/<name>/package.json`).
    Npm,
    /// A Go module compiled into an executable (its build information).
    Go,
    /// A Rust crate compiled into an executable (its `cargo auditable` section).
    Cargo,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::Cargo => "cargo",
        }
    }
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The architecture a system package is built for (`amd64`, `x86_64`), if it says.
    pub arch: Option<String>,
    /// The license as an SPDX expression, when the metadata names one rbuild recognizes.
    pub license: Option<String>,
    /// The license as the metadata words it, when it is not a recognized SPDX expression.
    pub license_text: Option<String>,
    /// The package URL (<https://github.com/package-url/purl-spec>).
    pub purl: String,
    /// The file it was found in, from the image's root (`/var/lib/dpkg/status`).
    pub found_in: String,
}

/// The operating system the image says it is (`/etc/os-release`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `3.20.1`).
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// Everything a scan found, packages sorted by ecosystem, name and version.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub os: OsRelease,
    pub packages: Vec<Package>,
}

impl Inventory {
    /// Scans an image's layers, bottom first, each an uncompressed tar stream as OCI
    /// defines layers (whiteouts as `.wh.` entries).
    ///
    /// Fails when a layer is not a readable tar or a package database in the final image
    /// is corrupt (the error names the file and the line); a file that merely describes
    /// no package (an executable without build information) is skipped.
    pub fn scan<R: Read>(layers: impl IntoIterator<Item = R>) -> Result<Inventory, ScanError> {
        let files = layers::Files::read(layers)?;
        let os = files
            .get("etc/os-release")
            .or_else(|| files.get("usr/lib/os-release"))
            .map(|bytes| parse_os_release(&String::from_utf8_lossy(bytes)))
            .unwrap_or_default();
        let mut packages = Vec::new();
        packages.extend(dpkg::packages(&files, &os)?);
        packages.extend(apk::packages(&files, &os)?);
        packages.extend(python::packages(&files));
        packages.extend(node::packages(&files));
        packages.extend(files.binaries().cloned());
        packages.sort();
        packages.dedup_by(|a, b| {
            a.ecosystem == b.ecosystem
                && a.name == b.name
                && a.version == b.version
                && a.found_in == b.found_in
        });
        Ok(Inventory { os, packages })
    }

    /// How many packages each ecosystem has.
    pub fn counts(&self) -> BTreeMap<Ecosystem, usize> {
        let mut counts = BTreeMap::new();
        for package in &self.packages {
            *counts.entry(package.ecosystem).or_insert(0) += 1;
        }
        counts
    }
}

/// What the documents say about the image they describe.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The image's name (its first tag, or its digest).
    pub name: String,
    /// The image manifest's digest (`sha256:…`), when known.
    pub digest: Option<String>,
    /// When the image was made (RFC 3339): the document's creation time, so that the
    /// same image always gets the same document.
    pub created: String,
}

fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
        match key.trim() {
            "ID" => os.id = Some(value),
            "VERSION_ID" => os.version_id = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            _ => {}
        }
    }
    os
}

/// A stable hash of `bytes`, for identifiers the same content always gets.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
pub(crate) mod testing {
    /// A layer tar with `files` (path, mode, content); a path ending in `/` is a directory.
    pub fn layer(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, mode, content) in files {
            let mut header = tar::Header::new_gnu();
            if path.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
            }
            header.set_mode(*mode);
            builder
                .append_data(&mut header, path, *content)
                .expect("writing to memory");
        }
        builder.into_inner().expect("writing to memory")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::layer;
    use super::*;

    const STATUS: &[u8] = b"Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n";

    #[test]
    fn a_debian_image_lists_its_installed_packages_with_purls() {
        let base = layer(&[
            (
                "etc/os-release",
                0o644,
                b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
            ),
            ("var/lib/dpkg/status", 0o644, STATUS),
        ]);
        let inventory = Inventory::scan([&base[..]]).unwrap();
        assert_eq!(inventory.os.id.as_deref(), Some("debian"));
        let purls: Vec<&str> = inventory.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
            ]
        );
    }

    #[test]
    fn a_later_layer_that_removes_or_replaces_a_file_wins() {
        let site = "usr/lib/python3/dist-packages";
        let base = layer(&[
            (
                &format!("{site}/requests-2.31.0.dist-info/METADATA"),
                0o644,
                b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n",
            ),
            (
                &format!("{site}/idna-3.6.dist-info/METADATA"),
                0o644,
                b"Metadata-Version: 2.1\nName: idna\nVersion: 3.6\n",
            ),
            ("var/lib/dpkg/status", 0o644, STATUS),
        ]);
        let top = layer(&[
            (&format!("{site}/.wh.requests-2.31.0.dist-info"), 0o644, b""),
            ("var/lib/dpkg/.wh.status", 0o644, b""),
        ]);
        let inventory = Inventory::scan([&base[..], &top[..]]).unwrap();
        let names: Vec<&str> = inventory.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["idna"]);

        let opaque = layer(&[
            (&format!("{site}/"), 0o755, b""),
            (&format!("{site}/.wh..wh..opq"), 0o644, b""),
            (
                &format!("{site}/six-1.16.0.dist-info/METADATA"),
                0o644,
                b"Name: six\nVersion: 1.16.0\nLicense-Expression: MIT\n",
            ),
        ]);
        let inventory = Inventory::scan([&base[..], &opaque[..]]).unwrap();
        let found: Vec<(&str, Option<&str>)> = inventory
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.license.as_deref()))
            .collect();
        assert_eq!(
            found,
            [("base-files", None), ("libc6", None), ("six", Some("MIT"))]
        );
    }

    #[test]
    fn a_layer_that_is_not_a_tar_is_an_error_naming_the_layer() {
        let good = layer(&[("etc/hostname", 0o644, b"x\n")]);
        let bad = vec![0x41u8; 1024];
        let err = Inventory::scan([&good[..], &bad[..]]).unwrap_err();
        assert!(err.to_string().contains("layer 2"), "{err}");
    }
}
