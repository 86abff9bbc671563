//! Layer tars and ADD archives unpacked into a fresh root in a scratch directory (tmpfs
//! where there is one). The first byte picks the entry point, the rest is the archive:
//!
//! - 0: `unpack_layer` (a registry layer: tar, gzip or zstd) into an empty root; when it
//!   succeeds, its diff id and size must be those of the decompressed stream;
//! - 1: `extract_archive` (ADD of a tar) into a root that already holds symlinks pointing
//!   out of it (`up -> ..`, `abs -> /…/canary`, …), as a build context may;
//! - 2: ADD of a local file: `open_archive` (plain, gzip, zstd, bzip2, xz) then
//!   `extract_archive`, into the same kind of root.
//!
//! Errors are fine. A panic is not, and neither is any change outside the root: the canary
//! directory and files beside the root must be left exactly as they were, and nothing may
//! appear beside them. Archives that decompress to more than 16 MiB are skipped (the
//! store's bomb guard only starts at 1 GiB, which would only fill the scratch disk here).

#![no_main]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rbuild_store::layer::{decompress, extract_archive, unpack_layer};
use rbuild_store::{Digest, OverlayXattrs};

const MAX_EXPANDED: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let work = scratch().join("work");
    let _ = fs::remove_dir_all(&work);
    let root = work.join("root");
    let canary = work.join("canary");
    fs::create_dir_all(&root).expect("create the root");
    fs::create_dir_all(canary.join("dir")).expect("create the canary");
    fs::write(canary.join("file"), b"canary").expect("write the canary");
    fs::write(canary.join("dir/nested"), b"nested").expect("write the canary");
    symlink("file", canary.join("link")).expect("link in the canary");
    let input = work.join("input");
    fs::write(&input, archive).expect("write the input");

    match mode % 3 {
        0 => {
            let Some(expanded) = expand(decompress(archive).map(|(_, stream)| stream).ok()) else {
                return;
            };
            let layer = Digest::of(archive);
            let before = snapshot(&work);
            if let Ok(unpacked) = unpack_layer(archive, &root, &layer, OverlayXattrs::Trusted) {
                assert_eq!(unpacked.diff_id, Digest::of(&expanded), "diff id");
                assert_eq!(unpacked.size, expanded.len() as u64, "size");
            }
            assert_contained(&work, &before);
        }
        1 => {
            let Some(expanded) = expand(decompress(archive).map(|(_, stream)| stream).ok()) else {
                return;
            };
            escape_links(&root, &canary);
            let before = snapshot(&work);
            let _ = extract_archive(expanded.as_slice(), &root, None, "fuzz");
            assert_contained(&work, &before);
        }
        _ => {
            let open = || rbuild_builder::open_archive(&input).ok().flatten();
            if expand(open()).is_none() {
                return;
            }
            let Some(stream) = open() else {
                return;
            };
            escape_links(&root, &canary);
            let before = snapshot(&work);
            let _ = extract_archive(stream, &root, Some((1000, 1000)), "fuzz");
            assert_contained(&work, &before);
        }
    }
    fs::remove_dir_all(&work).expect("remove the scratch root");
});

/// This process's scratch directory: `RBUILD_FUZZ_TMPDIR`, else `/dev/shm`, else the
/// temporary directory.
fn scratch() -> &'static Path {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let base = std::env::var_os("RBUILD_FUZZ_TMPDIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|shm| shm.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("rbuild-fuzz-layer-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}

/// The whole stream when it is at most `MAX_EXPANDED` bytes.
fn expand(stream: Option<Box<dyn Read + '_>>) -> Option<Vec<u8>> {
    let mut expanded = Vec::new();
    stream?
        .take(MAX_EXPANDED + 1)
        .read_to_end(&mut expanded)
        .ok()?;
    (expanded.len() as u64 <= MAX_EXPANDED).then_some(expanded)
}

/// Symlinks in the root that lead out of it, as an ADD destination may hold.
fn escape_links(root: &Path, canary: &Path) {
    symlink("..", root.join("up")).expect("link");
    symlink("../canary", root.join("canary")).expect("link");
    symlink(canary, root.join("abs")).expect("link");
    symlink(canary.join("file"), root.join("file")).expect("link");
    symlink("/", root.join("slash")).expect("link");
}

/// Everything under `work` except the root's contents: path, type, mode, owner, size,
/// mtime and content (files) or target (symlinks).
fn snapshot(work: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(work, work, &mut out);
    out.sort();
    out
}

fn walk(work: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read a scratch directory")
        .map(|entry| entry.expect("read a scratch directory").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = fs::symlink_metadata(&path).expect("stat");
        let relative = path.strip_prefix(work).expect("below work").display();
        let detail = if meta.file_type().is_symlink() {
            format!("-> {}", fs::read_link(&path).expect("readlink").display())
        } else if meta.is_file() {
            format!("{:?}", fs::read(&path).expect("read"))
        } else {
            String::new()
        };
        out.push(format!(
            "{relative} {:o} {}:{} {} {} {detail}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.len(),
            meta.mtime(),
        ));
        if meta.is_dir() && path != work.join("root") {
            walk(work, &path, out);
        }
    }
}

fn assert_contained(work: &Path, before: &[String]) {
    let root = fs::symlink_metadata(work.join("root")).expect("the root is still there");
    assert!(root.is_dir(), "the root is no longer a directory");
    // The root's own entry may change (its mode, owner and time are the layer's `./`).
    let outside = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| !line.starts_with("root "))
            .cloned()
            .collect()
    };
    assert_eq!(
        outside(&snapshot(work)),
        outside(before),
        "something outside the root changed"
    );
    let scratch: Vec<_> = fs::read_dir(scratch())
        .expect("read the scratch directory")
        .map(|entry| entry.expect("read").file_name())
        .collect();
    assert_eq!(
        scratch,
        ["work"],
        "something appeared beside the work directory"
    );
}
