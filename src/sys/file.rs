//! File calls for the edge cache (`cache/serve.rs`) that monoio does not
//! offer: a non-blocking `sendfile(2)` from a cache file to a plain socket,
//! a check that a page is in memory, and read-ahead advice.
//!
//! Why sendfile and not io_uring: the bytes go from the page cache to the
//! socket inside the kernel, with no copy through user space and one call
//! per socket-buffer's worth, the same model as the splice relay (call
//! until `EAGAIN`, then wait for writability). A page not yet in memory is
//! read by the call itself; `advise_sequential` asks the kernel to read
//! ahead so that this stays rare on a streamed blob.

use std::io::{self, IoSliceMut};
use std::num::NonZeroU64;
use std::os::fd::AsRawFd;

use rustix::fs::Advice;
use rustix::io::{Errno, ReadWriteFlags};

use super::pipe::borrow;

/// Sends up to `count` bytes of `file` starting at `offset` to the
/// non-blocking socket `sock`, without waiting. `Ok(None)`: the socket
/// buffer is full (`EAGAIN`); `Ok(Some(0))`: `offset` is at or past the
/// file's end. The file's own position is not used or moved.
pub fn sendfile_now(
    sock: &impl AsRawFd,
    file: &impl AsRawFd,
    offset: u64,
    count: usize,
) -> io::Result<Option<usize>> {
    let mut off = offset;
    match rustix::fs::sendfile(borrow(sock), borrow(file), Some(&mut off), count) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the page holding byte `offset` of `file` is in memory: a
/// one-byte read that must not wait (`RWF_NOWAIT`). `true` when the kernel
/// cannot tell (a filesystem without `RWF_NOWAIT`): sendfile then reads
/// the page itself, as it would anyway.
pub fn is_cached(file: &impl AsRawFd, offset: u64) -> bool {
    let mut byte = [0u8; 1];
    let mut bufs = [IoSliceMut::new(&mut byte)];
    !matches!(
        rustix::io::preadv2(borrow(file), &mut bufs, offset, ReadWriteFlags::NOWAIT),
        Err(Errno::AGAIN)
    )
}

/// Asks the kernel to start reading `len` bytes of `file` at `offset`
/// into memory, without waiting for them.
pub fn advise_willneed(file: &impl AsRawFd, offset: u64, len: u64) -> io::Result<()> {
    Ok(rustix::fs::fadvise(
        borrow(file),
        offset,
        NonZeroU64::new(len),
        Advice::WillNeed,
    )?)
}

/// Tells the kernel `file` will be read from start to end: a larger
/// read-ahead window. Advice only; a failure is ignored by the caller.
pub fn advise_sequential(file: &impl AsRawFd) -> io::Result<()> {
    Ok(rustix::fs::fadvise(
        borrow(file),
        0,
        None,
        Advice::Sequential,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sends_a_range_without_moving_the_file_position() {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(b"0123456789").expect("write");
        advise_sequential(&f).expect("fadvise");
        advise_willneed(&f, 0, 10).expect("fadvise");
        // Just written: in the page cache.
        assert!(is_cached(&f, 5));
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = l.accept().expect("accept");
        a.set_nonblocking(true).expect("nonblocking");
        assert_eq!(sendfile_now(&a, &f, 3, 4).expect("sendfile"), Some(4));
        assert_eq!(sendfile_now(&a, &f, 10, 4).expect("sendfile"), Some(0));
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"3456");
    }
}
