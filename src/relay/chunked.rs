//! Chunked bodies (RFC 9112 §7.1) passed through chunk for chunk, instead of
//! decoded into read-sized pieces and re-chunked.
//!
//! Every byte still goes through the strict [`ChunkedDecoder`], so framing
//! that is malformed or smuggling-prone stops the relay exactly as before.
//! What changes is the output: each of the sender's chunks is forwarded as
//! one chunk of the same size, and when both ends are plain TCP a large
//! chunk's data (its size known from the chunk line) moves by splice(2)
//! without entering user space; small chunks are copied.
//!
//! The chunk-size line itself is written canonically (`{size:x}\r\n`), not
//! copied: extensions and the trailer section are dropped as before. What
//! this parser accepts and the registry's (Go net/http) refuses, such as
//! whitespace before `;` or more than 16 hex digits of leading zeros, must
//! not reach it verbatim, and extensions carry nothing the registry reads.

use std::io;
use std::io::Write as _;

use super::{flush, splice, Buffered, Io, Moved, RelayError, Timeouts, CHUNK_OUT_FLUSH};
use crate::http::body::{ChunkedDecoder, CHUNK_TERMINATOR, LAST_CHUNK};

/// Chunk data at least this large, with nothing of it buffered yet, is
/// spliced when both ends are plain TCP. Smaller ones cost less to copy than
/// the socket mode switches and pipe calls of a splice.
pub const SPLICE_MIN_CHUNK: u64 = 32 * 1024;

/// Relays a chunked body to a chunked receiver, chunk for chunk.
pub async fn relay<S: Io, D: Io>(
    src: &mut Buffered<S>,
    dst: &mut D,
    t: Timeouts,
    out: &mut Vec<u8>,
) -> Result<Moved, RelayError> {
    // `out` is scratch: whatever the caller last wrote from it is not ours.
    out.clear();
    let mut decoder = ChunkedDecoder::new();
    let mut moved = Moved::default();
    // Inside a chunk whose size line was already written out.
    let mut open = false;
    loop {
        if let Some(left) = decoder.data_left() {
            if !open {
                chunk_line(out, left);
                open = true;
            }
            if left >= SPLICE_MIN_CHUNK
                && src.unconsumed().is_empty()
                && src.io.as_tcp().is_some()
                && dst.as_tcp().is_some()
            {
                flush(dst, out, t.dst).await?;
                if let (Some(s), Some(d)) = (src.io.as_tcp(), dst.as_tcp()) {
                    splice::splice_exact(s, d, left, t).await?;
                    decoder.skip_data(left);
                    moved.body += left;
                    moved.spliced += left;
                    out.extend_from_slice(CHUNK_TERMINATOR);
                    open = false;
                    continue;
                }
            }
        }
        let p = decoder
            .decode(src.unconsumed())
            .map_err(RelayError::Framing)?;
        if let Some(range) = p.data.clone() {
            if !open {
                // The size line and the first data came in one decode.
                let left = decoder.data_left().unwrap_or(0);
                chunk_line(out, range.len() as u64 + left);
                open = true;
            }
            let data = &src.unconsumed()[range];
            out.extend_from_slice(data);
            moved.body += data.len() as u64;
            if decoder.data_left().is_none() {
                // The chunk's data is all out; the decoder checks its CRLF.
                out.extend_from_slice(CHUNK_TERMINATOR);
                open = false;
            }
        }
        src.consume(p.consumed);
        if p.done {
            out.extend_from_slice(LAST_CHUNK);
            flush(dst, out, t.dst).await?;
            return Ok(moved);
        }
        if p.data.is_none() && decoder.data_left().is_none() {
            // Nothing more can be decoded from what is buffered: pass on
            // what we have before blocking on the sender.
            flush(dst, out, t.dst).await?;
            let got = src.fill(t.src).await.map_err(RelayError::Src)?;
            if got == 0 {
                return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
            }
        } else if p.data.is_none() && src.unconsumed().is_empty() {
            // Inside a chunk with nothing buffered: splice it if it is
            // large, else read on.
            if decoder.data_left().is_some_and(|l| l >= SPLICE_MIN_CHUNK)
                && src.io.as_tcp().is_some()
                && dst.as_tcp().is_some()
            {
                continue;
            }
            flush(dst, out, t.dst).await?;
            let got = src.fill(t.src).await.map_err(RelayError::Src)?;
            if got == 0 {
                return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
            }
        } else if out.len() >= CHUNK_OUT_FLUSH {
            flush(dst, out, t.dst).await?;
        }
    }
}

/// The chunk-size line for `size` data bytes (RFC 9112 §7.1), no extension.
fn chunk_line(out: &mut Vec<u8>, size: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{size:x}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines_are_canonical_hex() {
        for (size, line) in [
            (1, "1\r\n"),
            (0xabc, "abc\r\n"),
            (u64::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = vec![];
            chunk_line(&mut out, size);
            assert_eq!(out, line.as_bytes());
        }
    }
}
