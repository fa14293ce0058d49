//! Moving bytes: the buffered reader both sides are read through, and the
//! body relays (Content-Length, chunked, read-to-close) between them.
//!
//! Memory per connection is bounded by the buffers here, whatever the body
//! size: a body is never held whole. When both ends are plain TCP sockets,
//! length-delimited bodies move with splice(2) through a pooled pipe and
//! never enter user space (`relay/splice.rs`), unless the worker's
//! descriptor budget has no pipe to give: then they are copied, as with TLS.

use std::io;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, Slice};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

pub mod bufpool;
pub mod chunked;
pub mod splice;
pub mod timer;

pub use timer::Timer;

use crate::http::body::{
    write_chunk_header, ChunkError, ChunkedDecoder, CHUNK_TERMINATOR, LAST_CHUNK,
};

/// Read buffer per side of a connection while a body moves (taken from
/// `bufpool`). It must hold the largest head we accept
/// (`MAX_RESPONSE_HEAD_BYTES`) and is the unit of a body copy.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// A connection's first read buffer, and what it keeps between requests:
/// a typical request head (docker's, credentials included, is 300–800
/// bytes) fits; a larger one doubles it, up to `READ_BUF_BYTES`. This is
/// most of what an idle or head-reading connection costs.
pub const HEAD_BUF_START: usize = 1024;
/// Read buffer of a body with TLS on either end: taken only while the body
/// moves, and given back after ([`Buffered::shrink`]). A download takes one
/// `recv` from the registry and one `send` of sixteen TLS records instead
/// of one `send` per record (issue 8); an upload one `recv` of sixteen
/// records and one `send` to the registry, 8–10% less CPU per GiB than
/// with 64 KiB. (An earlier measurement that found uploads dearer with 256 KiB
/// was the copy slowdown `sys::malloc::BulkAligned` explains.)
pub const BULK_BUF_BYTES: usize = 256 * 1024;
/// Re-encoded chunked output is written once it reaches this size.
const CHUNK_OUT_FLUSH: usize = 32 * 1024;

