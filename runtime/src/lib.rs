//! rbuild's sandbox: runs one process in new namespaces over the mounts it is given,
//! with cgroup limits (v1 and v2). It never reads the store.
//!
//! API (to be implemented; the builder and the CLI are written against it):
//!
//! ```ignore
//! let runtime = Runtime::new(RuntimeOptions { helper: std::env::current_exe()?, state_dir, ..Default::default() })?;
//! let mut child = runtime.spawn(&spec, StdioMode::Piped)?;   // callable from a tokio task
//! let stdout = child.stdout.take();                           // tokio::process::ChildStdout
//! let outcome: Outcome = child.wait().await?;                 // mounts, cgroup and processes gone
//!
//! // in main(), before anything else (no threads, no tokio yet):
//! if std::env::args().nth(1).as_deref() == Some(rbuild_runtime::INIT_ARG) { rbuild_runtime::init_main() }
//!
//! // run a closure on a dedicated thread with mounts private to that thread (for COPY):
//! let n = rbuild_runtime::with_mounts(&[HostMount { mount, at: dir }], || count_files(&dir))?;
//! ```

mod spec;

pub use spec::{Limits, Mount, Network, Process, SandboxSpec};
