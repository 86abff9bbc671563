//! What a build does when the store fails under it (a full disk, as the store reports it),
//! through the `Watched` fake in front of the store: the build fails saying why, names
//! nothing, leaves no snapshot behind, and the next build (the disk freed) builds.

use crate::testing::Bench;

const DOCKERFILE: &str = "FROM scratch\nRUN write /a 1\nRUN write /b 2\n";

/// Builds `DOCKERFILE` with `call` failing after `succeeding` good ones: the error, then
/// (nothing failing any more) a build that must succeed with both files.
async fn fails_then_builds(call: &'static str, succeeding: usize) -> (Bench, String) {
    let bench = Bench::new();
    let mut opts = bench.options(DOCKERFILE);
    opts.tags = vec!["faulty:latest".parse().unwrap()];
    bench.snapshots.fail(call, succeeding);
    let err = bench
        .build_with(opts.clone(), Default::default())
        .await
        .expect_err("the build fails with the store");
    assert!(
        bench
            .store
            .image(&"faulty:latest".parse().unwrap())
            .is_err(),
        "a failed build names nothing"
    );
    // The error as the CLI prints it: each cause after the other.
    let message = crate::error::with_causes(&err);
    assert!(
        message.contains("No space left on device"),
        "{call}: {message}"
    );
    let result = bench
        .build_with(opts, Default::default())
        .await
        .expect("the next build builds");
    let files = bench.files(&result);
    assert_eq!((files["a"].as_str(), files["b"].as_str()), ("1", "2"));
    assert!(bench.store.verify().unwrap().is_clean());
    (bench, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_cannot_be_committed_fails_the_build_and_is_built_next_time() {
    let (bench, message) = fails_then_builds("commit_layer", 1).await;
    assert!(
        message.starts_with("`RUN write /b 2` failed: "),
        "{message}"
    );
    // The first step's layer was committed and recorded: only the second runs again.
    assert_eq!(
        bench.executor.started(),
        ["write /a 1", "write /b 2", "write /b 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_cannot_be_measured_fails_the_build_and_is_built_next_time() {
    let (bench, message) = fails_then_builds("create_layer", 0).await;
    assert!(
        message.starts_with("`RUN write /a 1` failed: "),
        "{message}"
    );
    // The second step ran over the first one's files, and its layer was never committed.
    assert_eq!(
        bench.executor.started(),
        ["write /a 1", "write /b 2", "write /a 1", "write /b 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_record_that_cannot_be_written_fails_the_build_and_its_step_runs_again() {
    let (bench, message) = fails_then_builds("cache_put", 0).await;
    // Whichever step's record was written first failed: that step runs again, and the
    // one whose record was written does not.
    let step = ["write /a 1", "write /b 2"]
        .into_iter()
        .find(|step| message.starts_with(&format!("`RUN {step}` failed: ")))
        .unwrap_or_else(|| panic!("the error names no step: {message}"));
    assert_eq!(bench.executor.started(), ["write /a 1", "write /b 2", step]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_prepared_fails_its_step_naming_it() {
    let (bench, message) = fails_then_builds("prepare_on", 1).await;
    assert!(
        message.starts_with("`RUN write /b 2` failed: "),
        "{message}"
    );
    assert_eq!(bench.executor.started(), ["write /a 1", "write /b 2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_read_fails_the_build() {
    let (bench, _) = fails_then_builds("cache_get", 0).await;
    assert_eq!(bench.executor.started(), ["write /a 1", "write /b 2"]);
}
