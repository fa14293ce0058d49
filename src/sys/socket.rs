//! Non-blocking socket calls that monoio does not offer: a peek that
//! leaves the bytes queued, a read or write that must not wait, and a
//! half-close. They serve the accept path (the PROXY header, refusals) and
//! the upstream pool's liveness check, where an io_uring operation would
//! cost a submission and a wake-up for what the kernel can answer at once.

use std::io;
use std::os::fd::AsRawFd;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown};

use super::pipe::borrow;

/// Copies up to `buf.len()` bytes from the front of the receive queue
/// without consuming them and without blocking. `Ok(None)`: nothing is
/// queued (`EAGAIN`). `Ok(Some(0))`: the peer closed its side.
pub fn peek(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(borrow(sock), buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads what is already queued, without blocking (`EAGAIN` is an error).
pub fn recv_now(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(borrow(sock), buf, RecvFlags::DONTWAIT)?.0)
}

/// Queues what the send buffer takes at once, without blocking and
/// without `SIGPIPE` on a closed peer.
pub fn send_now(sock: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        borrow(sock),
        buf,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )?)
}

/// Sends a FIN: the peer reads end-of-stream after what was queued.
pub fn shutdown_write(sock: &impl AsRawFd) -> io::Result<()> {
    Ok(rustix::net::shutdown(borrow(sock), Shutdown::Write)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn peek_leaves_bytes_and_recv_takes_them() {
        let (mut a, b) = pair();
        let mut buf = [0u8; 8];
        assert_eq!(peek(&b, &mut buf).expect("peek"), None);
        a.write_all(b"hello").expect("write");
        // Loopback delivers before write returns, but wait for it anyway.
        let mut seen = None;
        for _ in 0..1000 {
            seen = peek(&b, &mut buf).expect("peek");
            if seen.is_some() {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(seen, Some(5));
        assert_eq!(recv_now(&b, &mut buf).expect("recv"), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(peek(&b, &mut buf).expect("peek"), None);
    }

    #[test]
    fn shutdown_reads_as_end_of_stream() {
        let (a, b) = pair();
        assert_eq!(send_now(&a, b"x").expect("send"), 1);
        shutdown_write(&a).expect("shutdown");
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        for _ in 0..100_000 {
            match peek(&b, &mut buf).expect("peek") {
                Some(0) if !got.is_empty() => break,
                Some(n) if n > 0 => {
                    let n = recv_now(&b, &mut buf).expect("recv");
                    got.extend_from_slice(&buf[..n]);
                }
                _ => std::thread::yield_now(),
            }
        }
        assert_eq!(got, b"x");
    }
}
