//! `ADD <url>`: files downloaded from a small HTTP/1.1 server started by each test on
//! 127.0.0.1 (rbuild runs in the machine's network namespace to reach it): naming,
//! modes, owners, mtimes, `--checksum`, revalidation with `ETag` and the cache, errors.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// `Last-Modified` of every file served: 1 700 000 000 seconds after the epoch.
const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
const LAST_MODIFIED_SECS: &str = "1700000000";

/// The `Authorization` values `/private/` paths accept: a token as a bearer, and `user:pw`
/// as basic credentials.
const AUTHORIZED: [&str; 2] = ["Bearer tok3n-7f1c", "Basic dXNlcjpwdy03ZjFj"];

/// One request the server answered.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    if_none_match: Option<String>,
    authorization: Option<String>,
    status: u16,
    /// Body bytes sent.
    body: usize,
}

/// A file server: `GET path` answers the file with `ETag` (the content's sha256) and
/// `Last-Modified`, `304` to a matching `If-None-Match`, `404` for unknown paths, `401` for
/// a path under `/private/` without one of the [`AUTHORIZED`] `Authorization`s. Every
/// answer closes the connection. Stops when dropped (the port then refuses connections).
struct FileServer {
    host: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    fn start(files: &[(&str, &[u8])]) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let files: HashMap<String, Vec<u8>> = files
            .iter()
            .map(|(path, body)| (path.to_string(), body.to_vec()))
            .collect();
        let files = Arc::new(Mutex::new(files));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (files, hits, stop) = (files.clone(), hits.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (files, hits) = (files.clone(), hits.clone());
                            std::thread::spawn(move || {
                                let _ = answer(client, &files, &hits);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                // The listener closes here: connections are refused from now on.
            })
        };
        FileServer {
            host,
            files,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    fn set(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), body.to_vec());
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// How many times a body was sent for `path`.
    fn downloads(&self, path: &str) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.path == path && h.status == 200)
            .count()
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(
    mut client: TcpStream,
    files: &Mutex<HashMap<String, Vec<u8>>>,
    hits: &Mutex<Vec<Hit>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let if_none_match = header("if-none-match");
    let authorization = header("authorization");
    let body = files.lock().unwrap().get(&path).cloned();
    let allowed = !path.starts_with("/private/")
        || AUTHORIZED.contains(&authorization.as_deref().unwrap_or(""));
    let (status, response) = match body {
        Some(_) if !allowed => (
            401,
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        None => (
            404,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        Some(body) => {
            let etag = format!("\"{}\"", &digest(&body)["sha256:".len()..][..16]);
            if if_none_match.as_deref() == Some(etag.as_str()) {
                (
                    304,
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes(),
                )
            } else {
                let mut response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\n\
                     Last-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                response.extend_from_slice(&body);
                (200, response)
            }
        }
    };
    let body_len = if status == 200 {
        response.len() - response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4
    } else {
        0
    };
    hits.lock().unwrap().push(Hit {
        path,
        if_none_match,
        authorization,
        status,
        body: body_len,
    });
    client.write_all(&response)?;
    client.flush()
}

/// `rbuild build --progress plain` in the machine's network namespace.
fn build(env: &TestEnv, ctx: &Path, tag: &str) -> Output {
    env.host_command()
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(ctx)
        .output()
        .expect("run rbuild")
}

/// Builds with JSON progress; returns the descriptions of the CACHED steps and of the
/// steps that ran.
fn build_steps(env: &TestEnv, ctx: &Path, tag: &str) -> (Vec<String>, Vec<String>) {
    let out = env
        .host_command()
        .args(["build", "--progress", "json", "-t", tag])
        .arg(ctx)
        .output()
        .expect("run rbuild");
    assert_success(&out);
    steps_of(&out)
}

/// An error report on one line: the renderer wraps long messages and frames them.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| !word.chars().all(|c| "│×╭╰─┬┴·".contains(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `script` in `image` and returns its stdout.
fn sh(env: &TestEnv, image: &str, script: &str) -> String {
    let out = env.rbuild(&["run", "--entrypoint", "/bin/sh", image, "-c", script]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn add_url_names_the_file_and_sets_mode_owner_and_mtime() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    // A tar: a local one would be extracted, a downloaded one never is.
    let archive = raw_tar(&[("inside.txt", tar::EntryType::Regular, "", b"inside\n")]);
    let server = FileServer::start(&[("/dl/tool.tar", &archive), ("/dl/config", b"key=value\n")]);
    let dockerfile = format!(
        "FROM busybox\n\
         ADD {tool}?version=2 /opt/\n\
         ADD {config} /etc/app.conf\n\
         ADD --chown=1000:1000 --chmod=644 {config} local.txt /data/\n\
         ADD {config} /etc/app.conf/\n",
        tool = server.url("/dl/tool.tar"),
        config = server.url("/dl/config"),
    );
    let ctx = env.context(
        "named",
        &[("Dockerfile", &dockerfile), ("local.txt", "local\n")],
    );
    // Neither `check` nor `--print graph` downloads anything.
    let check = env.host_command().arg("check").arg(&ctx).output().unwrap();
    assert_success(&check);
    let graph = env
        .host_command()
        .args(["build", "--print", "graph"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&graph);
    assert!(
        stdout(&graph).contains(&server.url("/dl/config")),
        "{}",
        stdout(&graph)
    );
    assert!(server.hits().is_empty(), "{:?}", server.hits());

    // `/etc/app.conf/` after `/etc/app.conf` was made a file: a clear error.
    let out = build(&env, &ctx, "named:1");
    assert_failure(&out);
    assert!(stderr(&out).contains("Dockerfile:5"), "{}", stderr(&out));

    let ctx = env.context(
        "named",
        &[(
            "Dockerfile",
            &dockerfile.replace(
                &format!("ADD {} /etc/app.conf/\n", server.url("/dl/config")),
                "",
            ),
        )],
    );
    let out = build(&env, &ctx, "named:1");
    assert_success(&out);
    let out = sh(
        &env,
        "named:1",
        "ls /opt; \
         stat -c '%n %a %u:%g %Y %s' /opt/tool.tar /etc/app.conf /data/config; \
         stat -c '%n %a %u:%g' /data/local.txt; cat /etc/app.conf /data/config; \
         test -e /opt/inside.txt && echo extracted; true",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "tool.tar".to_owned(),
            format!(
                "/opt/tool.tar 600 0:0 {LAST_MODIFIED_SECS} {}",
                archive.len()
            ),
            format!("/etc/app.conf 600 0:0 {LAST_MODIFIED_SECS} 10"),
            format!("/data/config 644 1000:1000 {LAST_MODIFIED_SECS} 10"),
            "/data/local.txt 644 1000:1000".to_owned(),
            "key=value".to_owned(),
            "key=value".to_owned(),
        ],
        "named from the URL path without its query (or the destination), mode 0600 and \
         root's unless --chmod/--chown, mtime from Last-Modified, archives not extracted: {out}"
    );
}

#[test]
fn add_url_checksum_verifies_and_a_rebuild_needs_no_network() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let body = b"checked content\n";
    let server = FileServer::start(&[("/file", body)]);
    let good = digest(body);
    let ctx = env.context(
        "checksum",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nADD --checksum={good} {} /checked\n",
                server.url("/file")
            ),
        )],
    );
    assert_success(&build(&env, &ctx, "checksum:1"));
    assert_eq!(server.downloads("/file"), 1);
    assert_eq!(sh(&env, "checksum:1", "cat /checked"), "checked content\n");

    // The server is gone: the step's key is the checksum, the content is in the store.
    let url = server.url("/file");
    server.stop();
    let (cached, ran) = build_steps(&env, &ctx, "checksum:2");
    assert_eq!(cached, [format!("ADD --checksum={good} {url} /checked")]);
    assert!(ran.is_empty(), "{ran:?}");

    // A wrong checksum: the error names the line, the expected and the actual digest.
    let server = FileServer::start(&[("/file", body)]);
    let wrong = digest(b"something else");
    let ctx = env.context(
        "mismatch",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nRUN true\nADD --checksum={wrong} {} /checked\n",
                server.url("/file")
            ),
        )],
    );
    let out = build(&env, &ctx, "mismatch:1");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains(&format!("expected {wrong}")), "{err}");
    assert!(err.contains(&format!("has digest {good}")), "{err}");
    verify_blobs(&env.root());
}

