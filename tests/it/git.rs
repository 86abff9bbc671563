//! `ADD` of git repositories, served by `git daemon` on 127.0.0.1 from a repository the
//! test makes: refs, sub-directories, `--keep-git-dir`, `--checksum`, commit times, the
//! cache keyed by commit, and a moved ref explained.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::support::*;

/// The time of every commit the test makes: 2024-01-02T03:04:05Z.
const COMMIT_TIME: &str = "1704164645";

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", format!("@{COMMIT_TIME} +0000"))
        .env("GIT_COMMITTER_DATE", format!("@{COMMIT_TIME} +0000"))
        .env("GIT_AUTHOR_NAME", "rbuild")
        .env("GIT_AUTHOR_EMAIL", "rbuild@example.com")
        .env("GIT_COMMITTER_NAME", "rbuild")
        .env("GIT_COMMITTER_EMAIL", "rbuild@example.com")
        .output()
        .expect("git");
    assert_success(&out);
    stdout(&out).trim().to_owned()
}

/// A `git daemon` serving the bare repositories under `base`; killed when dropped.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = free_port();
        // `git-daemon` itself, not the `git daemon` wrapper: killing the wrapper would leave
        // the server running.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let daemon = PathBuf::from(stdout(&exec_path).trim()).join("git-daemon");
        let mut child = Command::new(daemon)
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        assert!(wait_for_port(port, &mut child), "git daemon did not start");
        Daemon { child, port }
    }

    fn url(&self) -> String {
        self.url_of("repo.git")
    }

    fn url_of(&self, repository: &str) -> String {
        format!("git://127.0.0.1:{}/{repository}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A work tree with a first commit (tagged `v1`), pushed to the bare `base/repo.git`.
fn repository(env: &TestEnv) -> (PathBuf, PathBuf) {
    let base = env.path("served");
    let bare = base.join("repo.git");
    fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let work = env.path("work");
    fs::create_dir_all(work.join("docs")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("README"), "readme v1\n").unwrap();
    fs::write(work.join("docs/guide.txt"), "guide\n").unwrap();
    std::os::unix::fs::symlink("../README", work.join("docs/readme")).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main", "v1"]);
    (base, work)
}

fn build(env: &TestEnv, context: &Path, tag: &str) -> Output {
    env.host_command()
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(context)
        .output()
        .unwrap()
}

fn cat(env: &TestEnv, image: &str, script: &str) -> String {
    let out = env.rbuild(&["run", image, "sh", "-c", script]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn add_fetches_a_ref_of_a_repository_keyed_by_its_commit() {
    require_privileges!();
    require_tool("git");
    let env = TestEnv::with_busybox();
    let (base, work) = repository(&env);
    let daemon = Daemon::start(&base);
    let url = daemon.url();
    let v1 = git(&work, &["rev-parse", "v1^{commit}"]);
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 ADD {url}#v1:docs /docs/\n\
                 ADD {url} /all/\n\
                 ADD --keep-git-dir {url}?ref=main /kept/\n\
                 ADD --checksum={v1} {url}#v1 /pinned/\n"
            ),
        )],
    );
    let out = build(&env, &context, "git:1");
    assert_success(&out);
    assert_eq!(
        cat(
            &env,
            "git:1",
            "cat /docs/guide.txt /all/README /pinned/README; readlink /docs/readme; \
             stat -c %Y /docs/guide.txt /all/docs /all/README; \
             test -d /all/.git || echo no-git; test -d /kept/.git && echo kept-git"
        ),
        format!(
            "guide\nreadme v1\nreadme v1\n../README\n{COMMIT_TIME}\n{COMMIT_TIME}\n{COMMIT_TIME}\n\
             no-git\nkept-git\n"
        )
    );

    // Unchanged: fully cached. A new commit on `main`: the steps on `main` (and HEAD) run
    // again and say why.
    let out = build(&env, &context, "git:1");
    assert_success(&out);
    assert_eq!(
        stderr(&out).matches("CACHED").count(),
        4,
        "{}",
        stderr(&out)
    );
    fs::write(work.join("README"), "readme v2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    git(
        &work,
        &[
            "push",
            "-q",
            base.join("repo.git").to_str().unwrap(),
            "main",
        ],
    );
    let v2 = git(&work, &["rev-parse", "HEAD"]);
    let out = build(&env, &context, "git:2");
    assert_success(&out);
    let log = flat(&stderr(&out));
    assert!(
        log.contains(&format!("`main` moved from {} to {}", &v1[..12], &v2[..12])),
        "{log}"
    );
    assert!(log.contains("`HEAD` moved from"), "{log}");
    // Only the step before the first moved ref (each step builds on the one above it).
    assert_eq!(stderr(&out).matches("CACHED").count(), 1, "{log}");
    assert_eq!(
        cat(&env, "git:2", "cat /all/README /pinned/README"),
        "readme v2\nreadme v1\n"
    );

    // A checksum the ref does not point at, and a ref that does not exist.
    for (dockerfile, message) in [
        (
            format!("FROM busybox\nADD --checksum={v1} {url}#main /x/\n"),
            format!("`main` is at {v2}, not at the commit the checksum names ({v1})"),
        ),
        (
            format!("FROM busybox\nADD {url}#nope /x/\n"),
            "has no ref `nope`".to_owned(),
        ),
        (
            format!("FROM busybox\nADD {url}#v1:../.. /x/\n"),
            "leaves the repository".to_owned(),
        ),
    ] {
        fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        let out = build(&env, &context, "git:3");
        assert_failure(&out);
        let err = flat(&stderr(&out));
        assert!(err.contains(&message), "{err}");
    }
}

