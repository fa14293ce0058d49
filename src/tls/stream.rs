//! A TLS stream over one TCP socket, driving rustls' buffered
//! `Connection` with our own socket I/O: the server side of client
//! connections ([`accept`]) and the client side of registry connections
//! (`[upstream] tls`, [`connect`]), through the same batched reads and
//! writes.
//!
//! monoio-rustls moved ciphertext through fixed 16 KiB buffers: one read or
//! write system call per TLS record, about 65,000 per GiB each way, which
//! made most of a TLS transfer's CPU system time (issue 8). Here the socket
//! is read and written in batches as large as the caller's request: a
//! body's relay reads and writes up to `relay::BULK_BUF_BYTES` (256 KiB) at
//! a time, so one `recv` brings in sixteen records for rustls to decrypt,
//! and one `send` carries all sixteen records a download batch was
//! encrypted into.
//!
//! Memory per connection: rustls' own buffers (at most one record being
//! deframed, 16 KiB of received plaintext, 64 KiB of sendable records), plus
//! `rbuf` and `wbuf` here, each at most one batch (about 256 KiB plus record
//! overhead) while a body moves. Those come from the worker's buffer pool
//! (`relay::bufpool`) and [`TlsStream::trim`] gives them back between
//! requests, so an idle connection keeps at most `IDLE_KEEP` bytes of each.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use monoio::buf::{IoBufMut, Slice};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::relay::bufpool;

/// Socket read size while no caller asks for more (handshakes, heads): a
/// request head's record or a client's handshake flight in one read.
/// rustls' deframer joins a larger record from several reads, so this need
/// not hold a full 16 KiB record; an idle keep-alive connection holds this
/// buffer while it waits, and at 17 KiB it was most of what one cost.
const MIN_READ: usize = 4 * 1024;
/// Record overhead allowed per 16 KiB of plaintext when sizing a socket
/// read for a caller's buffer (header, tag, content type; 5 + 16 + 1,
/// rounded up), so that a full batch of records fits one read.
const RECORD_OVERHEAD: usize = 32;
/// Buffers at most this large survive [`TlsStream::trim`]: enough for a
/// head and a small response, too little to matter on an idle connection.
/// Larger ones come from the worker's pool and go back to it.
const IDLE_KEEP: usize = MIN_READ;

/// rustls cuts plaintext into records of at most this many bytes.
const MAX_FRAGMENT: usize = 16 * 1024;
/// Where in a cache line a record's plaintext may start for rustls' copy of
/// it to run at full speed: rustls copies it to 5 bytes past the start of a
/// fresh, cache-line-aligned block (`sys::malloc::BulkAligned`), and a
/// source 5 to 37 bytes into its line keeps the distance modulo 4 KiB out of
/// 1..=31, where `REP MOVSB` on AMD Zen 4 is 2 to 25 times slower.
const GOOD_START: std::ops::RangeInclusive<usize> = 5..=37;
/// The middle of [`GOOD_START`].
const AIM: usize = 21;

/// How much of a plaintext batch at `addr` goes into the first record, so
/// that every later full record starts at [`AIM`] within its cache line.
/// The relay reads bodies into cache-line-aligned buffers, so without this
/// each record's copy sat 5 bytes before its destination modulo 64, and
/// whenever the two blocks also shared a page offset, at 5 modulo 4 KiB:
/// in one TLS GET of three that copy took 16% of samples instead of 4–6%.
fn first_record_len(addr: usize, len: usize) -> usize {
    let at = addr % 64;
    if len <= MAX_FRAGMENT || GOOD_START.contains(&at) {
        return len;
    }
    MAX_FRAGMENT - (at + 64 - AIM) % 64
}

/// `buf` with its bytes and room for `want` in all: a body-sized buffer
/// comes from the worker's pool, where the old one goes back, so batches do
/// not come and go through the heap (`relay::bufpool`).
fn regrow(mut buf: Vec<u8>, want: usize) -> Vec<u8> {
    if want <= IDLE_KEEP {
        buf.reserve(want.saturating_sub(buf.len()));
        return buf;
    }
    let mut fresh = bufpool::take_at_least(want);
    fresh.extend_from_slice(&buf);
    bufpool::give(buf);
    fresh
}

/// A TLS 1.2/1.3 connection, server or client side, after its handshake.
/// Each rustls call matches on the side: one predictable branch beside the
/// record's crypto.
pub struct TlsStream {
    io: TcpStream,
    conn: Connection,
    /// Ciphertext read from the socket; `rbuf[rpos..]` is not yet in rustls.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Records taken from rustls for one `send`; empty between writes.
    wbuf: Vec<u8>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("buffered_ciphertext", &(self.rbuf.len() - self.rpos))
            .finish_non_exhaustive()
    }
}

impl Drop for TlsStream {
    /// A connection that closes with a body's buffers gives them back too.
    fn drop(&mut self) {
        bufpool::give(std::mem::take(&mut self.rbuf));
        bufpool::give(std::mem::take(&mut self.wbuf));
    }
}

