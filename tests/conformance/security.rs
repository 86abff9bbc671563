//! The capabilities a RUN step gets (BuildKit's dockerfile_runsecurity_test.go).

use crate::harness::*;

/// docker's default capability set, as the bounding set in /proc/self/status shows it.
const DEFAULT_CAPS: &str = "CapBnd:\t00000000a80425fb";

// testRunSecurityDefault
#[test]
fn run_gets_dockers_default_capabilities() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN grep CapBnd /proc/self/status > /caps\n\
         FROM scratch\n\
         COPY --from=base /caps /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("caps").trim_end(), DEFAULT_CAPS);
}

// testRunSecuritySandbox
#[test]
fn run_security_sandbox_is_the_default_sandbox() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS base\n\
         RUN --security=sandbox grep CapBnd /proc/self/status > /caps\n\
         FROM scratch\n\
         COPY --from=base /caps /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("caps").trim_end(), DEFAULT_CAPS);
}