/// Submodules are checked out at the commits the superproject records, recursively,
/// whether their URL is absolute or relative to the remote; `submodules=false` leaves
/// them out; `.git` files go with `.git` unless kept; a submodule on a local path is
/// refused (a Dockerfile's repository cannot make rbuild read the host's files).
#[test]
fn add_checks_out_submodules_at_their_recorded_commits() {
    require_privileges!();
    require_tool("git");
    let env = TestEnv::with_busybox();
    let base = env.path("served");
    for name in ["lib.git", "app.git", "local.git"] {
        fs::create_dir_all(base.join(name)).unwrap();
        git(&base.join(name), &["init", "-q", "--bare", "-b", "main"]);
    }
    let daemon = Daemon::start(&base);
    let lib = env.path("lib");
    fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    fs::write(lib.join("lib.txt"), "lib v1\n").unwrap();
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "v1"]);
    git(
        &lib,
        &["push", "-q", base.join("lib.git").to_str().unwrap(), "main"],
    );

    let app = env.path("app");
    fs::create_dir_all(&app).unwrap();
    git(&app, &["init", "-q", "-b", "main"]);
    fs::write(app.join("app.txt"), "app\n").unwrap();
    let lib_url = daemon.url_of("lib.git");
    git(&app, &["submodule", "add", "-q", &lib_url, "lib"]);
    git(&app, &["submodule", "add", "-q", &lib_url, "vendor/rel"]);
    git(
        &app,
        &[
            "config",
            "-f",
            ".gitmodules",
            "submodule.vendor/rel.url",
            "../lib.git",
        ],
    );
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-q", "-m", "app"]);
    git(
        &app,
        &["push", "-q", base.join("app.git").to_str().unwrap(), "main"],
    );
    // The submodule moves on; the superproject still records v1.
    fs::write(lib.join("lib.txt"), "lib v2\n").unwrap();
    git(&lib, &["commit", "-q", "-am", "v2"]);
    git(
        &lib,
        &["push", "-q", base.join("lib.git").to_str().unwrap(), "main"],
    );

    let url = daemon.url_of("app.git");
    let context = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 ADD {url}#main /app/\n\
                 ADD {url}?ref=main&submodules=false /bare/\n\
                 ADD --keep-git-dir {url}#main /kept/\n"
            ),
        )],
    );
    let out = build(&env, &context, "sub:1");
    assert_success(&out);
    assert_eq!(
        cat(
            &env,
            "sub:1",
            "cat /app/app.txt /app/lib/lib.txt /app/vendor/rel/lib.txt; \
             stat -c %Y /app/lib/lib.txt; \
             find /app -name .git | wc -l; ls -A /bare/lib | wc -l; \
             test -f /kept/lib/.git && test -d /kept/.git/modules/lib && echo kept"
        ),
        format!("app\nlib v1\nlib v1\n{COMMIT_TIME}\n0\n0\nkept\n")
    );

    // A submodule whose URL is a path of this machine: git's `file` transport is not
    // allowed, and the step says so; without submodules the same repository is fine.
    let local = env.path("local");
    fs::create_dir_all(&local).unwrap();
    git(&local, &["init", "-q", "-b", "main"]);
    let lib_path = base.join("lib.git");
    git(
        &local,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            lib_path.to_str().unwrap(),
            "lib",
        ],
    );
    git(&local, &["commit", "-q", "-m", "local"]);
    git(
        &local,
        &[
            "push",
            "-q",
            base.join("local.git").to_str().unwrap(),
            "main",
        ],
    );
    let local_url = daemon.url_of("local.git");
    fs::write(
        context.join("Dockerfile"),
        format!("FROM busybox\nADD {local_url}#main /x/\n"),
    )
    .unwrap();
    let out = build(&env, &context, "sub:2");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("is a path of this machine (`file` transport)"),
        "{err}"
    );
    fs::write(
        context.join("Dockerfile"),
        format!("FROM busybox\nADD {local_url}?ref=main&submodules=false /x/\n"),
    )
    .unwrap();
    assert_success(&build(&env, &context, "sub:3"));
}

