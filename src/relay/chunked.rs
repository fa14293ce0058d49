//! Chunked bodies (RFC 9112 §7.1) passed on with the sender's own chunk
//! lines where they are plain (`http::chunk_pass` decides), instead of
//! decoded and re-encoded.
//!
//! Two ways through, both validating every framing byte before it leaves:
//! - **Buffered** (TLS on either side, small chunks): what a read brought
//!   in goes out in one write straight from the read buffer, framing and
//!   data together, with no copy into an output buffer. Framing that is not
//!   plain is rewritten canonically.
//! - **Spliced** (both ends plain TCP, chunks of [`SPLICE_MIN_CHUNK`] or
//!   more): the next chunk-size line is read with `MSG_PEEK`, checked, and
//!   then the line and the chunk's data move together by splice(2), chunk
//!   after chunk, through one pipe that is written out when it fills or the
//!   sender pauses. Per chunk that is a peek and a move of the peek offset
//!   (or a splice, where the kernel cannot peek at an offset); the chunk's
//!   bytes never enter user space. Splicing only the data (the line read
//!   and rewritten) cost a small `recv` and a small `send` per chunk, and
//!   its CPU per GiB was no better than copying. One peek over all that
//!   was received, every chunk line in it checked at once, would save the
//!   per-chunk calls but copy every byte: a 64 KiB peek costs 5 to 40
//!   times a `setsockopt` and a 28-byte peek on loopback
//!   (`bench/peek-cost.c`).

use std::io;

use super::splice::Session;
use super::{flush, Buffered, Io, Moved, RelayError, Timeouts, Timer, CHUNK_OUT_FLUSH};
use crate::http::chunk_pass::{ChunkPass, Start, Step, PLAIN_FRAMING_MAX};

/// Chunks at least this large are spliced when both ends are plain TCP.
/// Smaller ones cost less to copy than a peek and a splice each: a 64 KiB
/// read takes many of them at once.
pub const SPLICE_MIN_CHUNK: u64 = 32 * 1024;

/// Relays a chunked body to a chunked receiver.
pub async fn relay<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    t: Timeouts,
    timer: &mut Timer,
    out: &mut Vec<u8>,
) -> Result<Moved, RelayError> {
    // `out` is scratch: whatever the caller last wrote from it is not ours.
    out.clear();
    let mut pass = ChunkPass::new();
    let mut moved = Moved::default();
    let mut need_more = false;
    // Whether a pipe may be had; once refused, the body is copied.
    let mut pipes = true;
    loop {
        if src.unconsumed().is_empty() && pipes && splices(&pass) {
            if let (Some(s), Some(d)) = (src.io.as_tcp(), dst.as_tcp()) {
                flush(d, out, timer, t.dst).await?;
                match splice_chunks(s, d, &mut pass, t, &mut moved).await? {
                    Some(true) => return Ok(moved),
                    Some(false) => need_more = true,
                    None => pipes = false,
                }
            }
        }
        if !need_more && !src.unconsumed().is_empty() {
            match pass
                .step(src.unconsumed(), out)
                .map_err(RelayError::Framing)?
            {
                Step::Verbatim { len, data, done } => {
                    moved.body = moved.body.saturating_add(data);
                    forward(src, dst, out, len, t, timer).await?;
                    if done {
                        flush(dst, out, timer, t.dst).await?;
                        return Ok(moved);
                    }
                }
                Step::Rewritten {
                    consumed,
                    data,
                    done,
                } => {
                    moved.body = moved.body.saturating_add(data);
                    src.consume(consumed);
                    if done {
                        flush(dst, out, timer, t.dst).await?;
                        return Ok(moved);
                    }
                    if out.len() >= CHUNK_OUT_FLUSH {
                        flush(dst, out, timer, t.dst).await?;
                    }
                }
                Step::NeedMore => need_more = true,
            }
            continue;
        }
        // Pass on what we have before blocking on the sender.
        flush(dst, out, timer, t.dst).await?;
        let got = read_more(src, dst, &pass, need_more, pipes, t, timer).await?;
        if got == 0 {
            return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
        }
        need_more = false;
    }
}

/// Whether the spliced way fits what comes next, by the latest chunk: the
/// rest of a large chunk, or the framing after one.
fn splices(pass: &ChunkPass) -> bool {
    match pass.data_left() {
        Some(left) => left >= SPLICE_MIN_CHUNK,
        None => pass.at_framing() && pass.last_size() >= SPLICE_MIN_CHUNK,
    }
}

/// Sends the first `len` unconsumed bytes unchanged: straight from the read
/// buffer, after what `out` holds, or appended to `out` when that is small.
async fn forward<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    out: &mut Vec<u8>,
    len: usize,
    t: Timeouts,
    timer: &mut Timer,
) -> Result<(), RelayError> {
    if !out.is_empty() && len <= CHUNK_OUT_FLUSH {
        out.extend_from_slice(&src.unconsumed()[..len]);
        src.consume(len);
        return Ok(());
    }
    flush(dst, out, timer, t.dst).await?;
    src.forward_buffered(dst, len, timer, t.dst).await
}