#[test]
fn add_url_rebuild_revalidates_with_etag() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let server = FileServer::start(&[("/data.txt", b"version 1\n")]);
    let url = server.url("/data.txt");
    let ctx = env.context(
        "revalidate",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url} /srv/\nRUN cat /srv/data.txt > /copy.txt\n"),
        )],
    );
    let step = format!("ADD {url} /srv/");
    let (cached, ran) = build_steps(&env, &ctx, "reval:1");
    assert!(cached.is_empty(), "{cached:?}");
    assert_eq!(ran[0], step);
    assert_eq!(server.downloads("/data.txt"), 1);

    // Unchanged: a conditional GET answered 304, no second body, every step CACHED.
    let (cached, ran) = build_steps(&env, &ctx, "reval:2");
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(ran.is_empty(), "{ran:?}");
    let hits = server.hits();
    let last = hits.last().unwrap();
    assert_eq!(last.status, 304, "{hits:?}");
    assert!(last.if_none_match.is_some(), "{hits:?}");
    assert_eq!(last.body, 0);
    assert_eq!(server.downloads("/data.txt"), 1, "{hits:?}");

    // Changed on the server: downloaded again, the step and the one after it run.
    server.set("/data.txt", b"version 2\n");
    let (cached, ran) = build_steps(&env, &ctx, "reval:3");
    assert!(cached.is_empty(), "{cached:?}");
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(server.downloads("/data.txt"), 2);
    assert_eq!(sh(&env, "reval:3", "cat /copy.txt"), "version 2\n");
    verify_blobs(&env.root());
}

