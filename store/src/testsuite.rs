//! The store's contract, as checks any store root must pass: what the builder, the CLI and
//! other processes rely on, whatever filesystem the root is on (the durability calls,
//! renames, read-only modes and `syncfs` behave differently on tmpfs, ext4, xfs or an
//! overlay). Each check opens its own store under the directory it is given and panics with
//! what broke.
//!
//! `store/tests/conformance.rs` runs them all on a plain temporary directory, and, as root,
//! on a tmpfs; run them on another filesystem with
//! `RBUILD_STORE_SUITE_DIR=/mnt/xfs cargo nextest run -p rbuild-store --test conformance`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::layer::LayerOptions;
use crate::oci::{self, ImageConfiguration, RootFs};
use crate::{CachePrune, Digest, Error, GcOptions, ImageName, Store};

/// A named check of the contract.
pub type Check = (&'static str, fn(&Path));

/// Every check, by name.
pub const CHECKS: &[Check] = &[
    ("blob_round_trip", blob_round_trip),
    (
        "ingest_verifies_digest_and_size",
        ingest_verifies_digest_and_size,
    ),
    (
        "concurrent_ingest_is_idempotent",
        concurrent_ingest_is_idempotent,
    ),
    ("corrupt_blob_is_never_served", corrupt_blob_is_never_served),
    ("images_tag_untag_and_persist", images_tag_untag_and_persist),
    ("built_layer_round_trip", built_layer_round_trip),
    ("gc_keeps_what_is_referenced", gc_keeps_what_is_referenced),
    (
        "gc_keeps_the_dates_of_named_images",
        gc_keeps_the_dates_of_named_images,
    ),
    (
        "image_size_is_its_layers_uncompressed",
        image_size_is_its_layers_uncompressed,
    ),
    (
        "verify_and_repair_missing_blob",
        verify_and_repair_missing_blob,
    ),
];

fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap_or_else(|e| panic!("open a store at {}: {e}", dir.display()))
}

fn name(s: &str) -> ImageName {
    s.parse().expect("a valid image name")
}

/// Blobs are named by their SHA-256, read back whole, made read-only, written once.
pub fn blob_round_trip(dir: &Path) {
    let store = open(dir);
    let bytes = b"abc";
    let digest = store.write_blob(bytes).unwrap();
    // FIPS 180-2's test vector: a blob is named by its SHA-256.
    assert_eq!(
        digest.to_string(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest).unwrap(), bytes);
    let path = store.blob_path(&digest);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "committed blobs are read-only");
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    // Writing the same bytes again keeps the existing file.
    assert_eq!(store.write_blob(bytes).unwrap(), digest);
    let again = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    assert_eq!(inode, again, "an existing blob is not rewritten");
    let mut streamed = Vec::new();
    store
        .open_blob(&digest, Some(bytes.len() as u64))
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, bytes);
    no_leftovers(dir);
}

/// An ingest whose content does not match what the caller expected commits nothing and
/// leaves nothing behind.
pub fn ingest_verifies_digest_and_size(dir: &Path) {
    let store = open(dir);
    let claimed = Digest::of(b"what the registry promised");
    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"what arrived instead").unwrap();
    match ingest.commit(Some(&claimed)) {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(b"what arrived instead"));
        }
        other => panic!("a mismatching ingest must fail with DigestMismatch: {other:?}"),
    }
    assert!(!store.has_blob(&claimed));
    assert!(!store.has_blob(&Digest::of(b"what arrived instead")));
    // Without an expectation, the content names the blob.
    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"unnamed until hashed").unwrap();
    let (digest, size) = ingest.commit(None).unwrap();
    assert_eq!(digest, Digest::of(b"unnamed until hashed"));
    assert_eq!(size, 20);
    // An abandoned ingest leaves nothing once dropped.
    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"abandoned").unwrap();
    drop(ingest);
    no_leftovers(dir);
}

