//! `RUN --mount`: cache, bind, tmpfs and secret mounts as a user sees them: what the step
//! sees, what persists, and what never reaches the image or the store.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Builds `ctx` as `tag` with `extra` arguments; returns the descriptions of the steps
/// that were CACHED and of those that ran (FROM lines left out).
fn build_steps(env: &TestEnv, ctx: &Path, tag: &str, extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = build_with(env, ctx, tag, extra);
    assert_success(&out);
    steps_of(&out)
}

fn build_with(env: &TestEnv, ctx: &Path, tag: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "json", "-t", tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.rbuild(&args)
}

/// `sh -c script` in a container of `image`; its stdout.
fn run_sh(env: &TestEnv, image: &str, script: &str) -> String {
    let out = env.rbuild(&["run", image, "sh", "-c", script]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn cache_mount_persists_between_steps_and_builds_and_stays_out_of_the_image() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let count = "n=$(cat /cache/n 2>/dev/null || echo 0); echo $((n+1)) > /cache/n";
    let ctx = env.context(
        "cache",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 RUN --mount=type=cache,target=/cache,id=counter {count}; cp /cache/n /first\n\
                 RUN --mount=type=cache,target=/elsewhere/c,id=counter cp /elsewhere/c/n /second\n\
                 RUN --mount=type=cache,target=/cache,id=counter,sharing=locked {count}; cp /cache/n /third\n"
            ),
        )],
    );
    let (_, ran) = build_steps(&env, &ctx, "cache:1", &[]);
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert_eq!(
        run_sh(&env, "cache:1", "cat /first /second /third"),
        "1\n1\n2\n"
    );
    // The mounts and their mount points are not in the image.
    assert_eq!(
        run_sh(
            &env,
            "cache:1",
            "test ! -e /cache && test ! -e /elsewhere && echo clean"
        ),
        "clean\n"
    );
    // A second build sees what the first left in the cache.
    build_steps(&env, &ctx, "cache:2", &["--no-cache"]);
    assert_eq!(
        run_sh(&env, "cache:2", "cat /first /second /third"),
        "3\n3\n4\n"
    );

    // Counted by `du`; `prune` keeps it, `prune --all` removes it.
    let du = |env: &TestEnv| -> serde_json::Value {
        let out = env.rbuild(&["du", "--format", "json"]);
        assert_success(&out);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let usage = du(&env);
    assert_eq!(usage["CacheMounts"]["Count"], 1, "{usage}");
    assert!(
        usage["CacheMounts"]["Size"].as_u64().unwrap() > 0,
        "{usage}"
    );
    assert_success(&env.rbuild(&["prune"]));
    assert_eq!(du(&env)["CacheMounts"]["Count"], 1);
    let out = env.rbuild(&["prune", "--all"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("1 cache mount(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(du(&env)["CacheMounts"]["Count"], 0);
    build_steps(&env, &ctx, "cache:3", &["--no-cache"]);
    assert_eq!(run_sh(&env, "cache:3", "cat /first"), "1\n");
}

#[test]
fn a_cache_mount_from_a_stage_starts_with_its_files() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "seeded",
        &[(
            "Dockerfile",
            "FROM busybox AS seed
\
             RUN mkdir -p /seed/sub && echo seeded > /seed/sub/file && chown -R 1000:1000 /seed/sub
\
             FROM busybox
\
             RUN --mount=type=cache,from=seed,source=/seed,target=/c,id=seeded,mode=0700 \
             cat /c/sub/file > /got && stat -c '%u %a' /c/sub /c > /owners && echo more > /c/more
\
             RUN --mount=type=cache,target=/c,id=seeded ls /c > /listing
",
        )],
    );
    build_steps(&env, &ctx, "seeded:1", &[]);
    assert_eq!(
        run_sh(&env, "seeded:1", "cat /got /owners /listing"),
        "seeded\n1000 755\n0 700\nmore\nsub\n"
    );
}

#[test]
fn locked_cache_mounts_serialize_parallel_stages() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // Each stage appends start and end around a pause; unlocked, the two would overlap.
    let step = |name: &str| {
        format!(
            "FROM busybox AS {name}\n\
             RUN --mount=type=cache,target=/c,id=shared-log,sharing=locked \
             echo start-{name} >> /c/log && sleep 1 && echo end-{name} >> /c/log && cp /c/log /log\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox\nCOPY --from=a /log /a.log\nCOPY --from=b /log /b.log\n",
        step("a"),
        step("b")
    );
    let ctx = env.context("locked", &[("Dockerfile", &dockerfile)]);
    build_steps(&env, &ctx, "locked:1", &[]);
    let a = run_sh(&env, "locked:1", "cat /a.log");
    let b = run_sh(&env, "locked:1", "cat /b.log");
    let last = if a.lines().count() > b.lines().count() {
        a
    } else {
        b
    };
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(lines.len(), 4, "{last}");
    let first = lines[0].strip_prefix("start-").unwrap();
    let second = if first == "a" { "b" } else { "a" };
    assert_eq!(
        lines,
        [
            format!("start-{first}"),
            format!("end-{first}"),
            format!("start-{second}"),
            format!("end-{second}"),
        ],
        "the steps overlapped"
    );
}

#[test]
fn cache_ids_cannot_leave_the_cache_directory() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "escape",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=cache,target=/c,id=../../../../../etc touch /c/escaped-etc\n\
             RUN --mount=type=cache,target=/c,id=/ touch /c/escaped-root\n\
             RUN --mount=type=cache,target=/c,id=../escape touch /c/escaped-up\n",
        )],
    );
    build_steps(&env, &ctx, "escape:1", &[]);
    let root = env.root();
    for name in ["escaped-etc", "escaped-root", "escaped-up"] {
        let found: Vec<PathBuf> = files_under(env.dir.path())
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|n| n == name))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(
            found[0].starts_with(root.join("cache-mounts")),
            "{name} left the cache directory: {}",
            found[0].display()
        );
    }
    assert!(!Path::new("/etc/escaped-etc").exists());
}

