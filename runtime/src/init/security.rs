//! The command's privileges: its capability set (Docker's default unless changed; everything
//! else dropped from the bounding, effective, permitted, inheritable and ambient sets) and
//! `no_new_privs`.
//! Raw prctl/capset, because they run in the forked child where only async-signal-safe
//! calls are allowed.

/// The highest capability number any kernel may know; `PR_CAPBSET_DROP` of an unknown one
/// fails with `EINVAL`, which is ignored.
const LAST_CAPABILITY: u32 = 63;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability outside `keep` from the bounding set and clears the ambient set.
/// Needs `CAP_SETPCAP`: call before switching user.
///
/// # Safety
/// Async-signal-safe: plain prctl(2) calls.
pub(super) unsafe fn limit_bounding_set(keep: u64) -> Result<(), libc::c_int> {
    for cap in 0..=LAST_CAPABILITY {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let errno = errno();
            if errno != libc::EINVAL {
                return Err(errno);
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear.
    if cleared != 0 && errno() != libc::EINVAL {
        return Err(errno());
    }
    Ok(())
}

/// After the switch of user: effective and permitted become `keep` ∩ what the process
/// still has (everything for root, nothing for another user: setuid cleared it, as the
/// kernel does for a non-root exec anyway), inheritable becomes empty (CVE-2022-24769).
///
/// # Safety
/// Async-signal-safe: capget(2) and capset(2) on stack memory.
pub(super) unsafe fn limit_capabilities(keep: u64) -> Result<(), libc::c_int> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    for (index, slot) in data.iter_mut().enumerate() {
        let keep = (keep >> (32 * index)) as u32;
        let permitted = slot.permitted & keep;
        *slot = CapData {
            effective: permitted,
            permitted,
            inheritable: 0,
        };
    }
    // SAFETY: capset reads the header and two CapData.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `no_new_privs`: exec can no longer grant privileges (setuid binaries, file
/// capabilities), and seccomp may be installed without `CAP_SYS_ADMIN`.
///
/// # Safety
/// Async-signal-safe: one prctl(2).
pub(super) unsafe fn set_no_new_privs() -> Result<(), libc::c_int> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(errno());
    }
    Ok(())
}

fn errno() -> libc::c_int {
    // SAFETY: the errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}
