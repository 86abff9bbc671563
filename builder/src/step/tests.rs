//! Whole builds through the solver and the op runners, with the scripted executor and a
//! store in a temporary directory (see `testing`): no root (files owned by root come from
//! a user namespace), no sandbox, no mount.

use std::sync::Arc;

use crate::BuildError;
use crate::solve::Cancel;
use crate::testing::{Bench, can_own_files_as_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_changes_are_its_layer_and_a_rebuild_is_the_same_image_from_the_cache() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    bench.file("a.txt", "from the context");
    let dockerfile = "FROM scratch\nRUN write /hello.txt hi\nCOPY a.txt /a.txt\nWORKDIR /app\n";
    let first = bench.build(dockerfile).await.unwrap();
    assert_eq!((first.executed, first.cached), (3, 0));
    let files = bench.files(&first);
    assert_eq!(files["hello.txt"], "hi");
    assert_eq!(files["a.txt"], "from the context");
    assert_eq!(files.len(), 2, "{files:?}");

    let second = bench.build(dockerfile).await.unwrap();
    assert_eq!((second.executed, second.cached), (0, 3));
    assert_eq!(second.manifest.digest, first.manifest.digest);
    assert_eq!(bench.executor.started(), ["write /hello.txt hi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_context_file_reruns_its_copy_and_the_steps_after_it_saying_why() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    bench.file("a.txt", "one");
    let dockerfile = "FROM scratch\nRUN write /before x\nCOPY a.txt /a.txt\nRUN write /after y\n";
    bench.build(dockerfile).await.unwrap();
    bench.file("a.txt", "two");
    let result = bench.build(dockerfile).await.unwrap();
    assert_eq!((result.executed, result.cached), (2, 1));
    let steps: Vec<usize> = result.misses.iter().map(|miss| miss.step).collect();
    assert_eq!(steps, [3, 4]);
    let copy = result.misses[0].reason.as_deref().unwrap();
    assert!(copy.contains("a.txt"), "{copy}");
    let after = result.misses[1].reason.as_deref().unwrap();
    assert!(after.contains("[3]") || after.contains("step 3"), "{after}");
    assert_eq!(bench.files(&result)["a.txt"], "two");
    assert_eq!(
        bench.executor.started(),
        ["write /before x", "write /after y", "write /after y"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_names_its_line_its_exit_code_and_its_last_output() {
    let bench = Bench::new();
    let dockerfile = "FROM scratch\nRUN echo one; echo two; exit 3\nRUN write /never x\n";
    let err = bench.build(dockerfile).await.unwrap_err();
    let BuildError::RunFailed {
        span, code, tail, ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(code, 3);
    assert_eq!(tail, ["one", "two"]);
    assert_eq!(span.line_col(dockerfile).0, 2);
    assert_eq!(bench.executor.started().len(), 1);
    // Nothing of it is cached: the next build runs it again.
    assert!(bench.build(dockerfile).await.is_err());
    assert_eq!(bench.executor.started().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stages_run_at_the_same_time() {
    if !can_own_files_as_root() {
        return;
    }
    // Each stage's step waits for the other's: only concurrent stages finish.
    let bench = Bench::new();
    let dockerfile = "\
FROM scratch AS a
RUN meet m; write /a 1
FROM scratch AS b
RUN meet m; write /b 2
FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
";
    let result = bench.build(dockerfile).await.unwrap();
    let files = bench.files(&result);
    assert_eq!((files["a"].as_str(), files["b"].as_str()), ("1", "2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_steps_of_two_stages_run_once() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    let dockerfile = "\
FROM scratch AS a
RUN write /x same
FROM scratch AS b
RUN write /x same
FROM scratch
COPY --from=a /x /a
COPY --from=b /x /b
";
    let result = bench.build(dockerfile).await.unwrap();
    assert_eq!(bench.executor.started(), ["write /x same"]);
    assert_eq!(result.cached, 1);
    let files = bench.files(&result);
    assert_eq!((files["a"].as_str(), files["b"].as_str()), ("same", "same"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failure_stops_a_step_running_in_another_stage() {
    let bench = Bench::new();
    let dockerfile = "\
FROM scratch AS slow
RUN hang
FROM scratch AS bad
RUN exit 7
FROM scratch
COPY --from=slow / /
COPY --from=bad / /
";
    let err = bench.build(dockerfile).await.unwrap_err();
    assert!(
        matches!(err, BuildError::RunFailed { code: 7, .. }),
        "{err:?}"
    );
    // The other stage's step may not have started before the failure; if it did, it was
    // stopped, and the build waited for it.
    let started = bench.executor.started();
    let cancelled = bench.executor.cancelled.lock().unwrap().clone();
    assert_eq!(started.contains(&"hang".to_owned()), cancelled == ["hang"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_stops_its_step_and_names_nothing() {
    let bench = Bench::new();
    let mut opts = bench.options("FROM scratch\nRUN hang\nRUN write /never x\n");
    opts.tags = vec!["cancelled:latest".parse().unwrap()];
    let cancel = Cancel::default();
    let canceller = {
        let (cancel, executor) = (cancel.clone(), Arc::clone(&bench.executor));
        tokio::spawn(async move {
            while executor.started().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            cancel.cancel();
        })
    };
    let err = bench.build_with(opts, cancel).await.unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(err, BuildError::Cancelled), "{err:?}");
    assert_eq!(bench.executor.started(), ["hang"]);
    assert!(
        bench
            .store
            .image(&"cancelled:latest".parse().unwrap())
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_runs_every_step_again_and_says_so() {
    let bench = Bench::new();
    let dockerfile = "FROM scratch\nRUN write /x 1\nRUN write /y 2\n";
    let mut opts = bench.options(dockerfile);
    // Reproducible: the history's times are this, not the time each step ran.
    opts.source_date_epoch = Some(1_700_000_000);
    let first = bench
        .build_with(opts.clone(), Cancel::default())
        .await
        .unwrap();
    opts.no_cache = true;
    let again = bench.build_with(opts, Cancel::default()).await.unwrap();
    assert_eq!((again.executed, again.cached), (2, 0));
    assert!(
        again
            .misses
            .iter()
            .all(|m| m.reason.as_deref() == Some("--no-cache"))
    );
    assert_eq!(bench.executor.started().len(), 4);
    // The same steps with the same inputs: the same image.
    assert_eq!(again.manifest.digest, first.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_make_an_index_whose_statements_name_the_image_and_what_it_holds() {
    let bench = Bench::new();
    let dockerfile = "FROM scratch\nRUN write /app/node_modules/left-pad/package.json {\"name\":\"left-pad\",\"version\":\"1.3.0\",\"license\":\"WTFPL\"}\n";
    let mut opts = bench.options(dockerfile);
    opts.attest = crate::AttestOptions {
        provenance: Some(crate::ProvenanceMode::Min),
        sbom: Some(crate::SbomFormat::Spdx),
        ..Default::default()
    };
    let result = bench
        .build_with(opts.clone(), Cancel::default())
        .await
        .unwrap();
    let index = bench
        .store
        .read_index(&result.manifest.digest)
        .expect("an index");
    assert_eq!(index.manifests.len(), 2);
    let image = &result.platforms[0].manifest.digest;
    assert_eq!(&index.manifests[0].digest, image);
    // The image id is still its config's.
    assert_eq!(result.config, result.platforms[0].config);
    let statements = bench
        .store
        .attestations(&result.manifest.digest, image)
        .unwrap();
    let types: Vec<&str> = statements
        .iter()
        .map(|s| s.predicate_type.as_str())
        .collect();
    assert_eq!(
        types,
        [crate::PREDICATE_SLSA_PROVENANCE_V1, crate::PREDICATE_SPDX]
    );
    for statement in &statements {
        let value: serde_json::Value = serde_json::from_slice(&statement.bytes).unwrap();
        assert_eq!(value["subject"][0]["digest"]["sha256"], image.hex());
    }
    let sbom: serde_json::Value = serde_json::from_slice(&statements[1].bytes).unwrap();
    assert_eq!(
        sbom["predicate"]["packages"][1]["externalRefs"][0]["referenceLocator"],
        "pkg:npm/left-pad@1.3.0"
    );
    // Built again from the cache: the same index, bit for bit, and no scan.
    let again = bench.build_with(opts, Cancel::default()).await.unwrap();
    assert_eq!(again.manifest.digest, result.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_after_a_changed_step_name_it_as_their_cause() {
    if !can_own_files_as_root() {
        return;
    }
    let bench = Bench::new();
    bench.file("a.txt", "a");
    std::fs::create_dir(bench.context().join("docs")).unwrap();
    bench.file("docs/d", "d");
    let dockerfile = |v: &str| {
        format!(
            "FROM scratch\nRUN write /v {v}\nCOPY a.txt /a\nCOPY --link docs /docs\nRUN write /x x\n"
        )
    };
    bench.build(&dockerfile("1")).await.unwrap();
    let result = bench.build(&dockerfile("2")).await.unwrap();
    let reasons: Vec<(usize, String)> = result
        .misses
        .iter()
        .map(|miss| (miss.step, miss.reason.clone().unwrap_or_default()))
        .collect();
    let cause = "it builds on step 2 (`RUN write /v 2`), which changed: the instruction changed (it was `RUN write /v 1`)";
    assert_eq!(
        reasons,
        [
            (
                2,
                "the instruction changed (it was `RUN write /v 1`)".to_owned()
            ),
            (3, cause.to_owned()),
            // Step 4, the `--link` copy, is reused on the new step 3.
            (5, cause.to_owned()),
        ]
    );
}