/// Runs the server handshake on `io`. The caller bounds it with a timeout.
///
/// Boxed: the stream (1.3 KiB, most of it rustls' connection) is moved
/// into the connection's task and, as an async fn's argument, would be
/// stored there once per function it passes through; behind a box each
/// holds a pointer, and an idle connection's task is that much smaller.
pub async fn accept(config: Arc<ServerConfig>, io: TcpStream) -> io::Result<Box<TlsStream>> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    handshake(TlsStream::new(io, conn.into()), "client").await
}

/// Runs the client handshake with the registry on `io`, verifying its
/// certificate for `name`. The caller bounds it with a timeout.
///
/// Resumption: rustls keeps the sessions of one `ClientConfig` in its
/// in-memory cache, shared by every worker behind a mutex; it is taken
/// only on handshakes, never per request, which a pooled connection
/// makes rare.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    io: TcpStream,
) -> io::Result<Box<TlsStream>> {
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    handshake(TlsStream::new(io, conn.into()), "registry").await
}

/// Drives a handshake to its end; `peer` names the other side in errors.
async fn handshake(mut s: Box<TlsStream>, peer: &str) -> io::Result<Box<TlsStream>> {
    while s.conn.is_handshaking() {
        if s.conn.wants_write() {
            s.send_records().await?;
        } else if s.feed(MIN_READ).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{peer} closed during the TLS handshake"),
            ));
        }
    }
    // TLS 1.3 session tickets follow the server's handshake; the client's
    // Finished may still be queued.
    s.send_records().await?;
    // The handshake's flight (the certificate chain) need not stay.
    s.trim();
    Ok(s)
}

impl TlsStream {
    fn new(io: TcpStream, conn: Connection) -> Box<TlsStream> {
        Box::new(TlsStream {
            io,
            conn,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
        })
    }

    /// The socket underneath, for its options and a liveness peek.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Whether nothing the peer sent waits here unread (no ciphertext not
    /// yet decrypted, no plaintext, no `close_notify`): with an empty
    /// socket, an idle connection fit for another request.
    pub fn is_quiet(&mut self) -> bool {
        self.rpos == self.rbuf.len()
            && matches!(self.conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The negotiated protocol version, as the access log names it.
    pub fn version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => Some("TLS"),
        }
    }

