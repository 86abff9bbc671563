//! The block structure of a tar stream, checked as it is read and before the `tar` crate
//! parses it: numeric header fields are read the way GNU tar reads them, and a stream that
//! ends inside a block is refused as Docker refuses it.
//!
//! GNU tar reads a numeric field as: one leading NUL skipped, then spaces, then octal
//! digits (none is 0), then a NUL, a space or the end of the field. So a field of NULs, or
//! of spaces ended by a NUL, is 0 — some tar writers leave the size, owner, time and device
//! fields of FIFOs and devices that way — while a field of spaces only is refused
//! ("Blanks in header"). The `tar` crate refuses the former too, so such fields are
//! rewritten here as octal zeros and the checksum recomputed. Device numbers are only read
//! for device entries, as GNU tar does.
//!
//! Docker reads tars with Go's `archive/tar`: the archive may end after its last entry with
//! two zero blocks, one, or none, but a stream that stops inside a block (a header, an
//! entry's content, or an end block), or a zero block followed by a header, is an error.
//! The `tar` crate stops at the first zero block and never looks further, so a tar cut
//! short there would pass.

use std::io::{self, Read};

const BLOCK: usize = 512;

/// The numeric fields every header has: name, offset, length.
const FIELDS: [(&str, usize, usize); 5] = [
    ("mode", 100, 8),
    ("uid", 108, 8),
    ("gid", 116, 8),
    ("size", 124, 12),
    ("mtime", 136, 12),
];
/// Device numbers, read for character and block devices only.
const DEVICE_FIELDS: [(&str, usize, usize); 2] = [("devmajor", 329, 8), ("devminor", 337, 8)];
const CHECKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
/// Old GNU sparse headers: whether extension blocks follow the header, and each extension
/// block's own flag.
const SPARSE_EXTENDED: usize = 482;
const SPARSE_EXTENSION_EXTENDED: usize = 504;
/// More than this in a pax header is passed through without looking for a `size` record.
const PAX_CAPTURE_LIMIT: usize = 1 << 20;

/// A reader of a tar stream that hands the `tar` crate blocks it can parse (see the module
/// documentation) and fails where the stream is cut short.
pub(crate) struct TarBlocks<R> {
    inner: R,
    state: State,
    /// A block (or two) to hand out before reading on.
    pending: Vec<u8>,
    handed: usize,
    /// Bytes read from `inner`, for messages.
    offset: u64,
    /// A pax header's `size` record, which replaces the next entry's size field.
    pax_size: Option<u64>,
}

enum State {
    Header,
    /// Old GNU sparse extension blocks, then `content` bytes.
    SparseExtensions {
        content: u64,
        name: String,
    },
    /// The entry's content with its padding to a whole block.
    Content {
        remaining: u64,
        name: String,
        /// A pax header's records, kept to find `size`.
        pax: Option<Vec<u8>>,
    },
    End,
}

impl<R: Read> TarBlocks<R> {
    pub(crate) fn new(inner: R) -> TarBlocks<R> {
        TarBlocks {
            inner,
            state: State::Header,
            pending: Vec::new(),
            handed: 0,
            offset: 0,
            pax_size: None,
        }
    }

