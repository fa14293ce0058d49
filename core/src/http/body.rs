//! The chunked transfer coding (RFC 9112 §7.1), the body framing that needs
//! a parser of its own.
//!
//! When a head says `Chunked`, the relay feeds every byte it reads from that
//! side through [`ChunkedDecoder::decode`], which walks the framing one byte
//! at a time and hands back body data as ranges of the caller's buffer, so
//! data is never copied or held back until a chunk is whole. It stops exactly
//! at the end of the trailer section, leaving any pipelined bytes to the next
//! message. The writers here let the relay re-chunk what it forwards.
//!
//! Line endings are strictly CRLF. RFC 9112 §2.2 lets a recipient accept a
//! bare LF, but in chunked framing that leniency is a known smuggling vector
//! when the next hop disagrees; hyper and regproxy both refuse it.

use std::fmt;
use std::ops::Range;

/// Longest chunk-size line, extensions included, CRLF excluded. Extensions
/// are allowed and ignored (RFC 9112 §7.1.1); this bounds the work they cost.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section, field lines and final CRLF included
/// (RFC 9112 §7.1.2); its fields are discarded.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Ends each chunk's data (RFC 9112 §7.1).
pub const CHUNK_TERMINATOR: &[u8] = b"\r\n";
/// The last-chunk and an empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Incremental decoder for one chunked body.
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read, then data bytes left in the chunk.
    size: u64,
    /// Bytes of the current chunk-size line, or of the whole trailer section.
    count: usize,
}

/// What one [`ChunkedDecoder::decode`] call got through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used, framing and data alike.
    pub consumed: usize,
    /// Body data found, as a range of the input ending at `consumed`.
    pub data: Option<Range<usize>>,
    /// The body, trailer section included, has ended.
    pub done: bool,
}

/// Malformed chunked framing. From a client this is a 400, from the upstream
/// a 502; either way the connection cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk-size line is not `1*HEXDIG [BWS] *(";" ext)`.
    BadSize,
    /// The chunk-size line exceeds [`MAX_CHUNK_LINE`].
    LineTooLong,
    /// Something other than CRLF where a line must end.
    BadLineEnd,
    /// The trailer section exceeds [`MAX_TRAILER_BYTES`].
    TrailerTooLarge,
    /// A trailer line is not a field line.
    BadTrailer,
    /// The chunk size does not fit in 64 bits.
    SizeOverflow,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk-size.
    #[default]
    SizeStart,
    /// After at least one hex digit.
    Size,
    /// Whitespace after the digits.
    SizeWs,
    /// Inside chunk extensions, up to the CR.
    Ext,
    SizeLf,
    /// `size` bytes of data remain.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
    /// An error was returned; it is returned again.
    Failed(ChunkError),
}

