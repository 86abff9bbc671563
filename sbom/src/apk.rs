//! Alpine packages: apk's database (`/lib/apk/db/installed`), one paragraph of
//! `X:value` lines per package.

use crate::layers::Files;
use crate::{Ecosystem, OsRelease, Package, ScanError};

const INSTALLED: &str = "lib/apk/db/installed";

pub(crate) fn packages(files: &Files, os: &OsRelease) -> Result<Vec<Package>, ScanError> {
    let Some(bytes) = files.get(INSTALLED) else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(bytes);
    let mut packages = Vec::new();
    let mut fields: Vec<(char, String)> = Vec::new();
    let mut start = 1;
    let lines: Vec<&str> = text.lines().chain([""]).collect();
    for (index, line) in lines.iter().enumerate() {
        if line.is_empty() {
            if !fields.is_empty() {
                packages.push(package(&fields, start, os)?);
                fields.clear();
            }
            start = index + 2;
            continue;
        }
        let mut chars = line.chars();
        let (Some(key), Some(':')) = (chars.next(), chars.next()) else {
            return Err(ScanError::Database {
                path: INSTALLED.to_owned(),
                line: index + 1,
                reason: format!(
                    "`{}` is not an `X:value` line",
                    line.chars().take(60).collect::<String>()
                ),
            });
        };
        fields.push((key, chars.as_str().to_owned()));
    }
    Ok(packages)
}

fn package(fields: &[(char, String)], line: usize, os: &OsRelease) -> Result<Package, ScanError> {
    let field = |key: char| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    };
    let missing = |what: &str| ScanError::Database {
        path: INSTALLED.to_owned(),
        line,
        reason: format!("a package without {what}"),
    };
    let name = field('P').ok_or_else(|| missing("a name (`P:`)"))?;
    let version = field('V').ok_or_else(|| missing(&format!("a version (`V:`): `{name}`")))?;
    let arch = field('A').map(str::to_owned);
    let distro = match &os.version_id {
        Some(version) => format!("alpine-{version}"),
        None => "alpine".to_owned(),
    };
    let mut qualifiers = vec![
        ("arch", arch.as_deref().unwrap_or("")),
        ("distro", distro.as_str()),
    ];
    if let Some(origin) = field('o').filter(|o| *o != name) {
        qualifiers.push(("upstream", origin));
    }
    let declared = field('L').unwrap_or("");
    let license = crate::license::spdx_expression(declared);
    Ok(Package {
        ecosystem: Ecosystem::Apk,
        name: name.to_owned(),
        version: version.to_owned(),
        license_text: (license.is_none() && !declared.is_empty()).then(|| declared.to_owned()),
        license,
        purl: crate::purl::purl("apk", &format!("alpine/{name}"), version, &qualifiers),
        arch,
        found_in: format!("/{INSTALLED}"),
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::layer;

    #[test]
    fn alpine_packages_with_licenses() {
        let base = layer(&[
            ("etc/os-release", 0o644, b"ID=alpine\nVERSION_ID=3.20.1\n"),
            (
                "lib/apk/db/installed",
                0o644,
                b"C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\n\nP:ca-certificates-bundle\nV:20240226-r0\nA:x86_64\nL:MPL-2.0 AND MIT\no:ca-certificates\n",
            ),
        ]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let purls: Vec<(&str, Option<&str>)> = inventory
            .packages
            .iter()
            .map(|p| (p.purl.as_str(), p.license.as_deref()))
            .collect();
        assert_eq!(
            purls,
            [
                (
                    "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&distro=alpine-3.20.1",
                    Some("GPL-2.0-only")
                ),
                (
                    "pkg:apk/alpine/ca-certificates-bundle@20240226-r0?arch=x86_64&distro=alpine-3.20.1&upstream=ca-certificates",
                    Some("MPL-2.0 AND MIT")
                ),
                (
                    "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.1",
                    Some("MIT")
                ),
            ]
        );
    }

    #[test]
    fn a_corrupt_database_names_its_line() {
        let base = layer(&[(
            "lib/apk/db/installed",
            0o644,
            b"P:musl\nV:1\n\nP:x\nnonsense\n",
        )]);
        let err = crate::Inventory::scan([&base[..]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/lib/apk/db/installed line 5: `nonsense` is not an `X:value` line"
        );
    }
}
