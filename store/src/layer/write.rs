//! Overlay upper dir → OCI layer tar, deterministically.
//!
//! Entries are written in byte order of their names, parents before children, with
//! numeric owners only and no user or group names, so the same tree always gives the same
//! bytes. Overlay's own encoding is translated to OCI's: a 0/0 character device is a
//! deleted file (`.wh.<name>`), a directory with the `overlay.opaque` xattr hides
//! everything below it in lower layers (`.wh..wh..opq`, written before its siblings).
//! `trusted.overlay.*` and `user.overlay.*` xattrs are overlay bookkeeping and are dropped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};

/// Options for [`write_layer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerOptions {
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are written as this.
    pub clamp_mtime: Option<u64>,
}

/// Writes the OCI layer tar of the overlay upper dir `upper` to `out`.
pub fn write_layer<W: Write>(upper: &Path, out: W, opts: LayerOptions) -> io::Result<W> {
    let mut writer = LayerWriter {
        tar: tar::Builder::new(out),
        hardlinks: HashMap::new(),
        opts,
    };
    writer.directory_children(upper, "")?;
    writer.tar.into_inner()
}

struct LayerWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (device, inode) of files with several links → the first path written.
    hardlinks: HashMap<(u64, u64), String>,
    opts: LayerOptions,
}

impl<W: Write> LayerWriter<W> {
    fn directory_children(&mut self, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let name = name_str(&name)?;
            self.entry(&path, &format!("{prefix}{name}"), prefix, name)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, tar_path: &str, prefix: &str, name: &str) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        let file_type = meta.file_type();
        if crate::overlay::is_whiteout(&meta) {
            return self.marker(&format!("{prefix}.wh.{name}"));
        }
        let xattrs = read_xattrs(path)?;
        let mut header = self.header(&meta);
        if file_type.is_dir() {
            header.set_entry_type(EntryType::Directory);
            self.append(
                &mut header,
                &format!("{tar_path}/"),
                &xattrs.kept,
                io::empty(),
            )?;
            if xattrs.opaque {
                self.marker(&format!("{tar_path}/.wh..wh..opq"))?;
            }
            return self.directory_children(path, &format!("{tar_path}/"));
        }
        if file_type.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(path)?;
            self.append_pax(tar_path, &xattrs.kept)?;
            return self.tar.append_link(&mut header, tar_path, target);
        }
        if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.hardlinks.get(&key) {
                    let first = first.clone();
                    header.set_entry_type(EntryType::Link);
                    header.set_size(0);
                    self.append_pax(tar_path, &xattrs.kept)?;
                    return self.tar.append_link(&mut header, tar_path, first);
                }
                self.hardlinks.insert(key, tar_path.to_owned());
            }
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            let file = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?;
            return self.append(&mut header, tar_path, &xattrs.kept, file);
        }
        let entry_type = if file_type.is_fifo() {
            EntryType::Fifo
        } else if file_type.is_char_device() {
            EntryType::Char
        } else if file_type.is_block_device() {
            EntryType::Block
        } else {
            // Sockets cannot be stored in a tar; Docker drops them too.
            return Ok(());
        };
        header.set_entry_type(entry_type);
        let rdev = meta.rdev();
        header.set_device_major(libc::major(rdev))?;
        header.set_device_minor(libc::minor(rdev))?;
        self.append(&mut header, tar_path, &xattrs.kept, io::empty())
    }

    fn header(&self, meta: &Metadata) -> Header {
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_size(0);
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        header.set_mtime(match self.opts.clamp_mtime {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        });
        header
    }

    /// A whiteout or opaque marker: an empty regular file, mode 0, owned by root, time 0.
    fn marker(&mut self, tar_path: &str) -> io::Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        self.tar.append_data(&mut header, tar_path, io::empty())
    }

    fn append(
        &mut self,
        header: &mut Header,
        tar_path: &str,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl io::Read,
    ) -> io::Result<()> {
        self.append_pax(tar_path, xattrs)?;
        self.tar.append_data(header, tar_path, data)
    }

    /// Xattrs go into a PAX extended header (`SCHILY.xattr.<name>`) before the entry.
    fn append_pax(&mut self, tar_path: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (name, value) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax_record(&mut records, &key, value);
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_size(records.len() as u64);
        let mut name = format!("PaxHeaders/{tar_path}");
        truncate_to_char_boundary(&mut name, 99);
        self.tar.append_data(&mut header, name, records.as_slice())
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn truncate_to_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn name_str(name: &OsStr) -> io::Result<&str> {
    name.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file name {} is not UTF-8", name.to_string_lossy()),
        )
    })
}

struct Xattrs {
    kept: Vec<(Vec<u8>, Vec<u8>)>,
    opaque: bool,
}

fn read_xattrs(path: &Path) -> io::Result<Xattrs> {
    let mut xattrs = Xattrs {
        kept: Vec::new(),
        opaque: false,
    };
    let mut list = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => list.resize(list.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(xattrs),
            Err(err) => return Err(err.into()),
        }
    };
    let mut names: Vec<&[u8]> = list[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    for name in names {
        let is_overlay =
            name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.");
        let value = get_xattr(path, name)?;
        if is_overlay {
            if name.ends_with(b".opaque") && value == b"y" {
                xattrs.opaque = true;
            }
            continue;
        }
        xattrs.kept.push((name.to_vec(), value));
    }
    Ok(xattrs)
}

fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let name = OsStr::from_bytes(name);
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(value);
            }
            Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
            Err(err) => return Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"SCHILY.xattr.user.a", b"1");
        assert_eq!(out, b"25 SCHILY.xattr.user.a=1\n");
        assert_eq!(out.len(), 25);
        let mut out = Vec::new();
        pax_record(&mut out, b"k", &[b'v'; 95]);
        assert_eq!(out.len(), 102);
        assert!(out.starts_with(b"102 k="));
    }
}
