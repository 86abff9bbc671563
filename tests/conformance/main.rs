//! rbuild against the behaviours BuildKit's own Dockerfile integration tests pin down
//! (moby/buildkit `frontend/dockerfile/dockerfile_*_test.go`): one test per behaviour,
//! rbuild's own code, with the BuildKit test function's name in a comment above it.
//! `docs/conformance.md` lists every BuildKit case with its status here.
//!
//! Each case builds a small context from the busybox image the support code makes (or
//! from `scratch`, which needs no base at all) and reads the result back from the
//! image's filesystem (`-o type=tar`) and config (`rbuild inspect`), without starting a
//! sandbox to look.

// The end-to-end support code is shared with tests/it; not every helper is used here.
#[allow(dead_code)]
#[macro_use]
#[path = "../it/support.rs"]
mod support;

mod harness;

mod add;
mod args;
mod cmd;
mod copy;
mod copy_sources;
mod dockerignore;
mod essentials;
mod heredoc;
mod image;
mod mount;
mod network;
mod parents;
mod secrets;
mod security;
mod stages;
mod workdir;
