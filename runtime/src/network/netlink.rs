//! Just enough rtnetlink, over a raw `NETLINK_ROUTE` socket, to make a bridge, a veth pair
//! whose peer is created directly in another network namespace, addresses and a default
//! route. Every request asks for an acknowledgement, so errors come back as errnos.
//!
//! A socket belongs to the network namespace it was created in, whatever namespace its
//! owner moves to: the helper keeps one from the host's namespace after `unshare`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// One request: `nlmsghdr`, the fixed family header, then attributes, all 4-byte aligned.
struct Message {
    buffer: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, header: &[u8]) -> Message {
        let mut buffer = vec![0u8; NLMSG_HEADER_LEN];
        buffer[4..6].copy_from_slice(&kind.to_ne_bytes());
        buffer[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buffer.extend_from_slice(header);
        let mut message = Message { buffer };
        message.align();
        message
    }

    fn align(&mut self) {
        while !self.buffer.len().is_multiple_of(4) {
            self.buffer.push(0);
        }
    }

    fn attribute(&mut self, kind: u16, data: &[u8]) -> &mut Message {
        let length = (4 + data.len()) as u16;
        self.buffer.extend_from_slice(&length.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.extend_from_slice(data);
        self.align();
        self
    }

    fn name(&mut self, kind: u16, name: &str) -> &mut Message {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        self.attribute(kind, &data)
    }

    /// Starts a nested attribute; returns where its length goes.
    fn begin(&mut self, kind: u16) -> usize {
        let start = self.buffer.len();
        self.attribute(kind, &[]);
        start
    }

    fn raw(&mut self, data: &[u8]) -> &mut Message {
        self.buffer.extend_from_slice(data);
        self.align();
        self
    }

    fn end(&mut self, start: usize) {
        let length = (self.buffer.len() - start) as u16;
        self.buffer[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn finish(mut self, sequence: u32) -> Vec<u8> {
        let length = self.buffer.len() as u32;
        self.buffer[0..4].copy_from_slice(&length.to_ne_bytes());
        self.buffer[8..12].copy_from_slice(&sequence.to_ne_bytes());
        self.buffer
    }
}

/// `struct ifinfomsg` for `index` (0: by `IFLA_IFNAME`), changing `flags` under `change`.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut header = [0u8; IFINFOMSG_LEN];
    header[0] = libc::AF_UNSPEC as u8;
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    header[8..12].copy_from_slice(&flags.to_ne_bytes());
    header[12..16].copy_from_slice(&change.to_ne_bytes());
    header
}

pub(crate) struct Netlink {
    fd: OwnedFd,
    sequence: u32,
}

impl Netlink {
    /// A route socket in the caller's current network namespace.
    pub(crate) fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink {
            // SAFETY: a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sequence: 0,
        })
    }

    fn request(&mut self, message: Message) -> io::Result<()> {
        self.sequence += 1;
        let bytes = message.finish(self.sequence);
        // SAFETY: sockaddr_nl is plain data; zero is the kernel as destination.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and address are valid for the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 8192];
        loop {
            // SAFETY: `reply` is writable for its whole length.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    reply.as_mut_ptr().cast(),
                    reply.len(),
                    0,
                )
            };
            if received < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if let Some(result) = find_ack(&reply[..received as usize], self.sequence) {
                return result;
            }
        }
    }

    /// Creates a bridge; `Ok(false)` if a link of that name exists already.
    pub(crate) fn create_bridge(&mut self, name: &str) -> io::Result<bool> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        message.name(IFLA_IFNAME, name);
        let info = message.begin(IFLA_LINKINFO);
        message.name(IFLA_INFO_KIND, "bridge");
        message.end(info);
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Sets the link named `name` up.
    pub(crate) fn set_up(&mut self, name: &str) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut message = Message::new(RTM_NEWLINK, 0, &ifinfomsg(0, up, up));
        message.name(IFLA_IFNAME, name);
        self.request(message)
    }

    /// Deletes the link named `name`.
    pub(crate) fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut message = Message::new(RTM_DELLINK, 0, &ifinfomsg(0, 0, 0));
        message.name(IFLA_IFNAME, name);
        self.request(message)
    }

    /// Creates a veth pair: `host` in this socket's namespace, enslaved to `master`, and
    /// `peer` directly in the namespace of `peer_namespace` (an open `/proc/…/ns/net`).
    pub(crate) fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_namespace: RawFd,
    ) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        message.name(IFLA_IFNAME, host);
        message.attribute(IFLA_MASTER, &master.to_ne_bytes());
        let info = message.begin(IFLA_LINKINFO);
        message.name(IFLA_INFO_KIND, "veth");
        let data = message.begin(IFLA_INFO_DATA);
        let peer_info = message.begin(VETH_INFO_PEER);
        message.raw(&ifinfomsg(0, 0, 0));
        message.name(IFLA_IFNAME, peer);
        message.attribute(IFLA_NET_NS_FD, &(peer_namespace as u32).to_ne_bytes());
        message.end(peer_info);
        message.end(data);
        message.end(info);
        self.request(message)
    }

    /// Adds `address/prefix_len` to link `index`; `Ok(false)` if it is there already.
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> io::Result<bool> {
        let mut header = [0u8; 8];
        header[0] = libc::AF_INET as u8;
        header[1] = prefix_len;
        header[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut message = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &header);
        message.attribute(IFA_LOCAL, &address.octets());
        message.attribute(IFA_ADDRESS, &address.octets());
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `default via gateway dev index`, in the main table.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        const RT_TABLE_MAIN: u8 = 254;
        const RTPROT_BOOT: u8 = 3;
        const RT_SCOPE_UNIVERSE: u8 = 0;
        const RTN_UNICAST: u8 = 1;
        let header = [
            libc::AF_INET as u8,
            0, // dst_len: the default route
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &header);
        message.attribute(RTA_GATEWAY, &gateway.octets());
        message.attribute(RTA_OIF, &index.to_ne_bytes());
        self.request(message)
    }
}

