//! Heredocs in COPY and RUN: files, scripts, stdin, tabs and variable expansion (BuildKit's
//! dockerfile_heredoc_test.go).

use crate::harness::*;

// testCopyHeredoc
#[test]
fn copy_heredocs_make_files_with_chmod_and_chown() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         WORKDIR /dest\n\
         COPY <<EOF single\n\
         single file\n\
         EOF\n\
         COPY <<EOF <<EOF2 double/\n\
         first file\n\
         EOF\n\
         second file\n\
         EOF2\n\
         COPY --chmod=777 <<EOF /permfiles/all\n\
         dummy content\n\
         EOF\n\
         COPY --chmod=0644 <<EOF /permfiles/rw\n\
         dummy content\n\
         EOF\n\
         COPY --chown=app:staff <<EOF /permfiles/owned\n\
         dummy content\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /\n\
         COPY --from=build /permfiles /permfiles\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("single"), "single file\n");
    assert_eq!(
        tree.text("double/EOF"),
        "first file\n",
        "named after the delimiter"
    );
    assert_eq!(tree.text("double/EOF2"), "second file\n");
    assert_eq!(tree.mode("permfiles/all"), "0777");
    assert_eq!(tree.mode("permfiles/rw"), "0644");
    assert_eq!(tree.owner("permfiles/owned"), "1000:50");
}

// testCopyHeredocSpecialSymbols
#[test]
fn copy_heredoc_escapes_apply_only_with_an_unquoted_delimiter() {
    let case = Case::scratch();
    let tree = case.tree_of(
        "FROM scratch\n\
         COPY <<EOF quotefile\n\
         \"quotes in file\"\n\
         EOF\n\
         COPY <<EOF slashfile1\n\
         \\\n\
         EOF\n\
         COPY <<EOF slashfile2\n\
         \\\\\n\
         EOF\n\
         COPY <<EOF slashfile3\n\
         \\$\n\
         EOF\n\
         COPY <<\"EOF\" rawslashfile1\n\
         \\\n\
         EOF\n\
         COPY <<\"EOF\" rawslashfile2\n\
         \\\\\n\
         EOF\n\
         COPY <<\"EOF\" rawslashfile3\n\
         \\$\n\
         EOF\n",
        &[],
        &[],
    );
    let files: Vec<String> = [
        "quotefile",
        "slashfile1",
        "slashfile2",
        "slashfile3",
        "rawslashfile1",
        "rawslashfile2",
        "rawslashfile3",
    ]
    .iter()
    .map(|f| format!("{f}={:?}", tree.text(f)))
    .collect();
    assert_eq!(
        files,
        [
            r#"quotefile="\"quotes in file\"\n""#,
            r#"slashfile1="\n""#,
            r#"slashfile2="\\\n""#,
            r#"slashfile3="$\n""#,
            r#"rawslashfile1="\\\n""#,
            r#"rawslashfile2="\\\\\n""#,
            r#"rawslashfile3="\\$\n""#,
        ]
    );
}

// testRunBasicHeredoc
#[test]
fn a_run_heredoc_is_a_shell_script() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         RUN <<EOF\n\
         echo \"i am\" >> /dest\n\
         whoami >> /dest\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /dest\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("dest"), "i am\nroot\n");
}

// testRunFakeHeredoc
#[test]
fn a_run_heredoc_goes_to_a_non_shell_shell() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         SHELL [\"/bin/awk\"]\n\
         RUN <<EOF\n\
         BEGIN {\n\
         \tprint \"foo\" > \"/dest\"\n\
         }\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /dest\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("dest"), "foo\n");
}

// testRunShebangHeredoc
#[test]
fn a_run_heredoc_with_a_shebang_runs_its_interpreter() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         WORKDIR /dest\n\
         RUN <<EOF\n\
         #!/bin/awk -f\n\
         BEGIN {\n\
         \tprint \"hello\" >> \"./out1\"\n\
         \tprint \"world\" >> \"./out1\"\n\
         }\n\
         EOF\n\
         RUN <<-EOF\n\
         \t#!/bin/awk -f\n\
         \tBEGIN {\n\
         \t\tprint \"hello\" >> \"./out2\"\n\
         \t\tprint \"world\" >> \"./out2\"\n\
         \t}\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("out1"), "hello\nworld\n");
    assert_eq!(tree.text("out2"), "hello\nworld\n");
}

