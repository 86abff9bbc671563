//! Running another architecture's binaries: a RUN step for a platform this machine cannot
//! execute natively runs through a `binfmt_misc` handler (QEMU user-mode emulation, from
//! Debian's and Ubuntu's `qemu-user-static`). The kernel starts the emulator for the
//! step's binaries itself, so the step keeps its sandbox: the same namespaces, seccomp
//! filter and capabilities as a native one.
//!
//! A handler only works in the sandbox when it was registered with the `F` (fix-binary)
//! flag: the kernel then opens the emulator at registration, instead of looking for it in
//! the step's root, which has none. A missing or unusable handler fails the step before it
//! runs, naming the platform: a foreign binary is never run some other way.

use std::fs;
use std::path::Path;

use rbuild_frontend::Platform;

/// Where the kernel's `binfmt_misc` handlers are.
pub(crate) const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// Why a platform's binaries cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    #[error("no emulator for {platform} is registered with the kernel (binfmt_misc{mounted})")]
    NoHandler {
        platform: String,
        /// Empty, or why the handlers could not be read.
        mounted: String,
    },
    #[error(
        "the emulator for {platform} ({name}: {interpreter}) is registered without the `F` \
         flag, so the build's sandbox cannot find it"
    )]
    NotFixed {
        platform: String,
        name: String,
        interpreter: String,
    },
    #[error("rbuild does not know the binaries of {platform}, to find an emulator for them")]
    UnknownArchitecture { platform: String },
}

impl EmulationError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            EmulationError::NoHandler { .. } => {
                "install QEMU's user-mode emulators (Debian and Ubuntu: `apt-get install \
                 qemu-user-static`; they register themselves through systemd-binfmt or \
                 binfmt-support), or build on a machine of that platform"
            }
            EmulationError::NotFixed { .. } => {
                "register the handler with the F flag (Debian's and Ubuntu's qemu-user-static \
                 do: `apt-get install --reinstall qemu-user-static`, or write its line from \
                 /usr/lib/binfmt.d to /proc/sys/fs/binfmt_misc/register)"
            }
            EmulationError::UnknownArchitecture { .. } => {
                "build for linux/amd64, linux/arm64, linux/arm/v7, linux/386, linux/ppc64le, \
                 linux/s390x, linux/riscv64 or linux/mips64le, or on a machine of that platform"
            }
        }
    }
}

/// Checks that this machine runs `platform`'s binaries: natively, or through a usable
/// binfmt_misc handler of the kernel's (see [`check`]). Blocking (reads procfs).
pub fn check_emulation(platform: &Platform) -> Result<(), EmulationError> {
    check(platform, Path::new(BINFMT_MISC))
}

/// Whether this machine runs `platform`'s binaries without an emulator.
pub(crate) fn native(platform: &Platform) -> bool {
    let host = Platform::default();
    if platform.os != host.os {
        return false;
    }
    match (host.architecture.as_str(), platform.architecture.as_str()) {
        (host, wanted) if host == wanted => true,
        // 32-bit x86 binaries run on x86-64 kernels.
        ("amd64", "386") => true,
        _ => false,
    }
}

/// Checks that `platform`'s binaries run here: natively, or through a usable handler in
/// `dir` (the kernel's: [`BINFMT_MISC`], mounted first where it is not, as root can).
pub(crate) fn check(platform: &Platform, dir: &Path) -> Result<(), EmulationError> {
    if native(platform) {
        return Ok(());
    }
    let header =
        elf_header(&platform.architecture).ok_or_else(|| EmulationError::UnknownArchitecture {
            platform: platform.to_string(),
        })?;
    if dir == Path::new(BINFMT_MISC) {
        mount_binfmt_misc();
    }
    let entries = fs::read_dir(dir).map_err(|err| EmulationError::NoHandler {
        platform: platform.to_string(),
        mounted: format!(": {}: {err}", dir.display()),
    })?;
    let mut unfixed = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(handler) = Handler::parse(&text) else {
            continue;
        };
        if !handler.enabled || !handler.matches(&header) {
            continue;
        }
        if handler.fix_binary {
            return Ok(());
        }
        unfixed.get_or_insert((name, handler.interpreter));
    }
    Err(match unfixed {
        Some((name, interpreter)) => EmulationError::NotFixed {
            platform: platform.to_string(),
            name,
            interpreter,
        },
        None => EmulationError::NoHandler {
            platform: platform.to_string(),
            mounted: String::new(),
        },
    })
}

/// Mounts `binfmt_misc` where it is not (a fresh VM or container host without systemd):
/// the handlers registered are kept by the kernel whether or not it is mounted, but they
/// can only be read through it. Fails quietly without the privilege: the check then finds
/// no handler and says so.
fn mount_binfmt_misc() {
    if Path::new(BINFMT_MISC).join("status").exists() {
        return;
    }
    let _ = nix::mount::mount(
        Some("binfmt_misc"),
        BINFMT_MISC,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    );
}