/// `rbuild build git://…/repo.git#REF:DIR`: the context is that directory of the commit,
/// its Dockerfile the one there (or `-f` inside the repository), file times the commit's,
/// no `.git`; a rebuild is the same image.
#[test]
fn a_repository_is_a_build_context() {
    require_privileges!();
    require_tool("git");
    let env = TestEnv::with_busybox();
    let (base, work) = repository(&env);
    fs::create_dir_all(work.join("app")).unwrap();
    fs::write(
        work.join("app/Dockerfile"),
        "FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/hello.txt\n",
    )
    .unwrap();
    fs::write(work.join("app/hello.txt"), "hello from git\n").unwrap();
    fs::write(
        work.join("app/Alt.Dockerfile"),
        "FROM busybox\nCOPY hello.txt /alt.txt\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "app"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    git(
        &work,
        &[
            "push",
            "-q",
            base.join("repo.git").to_str().unwrap(),
            "main",
        ],
    );
    let daemon = Daemon::start(&base);
    let context = format!("{}#main:app", daemon.url());

    let out = build(&env, Path::new(&context), "fromgit:1");
    assert_success(&out);
    assert!(
        stderr(&out).contains(&format!("at commit {commit}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        cat(
            &env,
            "fromgit:1",
            "cat /ctx/hello.txt; ls -a /ctx; stat -c %Y /ctx/hello.txt"
        ),
        format!("hello from git\n.\n..\nAlt.Dockerfile\nDockerfile\nhello.txt\n{COMMIT_TIME}\n")
    );
    let id = stdout(&out);
    let again = build(&env, Path::new(&context), "fromgit:2");
    assert_success(&again);
    assert_eq!(stdout(&again), id, "a cached rebuild is the same image");

    let alt = env
        .host_command()
        .args([
            "build",
            "-q",
            "-f",
            "Alt.Dockerfile",
            "-t",
            "fromgit:alt",
            &context,
        ])
        .output()
        .unwrap();
    assert_success(&alt);
    assert_eq!(cat(&env, "fromgit:alt", "cat /alt.txt"), "hello from git\n");

    // `SOURCE_DATE_EPOCH=context`: the commit's time, for the image and for an ARG.
    let epoch = env
        .host_command()
        .args(["build", "-q", "-t", "fromgit:epoch"])
        .args(["--build-arg", "SOURCE_DATE_EPOCH=context", &context])
        .output()
        .unwrap();
    assert_success(&epoch);
    let config: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "fromgit:epoch"]).stdout).unwrap();
    assert_eq!(config["created"], "2024-01-02T03:04:05Z");

    // The Dockerfile is a file of the repository, never one of this machine.
    let outside = env
        .host_command()
        .args(["build", "-f", "../README", &context])
        .output()
        .unwrap();
    assert_failure(&outside);
    assert!(
        flat(&stderr(&outside)).contains("the Dockerfile is a file of the repository"),
        "{}",
        stderr(&outside)
    );
    let missing = env
        .host_command()
        .args(["build", &format!("{}#main:docs", daemon.url())])
        .output()
        .unwrap();
    assert_failure(&missing);
    assert!(
        flat(&stderr(&missing)).contains(&format!("commit {commit} of")),
        "{}",
        stderr(&missing)
    );
    assert!(flat(&stderr(&missing)).contains("has no `Dockerfile` in `docs`"));
    let unknown = env
        .host_command()
        .args(["build", &format!("{}#nope", daemon.url())])
        .output()
        .unwrap();
    assert_failure(&unknown);
    assert!(
        flat(&stderr(&unknown)).contains("has no ref `nope`"),
        "{}",
        stderr(&unknown)
    );
}