/// Several handles (as several processes would) writing the same blob at once all succeed,
/// and one blob results.
pub fn concurrent_ingest_is_idempotent(dir: &Path) {
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = Digest::of(&content);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = open(dir);
            let content = content.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                let mut ingest = store.ingest().unwrap();
                for chunk in content.chunks(64 * 1024) {
                    ingest.write_all(chunk).unwrap();
                }
                ingest.commit(Some(&expected)).unwrap()
            })
        })
        .collect();
    for handle in handles {
        let (digest, size) = handle.join().expect("an ingest thread panicked");
        assert_eq!((digest, size), (expected.clone(), content.len() as u64));
    }
    let store = open(dir);
    let mut read = Vec::new();
    store
        .open_blob(&expected, Some(content.len() as u64))
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert!(read == content, "the blob holds what was written");
    no_leftovers(dir);
}

/// A blob changed on disk is never handed out: reading it fails, `verify` names it and
/// `repair` removes it.
pub fn corrupt_blob_is_never_served(dir: &Path) {
    let store = open(dir);
    let digest = store.write_blob(b"precious bytes").unwrap();
    let path = store.blob_path(&digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"precious bytez").unwrap();
    assert!(
        store.read_blob(&digest).is_err(),
        "a corrupt blob must not be read whole"
    );
    let mut out = Vec::new();
    let streamed = store
        .open_blob(&digest, None)
        .and_then(|mut r| r.read_to_end(&mut out).map_err(Error::io("read", &path)));
    assert!(streamed.is_err(), "a corrupt blob must fail at its end");
    let report = store.verify().unwrap();
    assert!(report.corrupt.contains(&digest), "{report:?}");
    assert!(!report.is_clean());
    store.repair(&report).unwrap();
    assert!(!store.has_blob(&digest));
    assert!(store.verify().unwrap().is_clean());
}

fn empty_config(diff_ids: Vec<Digest>) -> ImageConfiguration {
    ImageConfiguration {
        created: None,
        author: None,
        architecture: crate::host_architecture().to_owned(),
        os: "linux".to_owned(),
        variant: None,
        config: serde_json::Value::Null,
        rootfs: RootFs::layers(diff_ids),
        history: Vec::new(),
    }
}

/// Names point at manifests, move when retagged, go when untagged, and outlive the handle
/// that wrote them.
pub fn images_tag_untag_and_persist(dir: &Path) {
    let first;
    let second;
    {
        let store = open(dir);
        first = store.write_image(&empty_config(vec![]), vec![]).unwrap();
        let mut config = empty_config(vec![]);
        config.author = Some("someone else".into());
        second = store.write_image(&config, vec![]).unwrap();
        store.tag(&name("app:1"), &first.digest).unwrap();
        store.tag(&name("app:latest"), &first.digest).unwrap();
        store.tag(&name("app:latest"), &second.digest).unwrap();
        let missing = Digest::of(b"no such manifest");
        assert!(store.tag(&name("app:2"), &missing).is_err());
    }
    let store = open(dir);
    assert_eq!(
        store.image(&name("app:1")).unwrap().manifest_digest,
        first.digest
    );
    let latest = store.image(&name("app:latest")).unwrap();
    assert_eq!(latest.manifest_digest, second.digest);
    assert_eq!(latest.config.author.as_deref(), Some("someone else"));
    assert!(store.untag(&name("app:1")).unwrap());
    assert!(!store.untag(&name("app:1")).unwrap());
    match store.image(&name("app:1")) {
        Err(err) => assert!(err.is_not_found(), "{err}"),
        Ok(_) => panic!("an untagged name must be gone"),
    }
    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// A layer made from a directory is stored as its snapshot and read back as the same
/// verified tar, again after the store is reopened; the same layer made again reuses it.
pub fn built_layer_round_trip(dir: &Path) {
    let store = open(dir);
    // As under SOURCE_DATE_EPOCH: the same files make the same layer whenever written.
    let reproducible = LayerOptions {
        clamp_mtime: Some(1_700_000_000),
    };
    let active = store.prepare(None).unwrap();
    fs::create_dir_all(active.upper.join("etc")).unwrap();
    fs::write(active.upper.join("etc/motd"), b"hello\n").unwrap();
    fs::write(active.upper.join("big"), vec![7u8; 300_000]).unwrap();
    let layer = store.create_layer(&active.upper, reproducible).unwrap();
    assert!(!layer.empty);
    let (snapshot, unused) = store.commit_layer(active, &layer).unwrap();
    assert!(unused.is_none());
    let descriptor = store
        .write_image(
            &empty_config(vec![layer.diff_id.clone()]),
            vec![layer.descriptor.clone()],
        )
        .unwrap();
    store.tag(&name("layered:1"), &descriptor.digest).unwrap();
    drop(store);

    let store = open(dir);
    let image = store.image(&name("layered:1")).unwrap();
    assert_eq!(image.top(), Some(snapshot.clone()));
    let lowers = store.lowers(&snapshot).unwrap();
    assert_eq!(fs::read(lowers[0].join("etc/motd")).unwrap(), b"hello\n");
    let mut tar = Vec::new();
    store
        .open_content(&layer.descriptor.digest, Some(layer.descriptor.size))
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        Digest::of(&tar),
        layer.diff_id,
        "the layer reads back identically"
    );
    let mut entries: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    entries.sort();
    assert_eq!(entries, ["big", "etc/", "etc/motd"]);
    // The same chain committed again reuses the snapshot.
    let active = store.prepare(None).unwrap();
    fs::create_dir_all(active.upper.join("etc")).unwrap();
    fs::write(active.upper.join("etc/motd"), b"hello\n").unwrap();
    fs::write(active.upper.join("big"), vec![7u8; 300_000]).unwrap();
    let again = store.create_layer(&active.upper, reproducible).unwrap();
    let (name_again, unused) = store.commit_layer(active, &again).unwrap();
    assert_eq!(name_again, snapshot);
    store
        .discard(unused.expect("a duplicate chain hands back its snapshot"))
        .unwrap();
    assert!(store.verify().unwrap().is_clean());
}

