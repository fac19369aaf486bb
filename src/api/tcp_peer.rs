//! Who is behind a loopback TCP connection: the uid owning the peer's socket, asked of the
//! kernel through one NETLINK_SOCK_DIAG query for that exact 4-tuple (what `ss -e` shows).
//! Every local v1 client comes from 127.0.0.1, so the address alone cannot tell a flooding
//! user from the management client; the uid can. A peer on another host is not found (None).
//!
//! Building the request and reading the answer are pure and tested here; [`peer_uid`] does
//! the one non-blocking exchange. It must never block the loop.

use std::net::{IpAddr, SocketAddr};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDR: usize = 16;
/// Offset of `idiag_uid` in `struct inet_diag_msg` (4 bytes of family/state/timer/retrans,
/// a 48-byte socket id, then expires, rqueue, wqueue).
const UID_AT: usize = 4 + 48 + 12;

/// The request for the socket at `src` connected to `dst` (src is the peer's side).
pub fn request(src: SocketAddr, dst: SocketAddr) -> Option<Vec<u8>> {
    let (family, src_ip, dst_ip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (2u8, v4(s.octets()), v4(d.octets())),
        (IpAddr::V6(s), IpAddr::V6(d)) => (10u8, s.octets(), d.octets()),
        _ => return None,
    };
    let len = NLMSG_HDR + 56;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    // struct inet_diag_req_v2: family, IPPROTO_TCP, no extensions, pad, every state.
    m.extend_from_slice(&[family, 6, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    // struct inet_diag_sockid: ports and addresses in network order.
    m.extend_from_slice(&src.port().to_be_bytes());
    m.extend_from_slice(&dst.port().to_be_bytes());
    m.extend_from_slice(&src_ip);
    m.extend_from_slice(&dst_ip);
    m.extend_from_slice(&0u32.to_ne_bytes()); // interface: any
    m.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    Some(m)
}

fn v4(o: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&o);
    a
}

/// The uid in the kernel's answer; None for an error message (no such socket) or a short one.
pub fn uid_of_answer(answer: &[u8]) -> Option<u32> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let at = NLMSG_HDR + UID_AT;
    Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
}

fn diag_socket() -> Option<std::os::fd::OwnedFd> {
    socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()
}

/// Whether the kernel (or the emulator: qemu-user translates only some netlink families)
/// lets us ask.
pub fn available() -> bool {
    diag_socket().is_some()
}

/// The uid owning the local socket at `peer` that is connected to our `local`, if the peer is
/// on this host and the kernel answers at once.
pub fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let req = request(peer, local)?;
    let fd = diag_socket()?;
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    // The kernel answers a sock_diag request within sendto: nothing to wait for.
    let mut buf = [0u8; 512];
    let n = recv(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &mut buf,
        MsgFlags::empty(),
    )
    .ok()?;
    uid_of_answer(buf.get(..n)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_the_exact_socket() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!());
        let dst: SocketAddr = "127.0.0.1:48484".parse().unwrap_or_else(|_| unreachable!());
        let r = request(src, dst).unwrap_or_default();
        assert_eq!(r.len(), 72);
        assert_eq!(&r[16..18], &[2, 6]);
        assert_eq!(&r[24..26], &40000u16.to_be_bytes());
        assert_eq!(&r[26..28], &48484u16.to_be_bytes());
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[44..48], &[127, 0, 0, 1]);
        let v6: SocketAddr = "[::1]:1".parse().unwrap_or_else(|_| unreachable!());
        assert!(request(src, v6).is_none());
    }

    #[test]
    fn answers_give_the_uid_or_nothing() {
        let mut msg = vec![0u8; NLMSG_HDR + 72];
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[NLMSG_HDR + UID_AT..NLMSG_HDR + UID_AT + 4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(uid_of_answer(&msg), Some(1000));
        msg[4..6].copy_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        assert_eq!(uid_of_answer(&msg), None);
        assert_eq!(uid_of_answer(&msg[..10]), None);
    }

    #[test]
    fn a_loopback_connection_of_this_process_is_ours() {
        if !available() {
            eprintln!("skipped: no NETLINK_SOCK_DIAG here (qemu-user?)");
            return;
        }
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let Ok(client) = std::net::TcpStream::connect(addr) else {
            return;
        };
        let Ok((_server, peer)) = listener.accept() else {
            return;
        };
        assert_eq!(client.local_addr().ok(), Some(peer));
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(peer_uid(peer, addr), Some(me));
    }
}