/// The first 20 bytes of an executable of `architecture` (as in the ELF header: class,
/// byte order, version, type `EXEC`, machine), what handlers' magic is matched against.
fn elf_header(architecture: &str) -> Option<[u8; 20]> {
    // (64-bit, big-endian, e_machine)
    let (wide, big_endian, machine): (bool, bool, u16) = match architecture {
        "amd64" => (true, false, 62),
        "386" => (false, false, 3),
        "arm64" => (true, false, 183),
        "arm" => (false, false, 40),
        "ppc64le" => (true, false, 21),
        "s390x" => (true, true, 22),
        "riscv64" => (true, false, 243),
        "mips64le" => (true, false, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if wide { 2 } else { 1 };
    header[5] = if big_endian { 2 } else { 1 };
    header[6] = 1;
    let (kind, machine) = if big_endian {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    header[16..18].copy_from_slice(&kind);
    header[18..20].copy_from_slice(&machine);
    Some(header)
}

/// A handler as `/proc/sys/fs/binfmt_misc/NAME` shows it.
#[derive(Debug, PartialEq, Eq)]
struct Handler {
    enabled: bool,
    interpreter: String,
    fix_binary: bool,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// `None` for an extension handler (`E`) or text that is not a handler's.
    fn parse(text: &str) -> Option<Handler> {
        let mut handler = Handler {
            enabled: false,
            interpreter: String::new(),
            fix_binary: false,
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            match line.split_once(' ').unwrap_or((line, "")) {
                ("enabled", _) => handler.enabled = true,
                ("interpreter", path) => handler.interpreter = path.to_owned(),
                ("flags:", flags) => handler.fix_binary = flags.contains('F'),
                ("offset", n) => handler.offset = n.trim().parse().ok()?,
                ("magic", hex) => handler.magic = decode_hex(hex.trim())?,
                ("mask", hex) => handler.mask = decode_hex(hex.trim())?,
                _ => {}
            }
        }
        (!handler.magic.is_empty()).then_some(handler)
    }

    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, magic)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|byte| byte & mask == magic & mask)
        })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-user-static handler for aarch64, as the kernel shows it.
    const AARCH64: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
";

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap()
    }

    fn handlers(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_fixed_handler_whose_magic_matches_is_found() {
        let dir = handlers(&[("qemu-aarch64", AARCH64)]);
        assert_eq!(check(&platform("linux/arm64"), dir.path()), Ok(()));
        let err = check(&platform("linux/s390x"), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::NoHandler { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no emulator for linux/s390x is registered with the kernel (binfmt_misc)"
        );
    }

    #[test]
    fn a_disabled_or_unfixed_handler_is_not_enough_and_says_why() {
        let disabled = AARCH64.replace("enabled\n", "disabled\n");
        let dir = handlers(&[("qemu-aarch64", &disabled)]);
        let err = check(&platform("linux/arm64"), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::NoHandler { .. }), "{err:?}");

        let unfixed = AARCH64.replace("flags: POF", "flags: OC");
        let dir = handlers(&[("qemu-aarch64", &unfixed)]);
        let err = check(&platform("linux/arm64"), dir.path()).unwrap_err();
        assert_eq!(
            err,
            EmulationError::NotFixed {
                platform: "linux/arm64".into(),
                name: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
            }
        );
    }

    #[test]
    fn the_machines_own_platform_needs_no_handler() {
        let dir = handlers(&[]);
        assert_eq!(check(&Platform::default(), dir.path()), Ok(()));
        let err = check(&platform("linux/sparc64"), dir.path()).unwrap_err();
        assert!(matches!(err, EmulationError::UnknownArchitecture { .. }));
    }

    #[test]
    fn headers_match_qemus_own_magic_for_each_architecture() {
        // Magic and mask of Debian's qemu-user-static handlers (/usr/lib/binfmt.d).
        let qemu = [
            (
                "arm",
                "7f454c4601010100000000000000000002002800",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "ppc64le",
                "7f454c4602010100000000000000000002001500",
                "ffffffffffffff00fffffffffffffffffeffff00",
            ),
            (
                "s390x",
                "7f454c4602020100000000000000000000020016",
                "ffffffffffffff00fffffffffffffffffffeffff",
            ),
            (
                "riscv64",
                "7f454c460201010000000000000000000200f300",
                "ffffffffffffff00fffffffffffffffffeffffff",
            ),
            (
                "386",
                "7f454c4601010100000000000000000002000300",
                "fffffffffffefe00fffffffffffffffffeffffff",
            ),
        ];
        for (architecture, magic, mask) in qemu {
            let handler = Handler::parse(&format!(
                "enabled\ninterpreter /q\nflags: F\noffset 0\nmagic {magic}\nmask {mask}\n"
            ))
            .unwrap();
            let header = elf_header(architecture).unwrap();
            assert!(handler.matches(&header), "{architecture}");
            assert!(
                !handler.matches(&elf_header("arm64").unwrap()),
                "{architecture}"
            );
        }
    }
}