/// Reads more of the body. Between plain TCP ends with large chunks (and
/// `pipes` to splice them with), a read stops where the splicing can take
/// over again: at the end of the current chunk's data, or, when a chunk
/// line is cut short, after at most the rest of a plain line. Otherwise
/// reads a chunk boundary straddles would keep straddling one, and every
/// chunk would be copied.
async fn read_more<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    pass: &ChunkPass,
    line_cut: bool,
    pipes: bool,
    t: Timeouts,
    timer: &mut Timer,
) -> Result<usize, RelayError> {
    let realign = pipes
        && pass.last_size() >= SPLICE_MIN_CHUNK
        && src.io.as_tcp().is_some()
        && dst.as_tcp().is_some();
    let max = match pass.data_left() {
        _ if !realign => usize::MAX,
        _ if line_cut => PLAIN_FRAMING_MAX,
        Some(left) if src.unconsumed().is_empty() => usize::try_from(left).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    src.fill_at_most(timer, t.src, max)
        .await
        .map_err(RelayError::Src)
}

/// The spliced way, from a chunk boundary or inside a large chunk, with
/// nothing buffered. Returns `Some(true)` when the body ended,
/// `Some(false)` when the next framing must be read (not plain, not whole
/// yet, or a small chunk), either way with all that was checked written
/// out; `None` when no pipe could be had and nothing was read.
///
/// Where the kernel peeks at an offset (`SO_PEEK_OFF`), the next chunk
/// line is read past the chunks already checked, and one splice moves up
/// to a pipe's worth of them: per chunk a `setsockopt` and a peek, per
/// pipe one splice in and one out. Elsewhere each chunk is spliced in
/// before the next line is peeked at. A peek that comes back short is
/// where the queue ended: the next is made after a wait, not before.
/// A sender that is caught up with, one chunk per write, so costs two
/// peeks per chunk (its line, then its CRLF), not three.
async fn splice_chunks(
    src: &monoio::net::TcpStream,
    dst: &monoio::net::TcpStream,
    pass: &mut ChunkPass,
    t: Timeouts,
    moved: &mut Moved,
) -> Result<Option<bool>, RelayError> {
    let Some(mut s) = Session::open(src, dst, t)? else {
        return Ok(None);
    };
    let ahead = s.peek_ahead();
    let mut peeked = [0u8; PLAIN_FRAMING_MAX + 8];
    // Bytes at the front of the source's queue that have been checked and
    // are to be passed on unchanged, chunk data included.
    let mut checked: u64 = 0;
    // The last peek came back short: the queue ended inside what it saw,
    // so a peek past the checked bytes would find nothing yet.
    let mut drained = false;
    loop {
        if let Some(left) = pass.data_left() {
            pass.skip_data(left);
            checked = checked.saturating_add(left);
            count_spliced(moved, left);
        }
        if checked > 0 && (!ahead || checked >= s.room() as u64) {
            s.pass(std::mem::take(&mut checked)).await?;
        }
        let short = std::mem::take(&mut drained);
        let n = match peek_unless_drained(&mut s, checked, &mut peeked, short) {
            Ok(n) => n,
            Err(RelayError::Src(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing past the checked bytes yet: move those, then wait.
                s.pass(std::mem::take(&mut checked)).await?;
                s.wait_src().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        // A sender caught up with (curl, whose every write is one chunk
        // and its CRLF) leaves the queue ending right after that CRLF, or
        // inside a chunk's data: a peek past it would only say so.
        drained = n < peeked.len();
        if n == 0 {
            // The end of the stream, which the buffered read reports.
            s.pass(checked).await?;
            s.flush().await?;
            return Ok(Some(false));
        }
        let start = pass
            .plain_start(&peeked[..n], SPLICE_MIN_CHUNK)
            .map_err(RelayError::Framing)?;
        match start {
            Some(Start::Chunk { framing, size }) => {
                checked = checked.saturating_add(framing as u64).saturating_add(size);
                pass.skip_data(size);
                count_spliced(moved, size);
            }
            Some(Start::Crlf) => checked = checked.saturating_add(2),
            // Part of a chunk line: under backpressure a sender's writes
            // arrive cut at any byte. Wait for the rest, not read it.
            Some(Start::NeedMore) => {
                s.pass(std::mem::take(&mut checked)).await?;
                s.wait_src_beyond(n).await?;
                drained = false;
            }
            Some(Start::End { framing }) => {
                s.pass(checked + framing as u64).await?;
                s.flush().await?;
                return Ok(Some(true));
            }
            // Framing to read and rewrite, or a small chunk to copy.
            None => {
                s.pass(checked).await?;
                s.flush().await?;
                return Ok(Some(false));
            }
        }
    }
}

/// Counts `n` body bytes passed by splice. A chunk may declare up to
/// 2^64 - 1 bytes: never overflow.
fn count_spliced(moved: &mut Moved, n: u64) {
    moved.body = moved.body.saturating_add(n);
    moved.spliced = moved.spliced.saturating_add(n);
}

/// Peeks past the `checked` bytes, unless the last peek came back short
/// (`drained`): the queue ended inside what it saw, so this one would
/// find nothing yet, and `WouldBlock` is answered without asking.
fn peek_unless_drained(
    s: &mut Session<'_>,
    checked: u64,
    buf: &mut [u8],
    drained: bool,
) -> Result<usize, RelayError> {
    if drained {
        return Err(RelayError::Src(io::ErrorKind::WouldBlock.into()));
    }
    s.peek_at(checked, buf)
}
