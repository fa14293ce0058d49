//! Socket handoff: restarts and upgrades that lose no connection.
//!
//! With `handoff_socket` set, a running regproxy listens on that Unix
//! socket. A new regproxy started with the same config connects to it
//! first, receives the running one's listening sockets (SCM_RIGHTS, as
//! HAProxy's `-x` does) and serves them alongside; then it takes the path
//! over for the next one. SIGTERM to the old process stops its accepts and
//! drains it. Because both processes hold the *same* sockets, the kernel
//! accept queues outlive the old process: a connection queued there is
//! accepted by the new one. Joining the SO_REUSEPORT group with new sockets
//! instead would leave those queued connections to be reset when the old
//! sockets close, unless `net.ipv4.tcp_migrate_req = 1` moves them.
//!
//! The message: one line `regproxy-handoff 1 ADDR COUNT\n` with COUNT
//! listening sockets attached. The socket file is created mode 0600: only
//! the service's user can take the listeners.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use crate::sys;

/// First word of the message; the number after it is the format version.
const MAGIC: &str = "regproxy-handoff";
const VERSION: u32 = 1;
/// Longest header we accept.
const MAX_HEADER: usize = 256;
/// How long a new process waits for the old one's message: it answers at
/// once from its own thread, so only a wedged process takes this long.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The message header for `count` sockets listening on `addr`.
pub fn header(addr: SocketAddr, count: usize) -> String {
    format!("{MAGIC} {VERSION} {addr} {count}\n")
}

/// Parses a header into the address and the number of sockets it announces.
pub fn parse_header(bytes: &[u8]) -> Result<(SocketAddr, usize), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "handoff header is not UTF-8".to_owned())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("handoff header {text:?} is not one line"))?;
    let mut f = line.split(' ');
    match (f.next(), f.next(), f.next(), f.next(), f.next()) {
        (Some(MAGIC), Some(v), Some(addr), Some(n), None) => {
            if v.parse::<u32>() != Ok(VERSION) {
                return Err(format!(
                    "handoff format version {v}, this regproxy speaks {VERSION}"
                ));
            }
            let addr = addr
                .parse()
                .map_err(|_| format!("bad address {addr:?} in handoff header"))?;
            let n = n
                .parse()
                .map_err(|_| format!("bad count {n:?} in handoff header"))?;
            Ok((addr, n))
        }
        _ => Err(format!("not a handoff header: {line:?}")),
    }
}

/// Whether sockets bound to `got` serve a config that says `want` (port 0
/// there means "any port").
pub fn addr_matches(want: SocketAddr, got: SocketAddr) -> bool {
    want.ip() == got.ip() && (want.port() == 0 || want.port() == got.port())
}

/// Takes the listening sockets from the regproxy answering at `path`.
/// `Ok(None)`: nobody answers there (first start, or a stale file).
pub fn receive(
    path: &Path,
    want: SocketAddr,
) -> io::Result<Option<(SocketAddr, Vec<TcpListener>)>> {
    let stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    let mut buf = [0u8; MAX_HEADER];
    let (len, fds) = sys::recv_fds(stream.as_fd(), &mut buf)?;
    let (addr, count) = parse_header(&buf[..len]).map_err(io::Error::other)?;
    if count != fds.len() || count == 0 {
        return Err(io::Error::other(format!(
            "handoff announced {count} sockets and carried {}",
            fds.len()
        )));
    }
    if !addr_matches(want, addr) {
        return Err(io::Error::other(format!(
            "the running regproxy listens on {addr}, this config on {want}"
        )));
    }
    let listeners: Vec<TcpListener> = fds.into_iter().map(TcpListener::from).collect();
    for l in &listeners {
        if l.local_addr()? != addr {
            return Err(io::Error::other(
                "a handed-over socket is not bound to the announced address",
            ));
        }
        l.set_nonblocking(true)?;
    }
    Ok(Some((addr, listeners)))
}

/// Serves `listeners` (duplicates of the workers' sockets) to whoever
/// connects to `path`, from a thread of its own, for the life of the
/// process. A previous owner's file is replaced: it has handed over already.
pub fn serve(path: &Path, addr: SocketAddr, listeners: Vec<TcpListener>) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let server = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let head = header(addr, listeners.len());
    std::thread::Builder::new()
        .name("regproxy-handoff".into())
        .spawn(move || {
            for conn in server.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "handoff socket accept failed");
                        continue;
                    }
                };
                let fds: Vec<BorrowedFd<'_>> = listeners.iter().map(AsFd::as_fd).collect();
                match sys::send_fds(conn.as_fd(), head.as_bytes(), &fds) {
                    Ok(_) => tracing::info!(
                        sockets = fds.len(),
                        "handed the listening sockets to a new regproxy"
                    ),
                    Err(e) => tracing::warn!(error = %e, "handoff failed"),
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_strangers() {
        let a: SocketAddr = "127.0.0.1:5043".parse().unwrap();
        assert_eq!(parse_header(header(a, 4).as_bytes()), Ok((a, 4)));
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(parse_header(header(v6, 1).as_bytes()), Ok((v6, 1)));
        assert!(parse_header(b"regproxy-handoff 2 127.0.0.1:1 1\n").is_err());
        assert!(parse_header(b"regproxy-handoff 1 127.0.0.1:1 1").is_err());
        assert!(parse_header(b"GET / HTTP/1.1\r\n").is_err());
        assert!(parse_header(b"regproxy-handoff 1 nowhere 1\n").is_err());
    }

    #[test]
    fn port_zero_in_the_config_takes_any_port() {
        let got: SocketAddr = "127.0.0.1:5043".parse().unwrap();
        assert!(addr_matches("127.0.0.1:0".parse().unwrap(), got));
        assert!(addr_matches(got, got));
        assert!(!addr_matches("127.0.0.1:5044".parse().unwrap(), got));
        assert!(!addr_matches("0.0.0.0:5043".parse().unwrap(), got));
    }

    #[test]
    fn sockets_cross_the_unix_socket_and_keep_their_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handoff.sock");
        assert!(receive(&path, "127.0.0.1:0".parse().unwrap())
            .unwrap()
            .is_none());
        let (addr, socks) = crate::listen::bind_all("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let dups = socks.iter().map(|s| s.try_clone().unwrap()).collect();
        serve(&path, addr, dups).unwrap();
        // A client queued before the handoff is accepted after it.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (got, taken) = receive(&path, addr).unwrap().unwrap();
        assert_eq!(got, addr);
        assert_eq!(taken.len(), 2);
        drop(socks);
        let peer = client.local_addr().unwrap();
        let accepted = (0..200).find_map(|_| {
            let hit = taken.iter().find_map(|l| l.accept().ok());
            if hit.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            hit
        });
        assert_eq!(accepted.unwrap().1, peer);
    }
}
