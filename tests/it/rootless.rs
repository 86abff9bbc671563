//! rbuild as an ordinary user (rootless): the main scenarios of the suite run as the test
//! user `rbuild-test` (subordinate ids) in its own user namespace, the layers keep container
//! ids, the image is the same as root's, and what cannot work without root or without
//! subordinate ids says so.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::registry_support::{TestRegistry, skopeo};
use crate::rootless_support::*;
use crate::support::*;

/// Every image feature that depends on owners and overlay's encoding.
const OWNERS: &str = "FROM busybox\n\
    COPY --chown=1000:1000 owned.txt /data/owned.txt\n\
    ADD foreign.tar /data/foreign/\n\
    RUN mkdir -p /data/run && echo made > /data/run/f && chown 2000:3000 /data/run/f \
        && chmod 4755 /data/run/f && ln /data/run/f /data/run/link\n\
    RUN rm /bin/vi && rm -rf /home && mkdir /home && echo new > /home/new\n\
    RUN --mount=type=secret,id=token --mount=type=cache,target=/cache \
        test \"$(cat /run/secrets/token)\" = s3cret && echo kept > /cache/x\n\
    USER app\n\
    RUN id -u > /tmp/uid\n";

/// A tar with entries owned by ids no test user has: 123:456, and a directory of 789.
fn foreign_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o750);
    dir.set_uid(789);
    dir.set_gid(789);
    dir.set_mtime(1_700_000_000);
    tar.append_data(&mut dir, "sub/", std::io::empty()).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o640);
    file.set_uid(123);
    file.set_gid(456);
    file.set_size(3);
    file.set_mtime(1_700_000_000);
    tar.append_data(&mut file, "sub/f", &b"abc"[..]).unwrap();
    tar.into_inner().unwrap()
}

fn owners_context(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("Dockerfile"), OWNERS).unwrap();
    fs::write(dir.join("owned.txt"), "mine\n").unwrap();
    fs::write(dir.join("foreign.tar"), foreign_tar()).unwrap();
    fs::write(dir.join("token.txt"), "s3cret").unwrap();
}

/// One entry of a layer: owner, mode, type and link target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uid: u64,
    gid: u64,
    mode: u32,
    kind: tar::EntryType,
    link: Option<String>,
}

/// The entries of every layer of the image in the OCI archive `archive`, by path (later
/// layers win), read with the tar crate from the blobs themselves.
fn layer_entries(archive: &Path) -> BTreeMap<String, Entry> {
    let mut blobs = BTreeMap::new();
    let mut outer = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    let json = |path: &str| -> serde_json::Value { serde_json::from_slice(&blobs[path]).unwrap() };
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let index = json("index.json");
    let mut manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    // Built with the default provenance: the image's index, its first entry the image.
    if manifest["manifests"].is_array() {
        manifest = json(&blob(manifest["manifests"][0]["digest"].as_str().unwrap()));
    }
    let mut entries = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let bytes = &blobs[&blob(layer["digest"].as_str().unwrap())];
        let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        } else {
            Box::new(bytes.as_slice())
        };
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            let path = entry.path().unwrap().display().to_string();
            entries.insert(
                path.trim_end_matches('/').to_owned(),
                Entry {
                    uid: header.uid().unwrap(),
                    gid: header.gid().unwrap(),
                    mode: header.mode().unwrap(),
                    kind: header.entry_type(),
                    link: entry
                        .link_name()
                        .unwrap()
                        .map(|link| link.display().to_string()),
                },
            );
        }
    }
    entries
}

