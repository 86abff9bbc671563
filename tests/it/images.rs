//! Saved archives are real OCI image layouts: skopeo and umoci accept them, and a file a
//! RUN deleted is gone from the unpacked filesystem.

use std::fs;
use std::process::Command;

use crate::support::*;

#[test]
fn saved_archive_is_accepted_by_skopeo_and_umoci() {
    require_privileges!();
    require_tool("skopeo");
    require_tool("umoci");
    let env = TestEnv::with_busybox();
    let dockerfile = "FROM busybox\n\
        RUN echo keep > /kept.txt && echo gone > /gone.txt\n\
        RUN rm /gone.txt /bin/vi\n\
        CMD [\"cat\", \"/kept.txt\"]\n";
    let ctx = env.context("saved", &[("Dockerfile", dockerfile)]);
    assert_success(&env.build(&ctx, "saved:v1"));
    let tar = env.path("saved.tar");
    assert_success(&env.rbuild(&["save", "saved:v1", "-o", tar.to_str().unwrap()]));

    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", tar.display())])
        .output()
        .unwrap();
    assert_success(&out);
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        3,
        "{inspected:#}"
    );
    assert_eq!(inspected["Os"], "linux");

    // umoci works on an OCI layout directory.
    let layout = env.path("layout");
    fs::create_dir(&layout).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "saved:v1"
    );
    let bundle = env.path("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--image",
            &format!("{}:saved:v1", layout.display()),
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert_success(&out);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("kept.txt")).unwrap(),
        "keep\n"
    );
    assert!(
        !rootfs.join("gone.txt").exists(),
        "a file made and deleted by RUN is gone"
    );
    assert!(
        !rootfs.join("bin/vi").exists(),
        "a base file deleted by RUN is gone"
    );
    assert!(rootfs.join("bin/sh").exists());

    // And back: a fresh store loads the archive and runs it.
    let other = TestEnv::new();
    let out = other.rbuild(&["load", "-i", tar.to_str().unwrap()]);
    assert_success(&out);
    assert!(stdout(&out).contains("saved:v1"));
    let out = other.rbuild(&["run", "saved:v1"]);
    assert_eq!(stdout(&out), "keep\n");
    let a = env.rbuild(&["inspect", "--manifest", "saved:v1"]);
    let b = other.rbuild(&["inspect", "--manifest", "saved:v1"]);
    assert_eq!(a.stdout, b.stdout, "the same manifest in both stores");
    verify_blobs(&other.root());
}

#[test]
fn load_with_tag_and_import_of_a_rootfs_tarball() {
    require_privileges!();
    let env = TestEnv::new();
    let tar = env.path("busybox.tar");
    write_busybox_image(&tar);
    let out = env.rbuild(&["load", "-i", tar.to_str().unwrap(), "-t", "mine/base:1"]);
    assert_success(&out);
    assert!(stdout(&out).contains("mine/base:1"));

    // import: a plain filesystem tarball becomes a one-layer image.
    let rootfs = env.path("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/echo")).unwrap();
    let rootfs_tar = env.path("rootfs.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&rootfs_tar)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.rbuild(&["import", rootfs_tar.to_str().unwrap(), "imported:1"]);
    assert_success(&out);
    let out = env.rbuild(&["run", "imported:1", "/bin/echo", "imported works"]);
    assert_eq!(stdout(&out), "imported works\n");

    let out = env.rbuild(&["load", "-i", env.path("nope.tar").to_str().unwrap()]);
    assert_failure(&out);
    assert!(stderr(&out).contains("nope.tar"), "{}", stderr(&out));
}

