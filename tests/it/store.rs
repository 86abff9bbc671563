//! The store under the user's commands: disk usage, GC, verify and repair, archives in both
//! formats, concurrent loads, crashes at random moments and a full disk.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Builds two images on the same base, so layers are shared.
fn two_images(env: &TestEnv) {
    for (name, content) in [("one", "first"), ("two", "second")] {
        let dockerfile = format!("FROM busybox\nRUN echo {content} > /{name}.txt\n");
        let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
        assert_success(&env.build(&ctx, &format!("{name}:1")));
    }
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn du_matches_du_s_and_counts_shared_layers_once() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    two_images(&env);
    let usage = json(&env.rbuild(&["du", "--format", "json"]));
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(env.root())
        .output()
        .unwrap();
    let du_s: u64 = stdout(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let total = usage["Total"].as_u64().unwrap();
    let diff = (total as f64 - du_s as f64).abs() / du_s as f64;
    assert!(diff < 0.03, "rbuild du {total} vs du -s {du_s}");

    let images = usage["Images"].as_array().unwrap();
    let size = |name: &str| {
        let image = images.iter().find(|i| i["Name"] == name).unwrap();
        (
            image["Size"].as_u64().unwrap(),
            image["SharedSize"].as_u64().unwrap(),
        )
    };
    let (busybox, busybox_shared) = size("busybox:latest");
    let (one, one_shared) = size("one:1");
    // busybox's layer (blob and snapshot) is shared; its manifest and config are its own.
    assert!(
        busybox > busybox_shared && busybox - busybox_shared <= 4 * 4096,
        "{busybox} {busybox_shared}"
    );
    assert!(
        one > one_shared && one_shared >= busybox_shared - 8192,
        "one:1 = busybox + its own layer"
    );
    // Shared layers count once: the snapshots and blobs together stay below the sum of the
    // images' sizes.
    let sum: u64 = images.iter().map(|i| i["Size"].as_u64().unwrap()).sum();
    let objects =
        usage["Blobs"]["Size"].as_u64().unwrap() + usage["Snapshots"]["Size"].as_u64().unwrap();
    assert!(objects < sum, "{objects} < {sum}");
}

#[test]
fn rmi_and_prune_give_space_back_and_keep_what_is_used() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    two_images(&env);
    let before = json(&env.rbuild(&["du", "--format", "json"]))["Blobs"]["Count"]
        .as_u64()
        .unwrap();
    assert_success(&env.rbuild(&["tag", "one:1", "one:again"]));
    let out = env.rbuild(&["rmi", "one:1"]);
    assert_success(&out);
    assert_eq!(stdout(&out), "Untagged: one:1\n");
    // Still named one:again: nothing is freed.
    let after = json(&env.rbuild(&["du", "--format", "json"]))["Blobs"]["Count"]
        .as_u64()
        .unwrap();
    assert_eq!(before, after);
    assert_success(&env.rbuild(&["rmi", "one:again"]));
    let after = json(&env.rbuild(&["du", "--format", "json"]))["Blobs"]["Count"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before - 2, "one:1's config and manifest are gone");
    let snapshots = |env: &TestEnv| {
        json(&env.rbuild(&["du", "--format", "json"]))["Snapshots"]["Count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(snapshots(&env), 3, "one:1's step stays in the build cache");
    let out = env.build(&env.path("one"), "one:1");
    assert!(stderr(&out).contains("CACHED"), "{}", stderr(&out));
    assert_success(&env.rbuild(&["rmi", "one:1"]));

    // prune drops cache no image uses: one:1's step; two:1 and busybox stay.
    let out = env.rbuild(&["prune"]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("removed 1 cache record(s), 0 blob(s) and 1 snapshot(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(snapshots(&env), 2);
    let out = env.rbuild(&["run", "two:1", "cat", "/two.txt"]);
    assert_eq!(stdout(&out), "second\n");
    let out = env.build(&env.path("two"), "two:1");
    assert!(
        stderr(&out).contains("CACHED"),
        "two:1's cache stays: {}",
        stderr(&out)
    );
    // --all drops it too; the image itself stays. (Whether the rebuild gave two:1 a new
    // config, and so left the old one to remove, depends on the clock's second.)
    let out = env.rbuild(&["prune", "--all"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("removed 1 cache record(s), ")
            && text.contains(" blob(s) and 0 snapshot(s)"),
        "{text}"
    );
    let out = env.build(&env.path("two"), "two:1");
    assert!(!stderr(&out).contains("CACHED"), "{}", stderr(&out));
    let out = env.rbuild(&["rmi", "nothere"]);
    assert_failure(&out);
}

#[test]
fn verify_names_corrupt_blobs_and_repair_lets_builds_recreate_them() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    two_images(&env);
    let out = env.rbuild(&["store", "verify"]);
    assert_success(&out);
    assert!(stdout(&out).contains("no problems found"));

    // Corrupt one:1's config blob, and two:1's own layer, which is kept only as its
    // snapshot directory.
    let manifest = json(&env.rbuild(&["inspect", "--manifest", "one:1"]));
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let path = env.root().join("blobs/sha256").join(&config);
    let mut perms = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, "bit rot").unwrap();
    let two_layer = json(&env.rbuild(&["inspect", "--manifest", "two:1"]))["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot_file = fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path().join("fs/two.txt"))
        .find(|p| p.is_file())
        .expect("two:1's snapshot");
    fs::write(&snapshot_file, "changed behind rbuild's back\n").unwrap();

    let out = env.rbuild(&["store", "verify"]);
    assert_failure(&out);
    let report = stdout(&out);
    assert!(
        report.contains(&format!("corrupt blob sha256:{config}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("corrupt blob {two_layer}")),
        "{report}"
    );
    assert!(
        report.contains("broken image one:1") && report.contains("broken image two:1"),
        "{report}"
    );
    assert!(!report.contains("broken image busybox"), "{report}");
    let out = env.rbuild(&["save", "one:1", "-o", env.path("one.tar").to_str().unwrap()]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains(&config),
        "save refuses corrupt content: {}",
        stderr(&out)
    );
    let out = env.rbuild(&["save", "two:1", "-o", env.path("two.tar").to_str().unwrap()]);
    assert_failure(&out);
    assert!(!env.path("two.tar").exists(), "no partial archive is left");

    assert_success(&env.rbuild(&["store", "verify", "--repair"]));
    assert_success(&env.rbuild(&["store", "verify"]));
    assert!(!stdout(&env.rbuild(&["images"])).contains("one "));
    assert_success(&env.build(&env.path("one"), "one:1"));
    assert_eq!(
        stdout(&env.rbuild(&["run", "one:1", "cat", "/one.txt"])),
        "first\n"
    );
}

/// `save -o` writes into a FIFO or a device the user names and never replaces it (as it
/// once replaced `/dev/null`), follows a symlink to the file it names, and with `-o -` or
/// no `-o` writes to standard output.
#[test]
fn save_writes_into_fifos_follows_symlinks_and_streams_to_stdout() {
    use std::os::unix::fs::FileTypeExt;
    require_privileges!();
    let env = TestEnv::with_busybox();
    let plain = env.path("plain.tar");
    assert_success(&env.rbuild(&["save", "busybox", "-o", plain.to_str().unwrap()]));
    let reference = fs::read(&plain).unwrap();
    assert!(reference.len() > 1024);

    let fifo = env.path("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let received = env.path("received.tar");
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg("cat \"$0\" > \"$1\"")
        .arg(&fifo)
        .arg(&received)
        .spawn()
        .unwrap();
    assert_success(&env.rbuild(&["save", "busybox", "-o", fifo.to_str().unwrap()]));
    assert!(reader.wait().unwrap().success());
    assert!(
        fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO is still a FIFO"
    );
    assert_eq!(fs::read(&received).unwrap(), reference);

    let elsewhere = env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("target.tar"), "old").unwrap();
    let link = env.path("link.tar");
    std::os::unix::fs::symlink(elsewhere.join("target.tar"), &link).unwrap();
    assert_success(&env.rbuild(&["save", "busybox", "-o", link.to_str().unwrap()]));
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs::read(elsewhere.join("target.tar")).unwrap(), reference);
    // A link to a file not there yet: made there, as a shell's `>` would.
    let dangling = env.path("dangling.tar");
    std::os::unix::fs::symlink("elsewhere/new.tar", &dangling).unwrap();
    assert_success(&env.rbuild(&["save", "busybox", "-o", dangling.to_str().unwrap()]));
    assert!(fs::symlink_metadata(&dangling).unwrap().is_symlink());
    assert_eq!(fs::read(elsewhere.join("new.tar")).unwrap(), reference);

    for args in [
        &["save", "busybox", "-o", "-"][..],
        &["save", "busybox"][..],
    ] {
        let out = env.rbuild(args);
        assert_success(&out);
        assert!(
            out.stdout == reference,
            "{args:?}: the same archive on stdout"
        );
    }
}

#[test]
fn docker_archives_save_and_load() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    two_images(&env);
    let tar = env.path("docker.tar");
    assert_success(&env.rbuild(&[
        "save",
        "--format",
        "docker",
        "one:1",
        "two:1",
        "-o",
        tar.to_str().unwrap(),
    ]));
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("manifest.json")
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = manifest.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let config = entry["Config"].as_str().unwrap();
        assert!(config.starts_with("blobs/sha256/"));
        assert_eq!(entry["Layers"].as_array().unwrap().len(), 2);
        assert_eq!(entry["RepoTags"].as_array().unwrap().len(), 1);
    }
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("repositories")
        .output()
        .unwrap();
    let repositories: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(repositories["one"]["1"].is_string());

    // A docker-archive without the OCI index (as older docker writes) loads by manifest.json.
    let dir = env.path("unpacked");
    fs::create_dir(&dir).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    fs::remove_file(dir.join("index.json")).unwrap();
    fs::remove_file(dir.join("oci-layout")).unwrap();
    let docker_only = env.path("docker-only.tar");
    assert!(
        Command::new("tar")
            .arg("-cf")
            .arg(&docker_only)
            .arg("-C")
            .arg(&dir)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let other = TestEnv::new();
    let out = other.rbuild(&["load", "-i", docker_only.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("one:1") && stdout(&out).contains("two:1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&other.rbuild(&["run", "two:1", "cat", "/two.txt"])),
        "second\n"
    );
    assert_success(&other.rbuild(&["store", "verify"]));
}

#[test]
fn export_writes_the_flattened_filesystem_and_history_lists_steps() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "flat",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo a > /a.txt && echo b > /b.txt\nRUN rm /b.txt /bin/vi\n",
        )],
    );
    assert_success(&env.build(&ctx, "flat:1"));
    let tar = env.path("flat.tar");
    assert_success(&env.rbuild(&["export", "flat:1", "-o", tar.to_str().unwrap()]));
    let listing = stdout(&Command::new("tar").arg("-tf").arg(&tar).output().unwrap());
    assert!(listing.lines().any(|l| l == "a.txt"), "{listing}");
    assert!(listing.lines().any(|l| l == "bin/busybox"));
    assert!(
        !listing
            .lines()
            .any(|l| l == "b.txt" || l == "bin/vi" || l.contains(".wh.")),
        "{listing}"
    );

    let out = env.rbuild(&["history", "--no-trunc", "flat:1"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("CREATED"));
    assert!(
        lines[1].contains("rm /b.txt /bin/vi"),
        "newest first: {text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
}

#[test]
fn concurrent_loads_of_one_image_all_succeed() {
    require_privileges!();
    let env = TestEnv::new();
    let tar = env.path("busybox.tar");
    write_busybox_image(&tar);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command()
                .args(["load", "-i", tar.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_success(&out);
    }
    assert_success(&env.rbuild(&["store", "verify"]));
    let out = env.rbuild(&["run", "busybox", "echo", "ok"]);
    assert_eq!(stdout(&out), "ok\n");
}

/// SIGKILLs `rbuild load` and `rbuild build` at random moments; after every round the store
/// verifies clean, what was committed before is unchanged and the next command cleans up.
#[test]
fn killed_at_random_moments_the_store_stays_consistent() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // A bigger image to load, so kills land in the middle of ingest and unpack.
    let ctx = env.context(
        "big",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN dd if=/dev/urandom of=/a bs=1M count=6 2>/dev/null\nRUN dd if=/dev/urandom of=/b bs=1M count=6 2>/dev/null\nRUN echo done\n",
        )],
    );
    assert_success(&env.build(&ctx, "big:1"));
    let big_tar = env.path("big.tar");
    assert_success(&env.rbuild(&["save", "big:1", "-o", big_tar.to_str().unwrap()]));
    let reference = stdout(&env.rbuild(&["inspect", "--manifest", "busybox"]));

    let rounds: u64 = std::env::var("RBUILD_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = env.path(&format!("target-{round}"));
        let mut cmd = if round % 2 == 0 {
            let mut cmd = env.command();
            cmd.args([
                "load",
                "-i",
                big_tar.to_str().unwrap(),
                "-t",
                &format!("loaded:{round}"),
            ]);
            cmd.env("RBUILD_ROOT", &target);
            cmd
        } else {
            let mut cmd = env.command();
            cmd.args([
                "build",
                "--progress",
                "quiet",
                "-t",
                &format!("built:{round}"),
                ctx.to_str().unwrap(),
            ]);
            cmd
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(seed % 400));
        let _ = child.kill();
        let _ = child.wait();

        let root = if round % 2 == 0 {
            target.clone()
        } else {
            env.root()
        };
        let out = env
            .command()
            .env("RBUILD_ROOT", &root)
            .args(["store", "verify"])
            .output()
            .unwrap();
        assert_success(&out);
        // The command above opened the store: what the killed process left is gone.
        let leftovers: Vec<_> = ["ingest", "tmp"]
            .iter()
            .flat_map(|d| fs::read_dir(root.join(d)).into_iter().flatten())
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
        if round % 2 == 0 {
            let _ = fs::remove_dir_all(&target);
        }
    }
    assert_eq!(
        stdout(&env.rbuild(&["inspect", "--manifest", "busybox"])),
        reference
    );
    assert_success(&env.rbuild(&["store", "verify"]));
    assert_success(&env.build(&ctx, "big:2"));
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_the_store_consistent() {
    require_privileges!();
    let env = TestEnv::new();
    let root = env.root();
    fs::create_dir_all(&root).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success(), "mount a small tmpfs for the store");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(root.clone());
    let tar = env.path("busybox.tar");
    write_busybox_image(&tar);
    assert_success(&env.rbuild(&["load", "-i", tar.to_str().unwrap()]));
    let ctx = env.context(
        "fill",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN dd if=/dev/zero of=/fill bs=1M count=64\n",
        )],
    );
    let out = env.build(&ctx, "fill:1");
    assert_failure(&out);
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("exit code 1"), "{err}");
    assert_success(&env.rbuild(&["store", "verify"]));
    assert!(fs::read_dir(root.join("ingest")).unwrap().next().is_none());
    assert!(fs::read_dir(root.join("tmp")).unwrap().next().is_none());
    assert_eq!(
        stdout(&env.rbuild(&["run", "busybox", "echo", "still works"])),
        "still works\n"
    );

    // A step that fills the disk and succeeds still says how it ended (its status has
    // room kept for it); whatever fails after it (its commit, or the next step) says the
    // disk is full, and freeing space is all a next build needs.
    let ctx = env.context(
        "fill-and-go-on",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN dd if=/dev/zero of=/fill bs=1M count=64 || true\nRUN echo after > /after\n",
        )],
    );
    let out = env.build(&ctx, "fill:2");
    assert_failure(&out);
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("without reporting"), "{err}");
    assert_success(&env.rbuild(&["store", "verify"]));
    assert_success(&env.rbuild(&["prune", "--all"]));
    let ctx = env.context(
        "after-prune",
        &[("Dockerfile", "FROM busybox\nRUN echo after > /after\n")],
    );
    assert_success(&env.build(&ctx, "after:1"));
    assert_eq!(
        stdout(&env.rbuild(&["run", "after:1", "cat", "/after"])),
        "after\n"
    );

    // A tarball larger than the space left: the store is what could not be written, not
    // the tarball what could not be read.
    let big = env.path("big-rootfs.tar");
    let mut noise = vec![0u8; 16 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut archive = tar::Builder::new(fs::File::create(&big).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(noise.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "noise.bin", &noise[..])
        .unwrap();
    archive.finish().unwrap();
    let out = env.rbuild(&["import", big.to_str().unwrap(), "big:1"]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(err.contains("write into the store"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("failed to read"), "{err}");
    assert_success(&env.rbuild(&["store", "verify"]));
}

/// Images with hostile layers load (their blobs are sound) but never unpack outside the
/// snapshot: each use is a clear error and nothing appears outside the store.
#[test]
fn hostile_layers_are_refused_when_used_and_nothing_escapes() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let target = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            raw_tar(&[("../../../../escape", tar::EntryType::Regular, "", b"x")]),
            "leaves the layer root",
        ),
        (
            "symlink-then-write",
            raw_tar(&[
                ("link", tar::EntryType::Symlink, &target, b""),
                ("link/escape", tar::EntryType::Regular, "", b"x"),
            ]),
            "not a directory",
        ),
        (
            "hardlink-out",
            raw_tar(&[("h", tar::EntryType::Link, "../../../../etc/passwd", b"")]),
            "leaves the layer root",
        ),
    ];
    for (name, layer, expected) in cases {
        let tar = env.path(&format!("{name}.tar"));
        write_image(&tar, &format!("hostile/{name}:1"), &[layer]);
        assert_success(&env.rbuild(&["load", "-i", tar.to_str().unwrap()]));
        let out = env.rbuild(&["run", &format!("hostile/{name}:1"), "true"]);
        assert_failure(&out);
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "{name}: nothing outside"
        );
        assert!(!std::path::Path::new("/escape").exists());
    }
    assert_success(&env.rbuild(&["store", "verify"]));
}

