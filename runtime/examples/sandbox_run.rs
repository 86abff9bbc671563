//! `rbuild run` in miniature, and the pattern `rbuild`'s `main` follows: run a command in a
//! sandbox over a root directory, with changes going to a throw-away upper dir.
//!
//! ```text
//! cargo run -p rbuild-runtime --example sandbox_run -- [-t] [--net host] [-u USER] ROOTFS CMD...
//! ```

use std::path::PathBuf;
use std::process::exit;

use rbuild_runtime::{
    INIT_ARG, Limits, Mount, Network, Process, Runtime, RuntimeOptions, SandboxSpec, StdioMode,
};

fn main() {
    // First thing, before any thread exists: this binary is also the sandbox helper.
    if std::env::args().nth(1).as_deref() == Some(INIT_ARG) {
        rbuild_runtime::init_main()
    }
    let mut args = std::env::args().skip(1).peekable();
    let mut terminal = false;
    let mut network = Network::None;
    let mut user = String::new();
    while let Some(flag) = args.next_if(|arg| arg.starts_with('-')) {
        match flag.as_str() {
            "-t" => terminal = true,
            "--net" => {
                network = if args.next().as_deref() == Some("host") {
                    Network::Host
                } else {
                    Network::None
                }
            }
            "-u" => user = args.next().unwrap_or_default(),
            other => usage(&format!("unknown flag `{other}`")),
        }
    }
    let Some(rootfs) = args.next().map(PathBuf::from) else {
        usage("missing ROOTFS")
    };
    let command: Vec<String> = args.collect();
    if command.is_empty() {
        usage("missing CMD");
    }
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    let empty = scratch.path().join("empty");
    for dir in [&upper, &work, &empty] {
        std::fs::create_dir(dir).expect("a scratch directory");
    }
    let spec = SandboxSpec {
        root: Mount::overlay(&[rootfs], Some((upper, work)), empty),
        mounts: Vec::new(),
        process: Process {
            args: command,
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                format!(
                    "TERM={}",
                    std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
                ),
            ],
            cwd: "/".into(),
            user,
            terminal,
            rlimits: Vec::new(),
        },
        hostname: "sandbox".into(),
        network,
        limits: Limits::default(),
        readonly_root: false,
        seccomp: Default::default(),
        init: true,
        capabilities: Default::default(),
        extra_hosts: Vec::new(),
        shm_size: None,
        privileged: false,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        let sandboxes = Runtime::new(RuntimeOptions {
            state_dir: scratch.path().join("state"),
            ..RuntimeOptions::default()
        })?;
        let child = sandboxes.spawn(&spec, StdioMode::Inherit)?;
        child.wait().await
    });
    match code {
        Ok(outcome) => {
            if outcome.oom_killed {
                eprintln!("sandbox_run: out of memory");
            }
            exit(outcome.status.code())
        }
        Err(err) => {
            eprintln!("sandbox_run: {err}");
            exit(125)
        }
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "sandbox_run: {problem}\nusage: sandbox_run [-t] [--net host] [-u USER] ROOTFS CMD..."
    );
    exit(2)
}
