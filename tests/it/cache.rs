//! The build cache as a user sees it: which steps say CACHED, and what invalidates them.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// Builds `ctx` as `tag` and returns the descriptions of the steps that were CACHED and
/// of those that ran, from the JSON progress events.
fn build_steps(
    env: &TestEnv,
    ctx: &std::path::Path,
    tag: &str,
    extra: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut args = vec!["build", "--progress", "json", "-t", tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = env.rbuild(&args);
    assert_success(&out);
    steps_of(&out)
}

const DOCKERFILE: &str = "FROM busybox\n\
    RUN echo base > /base.txt\n\
    COPY app/ /app/\n\
    ARG VERSION=1\n\
    RUN echo no version here > /plain.txt\n\
    RUN echo version $VERSION > /version.txt\n";

fn project(env: &TestEnv) -> std::path::PathBuf {
    env.context(
        "project",
        &[
            ("Dockerfile", DOCKERFILE),
            ("app/main.sh", "echo main\n"),
            ("app/lib.sh", "echo lib\n"),
        ],
    )
}

#[test]
fn a_warm_rebuild_is_all_cached_and_mtimes_do_not_count() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = project(&env);
    let (cached, ran) = build_steps(&env, &ctx, "app:1", &[]);
    assert!(cached.is_empty(), "{cached:?}");
    assert_eq!(ran.len(), 4, "{ran:?}");
    // A second later, all from the cache: the same image, not a new one with a new time.
    std::thread::sleep(Duration::from_millis(1100));
    let (cached, ran) = build_steps(&env, &ctx, "app:2", &[]);
    assert_eq!((cached.len(), ran.len()), (4, 0), "{cached:?} {ran:?}");
    let id = |name: &str| {
        let out = env.rbuild(&["inspect", name]);
        assert_success(&out);
        stdout(&out)
    };
    assert_eq!(
        id("app:1"),
        id("app:2"),
        "a fully cached rebuild is the same image"
    );

    // Same content, new mtime: still cached.
    let file = fs::File::options()
        .write(true)
        .open(ctx.join("app/main.sh"))
        .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let (cached, ran) = build_steps(&env, &ctx, "app:3", &[]);
    assert_eq!((cached.len(), ran.len()), (4, 0), "mtime alone: {ran:?}");
    assert_eq!(
        stdout(&env.rbuild(&["run", "app:3", "cat", "/version.txt"])),
        "version 1\n"
    );
}

#[test]
fn a_changed_file_invalidates_from_its_copy_on() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = project(&env);
    build_steps(&env, &ctx, "app:1", &[]);
    fs::write(ctx.join("app/lib.sh"), "echo lib v2\n").unwrap();
    let (cached, ran) = build_steps(&env, &ctx, "app:2", &[]);
    assert_eq!(cached, ["RUN echo base > /base.txt"]);
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert_eq!(
        stdout(&env.rbuild(&["run", "app:2", "cat", "/app/lib.sh"])),
        "echo lib v2\n"
    );
}

#[test]
fn a_changed_build_arg_invalidates_only_from_its_declaration() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = project(&env);
    build_steps(&env, &ctx, "app:1", &[]);
    let (cached, ran) = build_steps(&env, &ctx, "app:2", &["--build-arg", "VERSION=2"]);
    assert_eq!(
        cached,
        ["RUN echo base > /base.txt", "COPY app/ /app/"],
        "{ran:?}"
    );
    assert_eq!(
        ran.len(),
        2,
        "the RUNs after `ARG VERSION` see it in their environment"
    );
    assert_eq!(
        stdout(&env.rbuild(&["run", "app:2", "cat", "/version.txt"])),
        "version 2\n"
    );
}

