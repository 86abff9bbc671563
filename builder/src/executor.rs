//! The executor: what the builder needs of a container runtime, which is to run one RUN
//! step's process in its sandbox and hear its output. rbuild's [`Runtime`] is the one used
//! for builds; the builder's unit tests use a scripted one that changes the step's root
//! directory instead of running anything (see `tests`), so the op runners and the solver
//! are tested without root.

use std::future::Future;
use std::pin::Pin;

use rbuild_runtime::{Outcome, Runtime, SandboxSpec, StdioMode};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::progress::Stream;
use crate::solve::Cancel;

/// Longest output line passed on; longer ones are cut (the rest of the line is dropped).
pub const MAX_LINE: usize = 64 * 1024;

/// Where a process's output goes, a line at a time (without its line ending).
pub type OutputSink<'a> = &'a (dyn Fn(Stream, &[u8]) + Send + Sync);

/// A future an [`Executor`] returns.
pub type Running<'a> =
    Pin<Box<dyn Future<Output = Result<Outcome, rbuild_runtime::Error>> + Send + 'a>>;

/// Runs RUN steps' processes.
pub trait Executor: Send + Sync + 'static {
    /// Runs `spec` to its end: its process in its sandbox over `spec.root` (which the
    /// builder prepared: an overlay to mount, or a directory to bind), with its mounts,
    /// network, limits and user.
    ///
    /// Each line the process writes (stdout or stderr, at most [`MAX_LINE`] bytes of it)
    /// goes to `output` as it comes. Once `cancel` fires, the process and everything it
    /// started are killed; the future resolves when they are gone, so the builder may
    /// discard the root at once.
    ///
    /// A process that exits non-zero, dies of a signal or is killed by the OOM killer is
    /// an `Ok` [`Outcome`]; `Err` means the sandbox could not be set up or waited for.
    fn run<'a>(
        &'a self,
        spec: &'a SandboxSpec,
        output: OutputSink<'a>,
        cancel: &'a Cancel,
    ) -> Running<'a>;

    /// The container runtime behind the executor, to open a shell into a failed step
    /// (`--on-error shell`); `None` for one that has none (no failed step is kept then).
    fn runtime(&self) -> Option<&Runtime>;
}

impl Executor for Runtime {
    fn run<'a>(
        &'a self,
        spec: &'a SandboxSpec,
        output: OutputSink<'a>,
        cancel: &'a Cancel,
    ) -> Running<'a> {
        Box::pin(async move {
            let mut child = self.spawn(spec, StdioMode::Piped)?;
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            // Killing the helper ends the sandbox: its init dies with it (parent-death
            // signal) and the whole PID namespace with the init; `wait` then cleans up.
            let helper = child.id();
            let kill = || {
                if let Some(pid) = helper {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            };
            // The wait runs beside the output: its cleanup kills whatever is left in the
            // sandbox's cgroup, so no straggler holding the pipes open can keep the output
            // (and the build) from ending.
            let run = async {
                let ((), (), outcome) = tokio::join!(
                    forward(stdout, Stream::Stdout, output),
                    forward(stderr, Stream::Stderr, output),
                    child.wait(),
                );
                outcome
            };
            tokio::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = cancel.cancelled() => {
                    kill();
                    run.await
                }
            }
        })
    }

    fn runtime(&self) -> Option<&Runtime> {
        Some(self)
    }
}

/// Passes a pipe's lines to `output` until it closes.
async fn forward(pipe: Option<impl AsyncRead + Unpin>, stream: Stream, output: OutputSink<'_>) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        output(stream, &line);
    }
}

/// Reads up to a newline, keeping at most [`MAX_LINE`] bytes of it.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}
