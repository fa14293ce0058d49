//! A chunked body (RFC 9112 §7.1) passed on with the sender's own framing
//! wherever that framing is plain, and rewritten canonically where it is not.
//!
//! Every byte still goes through the strict [`ChunkedDecoder`]: framing it
//! refuses stops the relay exactly as before. What this adds is the choice,
//! per stretch of input, between forwarding the bytes unchanged (one write
//! straight from the read buffer, or one splice(2) of line and data
//! together) and rewriting them (a canonical size line, the data copied,
//! the CRLF). Decoding and re-encoding every chunk cost a copy of each body
//! byte and a write per chunk line (issue 8).
//!
//! "Plain" is what the registry's reader (Go net/http) reads exactly as we
//! do: `1*16HEXDIG CRLF` with no extension and no whitespace, preceded by
//! the CRLF that ends the previous chunk's data, and a last chunk of exactly
//! `0 CRLF CRLF`. Anything else this parser accepts (extensions, whitespace
//! before the CRLF, more than 16 digits of leading zeros, a trailer section)
//! is rewritten, as all framing was before: extensions and trailers carry
//! nothing the registry reads, and are dropped.

use super::body::{ChunkError, ChunkedDecoder, CHUNK_TERMINATOR, LAST_CHUNK};

/// Longest plain framing: the CRLF after data, 16 hex digits and the CRLF
/// of the size line. An undecided stretch of framing shorter than this is
/// kept unconsumed until more arrives ([`Step::NeedMore`]); a longer one
/// cannot be plain and is rewritten.
pub const PLAIN_FRAMING_MAX: usize = 2 + 16 + 2;

/// Go's chunk-size parser takes at most 16 hex digits (`parseHexUint`).
const MAX_PLAIN_DIGITS: usize = 16;

/// One chunked body on its way through.
#[derive(Debug, Default, Clone)]
pub struct ChunkPass {
    dec: ChunkedDecoder,
    /// The current chunk's data has all passed but the CRLF after it has
    /// not: it goes with the next framing, verbatim or rewritten.
    pending_crlf: bool,
    /// Size of the latest chunk: a relay predicts the next from it.
    last_size: u64,
}

/// What to do with the start of the input given to [`ChunkPass::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward `len` bytes of the input unchanged, and consume them. They
    /// hold `data` body bytes. `done`: the body ended with them.
    Verbatim { len: usize, data: u64, done: bool },
    /// Consume `consumed` bytes; what replaces them (canonical framing and
    /// `data` body bytes) was appended to `out`. `done`: the body ended.
    Rewritten {
        consumed: usize,
        data: u64,
        done: bool,
    },
    /// The input starts with framing that may turn out plain once more
    /// bytes arrive: consume nothing, read more, and call again with it all.
    NeedMore,
}

/// Plain framing found at the start of peeked bytes by
/// [`ChunkPass::plain_start`]: forward `framing` bytes and then, for a
/// chunk, its `size` data bytes, all unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Chunk {
        framing: usize,
        size: u64,
    },
    /// Only the CRLF ending the previous chunk's data is there yet (a
    /// sender that writes each chunk with its CRLF, as curl does, and
    /// whose next chunk has not arrived): forward those 2 bytes.
    Crlf,
    /// Framing shorter than any plain framing and undecided yet: a chunk
    /// line whose first bytes arrived without the rest. Wait for more.
    NeedMore,
    /// The last chunk: the body ends after `framing` bytes.
    End {
        framing: usize,
    },
}

// === impl ChunkPass ===

impl ChunkPass {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inside a chunk's data: how many of its bytes are still to come.
    pub fn data_left(&self) -> Option<u64> {
        self.dec.data_left()
    }

    /// Size of the latest chunk whose size line has been read (0 before any).
    pub fn last_size(&self) -> u64 {
        self.last_size
    }

    /// Between chunks, with nothing of the next framing consumed: what
    /// comes next can be checked whole by [`Self::plain_start`].
    pub fn at_framing(&self) -> bool {
        self.dec.between_chunks()
    }

    /// Records that `n` (at most [`Self::data_left`]) data bytes moved
    /// past us unchanged, e.g. by splice(2).
    pub fn skip_data(&mut self, n: u64) {
        self.dec.skip_data(n);
        if self.dec.data_left().is_none() {
            self.pending_crlf = true;
        }
    }