#[test]
fn no_cache_and_no_cache_filter() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "stages",
        &[(
            "Dockerfile",
            "FROM busybox AS deps\nRUN echo deps > /deps.txt\n\
             FROM busybox AS final\nCOPY --from=deps /deps.txt /\nRUN cat /deps.txt\n",
        )],
    );
    build_steps(&env, &ctx, "s:1", &[]);
    let (cached, ran) = build_steps(&env, &ctx, "s:2", &["--no-cache"]);
    assert_eq!((cached.len(), ran.len()), (0, 3), "{cached:?}");
    let (cached, ran) = build_steps(&env, &ctx, "s:3", &["--no-cache-filter", "FINAL"]);
    assert_eq!(cached, ["RUN echo deps > /deps.txt"]);
    assert_eq!(ran.len(), 2, "{ran:?}");
}

#[test]
fn dockerignore_hides_files_from_copy_and_from_the_cache_key() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ignored",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /src/\nRUN ls -a /src | sort > /listing.txt\n",
            ),
            (".dockerignore", "*.log\nsecrets/\n!secrets/public.txt\n"),
            ("main.sh", "echo hi\n"),
            ("debug.log", "noise\n"),
            ("secrets/key.pem", "private\n"),
            ("secrets/public.txt", "public\n"),
        ],
    );
    build_steps(&env, &ctx, "ig:1", &[]);
    let out = env.rbuild(&[
        "run",
        "ig:1",
        "sh",
        "-c",
        "cat /listing.txt; ls /src/secrets",
    ]);
    let listing = stdout(&out);
    assert!(
        listing.contains("main.sh") && listing.contains("Dockerfile"),
        "{listing}"
    );
    assert!(
        !listing.contains("debug.log") && !listing.contains("key.pem"),
        "{listing}"
    );
    assert!(listing.contains("public.txt"), "`!` re-includes: {listing}");

    fs::write(ctx.join("debug.log"), "more noise\n").unwrap();
    let (cached, ran) = build_steps(&env, &ctx, "ig:2", &[]);
    assert_eq!(
        (cached.len(), ran.len()),
        (2, 0),
        "an ignored file does not invalidate: {ran:?}"
    );

    // `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's.
    fs::write(ctx.join("Dockerfile.dockerignore"), "main.sh\n").unwrap();
    build_steps(&env, &ctx, "ig:3", &[]);
    let listing = stdout(&env.rbuild(&["run", "ig:3", "cat", "/listing.txt"]));
    assert!(
        !listing.contains("main.sh") && listing.contains("debug.log"),
        "{listing}"
    );

    // Naming an ignored file fails, and says that it is ignored rather than absent.
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY main.sh /\n").unwrap();
    let out = env.rbuild(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "ig:4",
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("CopyIgnoredFile") && err.contains("`main.sh` is excluded by .dockerignore"),
        "{err}"
    );
}

#[test]
fn independent_stages_run_at_the_same_time() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "parallel",
        &[(
            "Dockerfile",
            "FROM busybox AS a\nRUN sleep 1 && echo a > /a\n\
             FROM busybox AS b\nRUN sleep 1 && echo b > /b\n\
             FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\n",
        )],
    );
    let out = env.rbuild(&[
        "build",
        "--progress",
        "json",
        "-t",
        "par:1",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let position = |kind: &str, what: &str| {
        let step = events
            .iter()
            .find(|e| {
                e["event"] == "step_started"
                    && e["description"].as_str().is_some_and(|d| d.contains(what))
            })
            .map(|e| e["step"].clone())
            .unwrap();
        events
            .iter()
            .position(|e| e["event"] == kind && e["step"] == step)
            .unwrap()
    };
    // Both RUNs started before either finished: they overlapped.
    assert!(position("step_started", "echo b") < position("step_finished", "echo a"));
    assert!(position("step_started", "echo a") < position("step_finished", "echo b"));
    assert_eq!(
        stdout(&env.rbuild(&["run", "par:1", "cat", "/a", "/b"])),
        "a\nb\n"
    );
}

#[test]
fn sigterm_cancels_the_build_and_leaves_nothing_behind() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // A sleep no other test (or other suite on this machine) runs, to look for afterwards.
    let seconds = 3000 + std::process::id() % 5000;
    let dockerfile = format!("FROM busybox\nRUN echo started && sleep {seconds} && echo never\n");
    let ctx = env.context("cancel", &[("Dockerfile", &dockerfile)]);
    let mut child = env
        .command()
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "cancel:1",
            ctx.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("started") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "build ended early: {log}"
        );
        log.push_str(&line);
    }
    nix_kill(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");

    let root = env.root();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "no mounts left: {mounts}"
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !stdout(&ps)
            .lines()
            .any(|l| l.trim() == format!("sleep {seconds}")),
        "no processes left"
    );
    for dir in ["tmp", "sandboxes"] {
        let left: Vec<_> = fs::read_dir(root.join(dir)).into_iter().flatten().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    let cgroups = std::process::Command::new("sh")
        .arg("-c")
        .arg("find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -path '*rbuild*' -type d")
        .output()
        .unwrap();
    assert!(
        !stdout(&cgroups).lines().any(|l| l
            .rsplit('/')
            .next()
            .is_some_and(|n| n.contains(&child.id().to_string()))),
        "no cgroups left: {}",
        stdout(&cgroups)
    );
    assert!(!stdout(&env.rbuild(&["images"])).contains("cancel"));
    assert_success(&env.rbuild(&["store", "verify"]));
}

