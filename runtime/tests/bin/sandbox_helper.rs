//! The sandbox helper binary for the privileged tests: what `rbuild`'s `main` does first.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(rbuild_runtime::INIT_ARG) {
        rbuild_runtime::init_main()
    }
    eprintln!(
        "usage: rbuild-sandbox-test-helper {} <state dir>",
        rbuild_runtime::INIT_ARG
    );
    std::process::exit(2)
}
