//! The SBOM scanner over what an image may hold: it reads pulled images, so every package
//! database, metadata file and executable in a layer is untrusted. The first byte picks
//! the input: 0 → the rest is a layer tar as it is; otherwise the rest is the content of
//! one file the scanner reads (dpkg's status, a `status.d` file, apk's database, Python
//! metadata, a Node package.json, a Debian copyright file, an executable), in a tar made
//! here. Errors are fine; a panic is not, and the documents made from what was found must
//! be JSON whose purls are ASCII.

#![no_main]

use libfuzzer_sys::fuzz_target;

const PATHS: &[(&str, u32)] = &[
    ("var/lib/dpkg/status", 0o644),
    ("var/lib/dpkg/status.d/pkg", 0o644),
    ("lib/apk/db/installed", 0o644),
    ("usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA", 0o644),
    ("app/node_modules/@s/x/package.json", 0o644),
    ("usr/share/doc/x/copyright", 0o644),
    ("usr/bin/tool", 0o755),
    ("etc/os-release", 0o644),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let layer = if selector == 0 {
        rest.to_vec()
    } else {
        let (path, mode) = PATHS[usize::from(selector) % PATHS.len()];
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(rest.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, rest)
            .expect("writing to memory");
        // With a dpkg status beside it, a copyright file names a package's license.
        if path.ends_with("copyright") {
            let status = b"Package: x\nStatus: install ok installed\nVersion: 1\n";
            let mut header = tar::Header::new_gnu();
            header.set_size(status.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, "var/lib/dpkg/status", &status[..])
                .expect("writing to memory");
        }
        builder.into_inner().expect("writing to memory")
    };
    let Ok(inventory) = rbuild_sbom::Inventory::scan([layer.as_slice()]) else {
        return;
    };
    for package in &inventory.packages {
        assert!(package.purl.is_ascii(), "{}", package.purl);
        assert!(package.purl.starts_with("pkg:"), "{}", package.purl);
    }
    let subject = rbuild_sbom::Subject {
        name: "fuzz".to_owned(),
        digest: None,
        created: "2024-01-01T00:00:00Z".to_owned(),
    };
    let spdx = rbuild_sbom::spdx(&inventory, &subject);
    let cyclonedx = rbuild_sbom::cyclonedx(&inventory, &subject);
    for document in [spdx, cyclonedx] {
        let text = serde_json::to_string(&document).expect("documents serialize");
        serde_json::from_str::<serde_json::Value>(&text).expect("and read back");
    }
});