#[test]
fn a_user_builds_runs_and_saves_with_container_ids_and_gets_roots_image() {
    let account = require_user!(USER);
    require_tool("skopeo");
    require_tool("umoci");
    let user = UserEnv::with_busybox(&account);
    let ctx = user.path("owners");
    owners_context(&ctx);
    user.give(&ctx);
    let build = |command: &mut Command, ctx: &Path| {
        command
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", "owners:1"])
            .args(["--secret", "id=token,src=token.txt"])
            .arg(ctx)
            .current_dir(ctx)
            .output()
            .unwrap()
    };
    let out = build(&mut user.command(), &ctx);
    let rootless_id = image_id(&out);

    // What the image's processes see.
    let out = user.rbuild(&[
        "run",
        "--user",
        "0",
        "owners:1",
        "stat",
        "-c",
        "%n %u:%g %a",
        "/data/owned.txt",
        "/data/foreign/sub",
        "/data/foreign/sub/f",
        "/data/run/f",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "/data/owned.txt 1000:1000 644\n/data/foreign/sub 789:789 750\n\
         /data/foreign/sub/f 123:456 640\n/data/run/f 2000:3000 4755\n"
    );
    let out = user.rbuild(&["run", "owners:1", "cat", "/tmp/uid"]);
    assert_eq!(stdout(&out), "1000\n");

    // The layers hold container ids, OCI whiteouts, an opaque marker and a hard link; no
    // secret and no cache mount content.
    let archive = user.path("owners.tar");
    let out = user.rbuild(&["save", "owners:1", "-o", archive.to_str().unwrap()]);
    assert_success(&out);
    let entries = layer_entries(&archive);
    let entry = |path: &str| {
        entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in a layer: {:?}", entries.keys()))
    };
    assert_eq!(
        (entry("data/owned.txt").uid, entry("data/owned.txt").gid),
        (1000, 1000)
    );
    assert_eq!(
        (
            entry("data/foreign/sub/f").uid,
            entry("data/foreign/sub/f").gid
        ),
        (123, 456)
    );
    assert_eq!(
        (
            entry("data/foreign/sub").uid,
            entry("data/foreign/sub").mode
        ),
        (789, 0o750)
    );
    let made = entry("data/run/f");
    assert_eq!((made.uid, made.gid, made.mode), (2000, 3000, 0o4755));
    let link = entry("data/run/link");
    assert_eq!(link.kind, tar::EntryType::Link);
    assert_eq!(link.link.as_deref(), Some("data/run/f"));
    assert_eq!(entry("bin/.wh.vi").kind, tar::EntryType::Regular);
    assert_eq!(entry("home/.wh..wh..opq").kind, tar::EntryType::Regular);
    assert_eq!(entry("home/new").uid, 0);
    assert!(
        !entries
            .keys()
            .any(|path| path.starts_with("cache/") || path.contains("secrets"))
    );

    // Real OCI: skopeo reads it, umoci unpacks it with the same owners.
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert_success(&out);
    // The image is an index (the image and its provenance), which umoci does not read:
    // skopeo copies this platform's image to a layout of its own, as a user would.
    let layout = user.path("layout");
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:owners:1", layout.display()),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let bundle = user.path("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--image",
            &format!("{}:owners:1", layout.display()),
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert_success(&out);
    let meta = fs::metadata(bundle.join("rootfs/data/run/f")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (2000, 3000, 0o4755)
    );
    assert!(!bundle.join("rootfs/bin/vi").exists());

    // Root builds the same Dockerfile into the same image, bit for bit.
    let root = TestEnv::with_busybox();
    let root_ctx = root.path("owners");
    owners_context(&root_ctx);
    let out = build(&mut root.command(), &root_ctx);
    assert_eq!(image_id(&out), rootless_id, "{}", stderr(&out));

    // Export and prune as the user; the user's store passes its own check.
    let exported = user.path("rootfs.tar");
    assert_success(&user.rbuild(&["export", "owners:1", "-o", exported.to_str().unwrap()]));
    let mut tar = tar::Archive::new(fs::File::open(&exported).unwrap());
    let made = tar
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap())
        .find(|entry| entry.path().unwrap() == Path::new("data/run/f"))
        .expect("data/run/f in the export");
    assert_eq!(
        (made.header().uid().unwrap(), made.header().gid().unwrap()),
        (2000, 3000)
    );
    assert_success(&user.rbuild(&["rmi", "owners:1"]));
    assert_success(&user.rbuild(&["prune", "--all"]));
    let out = user.rbuild(&["store", "verify"]);
    assert_success(&out);
}