/// The acknowledgement of request `sequence` in `reply`, if there is one.
fn find_ack(mut reply: &[u8], sequence: u32) -> Option<io::Result<()>> {
    while reply.len() >= NLMSG_HEADER_LEN {
        let length = u32::from_ne_bytes(reply[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(reply[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(reply[8..12].try_into().ok()?);
        if length < NLMSG_HEADER_LEN || length > reply.len() {
            return Some(Err(io::Error::from_raw_os_error(libc::EBADMSG)));
        }
        if kind == NLMSG_ERROR && seq == sequence && length >= NLMSG_HEADER_LEN + 4 {
            let error = i32::from_ne_bytes(reply[16..20].try_into().ok()?);
            return Some(if error == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-error))
            });
        }
        let step = (length + 3) & !3;
        reply = &reply[step.min(reply.len())..];
    }
    None
}

/// The index of link `name` in the caller's current network namespace.
pub(crate) fn link_index(name: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_with_nested_lengths() {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfomsg(0, 0, 0));
        message.name(IFLA_IFNAME, "br0");
        let info = message.begin(IFLA_LINKINFO);
        message.name(IFLA_INFO_KIND, "bridge");
        message.end(info);
        let bytes = message.finish(7);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[4..6].try_into().unwrap()),
            RTM_NEWLINK
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[6..8].try_into().unwrap()),
            NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        // IFLA_IFNAME "br0\0": 4 + 4 bytes.
        let name = &bytes[32..40];
        assert_eq!(u16::from_ne_bytes(name[0..2].try_into().unwrap()), 8);
        assert_eq!(&name[4..8], b"br0\0");
        // IFLA_LINKINFO wraps IFLA_INFO_KIND "bridge\0" (4 + 7, padded to 12).
        let info = &bytes[40..];
        assert_eq!(u16::from_ne_bytes(info[0..2].try_into().unwrap()), 4 + 12);
        assert_eq!(
            u16::from_ne_bytes(info[2..4].try_into().unwrap()),
            IFLA_LINKINFO
        );
        assert_eq!(info.len(), 4 + 12);
    }

    #[test]
    fn acks_carry_negative_errnos() {
        let ack = |seq: u32, error: i32| {
            let mut bytes = vec![0u8; 36];
            bytes[0..4].copy_from_slice(&36u32.to_ne_bytes());
            bytes[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
            bytes[16..20].copy_from_slice(&error.to_ne_bytes());
            bytes
        };
        assert!(find_ack(&ack(3, 0), 3).unwrap().is_ok());
        let err = find_ack(&ack(3, -libc::EEXIST), 3).unwrap().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert!(find_ack(&ack(2, 0), 3).is_none());
        let mut two = ack(2, 0);
        two.extend(ack(3, -libc::EPERM));
        let err = find_ack(&two, 3).unwrap().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }
}
