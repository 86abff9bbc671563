//! SHELL, CMD, ENTRYPOINT and RUN forms, and how bad commands and instructions are
//! reported (BuildKit's dockerfile_cmd_test.go).

use crate::harness::*;

// testCmdShell
#[test]
fn shell_wraps_a_shell_form_entrypoint_in_the_config_and_clears_the_base_cmd() {
    let case = Case::scratch();
    case.image("cmdbase:latest", "FROM scratch\nCMD [\"test\"]\n", &[], &[]);
    case.image(
        "cmdshell:latest",
        "FROM cmdbase\nSHELL [\"ls\"]\nENTRYPOINT my entrypoint\n",
        &[],
        &[],
    );
    let config = case.config("cmdshell:latest");
    assert_eq!(config["config"]["Cmd"], serde_json::Value::Null);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["ls", "my entrypoint"])
    );
}

// testDefaultShellAndPath
#[test]
fn scratch_gets_the_default_shell_and_path() {
    let case = Case::scratch();
    case.image(
        "defaults:latest",
        "FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n",
        &[],
        &[],
    );
    let config = case.config("defaults:latest");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "foo bar"])
    );
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
}

// testIgnoreEntrypoint
#[test]
fn the_base_entrypoint_does_not_wrap_run() {
    require_privileges!();
    let case = Case::busybox();
    case.tree_of(
        "FROM busybox\nENTRYPOINT [\"/nosuchcmd\"]\nRUN [\"ls\"]\n",
        &[],
        &[],
    );
}

// testInvalidJSONCommands
#[test]
fn text_that_is_not_a_json_array_is_a_shell_command() {
    require_privileges!();
    let case = Case::busybox();
    let error = case.failure(
        "FROM busybox\nRUN [\"echo\", \"hello\"]this is invalid\n",
        &[],
        &[],
    );
    assert!(error.contains("this is invalid"), "{error}");
    case.image(
        "badjson:latest",
        "FROM busybox\nENTRYPOINT []random string\n",
        &[],
        &[],
    );
    assert_eq!(
        case.config("badjson:latest")["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "[]random string"])
    );
}

// testDockerfileInvalidCommand
#[test]
fn a_failed_run_names_the_command_and_its_exit_code() {
    require_privileges!();
    let case = Case::busybox();
    let error = case.failure("FROM busybox\nRUN invalidcmd\n", &[], &[]);
    assert!(error.contains("invalidcmd"), "{error}");
    assert!(
        error.contains("127"),
        "exit code of a command not found: {error}"
    );
}

// testDockerfileInvalidInstruction
#[test]
fn an_unknown_instruction_is_named_with_a_suggestion() {
    let case = Case::scratch();
    let error = case.failure(
        "FROM scratch\nFNTRYPOINT [\"/bin/sh\", \"-c\", \"echo invalidinstruction\"]\n",
        &[],
        &[],
    );
    let lower = error.to_lowercase();
    assert!(lower.contains("unknown instruction"), "{error}");
    assert!(error.contains("FNTRYPOINT"), "{error}");
    assert!(error.contains("ENTRYPOINT"), "a suggestion: {error}");
}
