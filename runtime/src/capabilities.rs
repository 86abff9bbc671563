//! The capabilities a sandbox's command keeps: Docker's default set, changed by
//! `--cap-add` and `--cap-drop` as `docker run` changes it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every capability Linux defines (6.x), by number.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default set (moby `oci/caps/defaults.go`).
const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SYS_CHROOT",
    "MKNOD",
    "AUDIT_WRITE",
    "SETFCAP",
];

/// A set of capabilities, as a mask of their numbers.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities(u64);

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities::docker_default()
    }
}

impl Capabilities {
    /// Docker's default set.
    pub fn docker_default() -> Capabilities {
        Capabilities(
            DOCKER_DEFAULT
                .iter()
                .filter_map(|name| number(name))
                .fold(0, |mask, number| mask | 1 << number),
        )
    }

    /// Docker's default set with `drop` taken out, then `add` put in (docker's order: an
    /// added capability wins over a dropped one). Names as docker takes them: any case,
    /// with or without `CAP_`, or `ALL`.
    pub fn changed(add: &[String], drop: &[String]) -> Result<Capabilities, UnknownCapability> {
        let mut mask = Capabilities::docker_default().0;
        for name in drop {
            mask &= !mask_of(name)?;
        }
        for name in add {
            mask |= mask_of(name)?;
        }
        Ok(Capabilities(mask))
    }

    /// Every capability (`RUN --security=insecure`, `--privileged`).
    pub fn all() -> Capabilities {
        Capabilities((1u64 << NAMES.len()) - 1)
    }

    pub fn has(&self, name: &str) -> bool {
        number(name).is_some_and(|number| self.0 & (1 << number) != 0)
    }

    pub(crate) fn mask(&self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(number, _)| self.0 & (1 << number) != 0)
            .map(|(_, name)| *name)
            .collect();
        write!(f, "Capabilities({})", names.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}` (names as in capabilities(7), e.g. NET_ADMIN, or ALL)")]
pub struct UnknownCapability(pub String);

fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|known| *known == bare)
        .map(|position| position as u32)
}

fn mask_of(name: &str) -> Result<u64, UnknownCapability> {
    if name.eq_ignore_ascii_case("ALL") {
        return Ok(Capabilities::all().0);
    }
    number(name)
        .map(|number| 1u64 << number)
        .ok_or_else(|| UnknownCapability(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn default_set_is_dockers() {
        // CapBnd of `docker run --rm alpine grep Cap /proc/self/status`.
        assert_eq!(Capabilities::docker_default().mask(), 0x00000000a80425fb);
        assert_eq!(Capabilities::default(), Capabilities::docker_default());
    }

    #[test]
    fn adds_and_drops_as_docker() {
        let caps = Capabilities::changed(
            &strings(&["net_admin", "CAP_SYS_TIME"]),
            &strings(&["MKNOD"]),
        )
        .unwrap();
        assert!(caps.has("NET_ADMIN") && caps.has("sys_time") && caps.has("CHOWN"));
        assert!(!caps.has("MKNOD"));
        let caps =
            Capabilities::changed(&strings(&["NET_BIND_SERVICE"]), &strings(&["ALL"])).unwrap();
        assert_eq!(caps.mask(), 1 << 10);
        let caps = Capabilities::changed(&strings(&["all"]), &[]).unwrap();
        assert!(caps.has("CHECKPOINT_RESTORE") && caps.has("SYS_ADMIN"));
        assert_eq!(
            Capabilities::changed(&strings(&["FLY"]), &[]),
            Err(UnknownCapability("FLY".into()))
        );
    }
}