    /// Decides what happens to the start of `input`, the bytes read and not
    /// yet consumed (never empty): the longest run that can go on
    /// unchanged, or else one decoder step rewritten into `out`.
    pub fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Step, ChunkError> {
        let (mut off, mut data) = (0usize, 0u64);
        loop {
            let saved = self.clone();
            let rest = &input[off..];
            let p = self.dec.decode(rest)?;
            let framing_len = p.data.as_ref().map_or(p.consumed, |r| r.start);
            let framing = &rest[..framing_len];
            let whole = p.data.is_some() || p.done;
            // Plain framing starts at a chunk boundary: the tail of a line
            // whose start was rewritten (`;ext=1\r\n` cut after `=`) can
            // look like a whole plain line.
            let plain = framing.is_empty()
                || saved.at_framing() && is_plain(framing, self.pending_crlf, p.done);
            if whole && plain {
                if !framing.is_empty() {
                    self.pending_crlf = false;
                    self.note_size(p.data.as_ref().map_or(0, |r| r.len()));
                }
                if let Some(r) = &p.data {
                    data += r.len() as u64;
                    if self.dec.data_left().is_none() {
                        self.pending_crlf = true;
                    }
                }
                off += p.consumed;
                if p.done || off == input.len() {
                    return Ok(Step::Verbatim {
                        len: off,
                        data,
                        done: p.done,
                    });
                }
                continue;
            }
            // Not plain, or not whole yet: first pass on the run so far.
            if off > 0 {
                *self = saved;
                return Ok(Step::Verbatim {
                    len: off,
                    data,
                    done: false,
                });
            }
            if !whole && rest.len() < PLAIN_FRAMING_MAX && saved.at_framing() {
                *self = saved;
                return Ok(Step::NeedMore);
            }
            return Ok(self.rewrite(rest, &p, out));
        }
    }

    /// One decoder step's worth of `input`, written canonically: the
    /// pending CRLF and a `{size:x}` line once a size line has ended, the
    /// data copied, `0 CRLF CRLF` at the end.
    fn rewrite(&mut self, input: &[u8], p: &super::body::Progress, out: &mut Vec<u8>) -> Step {
        if p.done {
            self.take_crlf(out);
            out.extend_from_slice(LAST_CHUNK);
            return Step::Rewritten {
                consumed: p.consumed,
                data: 0,
                done: true,
            };
        }
        let framing_len = p.data.as_ref().map_or(p.consumed, |r| r.start);
        let got = p.data.as_ref().map_or(0, |r| r.len());
        // A size line ended in this step: the decoder is in (or past) data.
        if framing_len > 0 && (p.data.is_some() || self.dec.data_left().is_some()) {
            let size = got as u64 + self.dec.data_left().unwrap_or(0);
            self.take_crlf(out);
            chunk_line(out, size);
            self.last_size = size;
        }
        if let Some(r) = &p.data {
            out.extend_from_slice(&input[r.clone()]);
            if self.dec.data_left().is_none() {
                self.pending_crlf = true;
            }
        }
        Step::Rewritten {
            consumed: p.consumed,
            data: got as u64,
            done: false,
        }
    }

