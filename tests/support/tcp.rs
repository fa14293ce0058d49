//! The kernel's view of this network namespace's IPv4 TCP sockets
//! (`/proc/net/tcp`): what a test waits on instead of sleeping, such as
//! "regproxy has read every byte this client sent" (its end's receive
//! queue is empty) or "the origin's FIN reached regproxy's pooled
//! connection" (that end left ESTABLISHED).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// `st` of `/proc/net/tcp` (include/net/tcp_states.h).
pub const ESTABLISHED: u8 = 0x01;
pub const CLOSE_WAIT: u8 = 0x08;
/// A listener; its `rx_queue` is then the accept queue's length.
pub const LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp`: one end of a connection (or a listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    /// Bytes sent and not yet acknowledged by the peer.
    pub tx_queue: u32,
    /// Bytes received and not yet read by the socket's owner (for a
    /// listener: connections not yet accepted).
    pub rx_queue: u32,
}

/// Every IPv4 TCP socket of this namespace.
pub fn sockets() -> Vec<Socket> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    text.lines().skip(1).filter_map(parse_line).collect()
}

/// The end whose address is `local` and whose peer is `remote`.
pub fn socket(local: SocketAddr, remote: SocketAddr) -> Option<Socket> {
    sockets()
        .into_iter()
        .find(|s| s.local == local && s.remote == remote)
}

/// Bytes the owner of the `local` end of the `local`–`remote` connection
/// has not read yet (0 once the connection is gone).
pub fn unread(local: SocketAddr, remote: SocketAddr) -> u32 {
    socket(local, remote).map_or(0, |s| s.rx_queue)
}

fn parse_line(line: &str) -> Option<Socket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = f.get(4)?.split_once(':')?;
    Some(Socket {
        local: parse_addr(f.get(1)?)?,
        remote: parse_addr(f.get(2)?)?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        tx_queue: u32::from_str_radix(tx, 16).ok()?,
        rx_queue: u32::from_str_radix(rx, 16).ok()?,
    })
}

/// `0100007F:1F90`: the address's four bytes printed as one native-endian
/// u32 in hex (so 127.0.0.1 reads backwards on x86), then the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let ip = Ipv4Addr::from(ip.to_ne_bytes());
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}
