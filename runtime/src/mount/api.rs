//! Bind mounts through the kernel's descriptor-based mount API (`open_tree`,
//! `mount_setattr`, `move_mount`; Linux 5.12): the copy of the source is made detached, gets
//! its flags while no one else can see it, and is attached onto a descriptor of the mount
//! point. A path-based bind would need a second call, a remount, on a path again, and a
//! remount through `/proc/self/fd/N` reaches the mount *under* the new one.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::point::fd_path;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// Binds `source` onto the mount point `target` (an `O_PATH` descriptor) with `flags`
/// (`MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`, the atime ones; `MS_REC` for a
/// recursive bind) and `propagation`. `clear_readonly` makes a read-only source writable
/// (an explicit `rw`). `ENOSYS` on kernels without the API.
pub(crate) fn bind_onto(
    source: &Path,
    target: BorrowedFd<'_>,
    flags: MsFlags,
    propagation: MsFlags,
    clear_readonly: bool,
) -> Result<(), Errno> {
    let source =
        std::ffi::CString::new(source.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let recursive = flags.contains(MsFlags::MS_REC);
    let mut tree_flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        tree_flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree(2) reads the NUL-terminated path for the call.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            tree_flags,
        )
    };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };

    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    for (flag, bit) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(flag) {
            attr.attr_set |= bit;
        }
    }
    if clear_readonly && !flags.contains(MsFlags::MS_RDONLY) {
        attr.attr_clr |= MOUNT_ATTR_RDONLY;
    }
    // The access-time modes are one field: naming one replaces the source's.
    let atime = if flags.contains(MsFlags::MS_NOATIME) {
        Some(MOUNT_ATTR_NOATIME)
    } else if flags.contains(MsFlags::MS_STRICTATIME) {
        Some(MOUNT_ATTR_STRICTATIME)
    } else if flags.contains(MsFlags::MS_RELATIME) {
        Some(MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    if let Some(mode) = atime {
        attr.attr_clr |= MOUNT_ATTR_ATIME_MASK;
        attr.attr_set |= mode;
    }
    let kind = propagation & !MsFlags::MS_REC;
    if !kind.is_empty() {
        attr.propagation = kind.bits();
    }
    if attr.attr_set != 0 || attr.attr_clr != 0 || attr.propagation != 0 {
        let mut setattr_flags = libc::AT_EMPTY_PATH as libc::c_uint;
        if recursive || propagation.contains(MsFlags::MS_REC) {
            setattr_flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // SAFETY: mount_setattr(2) reads the empty path and `attr` for the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                setattr_flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if result != 0 {
            return Err(Errno::last());
        }
    }
    // SAFETY: move_mount(2) reads the two empty paths for the call; both descriptors are
    // valid for it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if result != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// [`bind_onto`] without propagation; on kernels without the mount API (< 5.12), a bind
/// through the mount point's magic link, then a remount with `flags` of what `reopen`
/// finds mounted there now (a remount through the old link would reach the mount under
/// the new one). That fallback applies the flags to the top mount only.
pub(crate) fn bind_or_remount(
    source: &Path,
    target: BorrowedFd<'_>,
    flags: MsFlags,
    reopen: impl FnOnce() -> std::io::Result<OwnedFd>,
) -> Result<(), Errno> {
    match bind_onto(source, target, flags, MsFlags::empty(), false) {
        Err(Errno::ENOSYS) => {}
        result => return result,
    }
    nix::mount::mount(
        Some(source),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
        None::<&str>,
    )?;
    let bound = reopen().map_err(|err| Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO)))?;
    nix::mount::mount(
        None::<&str>,
        &fd_path(&bound),
        None::<&str>,
        flags & !MsFlags::MS_REC | MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::fd::AsFd;

    use super::*;
    use crate::mount::point::open_path;

    /// A read-only bind through descriptors is read-only itself, and leaves the mount it
    /// sits on as it was (a remount through `/proc/self/fd/N` would have hit that one).
    /// Needs root (a mount namespace of its own).
    #[test]
    fn binds_read_only_onto_a_descriptor() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            assert!(
                std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_none(),
                "RBUILD_PRIVILEGED_TESTS=1 but not root"
            );
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("source");
        let target = temp.path().join("target");
        fs::create_dir(&source).unwrap();
        fs::write(source.join("file"), "in source").unwrap();
        fs::create_dir(&target).unwrap();
        let (source2, target2, temp2) = (source.clone(), target.clone(), temp.path().to_owned());
        // A thread of its own that unshares its mount namespace keeps the host's unchanged.
        std::thread::spawn(move || {
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS,
            )
            .unwrap();
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            let fd = open_path(&target2).unwrap();
            bind_onto(
                &source2,
                fd.as_fd(),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
                MsFlags::empty(),
                false,
            )
            .unwrap();
            assert_eq!(
                fs::read_to_string(target2.join("file")).unwrap(),
                "in source"
            );
            let err = fs::write(target2.join("new"), "").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
            // The filesystem below is still writable.
            fs::write(temp2.join("beside"), "").unwrap();
        })
        .join()
        .unwrap();
        assert!(
            fs::read_dir(&target).unwrap().next().is_none(),
            "the host saw the mount"
        );
    }
}