#[test]
fn bind_mounts_from_the_context_see_its_files_and_key_the_step() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "bind",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN --mount=target=/ctx/Dockerfile,source=Dockerfile wc -l < /ctx/Dockerfile > /lines\n\
                 RUN --mount=type=bind,source=data,target=/data ls -a /data > /listing && cat /data/a.txt > /copied\n\
                 RUN --mount=type=bind,source=data,target=/data,rw echo changed > /data/a.txt && cat /data/a.txt > /written\n",
            ),
            (".dockerignore", "data/*.log\n"),
            ("data/a.txt", "one\n"),
            ("data/debug.log", "noise\n"),
            ("unrelated.txt", "x\n"),
        ],
    );
    let (_, ran) = build_steps(&env, &ctx, "bind:1", &[]);
    assert_eq!(ran.len(), 3, "{ran:?}");
    let listing = run_sh(&env, "bind:1", "cat /listing");
    assert!(listing.contains("a.txt"), "{listing}");
    assert!(
        !listing.contains("debug.log"),
        "ignored files are hidden: {listing}"
    );
    assert_eq!(
        run_sh(&env, "bind:1", "cat /copied /lines /written"),
        "one\n4\nchanged\n"
    );
    // `rw`: the write went to a throwaway layer, not the context; no mount point is left.
    assert_eq!(fs::read_to_string(ctx.join("data/a.txt")).unwrap(), "one\n");
    assert_eq!(
        run_sh(
            &env,
            "bind:1",
            "test ! -e /data && test ! -e /ctx && echo clean"
        ),
        "clean\n"
    );

    // Unrelated and ignored files keep the cache; a bound file's content does not.
    fs::write(ctx.join("unrelated.txt"), "y\n").unwrap();
    fs::write(ctx.join("data/debug.log"), "more noise\n").unwrap();
    let (cached, ran) = build_steps(&env, &ctx, "bind:2", &[]);
    assert_eq!((cached.len(), ran.len()), (3, 0), "{ran:?}");
    fs::write(ctx.join("data/a.txt"), "two\n").unwrap();
    let (cached, ran) = build_steps(&env, &ctx, "bind:3", &[]);
    assert_eq!(
        cached.len(),
        1,
        "only the step before is cached: {cached:?}"
    );
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(run_sh(&env, "bind:3", "cat /copied"), "two\n");
}

