//! Faults injected between rbuild and a registry by a proxy: a connection dropped in the
//! middle of a blob, a 500 once, a 503 during an upload, an upload session the registry
//! drops, a body that does not match its digest, a manifest over 4 MiB. Each ends in a retry that works or a clear error, and the
//! store is never left corrupt.

use std::fs;

use crate::registry_support::*;
use crate::support::*;

/// A registry with a two-layer image (`faults/app:1`, one layer of 2 MiB of noise) and a
/// proxy in front of it applying `rule`.
fn faulty(
    rule: impl Fn(&Request) -> Action + Send + Sync + 'static,
) -> (TestRegistry, FaultProxy, TestEnv) {
    let registry = TestRegistry::start();
    let seed = TestEnv::new();
    let tar = seed.path("image.tar");
    write_image(&tar, "faults:1", &[noise_layer(2 << 20), noise_layer(1000)]);
    assert_success(&rbuild(&seed, &["load", "-i", tar.to_str().unwrap()]));
    assert_success(&rbuild(
        &seed,
        &["push", "faults:1", &registry.reference("faults/app:1")],
    ));
    let proxy = FaultProxy::start(&registry.host, rule);
    (registry, proxy, TestEnv::new())
}

fn is_big_blob(request: &Request) -> bool {
    request.method == "GET" && request.path.contains("/blobs/") && !request.path.contains("uploads")
}

#[test]
fn a_connection_dropped_mid_blob_is_resumed() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(once(|| Action::DropMidBody, is_big_blob));
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert_store_clean(&env);
    let seen = proxy.seen.lock().unwrap();
    assert!(
        seen.iter().filter(|r| is_big_blob(r)).count() >= 3,
        "{seen:?}"
    );
}

#[test]
fn a_500_once_is_retried() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(once(
        || Action::Respond {
            status: 500,
            content_type: "text/plain",
            body: b"boom".to_vec(),
        },
        |r| r.path.contains("/manifests/"),
    ));
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert_store_clean(&env);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(|r: &Request| {
        if is_big_blob(r) {
            Action::Corrupt
        } else {
            Action::Forward
        }
    });
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains("has digest") && err.contains("expected"),
        "{err}"
    );
    assert_store_clean(&env);
    let images = stdout(&rbuild(&env, &["images", "--format", "json"]));
    assert!(images.trim().is_empty(), "{images}");
    assert_eq!(fs::read_dir(env.root().join("ingest")).unwrap().count(), 0);
}

#[test]
fn a_manifest_over_4_mib_is_refused() {
    require_privileges!();
    let (_registry, proxy, env) = faulty(|r: &Request| {
        if r.path.contains("/manifests/") {
            let mut body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
            body.resize(5 << 20, b'a');
            body.extend_from_slice(br#""}}"#);
            Action::Respond {
                status: 200,
                content_type: "application/vnd.oci.image.manifest.v1+json",
                body,
            }
        } else {
            Action::Forward
        }
    });
    let out = rbuild(&env, &["pull", &proxy.reference("faults/app:1")]);
    assert_failure(&out);
    assert!(
        stderr(&out).contains("more than the limit of 4194304"),
        "{}",
        stderr(&out)
    );
    assert_store_clean(&env);
}

#[test]
fn a_500_during_an_upload_is_retried() {
    require_privileges!();
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(
        &registry.host,
        once(
            || Action::Respond {
                status: 503,
                content_type: "text/plain",
                body: b"busy".to_vec(),
            },
            |r| r.method == "POST" && r.path.contains("/blobs/uploads/"),
        ),
    );
    let env = busybox_env();
    let out = rbuild(&env, &["push", "busybox", &proxy.reference("up/busybox:1")]);
    assert_success(&out);
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    let out = rbuild(
        &TestEnv::new(),
        &["pull", &registry.reference("up/busybox:1")],
    );
    assert_success(&out);
}

#[test]
fn a_build_cancelled_while_it_pushes_stops_and_pushes_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    require_privileges!();
    // A "registry" that accepts connections and never answers: the push hangs there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, reached) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let target = format!("127.0.0.1:{port}/app:1");
    let mut child = command(&env)
        .args([
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &target,
            ctx.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            log.push_str(&line.unwrap());
            log.push('\n');
        }
        log
    });
    // The build is done and the push has reached the registry.
    reached
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the push reached the registry");
    // SAFETY: a signal to a child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("build cancelled"), "{log}");
    assert!(!log.contains("pushed "), "{log}");
}

