//! Mounts on the host side that only one thread sees: the builder's COPY and WORKDIR write
//! into an overlay through them while the rest of the process (and host) sees nothing.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::Error;
use crate::mount::mount_at;
use crate::spec::Mount;

/// `mount` performed at the host path `at` (an existing directory); `mount.target` is not
/// looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub mount: Mount,
    pub at: PathBuf,
}

/// Runs `f` on a dedicated thread whose mount namespace is private, with `mounts` mounted
/// in order; they are unmounted after `f` returns (or panics: the panic is resumed on the
/// caller's thread). Nothing is visible to other threads or to the host.
///
/// The thread unshares its filesystem attributes and mount namespace (`CLONE_FS |
/// CLONE_NEWNS`); threads `f` starts inherit them. Blocking: call it from
/// `spawn_blocking` in async code.
///
/// ```ignore
/// let at = scratch.path().to_owned();
/// let written = with_mounts(&[HostMount { mount: overlay, at: at.clone() }], || {
///     std::fs::write(at.join("hello"), "hi")
/// })??;
/// ```
pub fn with_mounts<R: Send, F: FnOnce() -> R + Send>(
    mounts: &[HostMount],
    f: F,
) -> Result<R, Error> {
    // Nothing to mount (files seen through copies): no namespace, no thread.
    if mounts.is_empty() {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("rbuild-mounts".into())
            .spawn_scoped(scope, || run_with_mounts(mounts, f))
            .map_err(|source| Error::SpawnThread { source })?;
        match thread.join() {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(panic))) | Err(panic) => resume_unwind(panic),
            Ok(Err(err)) => Err(err),
        }
    })
}

type Caught<R> = std::thread::Result<R>;

fn run_with_mounts<R, F: FnOnce() -> R>(mounts: &[HostMount], f: F) -> Result<Caught<R>, Error> {
    // CLONE_FS first: the kernel refuses a new mount namespace to a thread that shares its
    // root and cwd with others. The namespace dies with this thread.
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(|source| Error::PrivateMountNamespace { source })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| Error::PrivateMountNamespace { source })?;
    let mut mounted = Vec::with_capacity(mounts.len());
    let mut result = Ok(());
    for host_mount in mounts {
        match mount_at(&host_mount.mount, &host_mount.at) {
            Ok(()) => mounted.push(&host_mount.at),
            Err(err) => {
                result = Err(Error::Mount {
                    fstype: err.fstype,
                    target: err.target,
                    source: err.errno,
                });
                break;
            }
        }
    }
    let value = result.map(|()| catch_unwind(AssertUnwindSafe(f)));
    // Unmount explicitly rather than leave it to the namespace's end: that comes after the
    // thread's join returns, and an overlay's upper dir stays in use until its unmount.
    for at in mounted.iter().rev() {
        if umount2(*at, MntFlags::empty()) == Err(Errno::EBUSY) {
            let _ = umount2(*at, MntFlags::MNT_DETACH);
        }
    }
    value
}
