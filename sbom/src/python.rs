//! Python distributions: the core metadata of `*.dist-info/METADATA` (wheels, pip) and
//! `*.egg-info/PKG-INFO` (setuptools), wherever they are installed.

use crate::layers::Files;
use crate::{Ecosystem, Package};

pub(crate) fn is_metadata(path: &str) -> bool {
    path.ends_with(".dist-info/METADATA")
        || path.ends_with(".egg-info/PKG-INFO")
        || (path.ends_with(".egg-info") && path.contains("-packages/"))
}

pub(crate) fn packages(files: &Files) -> Vec<Package> {
    files
        .contents()
        .filter(|(path, _)| is_metadata(path))
        .filter_map(|(path, bytes)| package(path, &String::from_utf8_lossy(bytes)))
        .collect()
}

fn package(path: &str, text: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    let mut expression = None;
    let mut license = None;
    // The headers end at the first empty line; the description follows.
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value.to_owned()),
            "version" => version = Some(value.to_owned()),
            "license-expression" => expression = Some(value.to_owned()),
            "license" if !value.is_empty() && value != "UNKNOWN" => {
                license = Some(value.to_owned())
            }
            _ => {}
        }
    }
    let (name, version) = (name?, version?);
    let declared = expression.or(license);
    let spdx = declared
        .as_deref()
        .and_then(crate::license::spdx_expression);
    Some(Package {
        ecosystem: Ecosystem::Python,
        purl: crate::purl::purl("pypi", &normalize(&name), &version, &[]),
        name,
        version,
        arch: None,
        license_text: if spdx.is_none() {
            declared.map(|d| d.lines().next().unwrap_or("").to_owned())
        } else {
            None
        },
        license: spdx,
        found_in: format!("/{path}"),
    })
}

/// A distribution name as PyPI compares them (PEP 503): lower case, runs of `-_.` as `-`.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::testing::layer;

    #[test]
    fn wheels_and_eggs_anywhere() {
        let base = layer(&[
            (
                "usr/local/lib/python3.12/site-packages/Flask_SQLAlchemy-3.1.1.dist-info/METADATA",
                0o644,
                b"Metadata-Version: 2.1\nName: Flask_SQLAlchemy\nVersion: 3.1.1\nLicense: BSD-3-Clause\n\nName: not-this\n",
            ),
            (
                "opt/venv/lib/python3.11/site-packages/legacy-1.0-py3.11.egg-info/PKG-INFO",
                0o644,
                b"Metadata-Version: 1.1\nName: legacy\nVersion: 1.0\nLicense: Some custom terms\n",
            ),
        ]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let found: Vec<(&str, &str, Option<&str>, Option<&str>)> = inventory
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.purl.as_str(),
                    p.license.as_deref(),
                    p.license_text.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "Flask_SQLAlchemy",
                    "pkg:pypi/flask-sqlalchemy@3.1.1",
                    Some("BSD-3-Clause"),
                    None
                ),
                (
                    "legacy",
                    "pkg:pypi/legacy@1.0",
                    None,
                    Some("Some custom terms")
                ),
            ]
        );
    }
}
