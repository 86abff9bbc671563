//! Debian and Ubuntu packages: dpkg's status database (`/var/lib/dpkg/status`, and the
//! one-file-per-package `status.d` of distroless images), licenses from machine-readable
//! `/usr/share/doc/<package>/copyright` files.

use std::collections::BTreeSet;

use crate::layers::Files;
use crate::{Ecosystem, OsRelease, Package, ScanError};

const STATUS: &str = "var/lib/dpkg/status";

pub(crate) fn is_copyright(path: &str) -> bool {
    path.strip_prefix("usr/share/doc/")
        .and_then(|rest| rest.strip_suffix("/copyright"))
        .is_some_and(|package| !package.is_empty() && !package.contains('/'))
}

pub(crate) fn packages(files: &Files, os: &OsRelease) -> Result<Vec<Package>, ScanError> {
    let mut packages = Vec::new();
    let databases = files
        .contents()
        .filter(|(path, _)| *path == STATUS || path.starts_with("var/lib/dpkg/status.d/"));
    for (path, bytes) in databases {
        let text = String::from_utf8_lossy(bytes);
        // `status.d` holds one file per package and no Status field: all installed.
        let all_installed = path != STATUS;
        for paragraph in paragraphs(&text, path)? {
            let field = |name: &str| {
                paragraph
                    .fields
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.as_str())
            };
            let installed = all_installed
                || field("Status")
                    .is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
            if !installed {
                continue;
            }
            let database_error = |reason: &str| ScanError::Database {
                path: path.to_owned(),
                line: paragraph.line,
                reason: reason.to_owned(),
            };
            let name = field("Package")
                .ok_or_else(|| database_error("a package without a `Package` field"))?;
            let version = field("Version")
                .ok_or_else(|| database_error(&format!("package `{name}` has no `Version`")))?;
            let arch = field("Architecture").map(str::to_owned);
            let source = field("Source").and_then(|s| s.split_whitespace().next());
            let distro_id = os.id.clone().unwrap_or_else(|| "debian".to_owned());
            let distro = match &os.version_id {
                Some(version) => format!("{distro_id}-{version}"),
                None => distro_id.clone(),
            };
            let mut qualifiers = vec![
                ("arch", arch.as_deref().unwrap_or("")),
                ("distro", distro.as_str()),
            ];
            if let Some(source) = source.filter(|s| *s != name) {
                qualifiers.push(("upstream", source));
            }
            let purl =
                crate::purl::purl("deb", &format!("{distro_id}/{name}"), version, &qualifiers);
            let (license, license_text) = copyright_license(files, name);
            packages.push(Package {
                ecosystem: Ecosystem::Deb,
                name: name.to_owned(),
                version: version.to_owned(),
                arch,
                license,
                license_text,
                purl,
                found_in: format!("/{path}"),
            });
        }
    }
    Ok(packages)
}

/// A package's licenses from its machine-readable copyright file: as an SPDX expression
/// when every one maps, else as the file words them.
fn copyright_license(files: &Files, package: &str) -> (Option<String>, Option<String>) {
    let Some(bytes) = files.get(&format!("usr/share/doc/{package}/copyright")) else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(bytes);
    if !text.starts_with("Format:") {
        return (None, None);
    }
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("License:") {
            // `License: GPL-2+ or Artistic`: each name of the choice.
            for name in value.split([' ', ',']).filter(|w| !w.is_empty()) {
                if !matches!(name.to_ascii_lowercase().as_str(), "or" | "and" | "with") {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    if names.is_empty() {
        return (None, None);
    }
    let mapped: Option<BTreeSet<String>> = names
        .iter()
        .map(|n| crate::license::debian_name(n))
        .collect();
    match mapped {
        Some(ids) => (
            Some(ids.into_iter().collect::<Vec<_>>().join(" AND ")),
            None,
        ),
        None => (None, Some(names.into_iter().collect::<Vec<_>>().join(", "))),
    }
}

/// One paragraph of a deb822 file: its fields, and the line it starts on (from 1).
pub(crate) struct Paragraph {
    pub line: usize,
    pub fields: Vec<(String, String)>,
}

/// Splits a deb822 file (dpkg's status, Debian control files) into paragraphs. A line
/// that is neither `Field: value` nor a continuation is corruption, named by its line.
pub(crate) fn paragraphs(text: &str, path: &str) -> Result<Vec<Paragraph>, ScanError> {
    let mut out = Vec::new();
    let mut current: Option<Paragraph> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            out.extend(current.take());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut().and_then(|p| p.fields.last_mut()) {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                None => {
                    return Err(ScanError::Database {
                        path: path.to_owned(),
                        line: number,
                        reason: "a continuation line outside a field".to_owned(),
                    });
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':').filter(|(k, _)| is_field_name(k)) else {
            return Err(ScanError::Database {
                path: path.to_owned(),
                line: number,
                reason: format!("`{}` is not a `Field: value` line", truncate(line)),
            });
        };
        current
            .get_or_insert_with(|| Paragraph {
                line: number,
                fields: Vec::new(),
            })
            .fields
            .push((key.to_owned(), value.trim().to_owned()));
    }
    out.extend(current);
    Ok(out)
}

fn is_field_name(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn truncate(line: &str) -> String {
    line.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use crate::testing::layer;

    #[test]
    fn a_corrupt_status_file_is_an_error_naming_its_line() {
        let base = layer(&[(
            "var/lib/dpkg/status",
            0o644,
            b"Package: a\nStatus: install ok installed\nVersion: 1\n\n\x00\x01garbage\n",
        )]);
        let err = crate::Inventory::scan([&base[..]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/var/lib/dpkg/status line 5: `\u{0}\u{1}garbage` is not a `Field: value` line"
        );
        let base = layer(&[(
            "var/lib/dpkg/status",
            0o644,
            b"Package: a\nStatus: install ok installed\n",
        )]);
        let err = crate::Inventory::scan([&base[..]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/var/lib/dpkg/status line 1: package `a` has no `Version`"
        );
    }

    #[test]
    fn licenses_come_from_machine_readable_copyright_files() {
        let base = layer(&[
            (
                "var/lib/dpkg/status",
                0o644,
                b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: amd64\n\nPackage: tzdata\nStatus: install ok installed\nVersion: 2024a\nArchitecture: all\n\nPackage: odd\nStatus: install ok installed\nVersion: 1\n",
            ),
            (
                "usr/share/doc/zlib1g/copyright",
                0o644,
                b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: Zlib\n\nFiles: debian/*\nLicense: GPL-2+\n",
            ),
            (
                "usr/share/doc/odd/copyright",
                0o644,
                b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: public-domain\n",
            ),
        ]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let found: Vec<(&str, Option<&str>, Option<&str>)> = inventory
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.license.as_deref(),
                    p.license_text.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("odd", None, Some("public-domain")),
                ("tzdata", None, None),
                ("zlib1g", Some("GPL-2.0-or-later AND Zlib"), None),
            ]
        );
    }
}
