//! `rbuild completion` and `rbuild man`, made from the command line's own definition.

use std::fs;

use crate::support::*;

#[test]
fn completions_name_the_commands_and_their_flags() {
    let env = TestEnv::new();
    for (shell, marker) in [
        ("bash", "_rbuild()"),
        ("zsh", "#compdef rbuild"),
        ("fish", "complete -c rbuild"),
    ] {
        let out = env.rbuild(&["completion", shell]);
        assert_success(&out);
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["build", "run", "stop-timeout", "init"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = env.rbuild(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn man_pages_are_written_for_every_command() {
    let env = TestEnv::new();
    let dir = env.path("man1");
    let out = env.rbuild(&["man", "--dir", dir.to_str().unwrap()]);
    assert_success(&out);
    let run = dir.join("rbuild-run.1");
    assert!(
        stdout(&out)
            .lines()
            .any(|line| line == run.to_str().unwrap())
    );
    let page = fs::read_to_string(&run).unwrap();
    assert!(page.contains(".TH rbuild-run 1"), "{page}");
    assert!(page.contains("stop\\-timeout"), "{page}");
    for name in [
        "rbuild.1",
        "rbuild-build.1",
        "rbuild-push.1",
        "rbuild-completion.1",
    ] {
        assert!(dir.join(name).is_file(), "{name}");
    }
}
