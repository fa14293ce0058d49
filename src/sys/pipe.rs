//! Pipes for splice(2), and the non-blocking splice calls themselves.
//!
//! monoio's splice runs as `IORING_OP_SPLICE`, which io_uring never executes
//! inline: every call is handed to an io-wq worker thread (`iou-wrk-*`), a
//! wake-up and a context switch per call, measured as 68% of the proxy's CPU
//! on plain GETs. Here splice(2) is called directly with `SPLICE_F_NONBLOCK`
//! on sockets switched to `O_NONBLOCK`, and the relay waits for readiness
//! itself (HAProxy's raw_sock.c does the same on epoll).
//!
//! rustix wraps pipe2, splice and fcntl safely; the one `unsafe` left is
//! borrowing a socket's descriptor, because monoio's `TcpStream` offers
//! `AsRawFd` but not `AsFd`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};

/// Where the kernel publishes the largest size an unprivileged F_SETPIPE_SZ
/// may ask for.
pub const PIPE_MAX_SIZE_FILE: &str = "/proc/sys/fs/pipe-max-size";

/// A non-blocking pipe, both ends, with a known capacity.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A new pipe enlarged to `size` bytes if the kernel allows it; when it
    /// refuses (EPERM past the user's pipe page quota), the pipe keeps the
    /// capacity it has, which [`Pipe::capacity`] reports.
    pub fn new(size: usize) -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = match fcntl_setpipe_size(&write, size) {
            Ok(got) => got,
            Err(_) => fcntl_getpipe_size(&write)?,
        };
        Ok(Self {
            read,
            write,
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Moves up to `len` bytes from the socket `src` into `pipe` without
/// blocking. `Ok(0)` is the end of the socket's stream; `WouldBlock` means
/// nothing is readable now (or the pipe is full).
pub fn splice_to_pipe(src: &impl AsRawFd, pipe: &Pipe, len: usize) -> io::Result<usize> {
    super::calls::count(|c| &mut c.splices);
    let src = borrow(src);
    Ok(splice(
        src,
        None,
        &pipe.write,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )?)
}

/// Moves up to `len` bytes from `pipe` to the socket `dst` without blocking.
pub fn splice_from_pipe(pipe: &Pipe, dst: &impl AsRawFd, len: usize) -> io::Result<usize> {
    super::calls::count(|c| &mut c.splices);
    let dst = borrow(dst);
    Ok(splice(
        &pipe.read,
        None,
        dst,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )?)
}

/// Copies up to `buf.len()` bytes from the front of the socket's receive
/// queue without consuming them (`MSG_PEEK`), without blocking: a chunked
/// relay reads the next chunk-size line this way and then splices line and
/// data together.
pub fn peek(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    use rustix::net::RecvFlags;
    super::calls::count(|c| &mut c.peeks);
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    Ok(rustix::net::recv(borrow(sock), buf, flags)?.0)
}

/// Puts a socket in `O_NONBLOCK` mode while it lives and restores its flags
/// when dropped.
///
/// `SPLICE_F_NONBLOCK` only covers the pipe side: a blocking TCP socket
/// would still block the whole worker in `tcp_sendmsg` until every byte is
/// queued. Under io_uring monoio keeps sockets blocking (io_uring does its
/// own waiting, and turns `O_NONBLOCK` reads into `EAGAIN` completions), so
/// the flag is set only around a splice relay, when no io_uring read or
/// write is in flight on the socket.
#[derive(Debug)]
pub struct NonBlocking<'a, S: AsRawFd> {
    sock: &'a S,
    restore: Option<OFlags>,
}

impl<'a, S: AsRawFd> NonBlocking<'a, S> {
    pub fn new(sock: &'a S) -> io::Result<Self> {
        let flags = fcntl_getfl(borrow(sock))?;
        if flags.contains(OFlags::NONBLOCK) {
            // The epoll driver already runs it non-blocking.
            return Ok(Self {
                sock,
                restore: None,
            });
        }
        fcntl_setfl(borrow(sock), flags | OFlags::NONBLOCK)?;
        Ok(Self {
            sock,
            restore: Some(flags),
        })
    }
}

impl<S: AsRawFd> Drop for NonBlocking<'_, S> {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            // Failing to restore leaves the socket non-blocking: io_uring
            // reads then end in EAGAIN and the connection closes, which is
            // safe, and fcntl on a valid descriptor does not fail.
            let _ = fcntl_setfl(borrow(self.sock), flags);
        }
    }
}

/// Largest pipe size an unprivileged process may set, if the kernel says.
pub fn pipe_max_size() -> Option<usize> {
    std::fs::read_to_string(PIPE_MAX_SIZE_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn borrow(sock: &impl AsRawFd) -> BorrowedFd<'_> {
    // SAFETY: the descriptor belongs to `sock` (a socket or a file), which
    // stays borrowed (and so open) for the lifetime of the returned
    // `BorrowedFd`; monoio and std close a descriptor only when its owner is
    // dropped.
    unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn pipe_is_enlarged_within_the_kernel_limit() {
        let max = pipe_max_size().unwrap_or(1 << 20);
        let pipe = Pipe::new(max.min(1 << 20)).unwrap();
        assert!(pipe.capacity() >= max.min(1 << 20), "{}", pipe.capacity());
        // Past the limit an unprivileged process is refused (root is not):
        // either way the pipe is usable and reports what it holds.
        let big = Pipe::new(max * 2).unwrap();
        assert!(big.capacity() >= 4096);
    }

    #[test]
    fn splices_between_sockets_without_blocking() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();
        let pipe = Pipe::new(1 << 16).unwrap();
        {
            let _nb = NonBlocking::new(&b).unwrap();
            let err = splice_to_pipe(&b, &pipe, 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
        assert!(!fcntl_getfl(borrow(&b)).unwrap().contains(OFlags::NONBLOCK));
        a.write_all(b"hello splice").unwrap();
        let mut got = 0;
        while got < 12 {
            got += splice_to_pipe(&b, &pipe, 100).unwrap();
        }
        assert_eq!(splice_from_pipe(&pipe, &c, 12).unwrap(), 12);
        let mut out = [0u8; 12];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"hello splice");
        a.write_all(b"peek").unwrap();
        let mut seen = [0u8; 8];
        let mut n = 0;
        while n < 4 {
            n = peek(&b, &mut seen).unwrap_or(0);
        }
        assert_eq!(&seen[..n], b"peek");
        assert_eq!(peek(&b, &mut seen).unwrap(), 4, "peeking consumes nothing");
        assert_eq!(splice_to_pipe(&b, &pipe, 100).unwrap(), 4);
        drop(a);
        assert_eq!(splice_to_pipe(&b, &pipe, 100).unwrap(), 0, "end of stream");
    }
}