    /// Appends up to `max` bytes and `buf`'s spare capacity of plaintext to
    /// `buf`. Waits for
    /// the socket only when nothing at all is buffered. `Ok(0)`: the client
    /// closed (cleanly, with `close_notify`; without one it is an
    /// `UnexpectedEof` error, as a truncated body must be).
    pub async fn read_vec(&mut self, mut buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let start = buf.len();
        let limit = start + (buf.capacity() - start).min(max);
        loop {
            let room = limit - buf.len();
            match self.conn.reader().fill_buf() {
                Ok(data) if !data.is_empty() => {
                    let n = data.len().min(room);
                    buf.extend_from_slice(&data[..n]);
                    self.conn.reader().consume(n);
                    if buf.len() == limit {
                        return (Ok(buf.len() - start), buf);
                    }
                    continue;
                }
                // Clean close.
                Ok(_) => return (Ok(buf.len() - start), buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if buf.len() > start => {
                    // Hand over what was read; the error repeats next time.
                    drop(e);
                    return (Ok(buf.len() - start), buf);
                }
                Err(e) => return (Err(e), buf),
            }
            if buf.len() > start && self.rpos == self.rbuf.len() {
                // Something to give and nothing more without waiting.
                return (Ok(buf.len() - start), buf);
            }
            // One socket read sized for the rest of the caller's buffer.
            let want = room + room / (16 * 1024) * RECORD_OVERHEAD + RECORD_OVERHEAD;
            match self.feed(want.max(MIN_READ)).await {
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Encrypts all of `data` and sends it, in as few `send` calls as the
    /// socket takes.
    pub async fn write_all_slice(
        &mut self,
        data: Slice<Vec<u8>>,
    ) -> (io::Result<()>, Slice<Vec<u8>>) {
        let (mut off, end) = (data.begin(), data.end());
        // Room for every record at once (one more for the short first).
        let records = end - off + ((end - off) / MAX_FRAGMENT + 2) * RECORD_OVERHEAD;
        if self.wbuf.capacity() - self.wbuf.len() < records {
            let want = self.wbuf.len() + records;
            let taken = std::mem::take(&mut self.wbuf);
            self.wbuf = regrow(taken, want);
        }
        let first = first_record_len(data.get_ref()[off..].as_ptr() as usize, end - off);
        let cut = off + first;
        while off < end {
            // rustls takes as much plaintext as its 64 KiB of sendable
            // records allow; draining them into `wbuf` makes room again.
            let stop = if off < cut { cut } else { end };
            match self.conn.writer().write(&data.get_ref()[off..stop]) {
                Ok(n) => off += n,
                Err(e) => return (Err(e), data),
            }
            if let Err(e) = self.take_records() {
                return (Err(e), data);
            }
        }
        (self.send_records().await, data)
    }

    /// Sends `close_notify` and half-closes the socket.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.send_records().await?;
        self.io.shutdown().await
    }

    /// Drops batch-sized buffers once a body has moved, so that an idle
    /// connection does not keep them.
    pub fn trim(&mut self) {
        if self.rpos == self.rbuf.len() && self.rbuf.capacity() > IDLE_KEEP {
            bufpool::give(std::mem::take(&mut self.rbuf));
            self.rpos = 0;
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_KEEP {
            bufpool::give(std::mem::take(&mut self.wbuf));
        }
    }

    /// Moves rustls' pending records into `wbuf`.
    fn take_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.wbuf)?;
        }
        Ok(())
    }

    /// Sends every pending record.
    async fn send_records(&mut self) -> io::Result<()> {
        self.take_records()?;
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (res, mut buf) = self.io.write_all(std::mem::take(&mut self.wbuf)).await;
        buf.clear();
        self.wbuf = buf;
        res.map(|_| ())
    }

    /// Gives rustls more ciphertext, reading the socket (up to `want`
    /// bytes) only when none is left over from the last read. Returns the
    /// bytes read from the socket, 0 at end of stream.
    async fn feed(&mut self, want: usize) -> io::Result<usize> {
        let mut got = self.rbuf.len() - self.rpos;
        if got == 0 {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.clear();
            self.rpos = 0;
            if buf.capacity() < want {
                buf = regrow(buf, want);
            }
            let (res, slice) = self.io.read(buf.slice_mut(0..want)).await;
            self.rbuf = slice.into_inner();
            got = res?;
        }
        // rustls takes at most about one record per call.
        let mut rd = &self.rbuf[self.rpos..];
        let taken = self.conn.read_tls(&mut rd)?;
        self.rpos += taken;
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued tells the client why; best effort.
            let _ = self.send_records().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(got)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_full_record_after_the_first_starts_where_the_copy_is_fast() {
        for base in [0x1000usize, 0x1005, 0x1010, 0x1015, 0x1025, 0x103f] {
            for len in [MAX_FRAGMENT + 1, 64 * 1024, 256 * 1024] {
                let first = first_record_len(base, len);
                // Either no cut (already well placed) or a short first record.
                let mut at = if first == len {
                    assert!(GOOD_START.contains(&(base % 64)), "{base:#x}");
                    base
                } else {
                    assert!(first > 0 && first < MAX_FRAGMENT, "{base:#x} {len}");
                    base + first
                };
                while at + MAX_FRAGMENT <= base + len {
                    assert!(GOOD_START.contains(&(at % 64)), "{base:#x} {len} {at:#x}");
                    at += MAX_FRAGMENT;
                }
            }
        }
    }

    #[test]
    fn small_writes_and_well_placed_batches_are_not_cut() {
        assert_eq!(first_record_len(0x1000, 100), 100);
        assert_eq!(first_record_len(0x1000, MAX_FRAGMENT), MAX_FRAGMENT);
        assert_eq!(first_record_len(0x1000 + AIM, 256 * 1024), 256 * 1024);
    }

    /// A TLS client on a std thread that sends `head` and then holds the
    /// connection open until `done` is dropped.
    fn client(
        addr: std::net::SocketAddr,
        cert: rustls::pki_types::CertificateDer<'static>,
        head: &'static [u8],
        done: std::sync::mpsc::Receiver<()>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = "localhost".try_into().unwrap();
            let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
            let sock = std::net::TcpStream::connect(addr).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            tls.write_all(head).unwrap();
            tls.flush().unwrap();
            let _ = done.recv();
        })
    }

    #[test]
    fn a_connection_waiting_for_its_next_head_holds_a_small_read_buffer() {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = key.cert.der().clone();
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], der.into())
            .unwrap();
        let head: &[u8] =
            b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic dTpw\r\n\r\n";
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let (done, wait) = std::sync::mpsc::channel();
                let peer = client(listener.local_addr().unwrap(), cert, head, wait);
                let (io, _) = listener.accept().await.unwrap();
                let mut s = accept(Arc::new(config), io).await.unwrap();
                let mut got = Vec::with_capacity(1024);
                while got.len() < head.len() {
                    let (r, buf) = s.read_vec(got, usize::MAX).await;
                    assert!(r.unwrap() > 0, "client closed");
                    got = buf;
                }
                assert_eq!(got, head);
                s.trim();
                // What the read for the next head holds while the client
                // stays idle: 17 KiB, room for a full record, before.
                let held = s.rbuf.capacity();
                assert!(held <= 4096, "{held} bytes held for the next read");
                assert!(s.wbuf.capacity() <= 4096, "{}", s.wbuf.capacity());
                drop(done);
                peer.join().unwrap();
            });
    }
}
