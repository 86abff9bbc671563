//! Rust crates compiled into an executable: the `.dep-v0` section `cargo auditable`
//! writes (zlib-compressed JSON listing every crate of the build).

use std::io::Read;

use crate::{Ecosystem, Package};

/// Decompressed sections larger than this are not read (a real one is kilobytes).
const MAX_JSON: u64 = 16 << 20;

pub(crate) fn packages(section: &[u8], path: &str) -> Vec<Package> {
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(section);
    if decoder.take(MAX_JSON).read_to_end(&mut json).is_err() {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    let Some(list) = value.get("packages").and_then(|p| p.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter(|p| p.get("kind").and_then(|k| k.as_str()) != Some("build"))
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let version = p.get("version")?.as_str()?;
            Some(Package {
                ecosystem: Ecosystem::Cargo,
                name: name.to_owned(),
                version: version.to_owned(),
                arch: None,
                license: None,
                license_text: None,
                purl: crate::purl::purl("cargo", name, version, &[]),
                found_in: path.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn crates_of_an_auditable_rust_executable_without_build_dependencies() {
        let json = br#"{"packages":[{"name":"app","version":"0.3.0","source":"local","root":true,"dependencies":[1]},{"name":"serde","version":"1.0.200","source":"crates.io"},{"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"}]}"#;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(json).unwrap();
        let section = encoder.finish().unwrap();
        let file = crate::elf::tests::elf64(&[(".text", b"code"), (".dep-v0", &section)]);
        let base = crate::testing::layer(&[("usr/bin/app", 0o755, &file)]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let purls: Vec<&str> = inventory.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(purls, ["pkg:cargo/app@0.3.0", "pkg:cargo/serde@1.0.200"]);
    }
}
