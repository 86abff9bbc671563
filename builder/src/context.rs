//! The build context as COPY sees it: a directory, filtered by the ignore file, with
//! content checksums for cache keys.
//!
//! Only files a COPY or ADD names are hashed, and each file's BLAKE3 is remembered by
//! (device, inode, size, mtime, ctime) in the store, so a warm build re-reads no unchanged
//! file. The checksum covers names, types, permission bits, sizes, link targets and
//! content; never mtimes or owners (context files always land owned by root).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
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

/// What a checksum leaves out: the ignore file and `--exclude` (relative to the context,
/// or to the source operand, as COPY does).
struct Scope<'a> {
    excluded: &'a dyn Fn(&str) -> bool,
    exclude: Option<&'a IgnoreMatcher>,
    /// The source operand's path relative to the context (`""` for the context itself).
    operand_rel: &'a str,
    exceptions: bool,
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
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
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
            && let Ok(bytes) = serde_json::to_vec(&*hashes)
        {
            let _ = store.put_state(&self.state_name, &bytes);
        }
    }

    /// The checksum of what `sources` select in the context, for a COPY's cache key, and
    /// what it covered: each file, link and special file read, by path relative to the
    /// context, with its mode, size and content hash (or link target); the list lets a
    /// cache miss name the files that changed. Sources that match nothing are part of the
    /// checksum as such (the step then fails when it runs, with its own error).
    pub(crate) fn checksum_files(
        &self,
        sources: &[String],
        exclude: Option<&IgnoreMatcher>,
    ) -> io::Result<(String, BTreeMap<String, String>)> {
        let mut files = BTreeMap::new();
        let mut key = KeyBuilder::new("context");
        let excluded =
            |rel: &str| self.ignore.is_excluded(rel) || exclude.is_some_and(|e| e.is_excluded(rel));
        let exceptions =
            self.ignore.has_exceptions() || exclude.is_some_and(|e| e.has_exceptions());
        for source in sources {
            key.part("source").part(source);
            let matches = if glob::has_wildcards(source) {
                glob::expand(&self.root, source).map_err(io::Error::other)?
            } else {
                vec![source.trim_start_matches('/').to_owned()]
            };
            for rel in matches {
                if excluded(&rel) {
                    key.part("excluded").part(&rel);
                    continue;
                }
                let host = resolve_in_root(&self.root, &rel, true)?;
                match fs::metadata(&host) {
                    Ok(meta) => {
                        key.part("match").part(&rel);
                        let clean = rel.trim_matches('/');
                        let clean = if clean == "." { "" } else { clean };
                        let scope = Scope {
                            excluded: &excluded,
                            exclude,
                            operand_rel: clean,
                            exceptions,
                        };
                        self.entry(&mut key, &host, clean, &meta, true, &scope, &mut files)?;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        key.part("missing").part(&rel);
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Ok((key.finish().to_string(), files))
    }

    /// The checksum of one path of the context, taken literally (no wildcards), as a
    /// `RUN --mount=type=bind` of the context sees it, and the files it covered (as for
    /// [`Context::checksum_files`]).
    pub(crate) fn checksum_path(
        &self,
        path: &str,
    ) -> io::Result<(String, BTreeMap<String, String>)> {
        let rel = path.trim_start_matches('/');
        let mut files = BTreeMap::new();
        let mut key = KeyBuilder::new("context-path");
        let excluded = |rel: &str| self.ignore.is_excluded(rel);
        if excluded(rel) {
            key.part("excluded").part(rel);
            return Ok((key.finish().to_string(), files));
        }
        let host = resolve_in_root(&self.root, rel, true)?;
        match fs::metadata(&host) {
            Ok(meta) => {
                key.part("match").part(rel);
                let scope = Scope {
                    excluded: &excluded,
                    exclude: None,
                    operand_rel: rel,
                    exceptions: self.ignore.has_exceptions(),
                };
                self.entry(&mut key, &host, rel, &meta, true, &scope, &mut files)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                key.part("missing").part(rel);
            }
            Err(err) => return Err(err),
        }
        Ok((key.finish().to_string(), files))
    }

    /// Adds one entry (recursively for directories) to `key`. `rel` is its path relative to
    /// the context.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        key: &mut KeyBuilder,
        host: &Path,
        rel: &str,
        meta: &fs::Metadata,
        top: bool,
        scope: &Scope<'_>,
        files: &mut BTreeMap<String, String>,
    ) -> io::Result<()> {
        let file_type = meta.file_type();
        let mode = format!("{:o}", meta.mode() & 0o7777);
        key.part(&mode);
        if file_type.is_dir() {
            key.part("dir");
            let mut names: Vec<_> = fs::read_dir(host)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.sort();
            let mut child_rel = String::with_capacity(rel.len() + 32);
            for name in names {
                let child = host.join(&name);
                let name = name.to_string_lossy();
                child_rel.clear();
                if !rel.is_empty() && rel != "." {
                    child_rel.push_str(rel);
                    child_rel.push('/');
                }
                child_rel.push_str(&name);
                let child_meta = fs::symlink_metadata(&child)?;
                // An excluded directory still counts for what `!` patterns re-include in it.
                let by_operand = scope.exclude.is_some_and(|exclude| {
                    let below = if scope.operand_rel.is_empty() {
                        Some(child_rel.as_str())
                    } else {
                        child_rel
                            .strip_prefix(scope.operand_rel)
                            .and_then(|r| r.strip_prefix('/'))
                    };
                    below.is_some_and(|r| exclude.is_excluded(r))
                });
                if ((scope.excluded)(&child_rel) || by_operand)
                    && !(child_meta.is_dir() && scope.exceptions)
                {
                    continue;
                }
                key.part("child").part(&name);
                self.entry(key, &child, &child_rel, &child_meta, false, scope, files)?;
            }
        } else if file_type.is_symlink() && !top {
            let target = fs::read_link(host)?.to_string_lossy().into_owned();
            key.part("symlink").part(&target);
            files.insert(rel.to_owned(), format!("-> {target}"));
        } else if file_type.is_file() {
            let hash = self.file_hash(host, rel, meta)?;
            key.part("file").part(&meta.len().to_string()).part(&hash);
            files.insert(rel.to_owned(), format!("{mode} {} {hash}", meta.len()));
        } else {
            key.part("special").part(&meta.rdev().to_string());
            files.insert(rel.to_owned(), format!("{mode} special {}", meta.rdev()));
        }
        Ok(())
    }

    /// BLAKE3 of a file's content, from the remembered hashes when its stamp is unchanged.
    fn file_hash(&self, host: &Path, rel: &str, meta: &fs::Metadata) -> io::Result<String> {
        let unchanged = |known: &FileStamp| {
            known.dev == meta.dev()
                && known.ino == meta.ino()
                && known.size == meta.len()
                && known.mtime == (meta.mtime(), meta.mtime_nsec())
                && known.ctime == (meta.ctime(), meta.ctime_nsec())
        };
        {
            let hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = hashes.files.get(rel).filter(|known| unchanged(known)) {
                return Ok(known.hash.clone());
            }
        }
        let mut hasher = blake3::Hasher::new();
        let mut file = fs::File::open(host)?;
        io::copy(&mut file, &mut hasher)?;
        let hash = hasher.finalize().to_hex().to_string();
        let stamp = FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            hash: hash.clone(),
        };
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        hashes.files.insert(rel.to_owned(), stamp);
        hashes.changed = true;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dir: &Path, ignore: &str, store: &Store) -> Context {
        Context::open(dir.to_owned(), IgnoreMatcher::parse(ignore).unwrap(), store)
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
        let first = ctx.checksum_files(&sources, None).unwrap().0;

        // Same content, new mtime: same checksum.
        let file = fs::File::options()
            .write(true)
            .open(dir.path().join("src/a.rs"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(ctx.checksum_files(&sources, None).unwrap().0, first);
        // An unrelated file: same checksum.
        fs::write(dir.path().join("other.txt"), "changed").unwrap();
        assert_eq!(ctx.checksum_files(&sources, None).unwrap().0, first);
        // Content, mode, a new file: new checksum.
        fs::write(dir.path().join("src/a.rs"), "fn b() {}").unwrap();
        let second = ctx.checksum_files(&sources, None).unwrap().0;
        assert_ne!(second, first);
        fs::set_permissions(
            dir.path().join("src/a.rs"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let third = ctx.checksum_files(&sources, None).unwrap().0;
        assert_ne!(third, second);
        fs::write(dir.path().join("src/b.rs"), "").unwrap();
        assert_ne!(ctx.checksum_files(&sources, None).unwrap().0, third);

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
        let first = ctx.checksum_files(&sources, None).unwrap().0;
        fs::write(dir.path().join("app/debug.log"), "2").unwrap();
        assert_eq!(ctx.checksum_files(&sources, None).unwrap().0, first);
    }
}