// === impl ChunkedDecoder ===

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Inside chunk-data: how many data bytes of this chunk are still to
    /// come. A relay that knows this can move them without the decoder.
    pub fn data_left(&self) -> Option<u64> {
        (self.state == State::Data).then_some(self.size)
    }

    /// Between two chunks: the next bytes are the CRLF ending a chunk's
    /// data and then a chunk-size line, or (at the start) the line itself.
    pub fn between_chunks(&self) -> bool {
        matches!(self.state, State::SizeStart | State::DataCr)
    }

    /// Records that the caller moved `n` (at most [`Self::data_left`]) data
    /// bytes of the current chunk past the decoder, e.g. by splice(2); the
    /// CRLF ending the chunk is then expected next.
    pub fn skip_data(&mut self, n: u64) {
        if self.state != State::Data {
            return;
        }
        self.size = self.size.saturating_sub(n);
        if self.size == 0 {
            self.state = State::DataCr;
        }
    }

    /// Walks the framing in `input`, the bytes the caller has not had consumed
    /// yet. Returns at the first run of body data (`data` is its range,
    /// `consumed` ends with it), when `input` runs out (`data` None: read more
    /// and call again with what is left plus the new bytes), or when the
    /// trailer section ends (`done`; bytes after `consumed` are the next
    /// message's). Once done, it consumes nothing more.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, ChunkError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Done => return Ok(Progress::framing(pos, true)),
                State::Data if pos < input.len() => {
                    let available = input.len() - pos;
                    // `size` may exceed usize on 32-bit targets; the input cannot.
                    let take = usize::try_from(self.size).map_or(available, |s| s.min(available));
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    let (consumed, data) = (pos + take, Some(pos..pos + take));
                    return Ok(Progress {
                        consumed,
                        data,
                        done: false,
                    });
                }
                _ => {}
            }
            let Some(&byte) = input.get(pos) else {
                return Ok(Progress::framing(pos, false));
            };
            pos += 1;
            self.state = self.step(byte).unwrap_or_else(State::Failed);
        }
    }

    /// The state after `byte`, per the grammar of RFC 9112 §7.1:
    ///
    /// ```text
    /// chunked-body = *chunk last-chunk trailer-section CRLF
    /// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    /// last-chunk   = 1*("0") [ chunk-ext ] CRLF
    /// ```
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        use ChunkError::*;
        use State::*;
        if matches!(self.state, Size | SizeWs | Ext) && byte != b'\r' {
            self.count += 1;
            if self.count > MAX_CHUNK_LINE {
                return Err(LineTooLong);
            }
        }
        let in_trailer = matches!(self.state, TrailerStart | TrailerName | TrailerValue);
        if in_trailer || matches!(self.state, TrailerLf | EndLf) {
            self.count += 1;
            if self.count > MAX_TRAILER_BYTES {
                return Err(TrailerTooLarge);
            }
        }
        match (self.state, byte) {
            // chunk-size = 1*HEXDIG: no sign, no "0x", never empty.
            (SizeStart, _) => {
                self.size = u64::from(hex(byte).ok_or(BadSize)?);
                self.count = 1;
                Ok(Size)
            }
            (Size, _) if hex(byte).is_some() => {
                let digit = u64::from(hex(byte).unwrap_or_default());
                self.size = self.size.checked_mul(16).ok_or(SizeOverflow)? | digit;
                Ok(Size)
            }
            // RFC 9112 §7.1.1: BWS may precede ";" of an extension. Like hyper
            // and Go, whitespace straight before the CRLF is tolerated too:
            // it cannot change the size.
            (Size | SizeWs, b' ' | b'\t') => Ok(SizeWs),
            (Size | SizeWs | Ext, b';') => Ok(Ext),
            (Size | SizeWs | Ext, b'\r') => Ok(SizeLf),
            (Size | SizeWs | Ext, b'\n') => Err(BadLineEnd),
            // RFC 9112 §7.1.1: extensions are tokens and quoted-strings, and
            // are ignored; only bytes no field could hold are refused.
            (Ext, _) if is_field_byte(byte) => Ok(Ext),
            (Size | SizeWs | Ext, _) => Err(BadSize),
            // RFC 9112 §7.1: a zero size is the last-chunk; the trailer
            // section follows instead of data.
            (SizeLf, b'\n') if self.size == 0 => {
                self.count = 0;
                Ok(TrailerStart)
            }
            (SizeLf, b'\n') => Ok(Data),
            // RFC 9112 §7.1: chunk-data is followed by CRLF, nothing else.
            (DataCr, b'\r') => Ok(DataLf),
            (DataLf, b'\n') => Ok(SizeStart),
            // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), read
            // with the §5 field-line rules and discarded.
            (TrailerStart, b'\r') => Ok(EndLf),
            (TrailerStart | TrailerName, _) if is_tchar(byte) => Ok(TrailerName),
            (TrailerName, b':') => Ok(TrailerValue),
            (TrailerValue, b'\r') => Ok(TrailerLf),
            (TrailerValue, _) if is_field_byte(byte) => Ok(TrailerValue),
            (TrailerStart | TrailerValue, b'\n') => Err(BadLineEnd),
            (TrailerStart | TrailerName | TrailerValue, _) => Err(BadTrailer),
            (TrailerLf, b'\n') => Ok(TrailerStart),
            // RFC 9112 §7.1: the chunked-body ends with the CRLF that closes
            // the trailer section.
            (EndLf, b'\n') => Ok(Done),
            (SizeLf | DataCr | DataLf | TrailerLf | EndLf, _) => Err(BadLineEnd),
            // `decode` never steps in these states.
            (Data | Done | Failed(_), _) => Ok(self.state),
        }
    }
}

// === impl Progress ===

impl Progress {
    fn framing(consumed: usize, done: bool) -> Self {
        Self {
            consumed,
            data: None,
            done,
        }
    }
}

// === impl ChunkError ===

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSize => "invalid chunk size line",
            Self::LineTooLong => "chunk size line too long",
            Self::BadLineEnd => "expected CRLF in chunked body",
            Self::TrailerTooLarge => "chunked trailer section too large",
            Self::BadTrailer => "invalid chunked trailer field",
            Self::SizeOverflow => "chunk size overflows 64 bits",
        })
    }
}

impl std::error::Error for ChunkError {}

// === writers ===

/// Appends the chunk-size line for a chunk of `len` bytes: `{len:x}\r\n`.
/// Follow it with the data and [`CHUNK_TERMINATOR`]. A zero `len` writes
/// nothing: a zero-size chunk is the last-chunk (RFC 9112 §7.1), and an empty
/// read must not end the body by accident; end it with [`LAST_CHUNK`].
pub fn write_chunk_header(len: usize, out: &mut Vec<u8>) {
    if len == 0 {
        return;
    }
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(len >> (shift * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

fn hex(byte: u8) -> Option<u8> {
    // RFC 5234 §B.1: HEXDIG, case-insensitive as ABNF strings are.
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 9110 §5.6.2: tchar.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 9110 §5.5: field-vchar, SP and HTAB; obs-text included.
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests;
