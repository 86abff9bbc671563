//! Node packages: `package.json` of each package directory under a `node_modules`
//! (`node_modules/<name>/` and `node_modules/@scope/<name>/`).

use crate::layers::Files;
use crate::{Ecosystem, Package};

pub(crate) fn is_manifest(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else {
        return false;
    };
    let parts: Vec<&str> = dir.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [_, "node_modules", ..] => true,
        [_, scope, rest] => {
            scope.starts_with('@') && (*rest == "node_modules" || rest.ends_with("/node_modules"))
        }
        _ => false,
    }
}

pub(crate) fn packages(files: &Files) -> Vec<Package> {
    files
        .contents()
        .filter(|(path, _)| is_manifest(path))
        .filter_map(|(path, bytes)| package(path, bytes))
        .collect()
}

fn package(path: &str, bytes: &[u8]) -> Option<Package> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = manifest.get("name")?.as_str()?.to_owned();
    let version = manifest.get("version")?.as_str()?.to_owned();
    let declared = match manifest.get("license") {
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        Some(serde_json::Value::Object(object)) => object
            .get("type")
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        _ => None,
    };
    let license = declared
        .as_deref()
        .and_then(crate::license::spdx_expression);
    Some(Package {
        ecosystem: Ecosystem::Npm,
        purl: crate::purl::purl("npm", &name, &version, &[]),
        name,
        version,
        arch: None,
        license_text: if license.is_none() { declared } else { None },
        license,
        found_in: format!("/{path}"),
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::layer;

    #[test]
    fn packages_under_node_modules_scoped_or_not() {
        let base = layer(&[
            (
                "app/package.json",
                0o644,
                br#"{"name":"app","version":"1.0.0"}"#,
            ),
            (
                "app/node_modules/left-pad/package.json",
                0o644,
                br#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
            ),
            (
                "app/node_modules/@types/node/package.json",
                0o644,
                br#"{"name":"@types/node","version":"20.11.0","license":"MIT"}"#,
            ),
            (
                "app/node_modules/left-pad/lib/package.json",
                0o644,
                br#"{"name":"inner","version":"0"}"#,
            ),
            ("app/node_modules/broken/package.json", 0o644, b"{not json"),
        ]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let purls: Vec<&str> = inventory.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            ["pkg:npm/%40types/node@20.11.0", "pkg:npm/left-pad@1.3.0"]
        );
    }
}