/// GC removes only what nothing references once the writers' leases are gone.
pub fn gc_keeps_what_is_referenced(dir: &Path) {
    let kept;
    let garbage;
    {
        let store = open(dir);
        kept = store.write_image(&empty_config(vec![]), vec![]).unwrap();
        store.tag(&name("kept:1"), &kept.digest).unwrap();
        garbage = store.write_blob(b"nobody needs this").unwrap();
        // While its writer holds the store, a fresh blob is leased, not garbage.
        let other = open(dir);
        other.gc(&GcOptions::default()).unwrap();
        assert!(other.has_blob(&garbage), "a leased blob must survive GC");
    }
    let store = open(dir);
    let report = store
        .gc(&GcOptions {
            cache: CachePrune::All,
            ..GcOptions::default()
        })
        .unwrap();
    assert!(!store.has_blob(&garbage), "an unreferenced blob must go");
    assert!(report.blobs >= 1, "{report:?}");
    let image = store.image(&name("kept:1")).unwrap();
    assert!(store.has_blob(&image.config_digest));
    assert!(store.has_blob(&kept.digest));
    assert!(store.verify().unwrap().is_clean());
}

/// The cache record dating an image with no layer of its own survives a dangling prune
/// while the image is named, and goes with its last name, as step records go with their
/// snapshots.
pub fn gc_keeps_the_dates_of_named_images(dir: &Path) {
    let record = |image: &Digest| crate::CacheRecord {
        layer: None,
        snapshot: None,
        description: "an image's time".to_owned(),
        created: 1_700_000_000,
        last_used: 1_700_000_000,
        size: 0,
        remote: None,
        image: Some(image.clone()),
    };
    {
        let store = open(dir);
        let named = store.write_image(&empty_config(vec![]), vec![]).unwrap();
        store.tag(&name("named:1"), &named.digest).unwrap();
        let mut config = empty_config(vec![]);
        config.author = Some("unnamed".into());
        let unnamed = store.write_image(&config, vec![]).unwrap();
        store.cache_put("named", &record(&named.digest)).unwrap();
        store
            .cache_put("unnamed", &record(&unnamed.digest))
            .unwrap();
    }
    let store = open(dir);
    let dangling = GcOptions {
        cache: CachePrune::Dangling,
        ..GcOptions::default()
    };
    let report = store.gc(&dangling).unwrap();
    assert_eq!(report.cache_records, 1, "{report:?}");
    let keys: Vec<String> = store
        .cache_records()
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, ["named"]);
    assert!(store.untag(&name("named:1")).unwrap());
    store.gc(&dangling).unwrap();
    assert!(store.cache_records().unwrap().is_empty());
    assert!(store.verify().unwrap().is_clean());
}

