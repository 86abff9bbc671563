//! The sandbox's default seccomp profile, on Docker's model: every syscall is allowed except
//! a deny-list of the dangerous ones, which fail with `EPERM`. Compiled to classic BPF
//! before the fork that starts the command (compiling allocates); installed by the forked
//! child as its very last step before exec.
//!
//! Where we differ from Docker's `default.json` and why:
//! - Docker's profile is an allow-list with `EPERM` as the default action; ours is the
//!   equivalent deny-list of what Docker leaves out for a container without extra
//!   capabilities (so a new harmless syscall does not break builds before we list it).
//!   Capabilities added beyond Docker's default set allow their syscalls again, as in
//!   Docker's profile (`LIFTED_BY`).
//! - `ptrace`, `process_vm_readv`/`writev` and `kcmp` are allowed, as Docker does on
//!   kernels ≥ 4.8 (seccomp is re-checked after a tracer changes a syscall since then);
//!   without `CAP_SYS_PTRACE` they reach only the caller's own processes.
//! - `clone`/`unshare` are refused only with namespace flags (Docker refuses `unshare`
//!   altogether without `CAP_SYS_ADMIN`); `setns` always.
//! - `clone3` fails with `ENOSYS`, as with Docker: its flags are behind a pointer BPF cannot
//!   read, and libc falls back to `clone`, whose flags are checked.
//! - On x86_64, x32-ABI syscall numbers (bit 30 set) are refused outright, so the
//!   deny-list cannot be bypassed through them.
//! - `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` are refused: without `-t`, `rbuild run`'s
//!   command shares the user's terminal, and these would push input into it (keystrokes for
//!   the user's shell once rbuild exits). Docker never hands a container the host's
//!   terminal; flatpak and bubblewrap refuse them the same way.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::capabilities::Capabilities;

/// Syscalls refused whatever their arguments. (`create_module`, `get_kernel_syms` and
/// `query_module` are gone from kernels and libc, but not from the x86_64 table.)
const DENIED: &[(&str, libc::c_long)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("init_module", libc::SYS_init_module),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mbind", libc::SYS_mbind),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("vhangup", libc::SYS_vhangup),
    #[cfg(target_arch = "x86_64")]
    ("create_module", 174),
    #[cfg(target_arch = "x86_64")]
    ("get_kernel_syms", 177),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("query_module", 178),
    #[cfg(target_arch = "x86_64")]
    ("_sysctl", libc::SYS__sysctl),
    #[cfg(target_arch = "x86_64")]
    ("sysfs", libc::SYS_sysfs),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
    #[cfg(target_arch = "x86_64")]
    ("ustat", libc::SYS_ustat),
];

