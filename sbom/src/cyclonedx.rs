//! The inventory as a CycloneDX 1.5 JSON BOM: the image as the metadata's component,
//! every package a library component.

use serde_json::{Value, json};

use crate::{Inventory, Subject};

/// The CycloneDX 1.5 BOM for `inventory` of the image `subject`; the same input always
/// gives the same bytes (the serial number is derived from the content).
pub fn cyclonedx(inventory: &Inventory, subject: &Subject) -> Value {
    let components: Vec<Value> = inventory
        .packages
        .iter()
        .map(|package| {
            let mut component = json!({
                "type": "library",
                "bom-ref": package.purl,
                "name": package.name,
                "version": package.version,
                "purl": package.purl,
                "properties": [
                    {"name": "rbuild:package:ecosystem", "value": package.ecosystem.as_str()},
                    {"name": "rbuild:package:found-in", "value": package.found_in},
                ],
            });
            if let Some(expression) = &package.license {
                component["licenses"] = json!([{ "expression": expression }]);
            } else if let Some(text) = &package.license_text {
                component["licenses"] = json!([{ "license": { "name": text } }]);
            }
            component
        })
        .collect();
    let mut image = json!({
        "type": "container",
        "bom-ref": "image",
        "name": subject.name,
    });
    if let Some(digest) = &subject.digest {
        image["version"] = json!(digest);
    }
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": {"components": [{"type": "application", "name": "rbuild", "version": env!("CARGO_PKG_VERSION")}]},
            "component": image,
        },
        "components": components,
    });
    let hash = crate::sha256_hex(bom.to_string().as_bytes());
    bom["serialNumber"] = json!(format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &hash[0..8],
        &hash[8..12],
        &hash[13..16],
        &hash[17..20],
        &hash[20..32]
    ));
    bom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_become_components_with_licenses() {
        let base = crate::testing::layer(&[(
            "lib/apk/db/installed",
            0o644,
            b"P:musl\nV:1.2.5-r0\nL:MIT\n",
        )]);
        let inventory = Inventory::scan([&base[..]]).unwrap();
        let subject = Subject {
            name: "app".to_owned(),
            digest: None,
            created: "2024-01-01T00:00:00Z".to_owned(),
        };
        let bom = cyclonedx(&inventory, &subject);
        assert_eq!(
            bom["components"][0]["purl"],
            "pkg:apk/alpine/musl@1.2.5-r0?distro=alpine"
        );
        assert_eq!(bom["components"][0]["licenses"][0]["expression"], "MIT");
        let serial = bom["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36, "{serial}");
        assert_eq!(cyclonedx(&inventory, &subject), bom);
    }
}
