//! Each op runner through a whole build, with the scripted executor and a store in a
//! temporary directory (see `testing`): base images (the source op), WORKDIR (mkdir),
//! ADD of a local archive and `COPY --link` restacked from the cache (file ops), and the
//! cache records the committer leaves for each step.

use crate::solve::BuildResult;
use crate::testing::{Bench, can_own_files_as_root};

/// The built image's config, as JSON.
fn config(bench: &Bench, result: &BuildResult) -> serde_json::Value {
    let bytes = bench.store.read_blob(&result.platforms[0].config).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_in_the_store_is_the_base_with_its_files_and_environment() {
    let bench = Bench::new();
    bench.base(
        "base:1",
        &[("/etc/motd", "from the base")],
        &["GREETING=hello"],
    );
    let dockerfile = "FROM base:1\nENV NAME=world\nRUN env GREETING /greeting; env NAME /name\n";
    let result = bench.build(dockerfile).await.unwrap();
    assert_eq!((result.executed, result.cached), (1, 0));
    let files = bench.files(&result);
    assert_eq!(files["etc/motd"], "from the base");
    assert_eq!(files["greeting"], "hello", "RUN sees the base's variables");
    assert_eq!(files["name"], "world");
    let config = config(&bench, &result);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    // A base without PATH gets the usual one, as with BuildKit.
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([
            "GREETING=hello",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NAME=world"
        ])
    );
    // A base the store lacks, with no registry to pull from, is named.
    let err = bench.build("FROM missing:1\n").await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workdir_makes_its_directory_once_and_an_existing_one_adds_no_layer() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    let dockerfile = "FROM scratch\nWORKDIR /app\nWORKDIR /app\nRUN write /app/x 1\n";
    let result = bench.build(dockerfile).await.unwrap();
    let config = config(&bench, &result);
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        2,
        "the second WORKDIR changed nothing: no layer"
    );
    assert_eq!(bench.files(&result)["app/x"], "1");
    let again = bench.build(dockerfile).await.unwrap();
    assert_eq!((again.executed, again.cached), (0, 3));
    assert_eq!(again.manifest.digest, result.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_unpacks_a_local_archive_and_copy_does_not() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "app/hello.txt", &b"hello"[..])
        .unwrap();
    let bytes = archive.into_inner().unwrap();
    std::fs::write(bench.context().join("app.tar"), &bytes).unwrap();
    let dockerfile = "FROM scratch\nADD app.tar /opt/\nCOPY app.tar /copied/\n";
    let result = bench.build(dockerfile).await.unwrap();
    let files = bench.files(&result);
    assert_eq!(files["opt/app/hello.txt"], "hello");
    assert!(files.contains_key("copied/app.tar"));
    assert!(!files.contains_key("opt/app.tar"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_link_from_the_cache_is_restacked_on_a_changed_parent_without_copying_again() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    bench.file("f.txt", "linked");
    let first = bench
        .build("FROM scratch\nRUN write /a 1\nCOPY --link f.txt /f.txt\n")
        .await
        .unwrap();
    assert_eq!(bench.snapshots.calls("clone_layer"), 0);
    let second = bench
        .build("FROM scratch\nRUN write /a 2\nCOPY --link f.txt /f.txt\n")
        .await
        .unwrap();
    assert_eq!((second.executed, second.cached), (1, 1));
    assert_eq!(bench.snapshots.calls("clone_layer"), 1);
    let files = bench.files(&second);
    assert_eq!(
        (files["a"].as_str(), files["f.txt"].as_str()),
        ("2", "linked")
    );
    // The same layer on another parent, described as it was built: its blob reads back
    // as the manifest says (digest and size), as push and save read it.
    let layers = |result: &BuildResult| {
        bench
            .store
            .image_by_manifest(&result.manifest.digest)
            .unwrap()
            .manifest
            .layers
    };
    let (before, after) = (layers(&first), layers(&second));
    assert_eq!(before[1], after[1]);
    for layer in &after {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut bench
                .store
                .open_content(&layer.digest, Some(layer.size))
                .unwrap(),
            &mut bytes,
        )
        .unwrap();
        assert_eq!(bytes.len() as u64, layer.size);
        assert_eq!(rbuild_store::Digest::of(&bytes), layer.digest);
    }
    assert!(bench.store.verify().unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_leaves_a_cache_record_naming_its_layer_and_committed_snapshot() {
    let bench = Bench::new();
    let dockerfile = "FROM scratch\nRUN write /a 1\nRUN write /b 2\nRUN echo nothing\n";
    let result = bench.build(dockerfile).await.unwrap();
    let diff_ids = config(&bench, &result)["rootfs"]["diff_ids"].clone();
    let mut layers = Vec::new();
    let mut records = 0;
    for record in bench.snapshots.cache().values() {
        let Some(snapshot) = &record.snapshot else {
            continue;
        };
        records += 1;
        let name = rbuild_store::SnapshotName::from_digest(snapshot.clone());
        assert!(bench.store.snapshot(&name).unwrap().is_some());
        if let Some(layer) = &record.layer {
            layers.push(layer.diff_id.to_string());
        }
    }
    // Three steps, one of them without changes: its record names the snapshot under it.
    assert_eq!(records, 3);
    layers.sort();
    let mut expected: Vec<String> = diff_ids
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(layers, expected);
    let lookups = bench.snapshots.calls("cache_get");
    let again = bench.build(dockerfile).await.unwrap();
    assert_eq!((again.executed, again.cached), (0, 3));
    assert!(bench.snapshots.calls("cache_get") > lookups);
    assert_eq!(
        bench.snapshots.calls("prepare_on"),
        3,
        "nothing prepared again"
    );
}
