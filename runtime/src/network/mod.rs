//! Bridge networking (`Network::Bridge`): a Linux bridge with a private subnet and the
//! gateway address, one veth pair and one address per sandbox, and the sandbox's
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
//!
//! Who does what:
//! - rbuild (`Runtime::spawn`) takes an address: one lease file per address under
//!   `<lease_dir>/<netns inode>-<bridge>/`, held with `flock` for the sandbox's lifetime.
//!   The kernel drops the lock when the rbuild process dies, so nothing goes stale and
//!   concurrent rbuild processes never share an address. Files are never unlinked (that
//!   would race with a process that has just opened one).
//! - The helper, still in the host's network namespace, makes sure the bridge exists, has
//!   the gateway address and is up (under `bridge.lock`, so two rbuilds do not interleave),
//!   then, after `unshare(CLONE_NEWNET)`, creates the veth pair through the netlink
//!   socket it opened before: the host end on the bridge, the peer created directly as
//!   `eth0` in the new namespace. There it sets the address, the default route via the
//!   gateway, and brings `lo` and `eth0` up. The pair disappears with the namespace.
//!
//! No forwarding or NAT is set up: rbuild never changes a firewall. A sandbox reaches the
//! host and the other sandboxes on the bridge; `rbuild run -p` publishes ports through a
//! userspace proxy in rbuild.

pub(crate) mod netlink;

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::spec::{ExtraHost, Network};
use crate::state::{HOSTNAME_FILE, HOSTS_FILE, RESOLV_CONF_FILE};
use netlink::{Netlink, link_index};

/// The bridge of `Network::Bridge` sandboxes; a field of [`crate::RuntimeOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The bridge's interface name (at most 15 bytes).
    pub name: String,
    /// The subnet's first address; the gateway (on the bridge) is the next one.
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// Where the address leases of each network namespace's bridge live. Shared by every
    /// rbuild on the machine whatever its store, as the bridge is.
    pub lease_dir: PathBuf,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            name: "rbuild0".into(),
            subnet: Ipv4Addr::new(10, 88, 0, 0),
            prefix_len: 16,
            lease_dir: PathBuf::from("/run/rbuild/net"),
        }
    }
}

impl BridgeOptions {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 15
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        let mask = self.mask();
        let subnet_ok = (8..=30).contains(&self.prefix_len) && u32::from(self.subnet) & !mask == 0;
        if name_ok && subnet_ok {
            Ok(())
        } else {
            Err(Error::InvalidBridge {
                name: self.name.clone(),
                subnet: format!("{}/{}", self.subnet, self.prefix_len),
            })
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }

    /// Host numbers a sandbox may get: after the gateway, before the broadcast address.
    fn hosts(&self) -> std::ops::Range<u32> {
        2..(!self.mask())
    }
}

/// `NS_GET_USERNS` (linux/nsfs.h): a descriptor of the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// Why this process cannot make or use rbuild's bridge: the bridge lives in the network
/// namespace rbuild runs in, and creating links there needs `CAP_NET_ADMIN` over it, which
/// rbuild has only when that namespace belongs to its own user namespace (root, or root of
/// a container with user namespaces). An ordinary user's rbuild (rootless) shares the
/// host's. `None` when the bridge is possible.
pub fn bridge_unavailable() -> Option<String> {
    use std::os::fd::FromRawFd;
    let own = fs::metadata("/proc/self/ns/user").ok()?.ino();
    let net = File::open("/proc/self/ns/net").ok()?;
    // SAFETY: ioctl(NS_GET_USERNS) on a namespace descriptor we own; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::ioctl(net.as_raw_fd(), NS_GET_USERNS as _) };
    let owner = if fd >= 0 {
        // SAFETY: a fresh descriptor nothing else owns.
        let owner = unsafe { File::from_raw_fd(fd) };
        owner.metadata().ok().map(|meta| meta.ino())
    } else {
        // EPERM: the owner is above this process's user namespace.
        None
    };
    if owner == Some(own) {
        return None;
    }
    Some("the network namespace rbuild runs in is not its own to change (rbuild runs as an ordinary user, or in a container that did not give it one)".to_owned())
}

/// An address held for one sandbox; released when dropped (or when rbuild dies).
#[derive(Debug)]
pub(crate) struct Lease {
    _file: File,
    pub address: Ipv4Addr,
    host: u32,
    dir: PathBuf,
}