#[test]
fn bind_mounts_from_a_stage_and_an_image() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "stage",
        &[(
            "Dockerfile",
            "FROM busybox AS build\n\
             RUN mkdir /out && echo old > /out/gone && echo built > /out/artifact\n\
             RUN rm /out/gone && mkdir /out/sub && echo deep > /out/sub/file\n\
             FROM busybox\n\
             RUN --mount=type=bind,from=build,source=/out,target=/mnt ls /mnt > /listing && cat /mnt/artifact /mnt/sub/file > /got\n\
             RUN --mount=from=0,source=out/artifact,target=/a.txt,rw echo scribble >> /a.txt && cat /a.txt > /file\n\
             RUN --mount=type=bind,from=busybox,source=/etc/passwd,target=/tmp/passwd grep -c : /tmp/passwd > /users\n",
        )],
    );
    build_steps(&env, &ctx, "stage:1", &[]);
    assert_eq!(
        run_sh(&env, "stage:1", "cat /listing /got /file /users"),
        "artifact\nsub\nbuilt\ndeep\nbuilt\nscribble\n3\n"
    );
    assert_eq!(
        run_sh(
            &env,
            "stage:1",
            "test ! -e /mnt && test ! -e /a.txt && echo clean"
        ),
        "clean\n"
    );
}

#[test]
fn tmpfs_mounts_are_empty_and_stay_out_of_the_layer() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "tmpfs",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=tmpfs,target=/scratch,size=1m \
             test -z \"$(ls -A /scratch)\" && echo data > /scratch/f && \
             grep ' /scratch ' /proc/mounts | cut -d' ' -f1,3 > /mount\n\
             RUN --network=none --mount=type=tmpfs,target=/etc/deep/tmp test -z \"$(ls -A /etc/deep/tmp)\"\n",
        )],
    );
    build_steps(&env, &ctx, "tmpfs:1", &[]);
    assert_eq!(run_sh(&env, "tmpfs:1", "cat /mount"), "tmpfs tmpfs\n");
    assert_eq!(
        run_sh(
            &env,
            "tmpfs:1",
            "test ! -e /scratch && test ! -e /etc/deep && echo clean"
        ),
        "clean\n"
    );
    // The last RUN changed nothing: its layer is empty (no stubs, no copied-up /etc; with
    // no network, nothing but the mount made the runtime create anything in /etc).
    let out = env.rbuild(&[
        "save",
        "tmpfs:1",
        "-o",
        env.path("tmpfs.tar").to_str().unwrap(),
    ]);
    assert_success(&out);
    let layers = layer_entries(&env.path("tmpfs.tar"));
    assert!(
        layers.last().unwrap().is_empty(),
        "the last layer has entries: {:?}",
        layers.last()
    );
}

