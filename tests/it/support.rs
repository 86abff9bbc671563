//! Test support: a store per test, the `rbuild` binary, and a busybox base image made
//! locally from Debian's busybox-static (no network).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

/// Skips a test that needs root when not root; with `RBUILD_PRIVILEGED_TESTS=1` (set by
/// `.ci/run`) a skip is a failure.
macro_rules! require_privileges {
    () => {
        if !$crate::support::is_root() {
            if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some_and(|v| v == "1") {
                panic!("RBUILD_PRIVILEGED_TESTS=1 but the tests are not running as root");
            }
            eprintln!("skipped: this test needs root (namespaces, overlayfs, cgroups)");
            return;
        }
    };
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// A scratch directory with its own store, for one test.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

/// Set for every test's rbuild: images are plain manifests unless a test asks for
/// attestations, so that tests about the store, archives and registries read one image.
/// `supply_chain` (and the rootless tests, whose environment is cleared) build with the
/// default provenance.
pub const NO_DEFAULT_ATTESTATIONS: &str = "BUILDX_NO_DEFAULT_ATTESTATIONS";

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::Builder::new()
                .prefix("rbuild-it-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new environment with `busybox:latest` loaded through `rbuild load`.
    pub fn with_busybox() -> TestEnv {
        let env = TestEnv::new();
        let tar = env.path("busybox.tar");
        write_busybox_image(&tar);
        let out = env.rbuild(&["load", "-i", tar.to_str().unwrap()]);
        assert_success(&out);
        assert!(stdout(&out).contains("busybox:latest"), "{}", stdout(&out));
        env
    }

    /// `rbuild` in a network namespace of its own with loopback up, so that `rbuild run`'s
    /// default bridge (and whatever a RUN does with the network) never touches the
    /// machine's interfaces. The process is rbuild itself (unshare and sh exec). Without
    /// root (no namespaces, no bridge either), plain `rbuild`.
    pub fn command(&self) -> Command {
        let rbuild = env!("CARGO_BIN_EXE_rbuild");
        let mut cmd = if is_root() {
            let mut cmd = Command::new("unshare");
            cmd.args([
                "--net",
                "--",
                "/bin/sh",
                "-c",
                "/bin/busybox ip link set lo up && exec \"$0\" \"$@\"",
                rbuild,
            ]);
            cmd
        } else {
            Command::new(rbuild)
        };
        cmd.env("RBUILD_ROOT", self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .env(NO_DEFAULT_ATTESTATIONS, "1");
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `rbuild` in the machine's network namespace: for tests that talk to a registry on
    /// the machine's loopback (and run no `rbuild run` with a bridge).
    pub fn host_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.env("RBUILD_ROOT", self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .env(NO_DEFAULT_ATTESTATIONS, "1");
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn rbuild(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run rbuild")
    }

    /// Writes `files` (path → content) under `name/` and returns that directory.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        for (path, content) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Builds `context` (which holds a Dockerfile) as `tag`.
    pub fn build(&self, context: &Path, tag: &str) -> Output {
        self.rbuild(&[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            context.to_str().unwrap(),
        ])
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Text as words separated by single spaces, without the `│` of miette's wrapped lines:
/// for finding a phrase that the terminal width may have broken.
pub fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "rbuild failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

#[track_caller]
pub fn assert_failure(out: &Output) {
    assert!(
        !out.status.success(),
        "rbuild should have failed\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks every blob in the store against its name; returns how many there are.
pub fn verify_blobs(root: &Path) -> usize {
    let dir = root.join("blobs/sha256");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let bytes = fs::read(entry.path()).unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert_eq!(
            digest(&bytes),
            format!("sha256:{name}"),
            "blob {name} does not match its digest"
        );
        count += 1;
    }
    count
}

/// Writes an OCI image layout tar holding `busybox:latest` (see [`busybox_layer`]).
pub fn write_busybox_image(out: &Path) {
    write_image(out, "busybox:latest", &[busybox_layer()]);
}

/// The one layer (uncompressed) of the test busybox image: busybox-static with a symlink
/// per applet in `/bin`, `/etc/passwd` and `/etc/group` with root, `app` (1000) and
/// nobody, and the usual empty directories.
pub fn busybox_layer() -> Vec<u8> {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install Debian's busybox-static"
    );
    busybox_layer_of(Path::new(BUSYBOX))
}

/// [`busybox_layer`] with another busybox binary (another architecture's); the applets
/// are this machine's busybox's.
pub fn busybox_layer_of(binary: &Path) -> Vec<u8> {
    let applets = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets = String::from_utf8(applets.stdout).unwrap();

    let mut layer = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar_header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut header, path, std::io::empty())
            .unwrap();
    };
    for (path, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("home/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("usr/", 0o755),
        ("var/", 0o755),
    ] {
        dir(&mut layer, path, mode);
    }
    let busybox = fs::read(binary).unwrap();
    let mut h = tar_header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    layer
        .append_data(&mut h, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let mut h = tar_header(tar::EntryType::Symlink, 0o777, 0);
        layer
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        (
            "etc/group",
            "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n",
        ),
    ];
    for (path, content) in files {
        let mut h = tar_header(tar::EntryType::Regular, 0o644, content.len() as u64);
        layer.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    layer.into_inner().unwrap()
}

/// Writes an OCI layout directory holding one image index named `name` (its
/// `org.opencontainers.image.ref.name`) with a manifest per `(architecture, layer)`: an
/// image of that one layer (uncompressed) for `linux/<architecture>`, whose config sets
/// `ARCH=<architecture>`. `skopeo copy --all oci:DIR:NAME docker://…` pushes it.
pub fn write_index_layout(dir: &Path, name: &str, images: &[(&str, Vec<u8>)]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        (d, bytes.len())
    };
    let mut manifests = Vec::new();
    for (arch, layer) in images {
        let (layer_digest, layer_size) = put(layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": [format!("ARCH={arch}"), "PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .unwrap();
        let (config_digest, config_size) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        }))
        .unwrap();
        let (manifest_digest, manifest_size) = put(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .unwrap();
    let (index_digest, index_size) = put(&index);
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

/// Writes an OCI image layout tar named `name` whose layers are the given (uncompressed)
/// tars, gzip-compressed, with a busybox-like config.
pub fn write_image(out: &Path, name: &str, layers: &[Vec<u8>]) {
    write_layout(out, name, layers, true);
}

/// [`write_image`] with the layers stored as they are, uncompressed: the same image (the
/// same config, so the same IMAGE ID) under another manifest.
pub fn write_uncompressed_image(out: &Path, name: &str, layers: &[Vec<u8>]) {
    write_layout(out, name, layers, false);
}

fn write_layout(out: &Path, name: &str, layers: &[Vec<u8>], gzip: bool) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let compressed: Vec<Vec<u8>> = layers
        .iter()
        .map(|layer| {
            if !gzip {
                return layer.clone();
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(layer).unwrap();
            gz.finish().unwrap()
        })
        .collect();
    let layer_type = if gzip {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": "made by rbuild's tests"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": compressed.iter().map(|l| serde_json::json!({"mediaType": layer_type, "digest": digest(l), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    }))
    .unwrap();

    let mut blobs = BTreeMap::new();
    for blob in [&config, &manifest].into_iter().chain(&compressed) {
        blobs.insert(
            digest(blob).trim_start_matches("sha256:").to_owned(),
            blob.clone(),
        );
    }
    let mut archive = tar::Builder::new(fs::File::create(out).unwrap());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut h = tar_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        archive.append_data(&mut h, path, bytes).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for (hex, bytes) in &blobs {
        add(&format!("blobs/sha256/{hex}"), bytes);
    }
    archive.into_inner().unwrap().sync_all().unwrap();
}

/// A tar whose entries are written byte for byte, without the tar crate's path checks, for
/// hostile archives: (path, type, link target, content).
pub fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link, data) in entries {
        let mut h = tar_header(*kind, 0o644, data.len() as u64);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A tar header with the fields Go's archive/tar (and so BuildKit's tests) writes: owner
/// root, a fixed mtime.
pub fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_704_067_200);
    header
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Requires a tool the tests check images with (installed by `.ci/run`).
#[track_caller]
pub fn require_tool(program: &str) {
    assert!(
        have(program),
        "`{program}` is not installed: `.ci/run` installs it (apt-get install {program})"
    );
}

/// From a build's JSON progress (`--progress json`): the descriptions of the steps that
/// were CACHED and of those that ran, FROM lines left out.
pub fn steps_of(out: &Output) -> (Vec<String>, Vec<String>) {
    let events: Vec<serde_json::Value> = stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let description = |step: &serde_json::Value| -> String {
        events
            .iter()
            .find(|e| e["event"] == "step_started" && e["step"] == *step)
            .and_then(|e| e["description"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let of = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| description(&e["step"]))
            .filter(|d| !d.starts_with("FROM"))
            .collect()
    };
    (of("step_cached"), of("step_finished"))
}

/// Every regular file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A port of 127.0.0.1 that nothing listens on now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 20 s) until a server started as `child` accepts connections on `port` of
/// 127.0.0.1; false when it exited or never did.
pub fn wait_for_port(port: u16, child: &mut std::process::Child) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
