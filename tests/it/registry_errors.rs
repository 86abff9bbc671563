//! What a user sees when a registry cannot be used: nothing listening, a server that is not
//! a registry or refuses us, TLS on one side only. A push finds out with one request,
//! before it compresses anything; the error names the address once, and its `help:` line
//! is about that error.

use std::fs;
use std::process::Output;

use crate::registry_support::*;
use crate::support::*;

/// Exit code, stdout and stderr, with `address` written as `ADDRESS`.
fn seen(out: &Output, address: &str) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out).replace(address, "ADDRESS")
    )
}

/// rbuild at a width where no message here wraps (so the snapshots do not depend on the
/// length of a port number).
fn run(env: &TestEnv, args: &[&str]) -> Output {
    command(env)
        .env("COLUMNS", "200")
        .args(args)
        .output()
        .expect("run rbuild")
}

/// An address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn blob_count(env: &TestEnv) -> usize {
    fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

/// busybox plus a layer rbuild built, which a push must compress first.
fn env_with_built_image() -> TestEnv {
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY a /a\n"), ("a", "a\n")],
    );
    assert_success(&env.build(&ctx, "app"));
    env
}

#[test]
fn a_push_to_a_closed_port_fails_at_once_and_compresses_nothing() {
    require_privileges!();
    let env = env_with_built_image();
    let address = closed_port();
    let blobs = blob_count(&env);
    let out = run(&env, &["push", "app", &format!("{address}/app:1")]);
    insta::assert_snapshot!(seen(&out, &address), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × cannot push to ADDRESS/app:1
      ╰─▶ cannot connect to ADDRESS: connection refused
      help: is a registry running at ADDRESS?
    ");
    // No retry line per blob (nor any), no TLS advice, the address named once by the
    // error and once by the help.
    let err = stderr(&out);
    assert_eq!(err.matches("retrying").count(), 0, "{err}");
    assert_eq!(err.matches(&address).count(), 3, "{err}");
    assert!(!err.contains("TLS") && !err.contains("insecure"), "{err}");
    // Nothing was compressed into the store.
    assert!(!err.contains("compressing"), "{err}");
    assert_eq!(blob_count(&env), blobs);

    // The same push to a registry that is there compresses the built layer: the check
    // above is what stopped it.
    let registry = TestRegistry::start();
    let out = run(&env, &["push", "app", &registry.reference("app:1")]);
    assert_success(&out);
    assert_eq!(stderr(&out).matches("compressing").count(), 1);
    assert!(blob_count(&env) > blobs);
}

#[test]
fn a_pull_from_a_closed_port_says_what_is_not_running() {
    require_privileges!();
    let env = TestEnv::new();
    let address = closed_port();
    let out = run(&env, &["pull", &format!("{address}/app:1")]);
    insta::assert_snapshot!(seen(&out, &address), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × cannot pull ADDRESS/app:1
      ╰─▶ cannot connect to ADDRESS: connection refused
      help: is a registry running at ADDRESS?
    ");

    // A build whose base image would come from there: the same cause and help.
    let ctx = env.context("ctx", &[("Dockerfile", &format!("FROM {address}/app:1\n"))]);
    let out = run(
        &env,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
    );
    insta::assert_snapshot!(seen(&out, &address), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × base image `ADDRESS/app:1` is not in the store and pulling it failed
      ╰─▶ cannot connect to ADDRESS: connection refused
      help: is a registry running at ADDRESS?
    ");
}

/// A server that answers every request with `status` (a registry's error body), and
/// what it was asked.
fn answering(status: u16) -> FaultProxy {
    // Nothing is forwarded: every request gets the answer.
    FaultProxy::start("127.0.0.1:1", move |_: &Request| Action::Respond {
        status,
        content_type: "application/json",
        body: br#"{"errors":[{"code":"DENIED","message":"injected"}]}"#.to_vec(),
    })
}

#[test]
fn registry_answers_stop_a_push_before_it_compresses() {
    require_privileges!();
    let env = env_with_built_image();
    let blobs = blob_count(&env);

    let server = answering(404);
    let out = run(&env, &["push", "app", &server.reference("app:1")]);
    insta::assert_snapshot!(seen(&out, &server.host), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × cannot push to ADDRESS/app:1
      ╰─▶ GET http://ADDRESS/v2/: the registry answered 404: DENIED: injected
      help: the server does not serve the registry API (`/v2/`): check the address
    ");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    // On a narrow terminal the message wraps between words: the URL stays whole, even
    // where it is longer than a line (it is not broken after a `/` either).
    let url = format!("http://{}/v2/:", server.host);
    for columns in ["40", "16"] {
        let out = command(&env)
            .env("COLUMNS", columns)
            .args(["push", "app", &server.reference("app:1")])
            .output()
            .unwrap();
        assert!(
            stderr(&out).lines().any(|line| line.contains(&url)),
            "{columns}: {}",
            stderr(&out)
        );
    }

    // No credentials: asked again after the 401 with what docker's config has (nothing).
    let server = answering(401);
    let out = run(&env, &["push", "app", &server.reference("app:1")]);
    insta::assert_snapshot!(seen(&out, &server.host), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × cannot push to ADDRESS/app:1
      ╰─▶ ADDRESS: authentication failed (401): DENIED: injected
      help: log in with `rbuild login ADDRESS -u USER --password-stdin`
    ");
    let seen_paths: Vec<String> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(seen_paths, ["/v2/", "/v2/"]);

    // A registry that fails is asked again (`retries`), and only `/v2/`.
    write_config(&env, "[transfer]\nretries = 2\n");
    let server = answering(500);
    let out = run(&env, &["push", "app", &server.reference("app:1")]);
    assert_failure(&out);
    let err = stderr(&out);
    assert_eq!(err.matches("retrying").count(), 2, "{err}");
    assert!(
        flat(&err).contains("the registry answered 500: DENIED: injected"),
        "{err}"
    );
    assert!(!err.contains("help:"), "{err}");
    assert!(
        server.seen.lock().unwrap().iter().all(|r| r.path == "/v2/"),
        "{:?}",
        server.seen.lock().unwrap()
    );

    assert!(!err.contains("compressing"), "{err}");
    assert_eq!(blob_count(&env), blobs);
}

#[test]
fn tls_on_one_side_only_gets_advice_about_tls() {
    require_privileges!();
    let env = busybox_env();

    // A TLS registry spoken to in plain HTTP (the default for loopback addresses).
    let tls = TestRegistry::start_with_auth("ci", "pass");
    let out = run(&env, &["push", "busybox", &tls.reference("app:1")]);
    assert_failure(&out);
    let err = flat(&stderr(&out));
    assert!(err.contains("answered 400"), "{err}");
    assert!(err.contains("help: the registry may speak HTTPS"), "{err}");

    // A plain-HTTP registry spoken to in TLS.
    let plain = TestRegistry::start();
    write_config(
        &env,
        &format!("[registry.\"{}\"]\nhttp = false\n", plain.host),
    );
    let out = run(&env, &["push", "busybox", &plain.reference("app:1")]);
    insta::assert_snapshot!(seen(&out, &plain.host), @r"
    exit: Some(1)
    --- stdout
    --- stderr
      × cannot push to ADDRESS/app:1
      ╰─▶ ADDRESS does not speak TLS: received corrupt message of type InvalidContentType
      help: if it is a plain-HTTP registry, set `http = true` for it in config.toml (README: Registries)
    ");
}