/// The entry names of each layer of the first image in an OCI archive, in order.
fn layer_entries(archive: &Path) -> Vec<Vec<String>> {
    let mut blobs = std::collections::HashMap::new();
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    let blob =
        |digest: &str| &blobs[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))];
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let bytes = blob(layer["digest"].as_str().unwrap());
            let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
            } else {
                Box::new(bytes.as_slice())
            };
            tar::Archive::new(reader)
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect()
        })
        .collect()
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let file_secret = format!("file-secret-{}-Zq8", std::process::id());
    let env_secret = format!("env-secret-{}-Wx3", std::process::id());
    fs::write(env.path("secret.txt"), &file_secret).unwrap();
    let ctx = env.context(
        "secrets",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -d' ' -f1 > /file.sum && stat -c '%a %u' /run/secrets/token > /file.mode\n\
             RUN --mount=type=secret,id=api,env=API_KEY printf %s \"$API_KEY\" | sha256sum | cut -d' ' -f1 > /env.sum\n\
             RUN --mount=type=secret,id=token,target=/etc/app/token,mode=0440,uid=1000,required=true stat -c '%a %u' /etc/app/token > /target.mode\n\
             RUN --mount=type=secret,id=not-given test ! -e /run/secrets/not-given && echo absent > /optional\n\
             RUN --mount=type=secret,id=RBUILD_TEST_BY_ID,env=BY_ID test \"$BY_ID\" = by-id && echo by-id > /by-id\n",
        )],
    );
    let secret_file = env.path("secret.txt");
    // `id=NAME` alone reads the variable NAME, as buildx does.
    let secrets = [
        "--secret",
        &format!("id=token,src={}", secret_file.display()),
        "--secret",
        "id=api,env=RBUILD_TEST_API_KEY",
        "--secret",
        "id=RBUILD_TEST_BY_ID",
    ];
    let out = env
        .command()
        .env("RBUILD_TEST_API_KEY", &env_secret)
        .env("RBUILD_TEST_BY_ID", "by-id")
        .args(["build", "--progress", "plain", "-t", "secrets:1"])
        .args(secrets)
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let sum = |text: &str| -> String {
        use sha2::Digest;
        format!("{}\n", hex::encode(sha2::Sha256::digest(text.as_bytes())))
    };
    assert_eq!(
        run_sh(&env, "secrets:1", "cat /file.sum"),
        sum(&file_secret)
    );
    assert_eq!(run_sh(&env, "secrets:1", "cat /env.sum"), sum(&env_secret));
    assert_eq!(
        run_sh(
            &env,
            "secrets:1",
            "cat /file.mode /target.mode /optional /by-id"
        ),
        "400 0\n440 1000\nabsent\nby-id\n"
    );
    assert_eq!(
        run_sh(
            &env,
            "secrets:1",
            "test ! -e /run && test ! -e /etc/app && echo clean"
        ),
        "clean\n"
    );

    // Not in the output, the history, or any file of the store (blobs, snapshots, cache
    // records, logs, metadata).
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(&file_secret) && !text.contains(&env_secret));
    }
    let history = env.rbuild(&["history", "--no-trunc", "secrets:1"]);
    let history = format!("{}{}", stdout(&history), stderr(&history));
    assert!(history.contains("RUN"), "{history}");
    assert!(!history.contains(&file_secret) && !history.contains(&env_secret));
    // Built layers are kept as snapshots and written as blobs when they leave the store:
    // those bytes too.
    let saved = env.path("secrets.tar");
    assert_success(&env.rbuild(&["save", "secrets:1", "-o", saved.to_str().unwrap()]));
    let saved = fs::read(&saved).unwrap();
    assert!(!contains(&saved, file_secret.as_bytes()) && !contains(&saved, env_secret.as_bytes()));
    let files = files_under(&env.root());
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let bytes = fs::read(&file).unwrap_or_default();
        for secret in [&file_secret, &env_secret] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "the secret is in {}",
                file.display()
            );
        }
    }

    // A secret's content is not part of the cache key.
    fs::write(env.path("secret.txt"), "another value").unwrap();
    let out = env
        .command()
        .env("RBUILD_TEST_API_KEY", "another value")
        .env("RBUILD_TEST_BY_ID", "by-id")
        .args(["build", "--progress", "json", "-t", "secrets:2"])
        .args(secrets)
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let cached = stderr(&out)
        .lines()
        .filter(|line| line.contains("\"step_cached\""))
        .count();
    assert_eq!(cached, 5, "{}", stderr(&out));
}

#[test]
fn a_required_secret_that_is_missing_fails_with_its_id() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "required",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n",
        )],
    );
    let out = env.build(&ctx, "required:1");
    assert_failure(&out);
    let text = stderr(&out);
    assert!(
        text.contains("secret `npmrc` is required but was not given"),
        "{text}"
    );
    assert!(text.contains("--secret id=npmrc"), "a help line: {text}");
    assert!(
        !stdout(&env.rbuild(&["images"])).contains("required"),
        "no image is named"
    );
}