#[test]
fn a_user_pushes_pulls_and_shares_a_registry_cache() {
    let account = require_user!(USER);
    require_tool("skopeo");
    let registry = TestRegistry::start();
    let dockerfile = "FROM busybox\nRUN echo compiled > /built\nCOPY note.txt /note.txt\n";
    let first = UserEnv::with_busybox(&account);
    let ctx = first.context("ctx", &[("Dockerfile", dockerfile), ("note.txt", "hi\n")]);
    let image = registry.reference("rootless/app:1");
    let cache = registry.reference("rootless/cache:1");
    let out = first.rbuild(&[
        "build",
        "--progress",
        "plain",
        "-t",
        &image,
        "--push",
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    assert_success(&inspected);

    // The same user's second store (another HOME): pulls and runs, and builds from the cache.
    let second = UserEnv::with_busybox(&account);
    assert_success(&second.rbuild(&["pull", &image]));
    let out = second.rbuild(&["run", &image, "cat", "/built", "/note.txt"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "compiled\nhi\n");
    let ctx = second.context("ctx", &[("Dockerfile", dockerfile), ("note.txt", "hi\n")]);
    let out = second.rbuild(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        "--cache-from",
        &format!("type=registry,ref={cache}"),
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("0 steps run, 2 cached"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_subordinate_ids_root_owned_images_work_and_other_owners_fail_clearly() {
    let account = require_user!(USER_WITHOUT_SUBIDS);
    let user = UserEnv::with_busybox(&account);
    let ctx = user.context(
        "ok",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN echo fine > /fine\nCOPY a.txt /a.txt\n",
            ),
            ("a.txt", "a"),
        ],
    );
    assert_success(&user.build(&ctx, "ok:1"));
    let out = user.rbuild(&["run", "ok:1", "cat", "/fine"]);
    assert_eq!(stdout(&out), "fine\n");

    // COPY --chown to an id the namespace lacks: which file, which id, how to get a range.
    let ctx = user.context(
        "chown",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY --chown=1000:1000 a.txt /a.txt\n",
            ),
            ("a.txt", "a"),
        ],
    );
    let out = user.build(&ctx, "chown:1");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("`/a.txt` is owned by uid 1000 and gid 1000"),
        "{err}"
    );
    assert!(err.contains("usermod --add-subuids"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");

    // RUN chown: the program's own error, and the way out.
    let ctx = user.context(
        "run",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN touch /x && chown 1000 /x\n",
        )],
    );
    let out = user.build(&ctx, "run:1");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Invalid argument"), "{err}");
    assert!(err.contains("you have no subordinate ids"), "{err}");

    // A layer with another owner cannot be unpacked: never a file with a wrong owner.
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(1000);
    header.set_gid(1000);
    header.set_size(1);
    layer.append_data(&mut header, "owned", &b"x"[..]).unwrap();
    let archive = user.path("owned.tar");
    write_image(&archive, "owned:1", &[layer.into_inner().unwrap()]);
    user.give(&archive);
    assert_success(&user.rbuild(&["load", "-i", archive.to_str().unwrap()]));
    let out = user.rbuild(&["run", "owned:1", "true"]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("`owned` is owned by uid 1000 and gid 1000"),
        "{err}"
    );
    assert!(err.contains("no subordinate ids"), "{err}");
}

#[test]
fn without_newuidmap_the_namespace_has_one_id_and_says_why() {
    let account = require_user!(USER);
    // A PATH without the setuid helpers: as if `uidmap` were not installed.
    let user = UserEnv::new(&account);
    let without_helpers = |args: &[&str]| {
        user.command()
            .env("PATH", "/nonexistent")
            .args(args)
            .output()
            .unwrap()
    };
    let out = without_helpers(&["unshare", "/bin/cat", "/proc/self/uid_map"]);
    assert_success(&out);
    let map: Vec<String> = stdout(&out).split_whitespace().map(str::to_owned).collect();
    assert_eq!(map, ["0", &account.uid.to_string(), "1"]);

    let tar = user.path("busybox.tar");
    write_busybox_image(&tar);
    user.give(&tar);
    assert_success(&without_helpers(&["load", "-i", tar.to_str().unwrap()]));
    let ctx = user.context(
        "chown",
        &[
            ("Dockerfile", "FROM busybox\nCOPY --chown=7:7 a /a\n"),
            ("a", "a"),
        ],
    );
    let out = without_helpers(&["build", "-t", "x", ctx.to_str().unwrap()]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("`/a` is owned by uid 7 and gid 7"), "{err}");
    assert!(err.contains("`newuidmap` is not installed"), "{err}");
    assert!(err.contains("apt-get install uidmap"), "{err}");
}

#[test]
fn stores_belong_to_one_user_and_hide_subordinate_owners() {
    let account = require_user!(USER);
    let other = require_user!(USER_WITHOUT_SUBIDS);
    let user = UserEnv::with_busybox(&account);
    use std::os::unix::fs::MetadataExt;
    let store = user.store();
    let meta = fs::metadata(&store).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (account.uid, 0o700));
    // The host user cannot reach files of subordinate ids (a setuid one would run as that
    // id): the directories that hold them belong to container uid 1.
    let out = user.as_user("ls", &[store.join("snapshots").to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert_success(&user.as_user("ls", &[store.to_str().unwrap()]));
    // Through rbuild (its namespace) they are there.
    assert_success(&user.rbuild(&["run", "busybox", "true"]));
    let out = user.rbuild(&["unshare", "ls", store.join("snapshots").to_str().unwrap()]);
    assert_success(&out);
    assert!(!stdout(&out).is_empty());

    // Root's store is root's: a user pointing RBUILD_ROOT at it is refused before anything
    // changes in it.
    let root = TestEnv::with_busybox();
    let out = user
        .command()
        .env("RBUILD_ROOT", root.root())
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("belongs to `root` (uid 0)"), "{err}");
    assert!(err.contains("unset `RBUILD_ROOT`"), "{err}");
    // And the user's store is not root's.
    let out = root
        .command()
        .env("COLUMNS", "1000")
        .env("RBUILD_ROOT", &store)
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains(&format!("belongs to `{USER}`")),
        "{}",
        stderr(&out)
    );
    // Nor another user's.
    let stranger = UserEnv::new(&other);
    let out = stranger
        .command()
        .env("RBUILD_ROOT", &store)
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains(&format!("belongs to `{USER}`")),
        "{}",
        stderr(&out)
    );
    // A store where the user cannot write: one line, and what to do.
    let out = user
        .command()
        .env("RBUILD_ROOT", "/var/lib/rbuild-of-nobody/store")
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        err.contains("choose a directory you can write with `RBUILD_ROOT`"),
        "{err}"
    );
    assert!(
        !Path::new("/var/lib/rbuild-of-nobody").exists(),
        "nothing half-made"
    );
    // The store's mapping is its own: the same user with another mapping is refused.
    let out = user
        .command()
        .env("PATH", "/nonexistent")
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("holds files with a user namespace's"), "{err}");
    assert!(err.contains("uids 1–65536 = 300000–365535"), "{err}");
}

