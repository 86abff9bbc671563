//! ADD of local archives: a tar, plain or compressed with gzip, bzip2, xz or zstd (told by
//! content, not by name), is extracted into the destination instead of copied.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use rbuild_store::layer::{self, Compression};

/// Opens `path` as a tar stream if it is an archive ADD extracts; `None` for other files.
pub fn open_archive(path: &Path) -> io::Result<Option<Box<dyn Read>>> {
    let mut file = BufReader::new(File::open(path)?);
    let head = file.fill_buf()?.to_vec();
    let mut stream: Box<dyn Read> = if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(file))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        xz_reader(file)?
    } else {
        let (compression, stream) = layer::decompress(file)?;
        if compression == Compression::None && head.len() >= 512 && !is_tar_header(&head[..512]) {
            return Ok(None);
        }
        stream
    };
    // Compressed: look inside for a tar header (a gzipped text file is not an archive).
    let mut first = vec![0u8; 512];
    let mut filled = 0;
    while filled < first.len() {
        match stream.read(&mut first[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    if filled < 512 || !is_tar_header(&first) {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(first).chain(stream))))
}

/// A tar header: the `ustar` magic, or an old-style header whose checksum adds up.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let recorded = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    block[0] != 0 && recorded == Some(computed)
}

/// The xz decoder writes to a writer: run it on a thread that feeds a pipe. A corrupt
/// stream ends the pipe early, which the tar reader reports.
fn xz_reader(input: impl BufRead + Send + 'static) -> io::Result<Box<dyn Read>> {
    let (reader, writer) = io::pipe()?;
    std::thread::Builder::new()
        .name("xz".into())
        .spawn(move || {
            let mut input = input;
            let mut writer = io::BufWriter::new(writer);
            let _ = lzma_rs::xz_decompress(&mut input, &mut writer);
            let _ = writer.flush();
        })?;
    Ok(Box::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder.append_data(&mut header, name, content).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn archives_are_told_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of("a.txt", b"hello");
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("plain.bin", tar.clone(), true),
            (
                "x.gz",
                {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&tar).unwrap();
                    e.finish().unwrap()
                },
                true,
            ),
            (
                "x.bz2",
                {
                    let mut e =
                        bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                    e.write_all(&tar).unwrap();
                    e.finish().unwrap()
                },
                true,
            ),
            (
                "x.xz",
                {
                    let mut out = Vec::new();
                    lzma_rs::xz_compress(&mut tar.as_slice(), &mut out).unwrap();
                    out
                },
                true,
            ),
            (
                "text.tar",
                b"just text, named like an archive".repeat(40),
                false,
            ),
            (
                "text.gz",
                {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&b"not a tar".repeat(100)).unwrap();
                    e.finish().unwrap()
                },
                false,
            ),
        ];
        for (name, bytes, is_archive) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let opened = open_archive(&path).unwrap();
            assert_eq!(opened.is_some(), is_archive, "{name}");
            if let Some(mut stream) = opened {
                let mut content = Vec::new();
                stream.read_to_end(&mut content).unwrap();
                assert_eq!(content, tar, "{name}");
            }
        }
    }
}