    /// For a relay that moves chunks without reading them (splice): the
    /// plain framing at the start of `peeked`, when it starts a chunk of at
    /// least `min` bytes or ends the body. It is then taken as passed (the
    /// caller must forward exactly those bytes, and for a chunk its data,
    /// then call [`Self::skip_data`]). [`Start::NeedMore`]: too short to
    /// tell yet. `None`: not plain, or a smaller chunk; nothing was taken.
    pub fn plain_start(&mut self, peeked: &[u8], min: u64) -> Result<Option<Start>, ChunkError> {
        if !self.at_framing() {
            return Ok(None);
        }
        let mut probe = self.dec.clone();
        let p = probe.decode(peeked)?;
        let framing_len = p.data.as_ref().map_or(p.consumed, |r| r.start);
        let size = p.data.as_ref().map_or(0, |r| r.len()) as u64 + probe.data_left().unwrap_or(0);
        let line_done = p.data.is_some() || probe.data_left().is_some();
        let framing = &peeked[..framing_len];
        if !(p.done || line_done) {
            if self.pending_crlf && peeked.starts_with(CHUNK_TERMINATOR) {
                self.dec.decode(CHUNK_TERMINATOR)?;
                self.pending_crlf = false;
                return Ok(Some(Start::Crlf));
            }
            if peeked.len() < PLAIN_FRAMING_MAX {
                return Ok(Some(Start::NeedMore));
            }
            return Ok(None);
        }
        if !is_plain(framing, self.pending_crlf, p.done) {
            return Ok(None);
        }
        if !p.done && size < min {
            return Ok(None);
        }
        // Take exactly the framing: the decoder stands at the data (or done).
        self.dec.decode(framing)?;
        self.pending_crlf = false;
        if p.done {
            return Ok(Some(Start::End {
                framing: framing_len,
            }));
        }
        self.last_size = size;
        Ok(Some(Start::Chunk {
            framing: framing_len,
            size,
        }))
    }

    /// Size of the chunk just entered through plain framing.
    fn note_size(&mut self, got: usize) {
        self.last_size = got as u64 + self.dec.data_left().unwrap_or(0);
    }

    fn take_crlf(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_crlf) {
            out.extend_from_slice(CHUNK_TERMINATOR);
        }
    }
}

/// `framing` (what the decoder took before a chunk's data, or up to the end
/// of the body) passes unchanged: the CRLF ending the previous data when
/// one is due, then `1*16HEXDIG CRLF`, or for the last chunk `0 CRLF CRLF`.
pub fn is_plain(framing: &[u8], after_data: bool, last: bool) -> bool {
    let line = if after_data {
        match framing.strip_prefix(CHUNK_TERMINATOR) {
            Some(line) => line,
            None => return false,
        }
    } else {
        framing
    };
    if last {
        return line == LAST_CHUNK;
    }
    line.strip_suffix(CHUNK_TERMINATOR).is_some_and(|digits| {
        (1..=MAX_PLAIN_DIGITS).contains(&digits.len()) && digits.iter().all(u8::is_ascii_hexdigit)
    })
}

/// The chunk-size line for `size` data bytes (RFC 9112 §7.1), no extension.
pub fn chunk_line(out: &mut Vec<u8>, size: u64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{size:x}\r\n");
}

/// How the relay uses [`ChunkPass`], without sockets: `data` arrives in
/// pieces whose lengths cycle through `pieces` (0: all the rest), and what
/// would be sent on is returned, with the body bytes counted and whether
/// the body ended. For the unit tests and the fuzz target.
pub fn pass_in_pieces(data: &[u8], pieces: &[usize]) -> (Vec<u8>, u64, Result<bool, ChunkError>) {
    let mut pass = ChunkPass::new();
    let (mut sent, mut out, mut body) = (Vec::new(), Vec::new(), 0u64);
    // The caller's read buffer: `data[start..end]` read, not yet consumed.
    let (mut start, mut end, mut i, mut more) = (0usize, 0usize, 0usize, false);
    loop {
        if start == end || more {
            if end == data.len() {
                sent.append(&mut out);
                return (sent, body, Ok(false));
            }
            let piece = pieces.get(i % pieces.len().max(1)).copied().unwrap_or(0);
            end = if piece == 0 {
                data.len()
            } else {
                (end + piece).min(data.len())
            };
            (i, more) = (i + 1, false);
        }
        let step = match pass.step(&data[start..end], &mut out) {
            Ok(step) => step,
            Err(e) => {
                sent.append(&mut out);
                return (sent, body, Err(e));
            }
        };
        match step {
            Step::Verbatim { len, data: n, done } => {
                sent.append(&mut out);
                sent.extend_from_slice(&data[start..start + len]);
                (start, body) = (start + len, body + n);
                if done {
                    return (sent, body, Ok(true));
                }
            }
            Step::Rewritten {
                consumed,
                data: n,
                done,
            } => {
                (start, body) = (start + consumed, body + n);
                if done {
                    sent.append(&mut out);
                    return (sent, body, Ok(true));
                }
            }
            Step::NeedMore => more = true,
        }
    }
}

#[cfg(test)]
#[path = "chunk_pass/tests.rs"]
mod tests;