impl Lease {
    /// The lowest free address of the bridge's subnet in rbuild's network namespace.
    pub(crate) fn acquire(opts: &BridgeOptions) -> Result<Lease, Error> {
        let namespace = fs::metadata("/proc/self/ns/net")
            .map(|meta| meta.ino())
            .unwrap_or(0);
        let dir = opts.lease_dir.join(format!("{namespace}-{}", opts.name));
        let error = |source| Error::AllocateAddress {
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(error)?;
        for host in opts.hosts() {
            let address = Ipv4Addr::from(u32::from(opts.subnet) | host);
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join(address.to_string()))
                .map_err(error)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lease {
                    _file: file,
                    address,
                    host,
                    dir,
                });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(error(err));
            }
        }
        Err(Error::AddressesExhausted {
            bridge: opts.name.clone(),
            subnet: format!("{}/{}", opts.subnet, opts.prefix_len),
        })
    }

    /// What the helper needs to plug the sandbox in.
    pub(crate) fn config(&self, opts: &BridgeOptions) -> BridgeConfig {
        BridgeConfig {
            bridge: opts.name.clone(),
            gateway: opts.gateway(),
            address: self.address,
            prefix_len: opts.prefix_len,
            host_veth: format!("rbv{:x}", self.host),
            lock: self.dir.join("bridge.lock"),
        }
    }
}

/// The helper's instructions for one sandbox on the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BridgeConfig {
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The host end of the veth pair; unique per address, so per live sandbox.
    pub host_veth: String,
    /// Serialises the bridge's creation between rbuild processes.
    pub lock: PathBuf,
}

/// The sandbox's interface name.
const PEER: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to {action} `{name}`")]
    Netlink {
        action: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

fn netlink_error(action: &'static str, name: &str) -> impl FnOnce(io::Error) -> NetworkError {
    let name = name.to_owned();
    move |source| NetworkError::Netlink {
        action,
        name,
        source,
    }
}

/// The helper's part in the host's namespace: the bridge, ready. Returns a netlink socket
/// of the host's namespace, to be used after `unshare(CLONE_NEWNET)` by [`attach`].
pub(crate) fn prepare_bridge(config: &BridgeConfig) -> Result<(Netlink, u32), NetworkError> {
    let mut netlink = Netlink::open().map_err(netlink_error("open netlink for", "route"))?;
    let lock = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&config.lock)
        .map_err(|source| NetworkError::Lock {
            path: config.lock.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(NetworkError::Lock {
            path: config.lock.clone(),
            source: io::Error::last_os_error(),
        });
    }
    let bridge = &config.bridge;
    netlink
        .create_bridge(bridge)
        .map_err(netlink_error("create bridge", bridge))?;
    let index = link_index(bridge).map_err(netlink_error("find bridge", bridge))?;
    netlink
        .add_address(index, config.gateway, config.prefix_len)
        .map_err(netlink_error("add the gateway address to", bridge))?;
    netlink
        .set_up(bridge)
        .map_err(netlink_error("bring up", bridge))?;
    drop(lock);
    Ok((netlink, index))
}

/// The helper's part after `unshare(CLONE_NEWNET)`: the veth pair across the two
/// namespaces, then `lo` and `eth0` configured in the new one.
pub(crate) fn attach(
    config: &BridgeConfig,
    mut host: Netlink,
    bridge_index: u32,
) -> Result<(), NetworkError> {
    let namespace = File::open("/proc/self/ns/net")
        .map(OwnedFd::from)
        .map_err(netlink_error("open the network namespace of", PEER))?;
    let veth = &config.host_veth;
    let created = host.create_veth(veth, bridge_index, PEER, namespace.as_raw_fd());
    match created {
        // A pair left by a sandbox of this address that died mid-setup.
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
            host.delete_link(veth)
                .map_err(netlink_error("delete stale veth", veth))?;
            host.create_veth(veth, bridge_index, PEER, namespace.as_raw_fd())
        }
        other => other,
    }
    .map_err(netlink_error("create veth pair", veth))?;
    host.set_up(veth).map_err(netlink_error("bring up", veth))?;
    drop(host);

    let mut inside = Netlink::open().map_err(netlink_error("open netlink for", PEER))?;
    inside
        .set_up("lo")
        .map_err(netlink_error("bring up", "lo"))?;
    let index = link_index(PEER).map_err(netlink_error("find", PEER))?;
    inside
        .add_address(index, config.address, config.prefix_len)
        .map_err(netlink_error("add an address to", PEER))?;
    inside
        .set_up(PEER)
        .map_err(netlink_error("bring up", PEER))?;
    inside
        .add_default_route(config.gateway, index)
        .map_err(netlink_error("add the default route through", PEER))?;
    Ok(())
}

/// `/etc/hosts` of a bridged sandbox.
pub(crate) fn hosts_file(address: Ipv4Addr, hostname: &str) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        text.push_str(&format!("{address}\t{hostname}\n"));
    }
    text
}

