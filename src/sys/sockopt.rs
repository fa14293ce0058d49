//! Socket options none of our wrapper crates (socket2, nix, rustix) offer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Sets `SO_RCVLOWAT`: the socket reports readable (poll, epoll, io_uring's
/// poll) only once this many bytes are queued, or at end of stream. Linux
/// honours it for TCP since 2.6.28.
pub fn set_recv_lowat(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SO_RCVLOWAT, value)
}

/// Sets `SO_PEEK_OFF`: the next `MSG_PEEK` read starts `offset` bytes past
/// the front of the receive queue (and moves it on by what it copied);
/// -1 turns peeking at an offset off. Consuming with `recv` moves it back,
/// splice(2) does not. Linux supports it for TCP since 6.10; before, this
/// fails with `EOPNOTSUPP`.
pub fn set_peek_offset(fd: RawFd, offset: i32) -> io::Result<()> {
    super::calls::count(|c| &mut c.peek_offsets);
    set_int(fd, libc::SO_PEEK_OFF, offset)
}

/// One `SOL_SOCKET` option of type `int`.
fn set_int(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a socket the caller keeps open for the call; the
    // option value is a live `c_int` passed with its exact size, and
    // setsockopt copies it without keeping the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
