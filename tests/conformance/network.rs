//! RUN --network and the build's --network (BuildKit's dockerfile_runnetwork_test.go).
//! Each build runs in a network namespace of its own (as the support code's builds do),
//! with a server on its loopback that answers `foo` once, so that "the host's network"
//! is something a step can see.

use std::process::{Command, Output, Stdio};

use crate::harness::*;

/// Builds `ctx` in a new network namespace in which `127.0.0.1:8999` answers `foo`.
fn build_beside_a_server(case: &Case, ctx: &std::path::Path, args: &[&str]) -> Output {
    // The server's output goes nowhere, so that rbuild's output ends with rbuild; it is
    // stopped when rbuild exits, whether or not a step connected.
    let script = "ip link set lo up \
        && { echo foo | /bin/busybox nc -l -p 8999 >/dev/null 2>&1 & server=$!; } \
        && until /bin/busybox netstat -ltn | grep -q ':8999 '; do /bin/busybox usleep 20000; done \
        && \"$0\" \"$@\"; status=$?; kill $server 2>/dev/null; exit $status";
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--", "/bin/sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .env("RBUILD_ROOT", case.env.root())
        .stdin(Stdio::null());
    command.output().expect("run rbuild")
}

// testRunNoNetwork
#[test]
fn run_network_none_cannot_reach_the_hosts_network() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\n\
         RUN --network=none ! nc -z 127.0.0.1 8999\n",
        &[],
    );
    assert_success(&build_beside_a_server(&case, &ctx, &["-t", "none:latest"]));
}

// testRunHostNetwork
#[test]
fn run_network_host_reaches_a_server_on_the_hosts_loopback() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\nRUN --network=host nc 127.0.0.1 8999 | grep foo\n",
        &[],
    );
    assert_success(&build_beside_a_server(&case, &ctx, &["-t", "host:latest"]));
}

// testRunGlobalNetwork
#[test]
fn the_build_network_applies_to_steps_unless_a_step_says_none() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\n\
         RUN nc 127.0.0.1 8999 | grep foo\n\
         RUN --network=none ! nc -z 127.0.0.1 8999\n",
        &[],
    );
    assert_success(&build_beside_a_server(
        &case,
        &ctx,
        &["-t", "global:latest", "--network", "host"],
    ));
    // And `--network none` for the build cuts off the steps that name no network.
    let ctx = case.context("FROM busybox\nRUN ! nc -z 127.0.0.1 8999\n", &[]);
    assert_success(&build_beside_a_server(
        &case,
        &ctx,
        &["-t", "global:none", "--network", "none"],
    ));
}
