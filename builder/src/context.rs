//! The build context as COPY sees it: a directory, filtered by the ignore file, with
//! content checksums for cache keys.
//!
//! Only files a COPY or ADD names are hashed, and each file's BLAKE3 is remembered by
//! (device, inode, size, mtime, ctime) in the store, so a warm build re-reads no unchanged
//! file. The checksum covers names, types, permission bits, sizes, link targets and
//! content; never mtimes or owners (context files always land owned by root).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_store::Store;
use serde::{Deserialize, Serialize};

use crate::cache::KeyBuilder;
use crate::glob;
use crate::ignore::IgnoreMatcher;
use crate::resolve::resolve_in_root;

/// The build context directory and its ignore rules.
pub(crate) struct Context {
    pub root: PathBuf,
    pub ignore: IgnoreMatcher,
    hashes: Mutex<FileHashes>,
    state_name: String,
}

/// What is remembered about one file, to trust its hash without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileHashes {
    files: HashMap<String, FileStamp>,
    #[serde(skip)]
    changed: bool,
}

impl Context {
    /// Opens the context at `root` (canonical), loading the file hashes remembered for it.
    pub(crate) fn open(root: PathBuf, ignore: IgnoreMatcher, store: &Store) -> Context {
        let state_name = format!("context-hashes:{}", root.display());
        let hashes = store
            .get_state(&state_name)
            .ok()
            .flatten()
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        Context {
            root,
            ignore,
            hashes: Mutex::new(hashes),
            state_name,
        }
    }

    /// Keeps the file hashes learned during this build for the next one.
    pub(crate) fn save_hashes(&self, store: &Store) {
        let hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if hashes.changed
            && let Ok(value) = serde_json::to_value(&*hashes)
        {
            let _ = store.put_state(&self.state_name, &value);
        }
    }

    /// The checksum of what `sources` select in the context, for a COPY's cache key.
    /// Sources that match nothing are part of the checksum as such (the step then fails
    /// when it runs, with its own error).
    pub(crate) fn checksum(&self, sources: &[String]) -> io::Result<String> {
        let mut key = KeyBuilder::new("context");
        for source in sources {
            key.part("source").part(source);
            let matches = if glob::has_wildcards(source) {
                glob::expand(&self.root, source).map_err(io::Error::other)?
            } else {
                vec![source.trim_start_matches('/').to_owned()]
            };
            for rel in matches {
                self.path_part(&mut key, &rel)?;
            }
        }
        Ok(key.finish().to_string())
    }

    /// The checksum of one path of the context, taken literally (no wildcards), as a
    /// `RUN --mount=type=bind` of the context sees it.
    pub(crate) fn checksum_path(&self, path: &str) -> io::Result<String> {
        let mut key = KeyBuilder::new("context-path");
        self.path_part(&mut key, path.trim_start_matches('/'))?;
        Ok(key.finish().to_string())
    }

    fn path_part(&self, key: &mut KeyBuilder, rel: &str) -> io::Result<()> {
        if self.ignore.is_excluded(rel) {
            key.part("excluded").part(rel);
            return Ok(());
        }
        let host = resolve_in_root(&self.root, rel, true)?;
        match fs::metadata(&host) {
            Ok(meta) => {
                key.part("match").part(rel);
                self.entry(key, &host, &meta, true)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                key.part("missing").part(rel);
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Adds one entry (recursively for directories) to `key`.
    fn entry(
        &self,
        key: &mut KeyBuilder,
        host: &Path,
        meta: &fs::Metadata,
        top: bool,
    ) -> io::Result<()> {
        let file_type = meta.file_type();
        key.part(&format!("{:o}", meta.mode() & 0o7777));
        if file_type.is_dir() {
            key.part("dir");
            let mut names: Vec<_> = fs::read_dir(host)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.sort();
            for name in names {
                let child = host.join(&name);
                let rel = self.relative(&child);
                let child_meta = fs::symlink_metadata(&child)?;
                // An excluded directory still counts for what `!` patterns re-include in it.
                if self.ignore.is_excluded(&rel)
                    && !(child_meta.is_dir() && self.ignore.has_exceptions())
                {
                    continue;
                }
                key.part("child").part(&name.to_string_lossy());
                self.entry(key, &child, &child_meta, false)?;
            }
        } else if file_type.is_symlink() && !top {
            key.part("symlink")
                .part(&fs::read_link(host)?.to_string_lossy());
        } else if file_type.is_file() {
            key.part("file")
                .part(&meta.len().to_string())
                .part(&self.file_hash(host, meta)?);
        } else {
            key.part("special").part(&meta.rdev().to_string());
        }
        Ok(())
    }

    fn relative(&self, host: &Path) -> String {
        host.strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// BLAKE3 of a file's content, from the remembered hashes when its stamp is unchanged.
    fn file_hash(&self, host: &Path, meta: &fs::Metadata) -> io::Result<String> {
        let rel = self.relative(host);
        let stamp = |hash: String| FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            hash,
        };
        {
            let hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = hashes.files.get(&rel)
                && *known == stamp(known.hash.clone())
            {
                return Ok(known.hash.clone());
            }
        }
        let mut hasher = blake3::Hasher::new();
        let mut file = fs::File::open(host)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash = hasher.finalize().to_hex().to_string();
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        hashes.files.insert(rel, stamp(hash.clone()));
        hashes.changed = true;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dir: &Path, ignore: &str, store: &Store) -> Context {
        Context::open(dir.to_owned(), IgnoreMatcher::parse(ignore), store)
    }

    #[test]
    fn checksum_follows_content_not_mtime() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        fs::write(dir.path().join("src/a.rs"), "fn a() {}").unwrap();
        fs::write(dir.path().join("other.txt"), "unrelated").unwrap();
        let ctx = context(dir.path(), "", &store);
        let sources = vec!["src".to_owned()];
        let first = ctx.checksum(&sources).unwrap();

        // Same content, new mtime: same checksum.
        let file = fs::File::options()
            .write(true)
            .open(dir.path().join("src/a.rs"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(ctx.checksum(&sources).unwrap(), first);
        // An unrelated file: same checksum.
        fs::write(dir.path().join("other.txt"), "changed").unwrap();
        assert_eq!(ctx.checksum(&sources).unwrap(), first);
        // Content, mode, a new file: new checksum.
        fs::write(dir.path().join("src/a.rs"), "fn b() {}").unwrap();
        let second = ctx.checksum(&sources).unwrap();
        assert_ne!(second, first);
        fs::set_permissions(
            dir.path().join("src/a.rs"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let third = ctx.checksum(&sources).unwrap();
        assert_ne!(third, second);
        fs::write(dir.path().join("src/b.rs"), "").unwrap();
        assert_ne!(ctx.checksum(&sources).unwrap(), third);

        // Remembered hashes survive into the next build.
        ctx.save_hashes(&store);
        let again = context(dir.path(), "", &store);
        assert_eq!(again.hashes.lock().unwrap().files.len(), 2);
    }

    #[test]
    fn ignored_files_do_not_count() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("app")).unwrap();
        fs::write(dir.path().join("app/main.py"), "print(1)").unwrap();
        fs::write(dir.path().join("app/debug.log"), "1").unwrap();
        let ctx = context(dir.path(), "**/*.log\n", &store);
        let sources = vec![".".to_owned()];
        let first = ctx.checksum(&sources).unwrap();
        fs::write(dir.path().join("app/debug.log"), "2").unwrap();
        assert_eq!(ctx.checksum(&sources).unwrap(), first);
    }
}
