//! Standard output, for data, with Unix manners: when the reader has gone (`rbuild images |
//! head -1`), rbuild ends silently, killed by SIGPIPE, as `ls` or `cat` would be. Rust
//! ignores SIGPIPE (sockets would kill the process otherwise), so a write to a closed
//! pipe is an error here, and this turns that error back into the signal.

use std::io::{self, Write};

/// Standard output, locked per write, that dies of SIGPIPE on a closed pipe.
pub struct Stdout(io::Stdout);

pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(check)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(check)
    }
}

fn check(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        // SAFETY: signal(2) and raise(3) with constant arguments; with the default action
        // restored, raise does not return.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
        std::process::exit(128 + libc::SIGPIPE);
    }
    err
}

/// `println!` for data: to [`stdout`], where a closed pipe ends rbuild silently (and any
/// other failure is said on stderr rather than a panic).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(err) = writeln!($crate::output::stdout(), $($arg)*) {
            eprintln!("rbuild: cannot write to standard output: {err}");
        }
    }};
}