/// Denied syscalls that a capability beyond Docker's default set allows again, as Docker's
/// profile does (`includes.caps` in its `default.json`): with `--cap-add SYS_TIME`,
/// `settimeofday` works. `CAP_SYS_ADMIN` also lifts the namespace-flag rules of `clone`
/// and `unshare`.
const LIFTED_BY: &[(&str, &[&str])] = &[
    (
        "SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "setns",
            "syslog",
            "umount2",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    (
        "SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("SYS_PACCT", &["acct"]),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "SYS_TIME",
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
];

/// Whether `capabilities` lift the denial of syscall `name`.
fn lifted(name: &str, capabilities: Capabilities) -> bool {
    LIFTED_BY
        .iter()
        .any(|(cap, names)| capabilities.has(cap) && names.contains(&name))
}

/// The namespace flags `clone` and `unshare` may not carry (CLONE_NEWTIME included).
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// Terminal ioctls that inject input (`TIOCSTI`) or reach the console (`TIOCLINUX`).
/// Compared on the low 32 bits: the kernel takes the request as an `unsigned int`, so high
/// bits set by the caller would not change the request, only a 64-bit comparison.
const TERMINAL_INJECTION: [u64; 2] = [0x5412, 0x541c];

/// The `personality(2)` values Docker allows: Linux, Linux32 (and with UNAME26), and the
/// query. Others (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ...) weaken the process.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

#[cfg(target_arch = "x86_64")]
const TARGET: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET: TargetArch = TargetArch::aarch64;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// Bit 30 of the syscall number marks the x32 ABI on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

#[derive(Debug, thiserror::Error)]
#[error("failed to compile the seccomp profile")]
pub(crate) struct CompileError(#[source] seccompiler::BackendError);

/// A compiled filter, ready to be installed by [`Filter::install`].
pub(crate) struct Filter {
    program: BpfProgram,
}

impl Filter {
    /// The default profile, for a command with Docker's default capabilities.
    #[cfg(test)]
    pub(crate) fn default_profile() -> Result<Filter, CompileError> {
        Filter::profile(Capabilities::docker_default())
    }

    /// The default profile, with what `capabilities` beyond Docker's default allow.
    pub(crate) fn profile(capabilities: Capabilities) -> Result<Filter, CompileError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (name, number) in DENIED {
            if !lifted(name, capabilities) {
                rules.insert(*number, Vec::new());
            }
        }
        let namespaces_allowed = capabilities.has("SYS_ADMIN");
        let flag_rules = || -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
            NAMESPACE_FLAGS
                .iter()
                .map(|flag| {
                    SeccompRule::new(vec![SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(*flag),
                        *flag,
                    )?])
                })
                .collect()
        };
        if !namespaces_allowed {
            rules.insert(libc::SYS_clone, flag_rules().map_err(CompileError)?);
            rules.insert(libc::SYS_unshare, flag_rules().map_err(CompileError)?);
        }
        let personality = PERSONALITIES
            .iter()
            .map(|value| {
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *value)
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(SeccompRule::new)
            .map_err(CompileError)?;
        rules.insert(libc::SYS_personality, vec![personality]);
        let ioctls = TERMINAL_INJECTION
            .iter()
            .map(|request| {
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *request)
                    .and_then(|condition| SeccompRule::new(vec![condition]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(CompileError)?;
        rules.insert(libc::SYS_ioctl, ioctls);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            TARGET,
        )
        .map_err(CompileError)?;
        let body: BpfProgram = filter.try_into().map_err(CompileError)?;
        Ok(Filter {
            program: with_prelude(body),
        })
    }

    /// Installs the filter on the calling thread. `PR_SET_NO_NEW_PRIVS` must be set (the
    /// command has no `CAP_SYS_ADMIN` to do without it).
    ///
    /// # Safety
    /// Async-signal-safe (one syscall on memory prepared before the fork); meant for the
    /// forked child just before exec.
    pub(crate) unsafe fn install(&self) -> libc::c_long {
        let program = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            // `seccompiler::sock_filter` is `#[repr(C)]` with the kernel's layout.
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(2) reads `program`, valid for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        }
    }

    #[cfg(test)]
    fn program(&self) -> &[sock_filter] {
        &self.program
    }
}

/// Puts the checks seccompiler cannot express in front of its program: `clone3` fails with
/// `ENOSYS`, and (x86_64) x32-ABI numbers with `EPERM`. A foreign architecture falls
/// through to seccompiler's own check, which kills the process.
fn with_prelude(body: BpfProgram) -> BpfProgram {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    #[cfg(target_arch = "x86_64")]
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    let mut prelude = Vec::new();
    // Offsets count the instructions skipped after the jump.
    prelude.push(stmt(LD_W_ABS, 4)); // arch
    #[cfg(target_arch = "x86_64")]
    {
        prelude.push(jump(JEQ_K, AUDIT_ARCH, 0, 5)); // foreign arch → body
        prelude.push(stmt(LD_W_ABS, 0)); // nr
        prelude.push(jump(JGE_K, X32_SYSCALL_BIT, 2, 0)); // x32 → EPERM
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        prelude.push(jump(JEQ_K, AUDIT_ARCH, 0, 4));
        prelude.push(stmt(LD_W_ABS, 0));
    }
    prelude.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 2)); // other → body
    prelude.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    prelude.push(stmt(RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    prelude.extend(body);
    prelude
}

/// The names of the syscalls refused whatever their arguments (for the docs and tests).
#[cfg(test)]
pub(crate) fn denied_names() -> impl Iterator<Item = &'static str> {
    DENIED.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const KILL_PROCESS: u32 = 0x8000_0000;

    /// A classic-BPF interpreter for the instructions seccomp filters use, over a
    /// `seccomp_data` (nr, arch, ip, args).
    fn evaluate(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let mut accumulator: u32 = 0;
        let mut pc = 0usize;
        loop {
            let insn = &program[pc];
            pc += 1;
            let class = insn.code & 0x07;
            match class {
                0x00 => {
                    // BPF_LD | BPF_W | BPF_ABS
                    assert_eq!(insn.code, 0x20, "unsupported load {:#x}", insn.code);
                    let at = insn.k as usize;
                    accumulator = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x04 => {
                    // BPF_ALU | BPF_AND | BPF_K
                    assert_eq!(insn.code, 0x54, "unsupported alu {:#x}", insn.code);
                    accumulator &= insn.k;
                }
                0x05 => {
                    let op = insn.code & 0xf0;
                    if op == 0x00 {
                        pc += insn.k as usize; // BPF_JA
                        continue;
                    }
                    let taken = match op {
                        0x10 => accumulator == insn.k,
                        0x20 => accumulator > insn.k,
                        0x30 => accumulator >= insn.k,
                        0x40 => accumulator & insn.k != 0,
                        other => panic!("unsupported jump {other:#x}"),
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                0x06 => return insn.k,
                other => panic!("unsupported class {other:#x}"),
            }
        }
    }

    fn check(nr: libc::c_long, args: [u64; 6]) -> u32 {
        let filter = Filter::default_profile().unwrap();
        evaluate(filter.program(), AUDIT_ARCH, nr as u32, args)
    }

    #[test]
    fn denies_the_dangerous_syscalls_with_eperm() {
        for (name, nr) in DENIED {
            assert_eq!(check(*nr, [0; 6]), EPERM, "{name}");
        }
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "init_module",
            "bpf",
            "keyctl",
        ] {
            assert!(denied_names().any(|denied| denied == name), "{name}");
        }
    }

    #[test]
    fn allows_everything_else() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ptrace,
            libc::SYS_chroot,
            libc::SYS_mknodat,
            libc::SYS_setuid,
            libc::SYS_close_range,
            libc::SYS_exit_group,
        ] {
            assert_eq!(check(nr, [0; 6]), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn clone_and_unshare_are_refused_only_with_namespace_flags() {
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(check(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            check(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            ALLOW
        );
        for flag in NAMESPACE_FLAGS {
            assert_eq!(
                check(
                    libc::SYS_clone,
                    [flag | libc::SIGCHLD as u64, 0, 0, 0, 0, 0]
                ),
                EPERM
            );
            assert_eq!(check(libc::SYS_unshare, [flag, 0, 0, 0, 0, 0]), EPERM);
        }
        let harmless = (libc::CLONE_FS | libc::CLONE_FILES) as u64;
        assert_eq!(check(libc::SYS_unshare, [harmless, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(check(libc::SYS_clone3, [0; 6]), ENOSYS);
    }

    #[test]
    fn personality_allows_only_dockers_values() {
        for value in PERSONALITIES {
            assert_eq!(check(libc::SYS_personality, [value, 0, 0, 0, 0, 0]), ALLOW);
        }
        // ADDR_NO_RANDOMIZE
        assert_eq!(
            check(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
            EPERM
        );
    }

    #[test]
    fn terminal_input_injection_is_refused() {
        assert_eq!(
            check(libc::SYS_ioctl, [1, libc::TIOCSTI, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(check(libc::SYS_ioctl, [1, 0x541c, 0, 0, 0, 0]), EPERM);
        for request in [
            libc::TCGETS,
            libc::TIOCGWINSZ,
            libc::TIOCSWINSZ,
            libc::FIONREAD,
        ] {
            assert_eq!(check(libc::SYS_ioctl, [1, request, 0, 0, 0, 0]), ALLOW);
        }
    }

    #[test]
    fn foreign_architectures_are_killed() {
        let filter = Filter::default_profile().unwrap();
        let i386 = 3 | 0x4000_0000;
        assert_eq!(
            evaluate(filter.program(), i386, libc::SYS_read as u32, [0; 6]),
            KILL_PROCESS
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_refused() {
        let filter = Filter::default_profile().unwrap();
        let x32_read = X32_SYSCALL_BIT;
        let x32_mount = X32_SYSCALL_BIT | libc::SYS_mount as u32;
        for nr in [x32_read, x32_mount] {
            assert_eq!(evaluate(filter.program(), AUDIT_ARCH, nr, [0; 6]), EPERM);
        }
    }
}
