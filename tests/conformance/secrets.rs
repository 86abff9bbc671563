//! RUN --mount=type=secret: files with their owner and mode, environment variables, and
//! required secrets (BuildKit's dockerfile_secrets_test.go).

use crate::harness::*;

// testSecretFileParams
#[test]
fn a_secret_file_has_its_uid_gid_and_mode_and_leaves_no_stub() {
    require_privileges!();
    let case = Case::busybox();
    let secret = case.env.path("mysecret.txt");
    std::fs::write(&secret, "pw").unwrap();
    let source = format!("id=mysecret,src={}", secret.display());
    let tree = case.tree_of(
        "FROM busybox\n\
         RUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret stat -c '%u %g %f' /mysecret > /seen\n",
        &[],
        &["--secret", &source],
    );
    assert_eq!(tree.text("seen"), "100 102 81e1\n");
    assert!(!tree.has("mysecret"), "no mount point left in the layer");
}

// testSecretRequiredWithoutValue
#[test]
fn a_required_secret_that_is_not_given_fails_the_build_naming_it() {
    require_privileges!();
    let case = Case::busybox();
    let error = case.failure(
        "FROM busybox\nRUN --mount=type=secret,required,id=mysecret foo\n",
        &[],
        &[],
    );
    assert!(error.contains("mysecret"), "{error}");
    assert!(
        error.contains("not found") || error.contains("not given") || error.contains("missing"),
        "{error}"
    );
}

// testSecretAsEnviron
#[test]
fn a_secret_as_env_overrides_env_and_makes_no_file() {
    require_privileges!();
    let case = Case::busybox();
    let ctx = case.context(
        "FROM busybox\n\
         ENV SECRET_ENV=foo\n\
         RUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ ! -f /run/secrets/mysecret ] || false\n",
        &[],
    );
    let out = case
        .env
        .command()
        .env("MYSECRET", "pw")
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=mysecret,env=MYSECRET",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
}

// testSecretAsEnvironWithFileMount
#[test]
fn a_secret_can_be_both_a_file_and_an_env() {
    require_privileges!();
    let case = Case::busybox();
    let secret = case.env.path("secret.txt");
    std::fs::write(&secret, "pw").unwrap();
    let source = format!("id=mysecret,src={}", secret.display());
    case.tree_of(
        "FROM busybox\n\
         RUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ -f /run/secrets/secret ] || false\n",
        &[],
        &["--secret", &source],
    );
}