/// A build of a git context is dated by its commit (no SOURCE_DATE_EPOCH needed), names
/// the repository and commit in its annotations and provenance, and `verify-build`
/// repeats it from the commit alone.
#[test]
fn a_git_context_build_is_dated_by_its_commit_and_verified_from_it_alone() {
    require_privileges!();
    require_tool("git");
    let env = TestEnv::with_busybox();
    let (base, work) = repository(&env);
    fs::create_dir_all(work.join("app")).unwrap();
    fs::write(
        work.join("app/Build.Dockerfile"),
        "FROM busybox\nCOPY hello.txt /hello.txt\nRUN cp /hello.txt /copy.txt\n",
    )
    .unwrap();
    fs::write(work.join("app/hello.txt"), "hello from git\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "app"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    git(
        &work,
        &[
            "push",
            "-q",
            base.join("repo.git").to_str().unwrap(),
            "main",
        ],
    );
    let daemon = Daemon::start(&base);
    let context = format!("{}#main:app", daemon.url());
    let out = env
        .host_command()
        .env_remove(crate::support::NO_DEFAULT_ATTESTATIONS)
        .args([
            "build",
            "-q",
            "-f",
            "Build.Dockerfile",
            "-t",
            "fromgit",
            &context,
        ])
        .output()
        .unwrap();
    assert_success(&out);

    let manifest: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "--manifest", "fromgit"]).stdout).unwrap();
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.source"], daemon.url());
    assert_eq!(
        annotations["org.opencontainers.image.revision"],
        commit.as_str()
    );
    let created = annotations["org.opencontainers.image.created"]
        .as_str()
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&env.rbuild(&["inspect", "fromgit"]).stdout).unwrap();
    assert_eq!(config["created"], created);
    let epoch = std::process::Command::new("date")
        .args(["-u", "-d", created, "+%s"])
        .output()
        .unwrap();
    assert_eq!(stdout(&epoch).trim(), COMMIT_TIME);

    let out = env.rbuild(&["inspect", "--provenance", "fromgit"]);
    assert_success(&out);
    let provenance: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let definition = &provenance["predicate"]["buildDefinition"];
    let source = &definition["externalParameters"]["configSource"];
    assert_eq!(source["uri"], format!("{}@{commit}", daemon.url()));
    assert_eq!(source["path"], "Build.Dockerfile");
    assert_eq!(
        definition["internalParameters"]["sourceDateEpoch"].to_string(),
        COMMIT_TIME
    );

    let out = env
        .host_command()
        .args(["verify-build", "fromgit"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("reproduced: fromgit (linux/amd64)"),
        "{}",
        stdout(&out)
    );
}

/// A local repository by `file://` URL is neither fetched nor looked for as a path: the
/// context and an ADD source say that such URLs are not supported, and what to do.
#[test]
fn a_file_url_repository_is_refused_saying_why() {
    let env = TestEnv::new();
    let (base, _) = repository(&env);
    let url = format!("file://{}#main", base.join("repo.git").display());
    let out = env.host_command().args(["build", &url]).output().unwrap();
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("`file://` contexts are not supported"),
        "{err}"
    );
    assert!(err.contains("checkout"), "{err}");

    let ctx = env.context(
        "add-file-url",
        &[("Dockerfile", &format!("FROM scratch\nADD {url} /src/\n"))],
    );
    let out = build(&env, &ctx, "file-url:1");
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("`ADD` cannot fetch `{url}`")),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
}