// testRunComplexHeredoc
#[test]
fn run_heredocs_feed_stdin_and_numbered_descriptors() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         WORKDIR /dest\n\
         RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\\n\
         \tcat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2\n\
         hello WORLD\n\
         EOF1\n\
         HELLO world\n\
         EOF2\n\
         RUN <<EOF 3<<IN1 4<<IN2 awk -f -\n\
         BEGIN {\n\
         \twhile ((getline line < \"/proc/self/fd/3\") > 0)\n\
         \t\tprint tolower(line) > \"./fd3\"\n\
         \twhile ((getline line < \"/proc/self/fd/4\") > 0)\n\
         \t\tprint toupper(line) > \"./fd4\"\n\
         }\n\
         EOF\n\
         hello WORLD\n\
         IN1\n\
         HELLO world\n\
         IN2\n\
         FROM scratch\n\
         COPY --from=build /dest /\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("out1"), "hello world\n");
    assert_eq!(tree.text("out2"), "HELLO WORLD\n");
    assert_eq!(tree.text("fd3"), "hello world\n");
    assert_eq!(tree.text("fd4"), "HELLO WORLD\n");
}

// testHeredocIndent
#[test]
fn a_dash_heredoc_strips_leading_tabs() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox AS build\n\
         COPY <<EOF /dest/foo-copy\n\
         \tfoo\n\
         EOF\n\
         COPY <<-EOF /dest/bar-copy\n\
         \tbar\n\
         EOF\n\
         RUN <<EOF\n\
         echo \"\n\
         \tfoo\" > /dest/foo-run\n\
         EOF\n\
         RUN <<-EOF\n\
         echo \"\n\
         \tbar\" > /dest/bar-run\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo \"\n\
         \tfoo\" > /dest/foo2-run\n\
         EOF\n\
         RUN <<-EOF\n\
         #!/bin/sh\n\
         echo \"\n\
         \tbar\" > /dest/bar2-run\n\
         EOF\n\
         RUN <<EOF sh > /dest/foo3-run\n\
         echo \"\n\
         \tfoo\"\n\
         EOF\n\
         RUN <<-EOF sh > /dest/bar3-run\n\
         echo \"\n\
         \tbar\"\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /\n",
        &[],
        &[],
    );
    let files: Vec<String> = [
        "foo-copy", "foo-run", "foo2-run", "foo3-run", "bar-copy", "bar-run", "bar2-run",
        "bar3-run",
    ]
    .iter()
    .map(|f| format!("{f}={:?}", tree.text(f)))
    .collect();
    assert_eq!(
        files,
        [
            r#"foo-copy="\tfoo\n""#,
            r#"foo-run="\n\tfoo\n""#,
            r#"foo2-run="\n\tfoo\n""#,
            r#"foo3-run="\n\tfoo\n""#,
            r#"bar-copy="bar\n""#,
            r#"bar-run="\nbar\n""#,
            r#"bar2-run="\nbar\n""#,
            r#"bar3-run="\nbar\n""#,
        ]
    );
}

// testHeredocVarSubstitution
#[test]
fn copy_heredocs_expand_variables_unless_the_delimiter_is_quoted() {
    require_privileges!();
    let case = Case::busybox();
    let tree = case.tree_of(
        "FROM busybox as build\n\
         ARG name=world\n\
         COPY <<EOF /dest/c1\n\
         Hello ${name}!\n\
         EOF\n\
         COPY <<'EOF' /dest/c2\n\
         Hello ${name}!\n\
         EOF\n\
         COPY <<\"EOF\" /dest/c3\n\
         Hello ${name}!\n\
         EOF\n\
         COPY <<EOF /dest/q1\n\
         Hello '${name}'!\n\
         EOF\n\
         COPY <<EOF /dest/q2\n\
         Hello \"${name}\"!\n\
         EOF\n\
         COPY <<'EOF' /dest/qsingle1\n\
         Hello '${name}'!\n\
         EOF\n\
         COPY <<\"EOF\" /dest/qdouble2\n\
         Hello \"${name}\"!\n\
         EOF\n\
         RUN <<EOF\n\
         greeting=\"Hello\"\n\
         echo \"${greeting} ${name}!\" > /dest/r1\n\
         EOF\n\
         RUN <<EOF\n\
         name=\"new world\"\n\
         echo \"Hello ${name}!\" > /dest/r2\n\
         EOF\n\
         FROM scratch\n\
         COPY --from=build /dest /\n",
        &[],
        &[],
    );
    let files: Vec<String> = [
        "c1", "c2", "c3", "q1", "q2", "qsingle1", "qdouble2", "r1", "r2",
    ]
    .iter()
    .map(|f| format!("{f}={}", tree.text(f).trim_end()))
    .collect();
    assert_eq!(
        files,
        [
            "c1=Hello world!",
            "c2=Hello ${name}!",
            "c3=Hello ${name}!",
            "q1=Hello 'world'!",
            "q2=Hello \"world\"!",
            "qsingle1=Hello '${name}'!",
            "qdouble2=Hello \"${name}\"!",
            // RUN heredocs are left to the shell, which sees the ARG in its environment.
            "r1=Hello world!",
            "r2=Hello new world!",
        ]
    );
}

// testOnBuildHeredoc
#[test]
fn an_onbuild_run_heredoc_runs_in_the_child() {
    require_privileges!();
    let case = Case::busybox();
    case.image(
        "heredocbase:latest",
        "FROM busybox\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n",
        &[],
        &[],
    );
    let tree = case.tree_of(
        "FROM heredocbase AS base\nFROM scratch\nCOPY --from=base /dest /dest\n",
        &[],
        &[],
    );
    assert_eq!(tree.text("dest"), "hello world\n");
}