/// A client or registry connection: plain TCP, which the relay can splice
/// from or to, or TLS (`tls::TlsStream`).
// Workers are single-threaded: these futures never need to be `Send`.
#[allow(async_fn_in_trait)]
pub trait Io {
    fn as_tcp(&mut self) -> Option<&mut TcpStream>;
    /// Appends what arrives, at most `max` bytes and at most `buf`'s spare
    /// capacity, to `buf`. `Ok(0)` is end of stream.
    async fn read_vec(&mut self, buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf`.
    async fn write_all_slice(&mut self, buf: Slice<Vec<u8>>) -> (io::Result<()>, Slice<Vec<u8>>);
    /// Ends the sending side (TLS: `close_notify` first).
    async fn shutdown(&mut self) -> io::Result<()>;
    /// Gives back buffers that only a moving body needs.
    fn trim(&mut self) {}
    /// The negotiated TLS version, for the access log; `None`: plain.
    fn tls_version(&self) -> Option<&'static str> {
        None
    }
}

impl Io for TcpStream {
    fn as_tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }

    async fn read_vec(&mut self, buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let (len, cap) = (buf.len(), buf.capacity());
        let end = len + (cap - len).min(max);
        let (res, slice) = self.read(buf.slice_mut(len..end)).await;
        (res, slice.into_inner())
    }

    async fn write_all_slice(&mut self, buf: Slice<Vec<u8>>) -> (io::Result<()>, Slice<Vec<u8>>) {
        let (res, buf) = AsyncWriteRentExt::write_all(self, buf).await;
        (res.map(|_| ()), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteRent::shutdown(self).await
    }
}

impl Io for Box<crate::tls::TlsStream> {
    fn as_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }

    async fn read_vec(&mut self, buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        crate::tls::TlsStream::read_vec(self, buf, max).await
    }

    async fn write_all_slice(&mut self, buf: Slice<Vec<u8>>) -> (io::Result<()>, Slice<Vec<u8>>) {
        crate::tls::TlsStream::write_all_slice(self, buf).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        crate::tls::TlsStream::shutdown(self).await
    }

    fn trim(&mut self) {
        crate::tls::TlsStream::trim(self)
    }

    fn tls_version(&self) -> Option<&'static str> {
        crate::tls::TlsStream::version(self)
    }
}

/// A stream with read-ahead: bytes read but not yet consumed stay here, so a
/// head read can return with part of the body (or the next request) buffered.
#[derive(Debug)]
pub struct Buffered<S> {
    pub io: S,
    buf: Vec<u8>,
    start: usize,
}

impl<S: Io> Buffered<S> {
    /// No buffer until the first read (`fill` allocates a small one).
    pub fn new(io: S) -> Self {
        Self::with_buf(io, Vec::new())
    }

    /// Wraps `io` with an empty buffer the caller recycles.
    pub fn with_buf(io: S, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self { io, buf, start: 0 }
    }

    /// The stream, and the buffer for reuse (never a bulk-sized one).
    /// Unconsumed bytes are dropped.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.shrink();
        (self.io, self.buf)
    }

    /// Moves up to `max` unconsumed bytes to the end of `out` and returns
    /// how many: a small body that came in with its head goes out in the
    /// same write as the head (one `send`, and over TLS one record).
    pub fn take_into(&mut self, out: &mut Vec<u8>, max: u64) -> u64 {
        let n = (self.unconsumed().len() as u64).min(max) as usize;
        out.extend_from_slice(&self.unconsumed()[..n]);
        self.consume(n);
        n as u64
    }

    /// Switches to a pooled batch of [`BULK_BUF_BYTES`] while a body
    /// moves, keeping what is buffered.
    fn grow_bulk(&mut self) {
        if self.buf.capacity() < BULK_BUF_BYTES {
            self.swap_buf(bufpool::take_at_least(BULK_BUF_BYTES));
        }
    }

    /// Gives a bulk batch back to the pool, and the stream's own buffers,
    /// once a body has moved: what an idle connection holds stays at
    /// [`READ_BUF_BYTES`].
    pub fn shrink(&mut self) {
        self.io.trim();
        if self.buf.capacity() > READ_BUF_BYTES && self.unconsumed().len() <= READ_BUF_BYTES {
            self.swap_buf(bufpool::take());
        }
    }

    /// Moves what is buffered into `fresh` (empty, large enough) and gives
    /// the old buffer back to the pool.
    fn swap_buf(&mut self, mut fresh: Vec<u8>) {
        fresh.extend_from_slice(self.unconsumed());
        bufpool::give(std::mem::replace(&mut self.buf, fresh));
        self.start = 0;
    }

    /// Read but not yet consumed.
    pub fn unconsumed(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes after the unconsumed ones, within `timeout` on the
    /// connection's `timer`. `Ok(0)` is end of stream.
    pub async fn fill(&mut self, timer: &mut Timer, timeout: Duration) -> io::Result<usize> {
        self.fill_at_most(timer, timeout, usize::MAX).await
    }

    /// [`Buffered::fill`], reading at most `max` bytes (at least one).
    pub async fn fill_at_most(
        &mut self,
        timer: &mut Timer,
        timeout: Duration,
        max: usize,
    ) -> io::Result<usize> {
        let max = max.max(1);
        self.prepare_read()?;
        let buf = std::mem::take(&mut self.buf);
        match timer.within(timeout, self.io.read_vec(buf, max)).await {
            Ok((res, buf)) => {
                self.buf = buf;
                res
            }
            // The read was cancelled with the buffer: the caller closes this
            // connection on a timeout, so only the allocation is redone.
            Err(_elapsed) => {
                self.buf = Vec::new();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    /// [`Buffered::fill`] without a timer, for a caller whose deadline is
    /// kept elsewhere (a connection's first head: `admission`'s sweep).
    /// monoio's timer entry is 640 bytes, cache-padded; tens of thousands
    /// of waiting connections should not each hold one.
    pub async fn fill_untimed(&mut self) -> io::Result<usize> {
        self.prepare_read()?;
        let buf = std::mem::take(&mut self.buf);
        let (res, buf) = self.io.read_vec(buf, usize::MAX).await;
        self.buf = buf;
        res
    }

    /// Moves unconsumed bytes to the front and makes room after them.
    fn prepare_read(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            self.grow()?;
        }
        Ok(())
    }

    /// Makes room for one more read: a small head buffer first, doubled as
    /// a head outgrows it, then a pooled body buffer.
    fn grow(&mut self) -> io::Result<()> {
        let cap = self.buf.capacity();
        if cap >= READ_BUF_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read buffer full",
            ));
        }
        let want = if cap == 0 { HEAD_BUF_START } else { cap * 2 };
        if want >= READ_BUF_BYTES {
            self.for_body();
        } else {
            self.buf.reserve_exact(want - self.buf.len());
        }
        Ok(())
    }

    /// Switches to a full-size pooled buffer before a body moves, keeping
    /// what is buffered.
    pub fn for_body(&mut self) {
        if self.buf.capacity() >= READ_BUF_BYTES {
            return;
        }
        self.swap_buf(bufpool::take());
    }

    /// Between requests: gives a body buffer back to the pool and keeps
    /// only what is buffered (a pipelined next request), in a small one;
    /// the stream gives back its own batch buffers too.
    pub fn release(&mut self) {
        self.io.trim();
        if self.buf.capacity() <= HEAD_BUF_START {
            return;
        }
        let rest = self.unconsumed();
        let small = if rest.is_empty() {
            Vec::new()
        } else {
            let mut v = Vec::with_capacity(rest.len().max(HEAD_BUF_START));
            v.extend_from_slice(rest);
            v
        };
        bufpool::give(std::mem::replace(&mut self.buf, small));
        self.start = 0;
    }

    /// Writes `n` unconsumed bytes to `dst` and consumes them.
    pub(crate) async fn forward_buffered<D: Io>(
        &mut self,
        dst: &mut D,
        n: usize,
        timer: &mut Timer,
        timeout: Duration,
    ) -> Result<(), RelayError> {
        let (start, end) = (self.start, self.start + n);
        let buf = std::mem::take(&mut self.buf);
        match timer
            .within(timeout, dst.write_all_slice(buf.slice(start..end)))
            .await
        {
            Ok((res, slice)) => {
                self.buf = slice.into_inner();
                res.map_err(RelayError::Dst)?;
                self.consume(n);
                Ok(())
            }
            Err(_elapsed) => {
                self.buf = Vec::new();
                Err(RelayError::Dst(io::ErrorKind::TimedOut.into()))
            }
        }
    }
}

/// Writes all of `buf` within `timeout` on `timer`; the buffer comes back
/// for reuse.
pub async fn write_all<D: Io>(
    dst: &mut D,
    buf: Vec<u8>,
    timer: &mut Timer,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    if buf.is_empty() {
        return (Ok(()), buf);
    }
    let len = buf.len();
    match timer
        .within(timeout, dst.write_all_slice(buf.slice(0..len)))
        .await
    {
        Ok((res, buf)) => (res, buf.into_inner()),
        Err(_elapsed) => (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
    }
}

/// Why a body relay stopped.
#[derive(Debug)]
pub enum RelayError {
    /// Reading the sending side failed, timed out or ended early.
    Src(io::Error),
    /// Writing the receiving side failed or timed out.
    Dst(io::Error),
    /// The sender's chunked framing is malformed.
    Framing(ChunkError),
}

/// Byte counts of one relay.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Body bytes (payload, without chunk framing).
    pub body: u64,
    /// Of those, bytes moved by splice(2).
    pub spliced: u64,
}

/// Timeouts for the two ends of a relay.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub src: Duration,
    pub dst: Duration,
}

/// Relays exactly `n` body bytes (RFC 9112 §6.2: Content-Length framing).
async fn relay_length<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    n: u64,
    t: Timeouts,
    timer: &mut Timer,
) -> Result<Moved, RelayError> {
    let mut left = n;
    let mut moved = Moved::default();
    // What the head read already pulled in goes first.
    let buffered = (src.unconsumed().len() as u64).min(left) as usize;
    if buffered > 0 {
        src.forward_buffered(dst, buffered, timer, t.dst).await?;
        left -= buffered as u64;
        moved.body += buffered as u64;
    }
    if left == 0 {
        return Ok(moved);
    }
    if let (Some(s), Some(d)) = (src.io.as_tcp(), dst.as_tcp()) {
        // No pipe to be had: the copy below, as for TLS.
        if splice::splice_exact(s, d, left, t).await? {
            moved.body += left;
            moved.spliced += left;
            return Ok(moved);
        }
    }
    while left > 0 {
        let got = src.fill(timer, t.src).await.map_err(RelayError::Src)?;
        if got == 0 {
            return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
        }
        let take = (src.unconsumed().len() as u64).min(left) as usize;
        src.forward_buffered(dst, take, timer, t.dst).await?;
        left -= take as u64;
        moved.body += take as u64;
    }
    Ok(moved)
}

/// How the sender delimits a body (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// Relays one body framed as `framing` by its sender, written out as
/// `encode` (length-delimited bodies keep their length and ignore it).
/// Each read and write is bounded by `t` on the connection's `timer`.
pub async fn relay_body<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    framing: Framing,
    encode: Encode,
    t: Timeouts,
    timer: &mut Timer,
    out: &mut Vec<u8>,
) -> Result<Moved, RelayError> {
    src.for_body();
    // With TLS on either end every body byte is copied through the buffer
    // (between plain ends it is spliced): a bulk batch per read and write,
    // unless one read buffer holds the whole body (most responses).
    // A worker has a few batches (`bufpool::BulkSlot`); when they are taken
    // the body moves with the 64 KiB buffer.
    let tls = src.io.as_tcp().is_none() || dst.as_tcp().is_none();
    let bulk = tls && !matches!(framing, Framing::Length(n) if n <= READ_BUF_BYTES as u64);
    let slot = if bulk {
        bufpool::BulkSlot::take()
    } else {
        None
    };
    if slot.is_some() {
        src.grow_bulk();
    }
    let moved = match framing {
        Framing::Length(n) => relay_length(src, dst, n, t, timer).await,
        Framing::Chunked if encode == Encode::Chunked => {
            chunked::relay(src, dst, t, timer, out).await
        }
        Framing::Chunked => relay_chunked(src, dst, encode, t, timer, out).await,
        Framing::Close => relay_to_close(src, dst, encode, t, timer, out).await,
    };
    if slot.is_some() {
        src.shrink();
    }
    moved
}

/// How a decoded body is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// Re-framed as chunked (RFC 9112 §7.1), extensions and trailers dropped.
    Chunked,
    /// Raw bytes, for an HTTP/1.0 client that reads until close.
    Raw,
}

/// Relays a chunked body (RFC 9112 §7.1), decoding it strictly and
/// re-encoding it, so malformed or smuggling-prone framing never passes on.
async fn relay_chunked<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    encode: Encode,
    t: Timeouts,
    timer: &mut Timer,
    out: &mut Vec<u8>,
) -> Result<Moved, RelayError> {
    // `out` is scratch: whatever the caller last wrote from it is not ours.
    out.clear();
    let mut decoder = ChunkedDecoder::new();
    let mut moved = Moved::default();
    loop {
        let p = decoder
            .decode(src.unconsumed())
            .map_err(RelayError::Framing)?;
        if let Some(range) = p.data.clone() {
            let data = &src.unconsumed()[range];
            append(out, data, encode);
            moved.body += data.len() as u64;
        }
        src.consume(p.consumed);
        if p.done {
            finish(dst, out, encode, timer, t.dst).await?;
            return Ok(moved);
        }
        if p.data.is_none() {
            // Nothing more can be decoded from what is buffered: pass on
            // what we have before blocking on the sender.
            flush(dst, out, timer, t.dst).await?;
            let got = src.fill(timer, t.src).await.map_err(RelayError::Src)?;
            if got == 0 {
                return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
            }
        } else if out.len() >= CHUNK_OUT_FLUSH {
            flush(dst, out, timer, t.dst).await?;
        }
    }
}

/// Relays a body delimited by the sender closing (RFC 9112 §6.3 rule 8).
async fn relay_to_close<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    encode: Encode,
    t: Timeouts,
    timer: &mut Timer,
    out: &mut Vec<u8>,
) -> Result<Moved, RelayError> {
    out.clear();
    let mut moved = Moved::default();
    loop {
        if !src.unconsumed().is_empty() {
            let n = src.unconsumed().len();
            append(out, src.unconsumed(), encode);
            moved.body += n as u64;
            src.consume(n);
            flush(dst, out, timer, t.dst).await?;
        }
        if src.fill(timer, t.src).await.map_err(RelayError::Src)? == 0 {
            finish(dst, out, encode, timer, t.dst).await?;
            return Ok(moved);
        }
    }
}

/// Ends an encoded body: the last chunk (RFC 9112 §7.1), then everything
/// still buffered.
async fn finish<D: Io>(
    dst: &mut D,
    out: &mut Vec<u8>,
    encode: Encode,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<(), RelayError> {
    if encode == Encode::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    flush(dst, out, timer, timeout).await
}

fn append(out: &mut Vec<u8>, data: &[u8], encode: Encode) {
    if data.is_empty() {
        return;
    }
    match encode {
        Encode::Chunked => {
            write_chunk_header(data.len(), out);
            out.extend_from_slice(data);
            out.extend_from_slice(CHUNK_TERMINATOR);
        }
        Encode::Raw => out.extend_from_slice(data),
    }
}

async fn flush<D: Io>(
    dst: &mut D,
    out: &mut Vec<u8>,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<(), RelayError> {
    if out.is_empty() {
        return Ok(());
    }
    let (res, mut buf) = write_all(dst, std::mem::take(out), timer, timeout).await;
    res.map_err(RelayError::Dst)?;
    buf.clear();
    *out = buf;
    Ok(())
}

#[cfg(test)]
mod tests;