#[test]
fn add_url_errors_name_the_url_the_status_and_the_line() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let server = FileServer::start(&[("/", b"index\n")]);
    let missing = server.url("/missing.tar.gz");
    let ctx = env.context(
        "notfound",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN true\nADD {missing} /opt/\n"),
        )],
    );
    let out = build(&env, &ctx, "bad:1");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains(&missing), "{err}");
    assert!(err.contains("404 Not Found"), "{err}");

    // No file name in the URL for a directory destination.
    let ctx = env.context(
        "noname",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {} /opt/\n", server.url("/")),
        )],
    );
    let out = build(&env, &ctx, "bad:2");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("has no file name"), "{err}");

    // Nothing listens any more: the connection is refused, after the retries.
    let gone = server.url("/");
    server.stop();
    let ctx = env.context(
        "refused",
        &[("Dockerfile", &format!("FROM busybox\nADD {gone} /index\n"))],
    );
    let out = build(&env, &ctx, "bad:3");
    assert_failure(&out);
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains(&gone), "{err}");
}

/// A download from a host that wants credentials gets them from the build's
/// `HTTP_AUTH_TOKEN_<host>` (as a bearer) or `HTTP_AUTH_HEADER_<host>` (the whole header)
/// secret; other hosts never see them; the secret is not in the cache key (a rebuild with
/// the other secret is cached) nor anywhere in the store.
#[test]
fn add_url_authenticates_with_the_host_s_secret_and_keeps_it_out() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let private = FileServer::start(&[("/private/app.tar", b"private bytes\n")]);
    let public = FileServer::start(&[("/notes.txt", b"public\n")]);
    let host = private.host.split(':').next().unwrap().to_owned();
    assert_eq!(host, "127.0.0.1");
    let dockerfile = format!(
        "FROM busybox\nADD {} /app.tar\nADD {} /notes.txt\n",
        private.url("/private/app.tar"),
        // `localhost`: another host name, for which no secret is given.
        public.url("/notes.txt").replace("127.0.0.1", "localhost"),
    );
    let ctx = env.context("auth", &[("Dockerfile", &dockerfile)]);
    let build_with = |secret: &str, value: &str| {
        env.host_command()
            .args(["build", "--progress", "plain", "-t", "auth:1"])
            .args(["--secret", &format!("id={secret},env=URL_SECRET")])
            .arg(&ctx)
            .env("URL_SECRET", value)
            .output()
            .expect("run rbuild")
    };

    // No secret: the server's 401, with the line and the URL.
    let out = build(&env, &ctx, "auth:0");
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(
        err.contains("--secret id=HTTP_AUTH_TOKEN_127.0.0.1,env=VARIABLE"),
        "{err}"
    );
    // Given, but its variable is not set: said so, not a bare 401.
    let out = env
        .host_command()
        .args(["build", "--progress", "plain", "-t", "auth:0"])
        .args([
            "--secret",
            &format!("id=HTTP_AUTH_TOKEN_{host},env=URL_SECRET_UNSET"),
        ])
        .arg(&ctx)
        .env_remove("URL_SECRET_UNSET")
        .output()
        .unwrap();
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("comes from the environment variable `URL_SECRET_UNSET`, which is not set"),
        "{err}"
    );

    let token = "tok3n-7f1c";
    let out = build_with(&format!("HTTP_AUTH_TOKEN_{host}"), token);
    assert_success(&out);
    assert_eq!(sh(&env, "auth:1", "cat /app.tar"), "private bytes\n");
    let sent: Vec<Option<String>> = private
        .hits()
        .iter()
        .map(|h| h.authorization.clone())
        .collect();
    assert_eq!(
        sent.last().unwrap().as_deref(),
        Some(AUTHORIZED[0]),
        "{sent:?}"
    );
    assert!(
        public.hits().iter().all(|h| h.authorization.is_none()),
        "{:?}",
        public.hits()
    );

    // The whole header as the secret; the content is the same, so the step is cached:
    // the secret is not part of its key.
    let out = env
        .host_command()
        .args(["build", "--progress", "json", "-t", "auth:2"])
        .args([
            "--secret",
            &format!("id=HTTP_AUTH_HEADER_{host},env=URL_SECRET"),
        ])
        .arg(&ctx)
        .env("URL_SECRET", AUTHORIZED[1])
        .output()
        .expect("run rbuild");
    assert_success(&out);
    let (cached, ran) = steps_of(&out);
    assert!(
        cached.iter().any(|s| s.contains("/private/app.tar")),
        "cached {cached:?} ran {ran:?}"
    );
    let last = private.hits().last().cloned().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some(AUTHORIZED[1]),
        "{last:?}"
    );
    assert_eq!(last.status, 304, "{last:?}");

    // Neither secret was written anywhere in the store (images, cache records, state).
    let found: Vec<_> = files_under(&env.root())
        .into_iter()
        .filter(|file| {
            std::fs::read(file).is_ok_and(|bytes| {
                contains(&bytes, token.as_bytes()) || contains(&bytes, b"dXNlcjpwdy03ZjFj")
            })
        })
        .collect();
    assert!(found.is_empty(), "secrets in {found:?}");
}