/// An image's size is its layers' tars, whether the store holds them compressed or not:
/// the same image under two manifests has one size. A compressed layer's size, measured
/// once, is kept while an image has the layer.
pub fn image_size_is_its_layers_uncompressed(dir: &Path) {
    let store = open(dir);
    let mut tar = tar::Builder::new(Vec::new());
    let data = b"the same line again\n".repeat(2000);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "lines.txt", data.as_slice())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&tar).unwrap();
    let gzip = gzip.finish().unwrap();
    let config = empty_config(vec![Digest::of(&tar)]);
    let plain = oci::Descriptor::new(
        oci::MEDIA_TYPE_LAYER,
        store.write_blob(&tar).unwrap(),
        tar.len() as u64,
    );
    let compressed = oci::Descriptor::new(
        oci::MEDIA_TYPE_LAYER_GZIP,
        store.write_blob(&gzip).unwrap(),
        gzip.len() as u64,
    );
    let plain = store.write_image(&config, vec![plain]).unwrap();
    let compressed = store.write_image(&config, vec![compressed]).unwrap();
    store.tag(&name("sized:plain"), &plain.digest).unwrap();
    store.tag(&name("sized:gzip"), &compressed.digest).unwrap();
    for tag in ["sized:plain", "sized:gzip", "sized:gzip"] {
        let image = store.image(&name(tag)).unwrap();
        assert_eq!(
            store.image_size(&image).unwrap(),
            tar.len() as u64,
            "{tag}: the layer's tar, not the {} bytes of its gzip",
            gzip.len()
        );
    }
    let recorded = |store: &Store| {
        store
            .inner
            .meta
            .get::<crate::sizes::LayerSizeRecord>(
                crate::meta::LAYER_SIZES,
                &Digest::of(&tar).to_string(),
            )
            .unwrap()
            .is_some()
    };
    assert!(recorded(&store), "measured once, then recorded");
    store.gc(&GcOptions::default()).unwrap();
    assert!(recorded(&store), "kept while an image has the layer");
    store.untag(&name("sized:plain")).unwrap();
    store.untag(&name("sized:gzip")).unwrap();
    drop(store);
    let store = open(dir);
    store.gc(&GcOptions::default()).unwrap();
    assert!(
        !recorded(&store),
        "gone with the last image that has the layer"
    );
}

/// A blob an image needs that is gone: `verify` names it and the image, `repair` drops the
/// image so that a later build or pull makes it again.
pub fn verify_and_repair_missing_blob(dir: &Path) {
    let store = open(dir);
    let descriptor = store.write_image(&empty_config(vec![]), vec![]).unwrap();
    store.tag(&name("fragile:1"), &descriptor.digest).unwrap();
    let image = store.image(&name("fragile:1")).unwrap();
    fs::remove_file(store.blob_path(&image.config_digest)).unwrap();
    let report = store.verify().unwrap();
    assert!(
        report.missing.contains_key(&image.config_digest),
        "{report:?}"
    );
    assert!(report.broken_images.contains(&name("fragile:1")));
    store.repair(&report).unwrap();
    assert!(store.image(&name("fragile:1")).is_err());
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(oci::MEDIA_TYPE_MANIFEST, descriptor.media_type);
}

/// Nothing of a finished operation is left in the ingest area.
fn no_leftovers(dir: &Path) {
    let ingest = dir.join("ingest");
    let left: Vec<_> = fs::read_dir(&ingest)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", ingest.display());
}