/// A registry that forgets an upload session after a failed request, as distribution does
/// after a 5xx on the closing PUT: every later request to that session is answered
/// `404 BLOB_UPLOAD_UNKNOWN`. `fails` picks the request (on a session URL) that fails
/// first with `status`; one session is dropped so.
fn dropping_sessions(
    status: u16,
    fails: impl Fn(&Request) -> bool + Send + Sync + 'static,
) -> impl Fn(&Request) -> Action + Send + Sync + 'static {
    let unknown = || {
        Action::Respond {
        status: 404,
        content_type: "application/json",
        body: br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#.to_vec(),
    }
    };
    let dropped: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    move |request| {
        let session = request.path.split('?').next().unwrap_or("").to_owned();
        let mut dropped = dropped.lock().unwrap();
        if dropped.as_deref() == Some(session.as_str()) {
            return unknown();
        }
        let on_session =
            request.path.contains("/blobs/uploads/") && !session.ends_with("/blobs/uploads/");
        if dropped.is_none() && on_session && fails(request) {
            *dropped = Some(session);
            return match status {
                404 => unknown(),
                _ => Action::Respond {
                    status,
                    content_type: "text/plain",
                    body: b"failed".to_vec(),
                },
            };
        }
        Action::Forward
    }
}

/// The push starts a dropped session's blob over with a new POST, and the image arrives
/// whole: a 500 on the closing PUT of a small blob, and a 404 on a chunk of a big one.
#[test]
fn an_upload_session_the_registry_drops_is_started_over() {
    require_privileges!();
    for (what, status, fails) in [
        (
            "PUT",
            500,
            (|r: &Request| r.method == "PUT") as fn(&Request) -> bool,
        ),
        ("PATCH", 404, |r: &Request| r.method == "PATCH"),
    ] {
        let registry = TestRegistry::start();
        let proxy = FaultProxy::start(&registry.host, dropping_sessions(status, fails));
        let env = TestEnv::new();
        // 64 KiB chunks (the smallest): the 1 MiB layer goes up in PATCHes.
        write_config(&env, "[transfer]\nchunk-size = 65536\n");
        let tar = env.path("image.tar");
        let layers = [noise_layer(1 << 20), noise_layer(1000)];
        write_image(&tar, "sessions:1", &layers);
        assert_success(&rbuild(&env, &["load", "-i", tar.to_str().unwrap()]));
        let target = proxy.reference("sessions/app:1");
        let out = rbuild(&env, &["push", "sessions:1", &target]);
        assert_success(&out);
        let err = stderr(&out);
        assert!(
            err.contains("dropped the upload session") && err.contains("BLOB_UPLOAD_UNKNOWN"),
            "{what}: {err}"
        );
        let seen = proxy.seen.lock().unwrap();
        let posts = seen
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("/blobs/uploads/"))
            .count();
        // The config and two layers, and the dropped one again.
        assert_eq!(posts, 4, "{what}: {seen:?}");
        let out = rbuild(
            &TestEnv::new(),
            &["pull", &registry.reference("sessions/app:1")],
        );
        assert_success(&out);
    }
}

/// A registry that accepts every chunk but keeps saying it has only the first byte
/// (`202` with `Range: 0-0`): the push counts that as a failure each time and stops with
/// the reason when its retries are spent, instead of sending the blob's first chunk
/// forever.
#[test]
fn a_registry_whose_range_never_moves_fails_the_push_instead_of_looping() {
    require_privileges!();
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host, |request| {
        if request.method == "PATCH" {
            Action::Headers {
                status: 202,
                headers: vec![
                    ("Location", request.path.clone()),
                    ("Range", "0-0".to_owned()),
                ],
            }
        } else {
            Action::Forward
        }
    });
    let env = TestEnv::new();
    write_config(&env, "[transfer]\nchunk-size = 65536\n");
    let tar = env.path("image.tar");
    write_image(&tar, "stuck:1", &[noise_layer(1 << 20)]);
    assert_success(&rbuild(&env, &["load", "-i", tar.to_str().unwrap()]));
    let out = rbuild(&env, &["push", "stuck:1", &proxy.reference("stuck/app:1")]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("the registry says it has 1 bytes after a chunk that ends at"),
        "{err}"
    );
    let patches = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert!(patches < 50, "{patches} PATCHes");
}