    /// Reads a whole block; `None` at a clean end, an error inside one.
    fn block(&mut self, what: &str) -> io::Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let start = self.offset;
        self.offset += filled as u64;
        match filled {
            0 => Ok(None),
            BLOCK => Ok(Some(block)),
            _ => Err(truncated(format!(
                "the tar ends {filled} bytes into {what} at offset {start}: it is truncated"
            ))),
        }
    }

    fn next_header(&mut self) -> io::Result<()> {
        let Some(block) = self.block("a header block")? else {
            self.state = State::End;
            return Ok(());
        };
        if block.iter().all(|b| *b == 0) {
            let at = self.offset;
            self.pending = block.to_vec();
            match self.block("the second end-of-archive block")? {
                None => {}
                Some(second) if second.iter().all(|b| *b == 0) => {
                    self.pending.extend_from_slice(&second)
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "the tar has a header at offset {at} after an end-of-archive block: it is corrupt"
                    )));
                }
            }
            self.state = State::End;
            return Ok(());
        }
        let mut block = block;
        let name = entry_name(&block);
        let at = self.offset - BLOCK as u64;
        normalize(&mut block, &name, at)?;
        let typeflag = block[TYPEFLAG];
        let field_size = numeric(&block, FIELDS[3].1, FIELDS[3].2);
        // Pax and GNU long-name headers describe the next entry; their own size is theirs.
        let describes_next = matches!(typeflag, b'x' | b'g' | b'L' | b'K');
        let size = if describes_next {
            field_size
        } else {
            self.pax_size.take().unwrap_or(field_size)
        };
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.pending = block.to_vec();
        self.state = if typeflag == b'S' && block[SPARSE_EXTENDED] != 0 {
            State::SparseExtensions {
                content: padded,
                name,
            }
        } else {
            State::Content {
                remaining: padded,
                name,
                pax: (typeflag == b'x' && size as usize <= PAX_CAPTURE_LIMIT).then(Vec::new),
            }
        };
        Ok(())
    }
}

impl<R: Read> Read for TarBlocks<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.handed < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.handed);
                buf[..n].copy_from_slice(&self.pending[self.handed..self.handed + n]);
                self.handed += n;
                return Ok(n);
            }
            self.pending.clear();
            self.handed = 0;
            match &mut self.state {
                State::End => return Ok(0),
                State::Header => self.next_header()?,
                State::SparseExtensions { content, name } => {
                    let (content, name) = (*content, std::mem::take(name));
                    let what = format!("a sparse header of `{name}`");
                    let block = self
                        .block(&what)?
                        .ok_or_else(|| truncated(format!("the tar ends in {what}")))?;
                    self.pending = block.to_vec();
                    self.state = if block[SPARSE_EXTENSION_EXTENDED] != 0 {
                        State::SparseExtensions { content, name }
                    } else {
                        State::Content {
                            remaining: content,
                            name,
                            pax: None,
                        }
                    };
                }
                State::Content {
                    remaining: 0, pax, ..
                } => {
                    if let Some(records) = pax.take() {
                        self.pax_size = pax_size(&records);
                    }
                    self.state = State::Header;
                }
                State::Content {
                    remaining,
                    name,
                    pax,
                } => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = buf
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let n = match self.inner.read(&mut buf[..want]) {
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(err),
                    };
                    if n == 0 {
                        return Err(truncated(format!(
                            "the tar ends inside the content of `{name}` at offset {}: it is truncated",
                            self.offset
                        )));
                    }
                    if let Some(records) = pax {
                        records.extend_from_slice(&buf[..n]);
                    }
                    *remaining -= n as u64;
                    self.offset += n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

fn truncated(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn entry_name(block: &[u8; BLOCK]) -> String {
    let name = &block[..100];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// A field as GNU tar reads it: `Ok(None)` for base-256 (the `tar` crate reads those),
/// `Err` for what GNU tar refuses, with why.
fn gnu_numeric(field: &[u8]) -> Result<Option<u64>, &'static str> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return Ok(None);
    }
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut index = usize::from(field.first() == Some(&0));
    while index < field.len() && is_space(field[index]) {
        index += 1;
    }
    if index == field.len() {
        return Err("blanks where a number is expected");
    }
    let mut value: u64 = 0;
    while index < field.len() && (b'0'..=b'7').contains(&field[index]) {
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(field[index] - b'0')))
            .ok_or("a number too large")?;
        index += 1;
    }
    if index < field.len() && field[index] != 0 && !is_space(field[index]) {
        return Err("something other than an octal number");
    }
    Ok(Some(value))
}