#[test]
fn a_storage_bound_collects_build_cache_after_a_build() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    two_images(&env);
    let ctx = env.context(
        "bounded",
        &[("Dockerfile", "FROM busybox\nRUN echo bounded > /b.txt\n")],
    );
    let out = env
        .command()
        .env("RBUILD_GC_KEEP_STORAGE", "1")
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "bounded:1",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stderr(&out).contains("above RBUILD_GC_KEEP_STORAGE: removed 3 cache record(s)"),
        "{}",
        stderr(&out)
    );
    // The images stay and run; only their build cache went.
    for (image, file, text) in [
        ("one:1", "/one.txt", "first\n"),
        ("bounded:1", "/b.txt", "bounded\n"),
    ] {
        assert_eq!(stdout(&env.rbuild(&["run", image, "cat", file])), text);
    }
    let out = env.build(&env.path("one"), "one:1");
    assert!(!stderr(&out).contains("CACHED"), "{}", stderr(&out));
    assert_success(&env.rbuild(&["store", "verify"]));
}

/// `docker load` reads what `rbuild save --format docker` writes, when a docker daemon is
/// reachable (the bench setup starts one); elsewhere this says it skipped.
#[test]
fn docker_loads_a_docker_archive_when_a_daemon_is_available() {
    require_privileges!();
    let docker_host = std::env::var("DOCKER_HOST").ok().or_else(|| {
        std::path::Path::new("/tmp/peers/docker.sock")
            .exists()
            .then(|| "unix:///tmp/peers/docker.sock".to_owned())
    });
    let reachable = have("docker")
        && Command::new("docker")
            .env("DOCKER_HOST", docker_host.clone().unwrap_or_default())
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success());
    if !reachable {
        eprintln!(
            "skipped: no docker daemon reachable (the archive format is checked by docker_archives_save_and_load)"
        );
        return;
    }
    let env = TestEnv::with_busybox();
    two_images(&env);
    let tar = env.path("for-docker.tar");
    assert_success(&env.rbuild(&[
        "save",
        "--format",
        "docker",
        "one:1",
        "-o",
        tar.to_str().unwrap(),
    ]));
    let docker = |args: &[&str]| {
        Command::new("docker")
            .env("DOCKER_HOST", docker_host.clone().unwrap_or_default())
            .args(args)
            .output()
            .unwrap()
    };
    let out = docker(&["load", "-i", tar.to_str().unwrap()]);
    assert_success(&out);
    assert!(stdout(&out).contains("one:1"), "{}", stdout(&out));
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "one:1",
    ]);
    assert_eq!(stdout(&out).trim(), "2");
    let _ = docker(&["rmi", "one:1"]);
}
