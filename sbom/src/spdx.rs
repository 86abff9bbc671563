//! The inventory as an SPDX 2.3 JSON document: the image as the package the document
//! describes, containing every package found.

use serde_json::{Value, json};

use crate::{Inventory, Subject};

/// The SPDX 2.3 document for `inventory` of the image `subject`. The same inventory and
/// subject always give the same bytes: identifiers are numbered in the inventory's order
/// and the namespace is a hash of the content.
pub fn spdx(inventory: &Inventory, subject: &Subject) -> Value {
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "name": subject.name,
        "SPDXID": image_id,
        "versionInfo": subject.digest.clone().unwrap_or_default(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    if let Some(os) = &inventory.os.pretty_name {
        packages[0]["description"] = json!(os);
    }
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (index, package) in inventory.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}",
            package.ecosystem.as_str(),
            index + 1
        );
        let mut entry = json!({
            "name": package.name,
            "SPDXID": id,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": package.license.clone().unwrap_or_else(|| "NOASSERTION".to_owned()),
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("found in {}", package.found_in),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl,
            }],
        });
        if let Some(text) = &package.license_text {
            entry["licenseComments"] = json!(format!("the package metadata says: {text}"));
        }
        packages.push(entry);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{}", subject.name),
        "documentNamespace": "",
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: rbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    let hash = crate::sha256_hex(document.to_string().as_bytes());
    document["documentNamespace"] = json!(format!("urn:rbuild:spdx:{hash}"));
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::layer;

    #[test]
    fn every_package_is_contained_by_the_image_with_its_purl() {
        let base = layer(&[(
            "lib/apk/db/installed",
            0o644,
            b"P:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\n\nP:odd\nV:1\nL:Custom\n",
        )]);
        let inventory = Inventory::scan([&base[..]]).unwrap();
        let subject = Subject {
            name: "app:1".to_owned(),
            digest: Some("sha256:abc".to_owned()),
            created: "2024-01-01T00:00:00Z".to_owned(),
        };
        let document = spdx(&inventory, &subject);
        assert_eq!(document["spdxVersion"], "SPDX-2.3");
        let packages = document["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 3);
        assert_eq!(packages[1]["licenseDeclared"], "MIT");
        assert_eq!(
            packages[1]["externalRefs"][0]["referenceLocator"],
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine"
        );
        assert_eq!(packages[2]["licenseDeclared"], "NOASSERTION");
        assert_eq!(
            packages[2]["licenseComments"],
            "the package metadata says: Custom"
        );
        let contains = document["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count();
        assert_eq!(contains, 2);
        // The same input, the same document.
        assert_eq!(spdx(&inventory, &subject), document);
        assert!(
            document["documentNamespace"]
                .as_str()
                .unwrap()
                .starts_with("urn:rbuild:spdx:")
        );
    }
}