/// A numeric field of a normalized header (0 where it cannot be read).
fn numeric(block: &[u8; BLOCK], offset: usize, length: usize) -> u64 {
    let field = &block[offset..offset + length];
    match gnu_numeric(field) {
        Ok(Some(value)) => value,
        // Base-256: big-endian in the bytes after the marker byte.
        Ok(None) => field[1..]
            .iter()
            .fold(0u64, |value, b| (value << 8) | u64::from(*b)),
        Err(_) => 0,
    }
}

/// Checks the header's checksum and rewrites its numeric fields as octal the `tar` crate
/// reads, when GNU tar reads them.
fn normalize(block: &mut [u8; BLOCK], name: &str, at: u64) -> io::Result<()> {
    let recorded = gnu_numeric(&block[CHECKSUM]).ok().flatten();
    let (unsigned, signed) = checksums(block);
    if recorded.is_none_or(|sum| sum != unsigned && Some(sum) != u64::try_from(signed).ok()) {
        return Err(invalid(format!(
            "the tar header at offset {at} has a wrong checksum: it is not a tar, or it is corrupt"
        )));
    }
    let device = matches!(block[TYPEFLAG], b'3' | b'4');
    let fields = FIELDS.iter().chain(DEVICE_FIELDS.iter().filter(|_| device));
    for (field, offset, length) in fields {
        let range = *offset..offset + length;
        match gnu_numeric(&block[range.clone()]) {
            Ok(Some(value)) => {
                let digits = format!("{value:0width$o}", width = length - 1);
                if digits.len() < *length {
                    block[range.clone()][..length - 1].copy_from_slice(digits.as_bytes());
                    block[range.end - 1] = 0;
                }
            }
            Ok(None) => {}
            Err(why) => {
                let shown = String::from_utf8_lossy(&block[range])
                    .escape_debug()
                    .to_string();
                return Err(invalid(format!(
                    "the `{field}` field of tar entry `{name}` holds \"{shown}\": {why}"
                )));
            }
        }
    }
    let (unsigned, _) = checksums(block);
    block[CHECKSUM].copy_from_slice(format!("{unsigned:06o}\0 ").as_bytes());
    Ok(())
}

/// The header's checksum as unsigned and as signed bytes (old tars used the latter), with
/// the checksum field counted as spaces.
fn checksums(block: &[u8; BLOCK]) -> (u64, i64) {
    block
        .iter()
        .enumerate()
        .fold((0u64, 0i64), |(unsigned, signed), (index, byte)| {
            let byte = if CHECKSUM.contains(&index) {
                b' '
            } else {
                *byte
            };
            (unsigned + u64::from(byte), signed + i64::from(byte as i8))
        })
}

