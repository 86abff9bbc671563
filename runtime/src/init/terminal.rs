//! A pseudo-terminal for `process.terminal`: taken from the sandbox's own devpts instance,
//! made the command's controlling terminal, and relayed between stdin and stdout (rbuild's,
//! inherited) and the master side: by init, or by the helper when the command is pid 1
//! (init sends it the master before it becomes the command).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

pub(super) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pty pair; call after pivot_root so that `/dev/ptmx` is the sandbox's.
    pub(super) fn open(uid: u32) -> Result<Pty, nix::Error> {
        let master = nix::fcntl::open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: `master` was just opened and is owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads an int through the pointer, which is valid.
        Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
        // TIOCGPTPEER opens the slave through the master, not by a path that could be
        // swapped (Linux 4.13).
        // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
        let slave = Errno::result(unsafe {
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `slave` is a fresh descriptor nothing else owns.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        // SAFETY: fchown on a valid descriptor; -1 keeps the group.
        Errno::result(unsafe { libc::fchown(slave.as_raw_fd(), uid, u32::MAX) })?;
        copy_window_size(outer_terminal(), master.as_raw_fd());
        Ok(Pty { master, slave })
    }
}

/// rbuild's terminal: its stdin, or its stdout when stdin is not one (`-t` without `-i`
/// reads `/dev/null`).
fn outer_terminal() -> RawFd {
    // SAFETY: isatty on the standard descriptors has no preconditions.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        libc::STDIN_FILENO
    } else {
        libc::STDOUT_FILENO
    }
}

/// Copies the window size of `from` (if it is a terminal) to `to`.
pub(super) fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: winsize is plain data; both ioctls get a valid pointer to it and fail
    // harmlessly on descriptors that are not terminals.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut size) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &size);
        }
    }
}

/// Moves bytes stdin → master and master → stdout.
pub(super) struct Relay {
    master: OwnedFd,
    stdin_open: bool,
    master_open: bool,
}

impl Relay {
    pub(super) fn new(master: OwnedFd) -> Relay {
        Relay {
            master,
            stdin_open: true,
            master_open: true,
        }
    }

    pub(super) fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    pub(super) fn stdin_open(&self) -> bool {
        self.stdin_open
    }

    pub(super) fn master_open(&self) -> bool {
        self.master_open
    }

    pub(super) fn resize(&self) {
        copy_window_size(outer_terminal(), self.master.as_raw_fd());
    }

    /// stdin is readable (or closed).
    pub(super) fn pump_stdin(&mut self) {
        let mut buffer = [0u8; 8192];
        match nix::unistd::read(libc::STDIN_FILENO, &mut buffer) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => {
                if write_all(self.master.as_raw_fd(), &buffer[..n]).is_err() {
                    self.stdin_open = false;
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => self.stdin_open = false,
        }
    }

    /// The master is readable; `EIO` means no slave is open any more.
    pub(super) fn pump_master(&mut self) {
        let mut buffer = [0u8; 8192];
        match nix::unistd::read(self.master.as_raw_fd(), &mut buffer) {
            Ok(0) => self.master_open = false,
            Ok(n) => {
                // stdout gone: keep reading so the command does not block on a full pty.
                let _ = write_all(libc::STDOUT_FILENO, &buffer[..n]);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => self.master_open = false,
        }
    }

    /// After the command exited: passes on what it left in the pty, without waiting for
    /// background processes that may still hold the slave.
    pub(super) fn drain(&mut self) {
        while self.master_open {
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => break,
                Ok(_) => self.pump_master(),
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: `fd` stays open for the duration of the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Sends `fd` over the unix socket `socket` (`SCM_RIGHTS`): how init, about to become the
/// command, hands the terminal's master side to the helper.
pub(super) fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let byte = [0u8];
    let iov = [std::io::IoSlice::new(&byte)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives a descriptor sent with [`send_fd`]; `None` when the socket closed without one
/// (init failed before it opened the terminal).
pub(super) fn recv_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let message = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => {}
            other => break other?,
        }
    };
    for cmsg in message.cmsgs().map_err(|_| Errno::EBADMSG)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel installed `fd` in this process for us alone.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    use super::*;

    #[test]
    fn descriptors_travel_over_a_socket_pair() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (reader, writer) = nix::unistd::pipe().unwrap();
        send_fd(ours.as_fd(), writer.as_fd()).unwrap();
        drop(writer);
        let received = recv_fd(theirs.as_fd()).unwrap().unwrap();
        nix::unistd::write(&received, b"x").unwrap();
        let mut byte = [0u8];
        assert_eq!(nix::unistd::read(reader.as_raw_fd(), &mut byte), Ok(1));
        drop(ours);
        assert!(recv_fd(theirs.as_fd()).unwrap().is_none());
    }
}
