//! Waiting for a client's first TLS record before any TLS state exists.
//!
//! A TLS connection costs tens of KiB from the moment its handshake starts
//! (rustls' state and buffers; 33 KiB measured when the stream was
//! monoio-rustls with its two 16 KiB buffers). An attacker who
//! opens thousands of connections and sends one byte of a ClientHello on
//! each would hold that much per connection for `header_timeout`. So the
//! handshake starts only once the first record (the ClientHello, whose
//! length its 5-byte header announces) is queued in the kernel: until then
//! the connection is a socket and a few hundred bytes of task state, like a
//! plain connection waiting for its head.
//!
//! No busy polling and no buffer: the socket's receive low-water mark
//! (`SO_RCVLOWAT`) is set to the record's length, so it reports readable
//! only once the whole record is there. The deadline is the admission
//! sweep's (`header_timeout` from accept).

use std::io;
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;

use crate::sys::sockopt::set_recv_lowat;

/// A TLS record header: content type, version, length (RFC 8446 §5.1).
pub const RECORD_HEADER_LEN: usize = 5;
/// `handshake(22)`, the content type of a ClientHello record.
const HANDSHAKE: u8 = 22;
/// RFC 8446 §5.1: a plaintext record carries at most 2^14 bytes.
pub const MAX_PLAINTEXT: usize = 1 << 14;

/// Bytes the first record takes, header included, if `header` starts a
/// handshake record; `None` for anything else (rustls then refuses it).
pub fn first_record_len(header: &[u8; RECORD_HEADER_LEN]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    (header[0] == HANDSHAKE && header[1] == 3 && len > 0 && len <= MAX_PLAINTEXT)
        .then_some(RECORD_HEADER_LEN + len)
}

/// Returns once the client's first record is queued whole, the peer has
/// closed, or the bytes are not a TLS handshake record (the handshake that
/// follows then fails at once).
pub async fn first_record_queued(stream: &TcpStream) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    set_recv_lowat(fd, RECORD_HEADER_LEN)?;
    stream.readable(false).await?;
    let mut header = [0u8; RECORD_HEADER_LEN];
    if peek(stream, &mut header)? == RECORD_HEADER_LEN {
        if let Some(len) = first_record_len(&header) {
            set_recv_lowat(fd, len)?;
            stream.readable(false).await?;
        }
    }
    // rustls reads the stream as usual from here.
    set_recv_lowat(fd, 1)
}

/// One non-blocking `MSG_PEEK`; nothing queued yet reads as 0 bytes.
fn peek(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    match crate::sys::pipe::peek(stream, buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_record_header_gives_the_record_length() {
        assert_eq!(first_record_len(&[22, 3, 1, 0x02, 0x00]), Some(5 + 512));
        assert_eq!(first_record_len(&[22, 3, 3, 0x40, 0x00]), Some(5 + 16384));
    }

    #[test]
    fn anything_else_is_left_to_rustls() {
        // Plain HTTP on the TLS port, an alert, an oversized or empty
        // record, SSLv2.
        assert_eq!(first_record_len(b"GET /"), None);
        assert_eq!(first_record_len(&[21, 3, 3, 0, 2]), None);
        assert_eq!(first_record_len(&[22, 3, 1, 0x40, 0x01]), None);
        assert_eq!(first_record_len(&[22, 3, 1, 0, 0]), None);
        assert_eq!(first_record_len(&[0x80, 0x2e, 1, 3, 1]), None);
    }
}