#[test]
fn limits_and_networks_as_a_user() {
    let account = require_user!(USER);
    let user = UserEnv::with_busybox(&account);
    let ctx = user.context("ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let cgroup_v1 = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.contains(" - cgroup ") && line.contains("memory"));
    if cgroup_v1 {
        // cgroup v1 is root's: a limit cannot be kept, and rbuild says so before running.
        let out = user.rbuild(&["build", "--memory", "64m", "-t", "x", ctx.to_str().unwrap()]);
        assert_failure(&out);
        let err = flat(&stderr(&out));
        assert!(
            err.contains("a memory limit needs a cgroup rbuild can write"),
            "{err}"
        );
        assert!(err.contains("cgroup v1"), "{err}");
        assert!(!err.contains("#1"), "nothing ran: {err}");
        let out = user.rbuild(&["run", "--pids-limit", "10", "busybox", "true"]);
        assert_failure(&out);
        assert!(
            flat(&stderr(&out)).contains("a pids limit needs a cgroup"),
            "{}",
            stderr(&out)
        );
    }
    // Without limits, builds run.
    assert_success(&user.build(&ctx, "x:1"));

    // `none`: only loopback, in a network namespace of the user's namespace.
    let out = user.rbuild(&[
        "run",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "lo\n");
    let ctx = user.context(
        "none",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --network=none ls /sys/class/net > /nets\n",
        )],
    );
    assert_success(&user.build(&ctx, "none:1"));
    assert_eq!(
        stdout(&user.rbuild(&["run", "none:1", "cat", "/nets"])),
        "lo\n"
    );

    // The default is the host's network: a port on the host's loopback answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"from the host\n").unwrap();
    });
    let out = user.rbuild(&["run", "busybox", "nc", "127.0.0.1", &port.to_string()]);
    assert_success(&out);
    assert_eq!(stdout(&out), "from the host\n");
    server.join().unwrap();

    // No bridge for a user: refused with what to use instead.
    for args in [
        &["run", "--network", "bridge", "busybox", "true"][..],
        &["run", "-p", "8080:80", "busybox", "true"],
    ] {
        let out = user.rbuild(args);
        assert_failure(&out);
        let err = flat(&stderr(&out));
        assert!(
            err.contains("needs the bridge network, which is not available"),
            "{err}"
        );
        assert!(err.contains("--network host"), "{err}");
    }
}