#[test]
fn logs_show_the_last_build_in_full() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "logged",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN for i in 1 2 3; do echo line $i; done\n",
        )],
    );
    assert_success(&env.rbuild(&[
        "build",
        "--progress",
        "quiet",
        "-t",
        "logged:1",
        ctx.to_str().unwrap(),
    ]));
    let out = env.rbuild(&["logs"]);
    assert_success(&out);
    let log = stdout(&out);
    for expected in ["[2/2] RUN for i in 1 2 3", "line 1", "line 3", "#2 DONE"] {
        assert!(log.contains(expected), "{log}");
    }
    let listed = stdout(&env.rbuild(&["logs", "--list"]));
    assert_eq!(
        listed.lines().count(),
        2,
        "a header and the build:\n{listed}"
    );
}

/// `logs --list` says, per build, the name to pass to `rbuild logs`, when it started,
/// the image it was to make and how it ended, newest first, in aligned columns.
#[test]
fn logs_list_says_when_what_and_how_each_build_ended() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let good = env.context("good", &[("Dockerfile", "FROM busybox\nRUN echo good\n")]);
    let bad = env.context(
        "bad",
        &[("Dockerfile", "FROM busybox\nRUN echo bad; exit 3\n")],
    );
    assert_success(&env.build(&good, "good:1"));
    let untagged = env.rbuild(&["build", "--progress", "quiet", good.to_str().unwrap()]);
    assert_success(&untagged);
    let id = stdout(&untagged).trim()["sha256:".len()..][..12].to_owned();
    assert_failure(&env.build(&bad, "bad:1"));

    let out = env.rbuild(&["logs", "--list"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header = lines[0];
    let columns = ["BUILD", "STARTED", "IMAGE", "RESULT"];
    let starts: Vec<usize> = columns.iter().map(|c| header.find(c).unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{text}");
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|line| {
            // Each cell starts where its title does.
            for start in &starts[1..] {
                assert!(
                    line.as_bytes()[start - 1] == b' ' && line.as_bytes()[*start] != b' ',
                    "a column at {start} in `{line}`:\n{text}"
                );
            }
            starts
                .iter()
                .zip(starts[1..].iter().map(Some).chain([None]))
                .map(|(start, end)| line[*start..end.map_or(line.len(), |e| *e)].trim_end())
                .collect()
        })
        .collect();
    let what: Vec<(&str, &str)> = rows.iter().map(|row| (row[2], row[3])).collect();
    assert_eq!(
        what,
        [
            ("bad:1", "failed"),
            (id.as_str(), "succeeded"),
            ("good:1", "succeeded")
        ],
        "newest first:\n{text}"
    );
    assert!(rows.iter().all(|row| row[1].ends_with(" ago")), "{text}");
    // The first column is what `rbuild logs` takes.
    let log = env.rbuild(&["logs", rows[0][0]]);
    assert_success(&log);
    assert!(
        stdout(&log).contains("RUN echo bad; exit 3"),
        "{}",
        stdout(&log)
    );
    // Why it failed is in the log too, without colors, as it was shown.
    assert!(stdout(&log).contains("exit code 3"), "{}", stdout(&log));
    assert!(!stdout(&log).contains('\u{1b}'), "{}", stdout(&log));

    // A build that fails before any step runs (a Dockerfile that does not parse) has a
    // log that says why.
    let typo = env.context("typo", &[("Dockerfile", "FROM busybox\nRUNN echo\n")]);
    assert_failure(&env.build(&typo, "typo:1"));
    let log = stdout(&env.rbuild(&["logs"]));
    assert!(log.contains("RUNN"), "{log}");
    assert!(log.contains("Dockerfile:2:1"), "{log}");
}

fn nix_kill(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a child this test spawned.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// The reasons a build gives for its cache misses, by step description.
fn miss_reasons(env: &TestEnv, ctx: &std::path::Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["build", "--progress", "json", "-t", "why:1"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = env.rbuild(&args);
    assert_success(&out);
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    events
        .iter()
        .filter(|e| e["event"] == "step_miss")
        .map(|miss| {
            let description = events
                .iter()
                .find(|e| e["event"] == "step_started" && e["step"] == miss["step"])
                .and_then(|e| e["description"].as_str())
                .unwrap_or_default()
                .to_owned();
            (
                description,
                miss["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn cache_misses_say_why() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = project(&env);
    assert!(
        miss_reasons(&env, &ctx, &[]).is_empty(),
        "a first build has nothing to compare with"
    );

    fs::write(ctx.join("app/lib.sh"), "echo lib v2\n").unwrap();
    let reasons = miss_reasons(&env, &ctx, &[]);
    assert_eq!(
        reasons[0],
        (
            "COPY app/ /app/".to_owned(),
            "`app/lib.sh` changed".to_owned()
        )
    );
    assert_eq!(
        reasons[1].1,
        "it builds on step 3 (`COPY app/ /app/`), which changed: `app/lib.sh` changed",
        "{reasons:?}"
    );

    let reasons = miss_reasons(&env, &ctx, &["--build-arg", "VERSION=2"]);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].1.contains("`VERSION` changed (1 → 2)"),
        "{reasons:?}"
    );

    let edited = DOCKERFILE.replace("echo no version here", "echo no version at all");
    fs::write(ctx.join("Dockerfile"), edited).unwrap();
    let reasons = miss_reasons(&env, &ctx, &["--build-arg", "VERSION=2"]);
    assert_eq!(
        reasons[0].1,
        "the instruction changed (it was `RUN echo no version here > /plain.txt`)"
    );
}

#[test]
fn fail_on_miss_checks_that_a_rebuild_is_fully_cached() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = project(&env);
    assert_success(&env.build(&ctx, "strict:1"));
    let out = env.rbuild(&[
        "build",
        "--fail-on-miss",
        "--progress",
        "quiet",
        "-t",
        "strict:1",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out);
    fs::write(ctx.join("app/main.sh"), "echo main v2\n").unwrap();
    let out = env.rbuild(&[
        "build",
        "--fail-on-miss",
        "--progress",
        "quiet",
        "-t",
        "strict:1",
        ctx.to_str().unwrap(),
    ]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("cache miss: [3] COPY app/ /app/: `app/main.sh` changed"),
        "{err}"
    );
    assert!(err.contains("3 step(s) missed the cache"), "{err}");
}

/// A moved base image is named by IMAGE ID, the id `rbuild images` lists and `inspect`,
/// `history` and `tag` take, not by a manifest digest the user finds nowhere.
#[test]
fn a_moved_base_image_is_named_by_its_image_id() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    assert_success(&env.rbuild(&["tag", "busybox", "old:1"]));
    let ctx = env.context(
        "moved",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi.txt\n")],
    );
    assert!(miss_reasons(&env, &ctx, &[]).is_empty());

    let extra = raw_tar(&[("etc/motd", tar::EntryType::Regular, "", b"new base\n")]);
    let tar = env.path("moved.tar");
    write_image(&tar, "busybox:latest", &[busybox_layer(), extra.clone()]);
    assert_success(&env.rbuild(&["load", "-i", tar.to_str().unwrap()]));
    let id_of = |name: &str| {
        let out = env.rbuild(&["images", "--format", "json"]);
        stdout(&out)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|row| {
                format!(
                    "{}:{}",
                    row["Repository"].as_str().unwrap(),
                    row["Tag"].as_str().unwrap()
                ) == name
            })
            .map(|row| row["ID"].as_str().unwrap()["sha256:".len()..][..12].to_owned())
            .unwrap_or_else(|| panic!("{name} in {}", stdout(&out)))
    };
    let (old, new) = (id_of("old:1"), id_of("busybox:latest"));
    assert_ne!(old, new);
    let table = stdout(&env.rbuild(&["images"]));
    assert!(table.contains(&old) && table.contains(&new), "{table}");
    assert_eq!(
        miss_reasons(&env, &ctx, &[]),
        [(
            "RUN echo hi > /hi.txt".to_owned(),
            format!(
                "it builds on step 1 (`FROM busybox`), which changed: the base image moved (IMAGE ID {old} → {new})"
            )
        )]
    );
    // The same image under another manifest (its layers uncompressed).
    write_uncompressed_image(&tar, "busybox:latest", &[busybox_layer(), extra]);
    assert_success(&env.rbuild(&["load", "-i", tar.to_str().unwrap()]));
    assert_eq!(id_of("busybox:latest"), new);
    assert_eq!(
        miss_reasons(&env, &ctx, &[])[0].1,
        format!(
            "it builds on step 1 (`FROM busybox`), which changed: the base image is the same (IMAGE ID {new}) under another manifest"
        )
    );

    // The ids quoted are the ones the image commands take.
    let by_id = env.rbuild(&["inspect", &old]);
    assert_success(&by_id);
    assert_eq!(by_id.stdout, env.rbuild(&["inspect", "old:1"]).stdout);
    assert_success(&env.rbuild(&["history", &new]));
    assert_success(&env.rbuild(&["tag", &format!("sha256:{new}"), "new:1"]));
    assert_eq!(id_of("new:1"), new);
    let out = env.rbuild(&["inspect", "0000000000aa"]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("image `0000000000aa` not found"),
        "{}",
        stderr(&out)
    );
}

/// An image with no layer of its own (`FROM scratch` plus metadata) has no step whose
/// cache record dates it; a rebuild is still the same image, also for a stage built FROM
/// such a stage, and for an image FROM a base with only metadata after it. `rbuild prune`
/// keeps that date while the image is named; anything that changes the image makes
/// another one.
#[test]
fn an_image_without_layers_of_its_own_is_the_same_when_rebuilt() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let scratch = env.context(
        "scratch",
        &[(
            "Dockerfile",
            "FROM scratch AS meta\nLABEL a=b\nENV X=1\nCMD [\"/x\"]\n\
             FROM meta\nLABEL c=d\n",
        )],
    );
    let based = env.context(
        "based",
        &[("Dockerfile", "FROM busybox\nLABEL a=b\nCMD [\"sh\"]\n")],
    );
    let build = |ctx: &std::path::Path, tag: &str, extra: &[&str]| {
        let mut args = vec!["build", "--progress", "quiet", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = env.rbuild(&args);
        assert_success(&out);
        stdout(&out).trim().to_owned()
    };
    let first = build(&scratch, "meta:1", &[]);
    let first_based = build(&based, "based:1", &[]);
    // A second later, so that a new time would show.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        build(&scratch, "meta:2", &[]),
        first,
        "FROM scratch + metadata"
    );
    assert_eq!(
        build(&based, "based:2", &[]),
        first_based,
        "FROM busybox + metadata"
    );

    assert_success(&env.rbuild(&["prune"]));
    assert_eq!(
        build(&scratch, "meta:3", &[]),
        first,
        "after a prune, while the image is named"
    );

    // Another label is another image.
    assert_ne!(build(&scratch, "meta:4", &["--label", "extra=1"]), first);
}
