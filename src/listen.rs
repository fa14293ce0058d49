//! The listening sockets: one SO_REUSEPORT socket per worker on the same
//! address, so the kernel spreads new connections across cores and no accept
//! ever crosses a core.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues per worker socket. nginx's default
/// backlog is 511; CI fleets open connections in bursts.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds `count` sockets to `addr`. When `addr` has port 0, the first socket
/// picks the port and the rest join it, so all workers share one address.
pub fn bind_all(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let first = bind_one(addr)?;
    let actual = first.local_addr()?;
    let mut all = Vec::with_capacity(count);
    all.push(first);
    for _ in 1..count {
        all.push(bind_one(actual)?);
    }
    Ok((actual, all))
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_sockets() {
        let (addr, socks) = bind_all("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        assert_ne!(addr.port(), 0);
        for s in &socks {
            assert_eq!(s.local_addr().expect("addr"), addr);
        }
    }
}
