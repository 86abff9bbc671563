//! Which process owns a temporary object (an ingest, an active snapshot, a lease, a scratch
//! dir), so the next rbuild can tell the leftovers of a killed process from the work of a
//! live one. A pid alone is not enough (pids are reused); the pid and the process's start
//! time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot) are.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    /// Whether the process is still running (a reused pid does not count).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid).is_some_and(|start| start == self.start)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // after the last `)`. Field 3 is the first after it; the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pid, self.start)
    }
}

impl FromStr for Owner {
    type Err = ();

    fn from_str(text: &str) -> Result<Owner, ()> {
        let (pid, start) = text.split_once('.').ok_or(())?;
        Ok(Owner {
            pid: pid.parse().map_err(|_| ())?,
            start: start.parse().map_err(|_| ())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = Owner::current();
        assert!(me.is_alive());
        assert_eq!(me.to_string().parse::<Owner>(), Ok(me));
        let reused = Owner {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!reused.is_alive(), "same pid, other start time");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = Owner {
            pid,
            start: start_time(pid).unwrap_or(0),
        };
        child.wait().unwrap();
        assert!(!owner.is_alive());
    }
}