/// The files the rbuild binary needs in an image: itself and the shared libraries `ldd`
/// lists, at their paths, under `rootfs`.
fn copy_rbuild_into(rootfs: &Path) {
    let binary = rbuild_binary();
    let mut files = vec![binary.to_path_buf()];
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    assert_success(&ldd);
    for line in stdout(&ldd).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push(path.into());
        }
    }
    for file in files {
        let target = if file == binary {
            rootfs.join("usr/local/bin/rbuild")
        } else {
            rootfs.join(file.strip_prefix("/").unwrap())
        };
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&file, &target).unwrap();
    }
}

#[test]
fn rbuild_builds_inside_an_unprivileged_container() {
    require_privileges!();
    // The container: busybox, rbuild, a busybox image to load, a context; uid 1000, no
    // capabilities, rbuild's own sandbox with one relaxation: no seccomp profile, so that
    // user namespaces can be made (as Kubernetes' `seccompProfile: Unconfined`).
    let outer = TestEnv::with_busybox();
    let ctx = outer.path("outer");
    copy_rbuild_into(&ctx.join("rootfs"));
    fs::create_dir_all(ctx.join("rootfs/images")).unwrap();
    write_busybox_image(&ctx.join("rootfs/images/busybox.tar"));
    fs::create_dir_all(ctx.join("home/app/ctx")).unwrap();
    fs::write(
        ctx.join("home/app/ctx/Dockerfile"),
        "FROM busybox\nRUN echo built inside > /x && ls /sys/class/net > /nets\n",
    )
    .unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY rootfs/ /\nCOPY --chown=1000:1000 home/ /home/\n\
         USER 1000:1000\nENV HOME=/home/app\n",
    )
    .unwrap();
    assert_success(&outer.build(&ctx, "nested:1"));
    // The inner store on a volume of the container's user, as an emptyDir in a pod.
    let store = outer.path("inner-store");
    fs::create_dir(&store).unwrap();
    std::os::unix::fs::chown(&store, Some(1000), Some(1000)).unwrap();
    let volume = format!("{}:/store", store.display());
    let script = "id -u && rbuild load -i /images/busybox.tar >/dev/null \
        && rbuild build --progress quiet -t inner /home/app/ctx >/dev/null \
        && rbuild run inner cat /x && rbuild run --network none inner cat /nets";
    let out = outer.rbuild(&[
        "run",
        "--network",
        "host",
        "--security-opt",
        "seccomp=unconfined",
        "-v",
        &volume,
        "-e",
        "RBUILD_ROOT=/store",
        "-e",
        "COLUMNS=1000",
        "nested:1",
        "sh",
        "-c",
        script,
    ]);
    assert_success(&out);
    assert_eq!(stdout(&out), "1000\nbuilt inside\nlo\n", "{}", stderr(&out));

    // Without a volume the store is on the container's own overlay, which overlayfs cannot
    // write over: rbuild copies instead, and says why.
    let script = "rbuild load -i /images/busybox.tar >/dev/null \
        && rbuild build --progress plain -t inner /home/app/ctx >/dev/null 2>build.log; \
        cat build.log >&2; rbuild run inner cat /x && rbuild info";
    let out = outer.rbuild(&[
        "run",
        "--network",
        "host",
        "--security-opt",
        "seccomp=unconfined",
        "-w",
        "/home/app",
        "-e",
        "COLUMNS=1000",
        "nested:1",
        "sh",
        "-c",
        script,
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("built inside\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("snapshotter  copy (slower: each step copies its filesystem): the store is on an overlay"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("note: layers are copied instead of mounted with overlayfs"),
        "{}",
        stderr(&out)
    );

    // With the default seccomp profile no user namespace can be made: one line says so,
    // and what the cluster must allow.
    let out = outer.rbuild(&[
        "run",
        "--network",
        "host",
        "-v",
        &volume,
        "-e",
        "RBUILD_ROOT=/store",
        "-e",
        "COLUMNS=1000",
        "nested:1",
        "rbuild",
        "images",
    ]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("cannot run rbuild as uid 1000: the kernel refused a new user namespace"),
        "{err}"
    );
    assert!(err.contains("seccompProfile: {type: Unconfined}"), "{err}");
}

#[test]
fn root_of_a_namespace_it_did_not_make_uses_it_as_it_is() {
    require_privileges!();
    // As in a pod with user namespaces (`hostUsers: false`) and CAP_SYS_ADMIN inside it:
    // rbuild is root of a namespace someone else made, and uses it as it is.
    let env = TestEnv::with_busybox();
    let other = TestEnv::new();
    let tar = other.path("busybox.tar");
    write_busybox_image(&tar);
    let ctx = other.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo inside > /made\n")],
    );
    let script = format!(
        "{rbuild} load -i {tar} >/dev/null && {rbuild} info && {rbuild} build --progress quiet -t made {ctx} >/dev/null && {rbuild} run made cat /made",
        rbuild = env!("CARGO_BIN_EXE_rbuild"),
        tar = tar.display(),
        ctx = ctx.display(),
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--", "sh", "-c", &script])
        .env("RBUILD_ROOT", other.root())
        .env("HOME", other.path("home"))
        .output()
        .unwrap();
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("mode         root of a user namespace (a container's)"),
        "{text}"
    );
    assert!(
        text.contains("snapshotter  overlayfs (userxattr)"),
        "{text}"
    );
    assert!(text.ends_with("inside\n"), "{text}");
    // That store is the namespace's: root outside it is refused.
    let out = env
        .command()
        .env("RBUILD_ROOT", other.root())
        .args(["images"])
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("holds files with a user namespace's (uid 0 = 0; gid 0 = 0) ids, and this rbuild runs with root's (no user namespace) ids"),
        "{err}"
    );
    assert!(err.contains("it is a store of rootless rbuild"), "{err}");
}

