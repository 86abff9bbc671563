//! Just enough of ELF to find a named section: what the Go and Rust scanners read.

/// The packages compiled into the ELF executable `bytes` (found at `path`).
pub(crate) fn packages(bytes: &[u8], path: &str) -> Vec<crate::Package> {
    let mut packages = crate::golang::packages(bytes, path);
    if let Some(section) = section(bytes, ".dep-v0") {
        packages.extend(crate::rust::packages(section, path));
    }
    packages
}

/// The content of the section `name`, `None` when the file is no ELF this reads, has no
/// section table or no such section.
pub(crate) fn section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let elf = Elf::parse(bytes)?;
    let names = elf.header(elf.shstrndx)?;
    let names = bytes.get(names.offset..names.offset.checked_add(names.size)?)?;
    for index in 0..elf.shnum {
        let header = elf.header(index)?;
        let start = names.get(header.name..)?;
        let end = start.iter().position(|b| *b == 0)?;
        if &start[..end] == name.as_bytes() {
            return bytes.get(header.offset..header.offset.checked_add(header.size)?);
        }
    }
    None
}

struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    little: bool,
    shoff: usize,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

struct SectionHeader {
    name: usize,
    offset: usize,
    size: usize,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Elf<'a>> {
        if bytes.get(..4)? != b"\x7fELF" {
            return None;
        }
        let wide = match bytes.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match bytes.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut elf = Elf {
            bytes,
            wide,
            little,
            shoff: 0,
            shentsize: 0,
            shnum: 0,
            shstrndx: 0,
        };
        let (shoff, rest) = if wide {
            (elf.word(0x28, 8)?, 0x3a)
        } else {
            (elf.word(0x20, 4)?, 0x2e)
        };
        elf.shoff = shoff;
        elf.shentsize = elf.word(rest, 2)?;
        elf.shnum = elf.word(rest + 2, 2)?;
        elf.shstrndx = elf.word(rest + 4, 2)?;
        (elf.shoff != 0 && elf.shentsize != 0).then_some(elf)
    }

    fn word(&self, at: usize, width: usize) -> Option<usize> {
        let bytes = self.bytes.get(at..at.checked_add(width)?)?;
        let mut value: u64 = 0;
        for index in 0..width {
            let byte = if self.little {
                bytes[width - 1 - index]
            } else {
                bytes[index]
            };
            value = (value << 8) | u64::from(byte);
        }
        usize::try_from(value).ok()
    }

    fn header(&self, index: usize) -> Option<SectionHeader> {
        let at = self.shoff.checked_add(index.checked_mul(self.shentsize)?)?;
        if self.wide {
            Some(SectionHeader {
                name: self.word(at, 4)?,
                offset: self.word(at + 0x18, 8)?,
                size: self.word(at + 0x20, 8)?,
            })
        } else {
            Some(SectionHeader {
                name: self.word(at, 4)?,
                offset: self.word(at + 0x10, 4)?,
                size: self.word(at + 0x14, 4)?,
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// A little-endian ELF64 file with the given sections (and the section-name table).
    pub fn elf64(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut name_offsets = Vec::new();
        for (name, _) in sections.iter().copied().chain([(".shstrtab", &[][..])]) {
            name_offsets.push(names.len());
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let mut file = vec![0u8; 64];
        file[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let mut placed = Vec::new();
        for (_, content) in sections.iter().copied().chain([(".shstrtab", &names[..])]) {
            placed.push((file.len(), content.len()));
            file.extend_from_slice(content);
        }
        let shoff = file.len();
        file.extend_from_slice(&[0u8; 64]); // the null section
        for (index, (offset, size)) in placed.iter().enumerate() {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&(name_offsets[index] as u32).to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(*offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
            file.extend_from_slice(&header);
        }
        file[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        let count = placed.len() as u16 + 1;
        file[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
        file[0x3e..0x40].copy_from_slice(&(count - 1).to_le_bytes());
        file
    }

    #[test]
    fn finds_sections_by_name() {
        let file = elf64(&[(".text", b"code"), (".dep-v0", b"deps")]);
        assert_eq!(super::section(&file, ".dep-v0"), Some(&b"deps"[..]));
        assert_eq!(super::section(&file, ".text"), Some(&b"code"[..]));
        assert_eq!(super::section(&file, ".go.buildinfo"), None);
        assert_eq!(super::section(&file[..70], ".text"), None);
    }
}