/// `ADD --unpack=true` extracts a downloaded archive (a file that is not one is copied as
/// it is); `--unpack=false` copies a local archive instead of extracting it; the flag is
/// part of the step's cache key.
#[test]
fn add_unpack_extracts_downloads_and_keeps_local_archives_whole() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let archive = raw_tar(&[("inside.txt", tar::EntryType::Regular, "", b"inside\n")]);
    let server = FileServer::start(&[("/dl/tool.tar", &archive), ("/dl/plain", b"plain\n")]);
    let dockerfile = format!(
        "FROM busybox\n\
         ADD --unpack=true {tool} /opt/tool/\n\
         ADD --unpack {plain} /opt/plain/\n\
         ADD --unpack=false local.tar /kept/\n\
         ADD local.tar /unpacked/\n",
        tool = server.url("/dl/tool.tar"),
        plain = server.url("/dl/plain"),
    );
    let ctx = env.context("unpack", &[("Dockerfile", &dockerfile)]);
    std::fs::write(ctx.join("local.tar"), &archive).unwrap();
    let out = build(&env, &ctx, "unpack:1");
    assert_success(&out);
    assert_eq!(
        sh(
            &env,
            "unpack:1",
            "cat /opt/tool/inside.txt /opt/plain/plain /unpacked/inside.txt; \
             ls /opt/tool; ls /kept; tar -tf /kept/local.tar"
        ),
        "inside\nplain\ninside\ninside.txt\nlocal.tar\ninside.txt\n"
    );
    // The same download without the flag is another step, which keeps the file whole.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\nADD {} /opt/tool/\n",
            server.url("/dl/tool.tar")
        ),
    )
    .unwrap();
    let out = build(&env, &ctx, "unpack:2");
    assert_success(&out);
    assert_eq!(sh(&env, "unpack:2", "ls /opt/tool"), "tool.tar\n");
    // Not a flag of COPY.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY --unpack local.tar /x/\n",
    )
    .unwrap();
    let out = build(&env, &ctx, "unpack:3");
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("unknown flag `--unpack` for `COPY`"),
        "{}",
        stderr(&out)
    );
}

/// The image's provenance names each download by its URL and content digest.
#[test]
fn the_provenance_names_each_download_by_its_digest() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let body = b"downloaded\n";
    let server = FileServer::start(&[("/tool.txt", body)]);
    let url = server.url("/tool.txt");
    let ctx = env.context(
        "provenance",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD {url} /tool.txt\n"),
        )],
    );
    let out = env
        .host_command()
        .env_remove(crate::support::NO_DEFAULT_ATTESTATIONS)
        .args(["build", "-q", "-t", "downloaded"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let out = env.rbuild(&["inspect", "--provenance", "downloaded"]);
    assert_success(&out);
    let statement: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let materials = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let download = materials
        .iter()
        .find(|m| m["uri"] == url.as_str())
        .unwrap_or_else(|| {
            panic!("{materials:#?}");
        });
    assert_eq!(
        format!("sha256:{}", download["digest"]["sha256"].as_str().unwrap()),
        digest(body)
    );
}