/// `/etc/resolv.conf` of a bridged sandbox: the host's, without loopback name servers
/// (unreachable from another namespace); Google's public ones when none is left, as Docker.
pub(crate) fn resolv_conf(host: &str) -> String {
    let mut text = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let Some(server) = words.next() else {
                continue;
            };
            let loopback = server
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                continue;
            }
            servers += 1;
        }
        text.push_str(line);
        text.push('\n');
    }
    if servers == 0 {
        text.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    text
}

/// Writes the files a sandbox with this network gets into `state_dir`: private copies of
/// the host's resolver files for `Host`, generated ones for `Bridge`, none for `None`;
/// `extra_hosts` (`--add-host`) are added to `/etc/hosts` (for `None`, to one with only
/// localhost).
pub(crate) fn write_files(
    state_dir: &Path,
    network: Network,
    hostname: &str,
    address: Option<Ipv4Addr>,
    extra_hosts: &[ExtraHost],
) -> Result<(), Error> {
    let write = |name: &str, text: &str| {
        let path = state_dir.join(name);
        fs::write(&path, text).map_err(|source| Error::WriteState { path, source })
    };
    let host_file = |name: &str| match fs::read_to_string(Path::new("/etc").join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadHostFile {
            path: Path::new("/etc").join(name),
            source,
        }),
    };
    match (network, address) {
        (Network::None, _) => {}
        (Network::Host, _) => {
            for name in [RESOLV_CONF_FILE, HOSTS_FILE] {
                if let Some(text) = host_file(name)? {
                    write(name, &text)?;
                }
            }
        }
        (Network::Bridge, address) => {
            let address = address.unwrap_or(Ipv4Addr::UNSPECIFIED);
            write(HOSTS_FILE, &hosts_file(address, hostname))?;
            write(HOSTNAME_FILE, &format!("{hostname}\n"))?;
            let resolv = host_file(RESOLV_CONF_FILE)?.unwrap_or_default();
            write(RESOLV_CONF_FILE, &resolv_conf(&resolv))?;
        }
    }
    if !extra_hosts.is_empty() {
        let path = state_dir.join(HOSTS_FILE);
        let mut text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                hosts_file(address.unwrap_or(Ipv4Addr::LOCALHOST), "")
            }
            Err(source) => return Err(Error::WriteState { path, source }),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for host in extra_hosts {
            text.push_str(&format!("{}\t{}\n", host.address, host.name));
        }
        write(HOSTS_FILE, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> BridgeOptions {
        BridgeOptions {
            lease_dir: dir.to_owned(),
            subnet: Ipv4Addr::new(10, 99, 1, 0),
            prefix_len: 29,
            ..BridgeOptions::default()
        }
    }

    #[test]
    fn leases_are_distinct_and_reused_once_released() {
        let temp = tempfile::tempdir().unwrap();
        let opts = options(temp.path());
        opts.validate().unwrap();
        assert_eq!(opts.gateway(), Ipv4Addr::new(10, 99, 1, 1));
        // A /29: .2 to .6 for sandboxes (.0 network, .1 gateway, .7 broadcast).
        let leases: Vec<Lease> = (0..5).map(|_| Lease::acquire(&opts).unwrap()).collect();
        let addresses: Vec<String> = leases.iter().map(|l| l.address.to_string()).collect();
        assert_eq!(
            addresses,
            [
                "10.99.1.2",
                "10.99.1.3",
                "10.99.1.4",
                "10.99.1.5",
                "10.99.1.6"
            ]
        );
        let err = Lease::acquire(&opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free address left in 10.99.1.0/29 of bridge `rbuild0`"
        );
        let config = leases[1].config(&opts);
        assert_eq!(config.host_veth, "rbv3");
        assert_eq!(config.address, Ipv4Addr::new(10, 99, 1, 3));
        let mut leases = leases;
        leases.remove(1);
        assert_eq!(
            Lease::acquire(&opts).unwrap().address,
            Ipv4Addr::new(10, 99, 1, 3)
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let mut opts = options(temp.path());
        opts.subnet = Ipv4Addr::new(10, 99, 1, 1);
        assert!(opts.validate().is_err());
        let mut opts = options(temp.path());
        opts.name = "a-name-that-is-too-long".into();
        assert!(opts.validate().is_err());
        assert!(BridgeOptions::default().validate().is_ok());
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "search example.org\nnameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let host = "nameserver 192.0.2.1\nnameserver ::1\n";
        assert_eq!(resolv_conf(host), "nameserver 192.0.2.1\n");
    }

    #[test]
    fn hosts_names_the_sandbox() {
        let text = hosts_file(Ipv4Addr::new(10, 88, 0, 2), "box");
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.88.0.2\tbox\n"));
    }
}
