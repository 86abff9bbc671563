//! Round trips between overlay dirs and layer tars, and hostile layers that must stay
//! contained.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::{Digest, OverlayXattrs};

/// Root is needed for device nodes, ownership and `trusted.*` xattrs. Without root the
/// test skips, unless `RBUILD_PRIVILEGED_TESTS=1` makes a skip a failure.
pub(crate) fn privileged() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_none_or(|v| v != "1"),
        "RBUILD_PRIVILEGED_TESTS=1 but not running as root"
    );
    eprintln!("skipped: needs root");
    false
}

fn layer_of(dir: &Path) -> Vec<u8> {
    write_layer(dir, Vec::new(), LayerOptions::default()).unwrap()
}

fn entries(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            format!(
                "{:?} {} {:o}",
                e.header().entry_type(),
                String::from_utf8_lossy(&e.path_bytes()),
                e.header().mode().unwrap()
            )
        })
        .collect()
}

#[test]
fn upper_dir_round_trips_through_a_layer() {
    if !privileged() {
        return;
    }
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    fs::create_dir_all(u.join("etc/conf.d")).unwrap();
    fs::write(u.join("etc/conf.d/a.conf"), "a=1\n").unwrap();
    fs::write(u.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::hard_link(u.join("etc/hosts"), u.join("etc/hosts.link")).unwrap();
    symlink("conf.d/a.conf", u.join("etc/a")).unwrap();
    fs::set_permissions(u.join("etc/hosts"), fs::Permissions::from_mode(0o4755)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("etc/deleted"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    fs::create_dir(u.join("opaque")).unwrap();
    rustix::fs::setxattr(
        u.join("opaque"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        u.join("etc/hosts"),
        "user.note",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();

    let tar = layer_of(u);
    assert_eq!(tar, layer_of(u), "the same tree gives the same bytes");
    let listed = entries(&tar);
    assert_eq!(
        listed,
        [
            "Directory etc/ 755",
            "Symlink etc/a 777",
            "Directory etc/conf.d/ 755",
            "Regular etc/conf.d/a.conf 644",
            "Regular etc/.wh.deleted 0",
            "Regular etc/hosts 4755",
            "Link etc/hosts.link 4755",
            "Fifo fifo 600",
            "Directory opaque/ 755",
            "Regular opaque/.wh..wh..opq 0",
        ],
        "{listed:#?}"
    );

    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let unpacked =
        unpack_layer(tar.as_slice(), t, &Digest::of(&tar), OverlayXattrs::Trusted).unwrap();
    assert_eq!(unpacked.diff_id, Digest::of(&tar));
    assert_eq!(
        fs::read_to_string(t.join("etc/conf.d/a.conf")).unwrap(),
        "a=1\n"
    );
    assert_eq!(
        fs::read_link(t.join("etc/a")).unwrap(),
        Path::new("conf.d/a.conf")
    );
    let hosts = fs::metadata(t.join("etc/hosts")).unwrap();
    assert_eq!(hosts.mode() & 0o7777, 0o4755);
    assert_eq!(
        hosts.ino(),
        fs::metadata(t.join("etc/hosts.link")).unwrap().ino()
    );
    let deleted = fs::symlink_metadata(t.join("etc/deleted")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &deleted.file_type()
    ));
    assert_eq!(deleted.rdev(), 0);
    let mut value = [0u8; 8];
    let len =
        rustix::fs::getxattr(t.join("opaque"), "trusted.overlay.opaque", &mut value[..]).unwrap();
    assert_eq!(&value[..len], b"y");
    let len = rustix::fs::getxattr(t.join("etc/hosts"), "user.note", &mut value[..]).unwrap();
    assert_eq!(&value[..len], b"kept");
    // And back again: the unpacked dir gives the same layer.
    assert_eq!(layer_of(t), tar);
}

#[test]
fn mtimes_are_clamped_to_source_date_epoch() {
    let upper = tempfile::tempdir().unwrap();
    fs::write(upper.path().join("f"), "x").unwrap();
    let tar = write_layer(
        upper.path(),
        Vec::new(),
        LayerOptions {
            clamp_mtime: Some(10),
        },
    )
    .unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.header().mtime().unwrap(), 10);
}

/// A tar with raw entry names, written without the tar crate's path checks.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_layers_stay_inside_the_target() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "original").unwrap();
    let o = outside.path().display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot",
            raw_tar(&[("../escape", tar::EntryType::Regular, "", b"x")]),
        ),
        (
            "nested dot-dot",
            raw_tar(&[("a/../../escape", tar::EntryType::Regular, "", b"x")]),
        ),
        (
            "write through symlink",
            raw_tar(&[
                ("link", tar::EntryType::Symlink, &o, b""),
                ("link/victim", tar::EntryType::Regular, "", b"pwned"),
            ]),
        ),
        (
            "hardlink to outside",
            raw_tar(&[("h", tar::EntryType::Link, "../victim", b"")]),
        ),
        (
            "hardlink through symlink",
            raw_tar(&[
                ("link", tar::EntryType::Symlink, &o, b""),
                ("h", tar::EntryType::Link, "link/victim", b""),
            ]),
        ),
    ];
    for (what, tar) in cases {
        let target = tempfile::tempdir().unwrap();
        let result = unpack_layer(
            tar.as_slice(),
            target.path(),
            &Digest::of(&tar),
            OverlayXattrs::Trusted,
        );
        assert!(result.is_err(), "{what}: should be refused");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "original", "{what}");
        assert!(!outside.path().join("escape").exists(), "{what}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1, "{what}");
    }
    // An absolute path is taken as relative to the target, like every OCI runtime does.
    let tar = raw_tar(&[(&format!("{o}/abs"), tar::EntryType::Regular, "", b"x")]);
    let target = tempfile::tempdir().unwrap();
    unpack_layer(
        tar.as_slice(),
        target.path(),
        &Digest::of(&tar),
        OverlayXattrs::Trusted,
    )
    .unwrap();
    assert!(!outside.path().join("abs").exists());
    assert!(
        target
            .path()
            .join(o.trim_start_matches('/'))
            .join("abs")
            .is_file()
    );
}

#[test]
fn gzip_layers_are_detected_by_content() {
    let tar = raw_tar(&[("f", tar::EntryType::Regular, "", b"hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let target = tempfile::tempdir().unwrap();
    let unpacked = unpack_layer(
        gz.as_slice(),
        target.path(),
        &Digest::of(&gz),
        OverlayXattrs::Trusted,
    )
    .unwrap();
    assert_eq!(unpacked.diff_id, Digest::of(&tar));
    assert_eq!(
        fs::read_to_string(target.path().join("f")).unwrap(),
        "hello"
    );
}