/// `rbuild images | head -1` and the like: a reader that has gone ends rbuild as SIGPIPE
/// ends any Unix tool, silently.
#[test]
fn a_closed_stdout_ends_rbuild_as_sigpipe_does() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    for args in [
        &["images"][..],
        &["history", "busybox"],
        &["inspect", "busybox"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env.command().args(args).stdout(writer).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

/// SIZE is one measure for every image: its layers uncompressed, as `docker images` shows
/// them. The store keeps a pulled or loaded layer gzip'd and a built one as a plain tar;
/// the same image (one IMAGE ID) must not show two sizes because of that.
#[test]
fn size_is_the_uncompressed_layers_whatever_the_copy_in_the_store() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // The same image again, its layer stored uncompressed: the same config, so the same
    // IMAGE ID, under another manifest.
    let plain = env.path("plain.tar");
    write_uncompressed_image(&plain, "busybox:plain", &[busybox_layer()]);
    assert_success(&env.rbuild(&["load", "-i", plain.to_str().unwrap()]));
    assert_success(&env.rbuild(&["tag", "busybox", "again"]));
    let ctx = env.context(
        "sized",
        &[("Dockerfile", "FROM busybox\nRUN echo built > /built.txt\n")],
    );
    assert_success(&env.build(&ctx, "built:1"));

    let out = env.rbuild(&["images", "--format", "json"]);
    assert_success(&out);
    let rows: std::collections::BTreeMap<String, (String, u64)> = stdout(&out)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                format!(
                    "{}:{}",
                    row["Repository"].as_str().unwrap(),
                    row["Tag"].as_str().unwrap()
                ),
                (
                    row["ID"].as_str().unwrap().to_owned(),
                    row["Size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let base = &rows["busybox:latest"];
    assert_eq!(
        rows["busybox:plain"].0, base.0,
        "one image, two manifests: {rows:?}"
    );
    assert_eq!(rows["busybox:plain"], *base, "{rows:?}");
    assert_eq!(rows["again:latest"], *base, "{rows:?}");
    assert_eq!(
        base.1,
        busybox_layer().len() as u64,
        "the layer's tar, uncompressed"
    );
    for name in ["busybox:latest", "built:1"] {
        assert_eq!(rows[name].1, unpacked_size(&env, name), "{name}: {rows:?}");
    }

    // The table shows the same SIZE for each name of the image, and says what it is.
    let table = stdout(&env.rbuild(&["images"]));
    let size_of = |name: &str| {
        let (repository, tag) = name.split_once(':').unwrap();
        table
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells[0] == repository && cells[1] == tag)
            .and_then(|cells| cells.last().map(|size| size.to_string()))
            .unwrap_or_else(|| panic!("{name} in {table}"))
    };
    assert_eq!(
        size_of("busybox:plain"),
        size_of("busybox:latest"),
        "{table}"
    );
    assert_eq!(
        size_of("again:latest"),
        size_of("busybox:latest"),
        "{table}"
    );
    let help = stdout(&env.rbuild(&["images", "--help"]));
    assert!(
        help.contains("SIZE") && help.contains("uncompressed"),
        "{help}"
    );
}

/// What the image's layers take uncompressed, from an archive `rbuild save` writes: each
/// layer blob gunzipped (when it is compressed) and counted.
fn unpacked_size(env: &TestEnv, name: &str) -> u64 {
    use std::io::Read;
    let tar = env.path(&format!("{}.tar", name.replace(':', "-")));
    assert_success(&env.rbuild(&["save", name, "-o", tar.to_str().unwrap()]));
    let mut blobs = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(fs::File::open(&tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    let json = |path: &str| -> serde_json::Value { serde_json::from_slice(&blobs[path]).unwrap() };
    let blob = |digest: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            digest.as_str().unwrap().trim_start_matches("sha256:")
        )
    };
    let manifest = json(&blob(&json("index.json")["manifests"][0]["digest"]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let bytes = &blobs[&blob(&layer["digest"])];
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(bytes.as_slice())
                    .read_to_end(&mut tar)
                    .unwrap();
                tar.len() as u64
            } else {
                bytes.len() as u64
            }
        })
        .sum()
}

/// `rbuild history`'s columns stay in line whatever their values' lengths: "Less than a
/// minute ago" and the busybox layer's older date, a short step and a truncated long one.
#[test]
fn history_columns_line_up() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "history",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN echo a long step that is cut in the history > /long.txt && echo done\n\
             RUN true\n",
        )],
    );
    assert_success(&env.build(&ctx, "hist:1"));
    let out = env.rbuild(&["history", "hist:1"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header = text.lines().next().unwrap();
    // Character offsets of each column's start (and of SIZE's end: it is right-aligned).
    let at = |title: &str| header[..header.find(title).unwrap()].chars().count();
    let created_by = at("CREATED BY");
    let size_end = at("SIZE") + "SIZE".len();
    let comment = at("COMMENT");
    for line in &lines[1..] {
        let row: String = line.iter().collect();
        assert!(
            line[created_by - 1] == ' ' && line[created_by] != ' ',
            "CREATED BY starts at {created_by}:\n{text}"
        );
        assert!(
            line[size_end - 1] != ' ' && line.get(size_end).is_none_or(|c| *c == ' '),
            "SIZE ends at {size_end} in `{row}`:\n{text}"
        );
        assert!(
            line.len() <= size_end || (line[comment - 1] == ' ' && line[comment] != ' '),
            "COMMENT starts at {comment} in `{row}`:\n{text}"
        );
    }
    assert!(text.contains("Less than a minute ago"), "{text}");
    let created: std::collections::BTreeSet<usize> = lines[1..]
        .iter()
        .map(|line| {
            line[..created_by]
                .iter()
                .collect::<String>()
                .trim_end()
                .len()
        })
        .collect();
    assert!(
        created.len() > 1,
        "CREATED values of several lengths:\n{text}"
    );
    assert!(text.contains('…'), "a long step is cut:\n{text}");
}
