//! Go modules compiled into an executable: the build information the Go linker writes
//! (Go 1.18 and later: the toolchain version and `mod`/`dep` lines after the
//! `\xff Go buildinf:` header), as `go version -m` reads it.

use crate::{Ecosystem, Package};

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Build information with its strings inline (Go 1.18+) rather than behind pointers.
const FLAG_INLINE: u8 = 2;

pub(crate) fn packages(bytes: &[u8], path: &str) -> Vec<Package> {
    let data = crate::elf::section(bytes, ".go.buildinfo").or_else(|| {
        // Without section headers: the header is 16-byte aligned in the data.
        find_aligned(bytes).map(|at| &bytes[at..])
    });
    let Some(data) = data.filter(|d| d.starts_with(MAGIC) && d.len() >= 32) else {
        return Vec::new();
    };
    if data[15] & FLAG_INLINE == 0 {
        return Vec::new();
    }
    let Some((version, rest)) = varint_string(&data[32..]) else {
        return Vec::new();
    };
    let modinfo = varint_string(rest).map_or(&[][..], |(m, _)| m);
    // The module information is framed by 16-byte sentinels.
    let modinfo = if modinfo.len() >= 33 {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[][..]
    };
    let version = String::from_utf8_lossy(version).into_owned();
    // The toolchain as a module (`go1.22.1` as version `1.22.1`), as other scanners name it.
    let toolchain = version.strip_prefix("go").unwrap_or(&version);
    let mut found = vec![module("stdlib", toolchain, path)];
    let text = String::from_utf8_lossy(modinfo);
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", module_path, module_version, ..] if *module_version != "(devel)" => {
                found.push(module(module_path, module_version, path));
            }
            // A replacement of the module before it by another module; one by a local
            // directory (`=> ./lib (devel)`) leaves the module as required.
            ["=>", module_path, module_version, ..]
                if !module_path.starts_with(['.', '/']) && *module_version != "(devel)" =>
            {
                if let Some(last) = found.last_mut() {
                    *last = module(module_path, module_version, path);
                }
            }
            _ => {}
        }
    }
    found
}

fn module(name: &str, version: &str, path: &str) -> Package {
    Package {
        ecosystem: Ecosystem::Go,
        name: name.to_owned(),
        version: version.to_owned(),
        arch: None,
        license: None,
        license_text: None,
        purl: crate::purl::purl("golang", name, version, &[]),
        found_in: path.to_owned(),
    }
}

fn find_aligned(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len().saturating_sub(MAGIC.len()))
        .step_by(16)
        .find(|at| bytes[*at..].starts_with(MAGIC))
}

/// A string prefixed by its length as an unsigned LEB128 varint; and what follows.
fn varint_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length: usize = 0;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        length |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let start = index + 1;
            let end = start.checked_add(length)?;
            return Some((bytes.get(start..end)?, &bytes[end..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    fn buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
        let mut data = Vec::from(super::MAGIC);
        data.push(8);
        data.push(super::FLAG_INLINE);
        data.resize(32, 0);
        data.push(version.len() as u8);
        data.extend_from_slice(version.as_bytes());
        let framed = format!("{}{modinfo}{}", "s".repeat(16), "e".repeat(16));
        let mut length = framed.len();
        while length >= 0x80 {
            data.push((length as u8 & 0x7f) | 0x80);
            length >>= 7;
        }
        data.push(length as u8);
        data.extend_from_slice(framed.as_bytes());
        data
    }

    #[test]
    fn modules_of_a_go_executable() {
        let info = buildinfo(
            "go1.22.1",
            "path\texample.com/tool\nmod\texample.com/tool\tv1.4.0\th1:x=\ndep\tgolang.org/x/sys\tv0.18.0\th1:y=\ndep\tgithub.com/old/lib\tv1.0.0\n=>\tgithub.com/new/lib\tv1.1.0\th1:z=\ndep\texample.com/local\tv0.2.0\n=>\t./local\t(devel)\t\nbuild\tCGO_ENABLED=0\n",
        );
        let file = crate::elf::tests::elf64(&[(".go.buildinfo", &info)]);
        let base = crate::testing::layer(&[
            ("usr/local/bin/tool", 0o755, &file),
            ("etc/tool.conf", 0o644, &file),
        ]);
        let inventory = crate::Inventory::scan([&base[..]]).unwrap();
        let found: Vec<(&str, &str)> = inventory
            .packages
            .iter()
            .map(|p| (p.purl.as_str(), p.found_in.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("pkg:golang/example.com/local@v0.2.0", "/usr/local/bin/tool"),
                ("pkg:golang/example.com/tool@v1.4.0", "/usr/local/bin/tool"),
                (
                    "pkg:golang/github.com/new/lib@v1.1.0",
                    "/usr/local/bin/tool"
                ),
                ("pkg:golang/golang.org/x/sys@v0.18.0", "/usr/local/bin/tool"),
                ("pkg:golang/stdlib@1.22.1", "/usr/local/bin/tool"),
            ]
        );
    }
}