#[test]
fn device_nodes_in_a_users_layers_are_skipped_under_dev_and_refused_elsewhere() {
    let account = require_user!(USER);
    let user = UserEnv::new(&account);
    let layer = |path: &str| {
        let mut tar = tar::Builder::new(Vec::new());
        for dir in ["bin/", "dev/", "opt/"] {
            let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, dir, std::io::empty()).unwrap();
        }
        let busybox = fs::read(BUSYBOX).unwrap();
        let mut file = tar_header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
        tar.append_data(&mut file, "bin/busybox", busybox.as_slice())
            .unwrap();
        let mut node = tar_header(tar::EntryType::Char, 0o666, 0);
        node.set_device_major(1).unwrap();
        node.set_device_minor(3).unwrap();
        tar.append_data(&mut node, path, std::io::empty()).unwrap();
        tar.into_inner().unwrap()
    };
    // A root filesystem with /dev's nodes (as debootstrap makes): they are not needed, the
    // sandbox's /dev is its own.
    let archive = user.path("with-dev.tar");
    write_image(&archive, "with-dev:1", &[layer("dev/null")]);
    user.give(&archive);
    assert_success(&user.rbuild(&["load", "-i", archive.to_str().unwrap()]));
    let out = user.rbuild(&["run", "with-dev:1", "/bin/busybox", "echo", "runs"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "runs\n");
    // Anywhere else it would be part of what the image gives: refused, and said so.
    let archive = user.path("with-node.tar");
    write_image(&archive, "with-node:1", &[layer("opt/null")]);
    user.give(&archive);
    assert_success(&user.rbuild(&["load", "-i", archive.to_str().unwrap()]));
    let out = user.rbuild(&["run", "with-node:1", "/bin/busybox", "true"]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains(
            "`opt/null` is a device node, and a user namespace cannot create device nodes"
        ),
        "{err}"
    );
    assert!(err.contains("device nodes need root"), "{err}");
}