/// The `size` record of pax header records (`<length> size=<n>\n`), if any.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let length: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if length <= space || length > rest.len() {
            return size;
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[length..];
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with `fill` in the given fields and valid octal everywhere else.
    fn header(name: &str, typeflag: u8, blank: &[&str], fill: &[u8]) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        for (field, offset, length) in FIELDS.iter().chain(DEVICE_FIELDS.iter()) {
            let bytes = &mut block[*offset..offset + length];
            if blank.contains(field) {
                for (index, byte) in bytes.iter_mut().enumerate() {
                    *byte = fill[index % fill.len()];
                }
            } else if *field == "mode" {
                bytes[..7].copy_from_slice(b"0000644");
            } else {
                bytes[0] = b'0';
            }
        }
        block[TYPEFLAG] = typeflag;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        let (sum, _) = checksums(&block);
        block[CHECKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    fn read_all(tar: &[u8]) -> io::Result<Vec<(String, u32, u64)>> {
        let mut archive = tar::Archive::new(TarBlocks::new(tar));
        let mut out = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let header = entry.header();
            out.push((
                String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                header.mode()?,
                header.mtime()?,
            ));
        }
        Ok(out)
    }

    #[test]
    fn numeric_fields_read_as_gnu_tar_reads_them() {
        let all = [
            "mode", "uid", "gid", "size", "mtime", "devmajor", "devminor",
        ];
        for fill in [&b"\0"[..], b"      \0"] {
            let mut tar = header("fifo", b'6', &all, fill).to_vec();
            tar.extend_from_slice(&header("chr", b'3', &all, fill));
            tar.extend_from_slice(&[0; 1024]);
            let entries = read_all(&tar).unwrap();
            assert_eq!(entries, [("fifo".into(), 0, 0), ("chr".into(), 0, 0)]);
        }
        // GNU tar refuses a field of spaces only ("Blanks in header"), and so does rbuild.
        for field in ["size", "mode", "mtime"] {
            let mut tar = header("f", b'6', &[field], b" ").to_vec();
            tar.extend_from_slice(&[0; 1024]);
            let err = read_all(&tar).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("`{field}` field of tar entry `f`")),
                "{err}"
            );
        }
        // Device numbers of a FIFO are never read.
        let mut tar = header("fifo", b'6', &["devmajor", "devminor"], b" ").to_vec();
        tar.extend_from_slice(&[0; 1024]);
        assert_eq!(read_all(&tar).unwrap().len(), 1);
        assert_eq!(gnu_numeric(b"\0  644 x"), Ok(Some(0o644)));
        assert!(gnu_numeric(b"\0       ").is_err());
        assert!(gnu_numeric(b"12x\0").is_err());
    }

    #[test]
    fn a_wrong_checksum_is_refused() {
        let mut block = header("f", b'0', &[], b"");
        block[0] = b'g';
        let mut tar = block.to_vec();
        tar.extend_from_slice(&[0; 1024]);
        let err = read_all(&tar).unwrap_err();
        assert!(err.to_string().contains("wrong checksum"), "{err}");
    }

    #[test]
    fn truncation_is_refused_where_docker_refuses_it() {
        let mut file = header("f", b'0', &[], b"");
        file[124..136].copy_from_slice(b"00000000005\0");
        let (sum, _) = checksums(&{
            let mut b = file;
            b[CHECKSUM].fill(b' ');
            b
        });
        file[CHECKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut entry = file.to_vec();
        entry.extend_from_slice(b"hello");
        entry.resize(1024, 0);
        let with_end = |end: usize| {
            let mut tar = entry.clone();
            tar.extend(std::iter::repeat_n(0u8, end));
            tar
        };
        // Two end blocks, one, or none: a clean end, as with Go's archive/tar.
        for end in [1024, 512, 0, 4096] {
            assert_eq!(
                read_all(&with_end(end)).unwrap().len(),
                1,
                "{end} zero bytes"
            );
        }
        // A partial end block.
        for end in [100, 512 + 100] {
            let err = read_all(&with_end(end)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{end}: {err}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        // Cut inside the content, inside a header.
        for cut in [512 + 3, 200] {
            let mut archive = tar::Archive::new(TarBlocks::new(&entry[..cut]));
            let result = archive.entries().and_then(|entries| {
                for entry in entries {
                    io::copy(&mut entry?, &mut io::sink())?;
                }
                Ok(())
            });
            let err = result.unwrap_err();
            assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
        }
        // A header after an end block.
        let mut tar = entry.clone();
        tar.extend_from_slice(&[0; 512]);
        tar.extend_from_slice(&entry);
        assert!(
            read_all(&tar)
                .unwrap_err()
                .to_string()
                .contains("after an end-of-archive block")
        );
    }

    #[test]
    fn pax_sizes_and_long_names_keep_the_blocks_in_step() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(150));
        let mut header = tar::Header::new_gnu();
        header.set_size(700);
        header.set_mode(0o644);
        header.set_mtime(7);
        builder
            .append_data(&mut header, &long, &vec![b'x'; 700][..])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o600);
        header.set_mtime(9);
        builder
            .append_pax_extensions([("size", &b"3"[..])])
            .unwrap();
        builder
            .append_data(&mut header, "short", &b"abc"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let entries = read_all(&tar).unwrap();
        assert_eq!(entries, [(long, 0o644, 7), ("short".into(), 0o600, 9)]);
        assert_eq!(pax_size(b"11 size=42\n20 path=abcdefghijk\n"), Some(42));
    }
}
