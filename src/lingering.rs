//! Early answers that reach the client: what happens to a request body
//! regproxy answered before reading (a 401, 403, 404, 405, 413, 429 or 503,
//! or a registry that stopped reading an upload).
//!
//! A client that writes its whole body before reading the answer (docker's
//! upload path does) would otherwise have its unread bytes turned into a TCP
//! reset by our close, and the reset destroys the answer in its receive
//! buffer: the client reports a broken pipe or a TLS error instead of the
//! 401 it would retry on. RFC 9112 §9.6 asks a server that closes before
//! reading the whole request to close in stages; nginx does it with
//! `ngx_http_discard_request_body` and `lingering_close`. So do we:
//!
//! - **Discard**: a body of at most `client.discard_limit` bytes is read and
//!   thrown away after the answer, within `client.lingering_time`. When its
//!   framing was valid the connection stays open for the next request.
//! - **Linger**: otherwise the answer goes out with `Connection: close`,
//!   then TLS `close_notify` and a half-close (shutdown of our write side).
//!   We keep reading and discarding until the client closes, no byte comes
//!   for `client.lingering_timeout`, `client.lingering_time` runs out, or
//!   `discard_limit` bytes were read; only then the socket is closed.
//! - **Close**: a framing error mid-body closes at once; the stream can no
//!   longer be trusted to say where a request ends.
//!
//! Both phases reuse the connection's own read buffer: a lingering
//! connection holds nothing more than an idle one. The decision is a pure
//! function ([`plan`]); the two async drivers below only carry it out.

use std::io;
use std::time::Instant;

use crate::http::body::{ChunkError, ChunkedDecoder};
use crate::http::head::RequestBody;
use crate::relay::{Buffered, Io, Timer};

pub use crate::config::Lingering;

/// How far the request body had been read when the answer was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// The request has no body, or all of it was read.
    Done,
    /// Not a byte of the body was taken yet.
    Unread,
    /// The relay started and stopped part-way because the registry stopped
    /// reading: the framing is sound, but where the client is is unknown.
    Abandoned,
    /// The client's own body broke (bad chunk, early end, timeout).
    Broken,
}

/// What to do with the client connection after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing of the request is left to read.
    Clean,
    /// Read and drop a body of known bounded size, then carry on.
    Discard,
    /// Answer with `Connection: close`, then close in stages.
    Linger,
    /// Close at once.
    Close,
}

impl Plan {
    /// Whether the answer may leave the connection open.
    pub fn may_keep_alive(self) -> bool {
        matches!(self, Plan::Clean | Plan::Discard)
    }
}

/// Decides what becomes of the unread rest of a request.
///
/// `awaiting_continue`: the client sent `Expect: 100-continue` and was never
/// told to go ahead, so it may send the body or may not (RFC 9110 §10.1.1).
/// Reading for a body that may never come would stall the next request, so
/// such a connection is closed in stages, as Go's net/http does.
pub fn plan(state: BodyState, body: RequestBody, awaiting_continue: bool, limit: u64) -> Plan {
    match state {
        BodyState::Done => Plan::Clean,
        BodyState::Broken => Plan::Close,
        BodyState::Abandoned => Plan::Linger,
        BodyState::Unread => match body {
            RequestBody::None | RequestBody::Length(0) => Plan::Clean,
            _ if awaiting_continue || limit == 0 => Plan::Linger,
            RequestBody::Length(n) if n > limit => Plan::Linger,
            // A chunked body's size is learnt while discarding; the limit
            // is enforced there.
            RequestBody::Length(_) | RequestBody::Chunked => Plan::Discard,
        },
    }
}

/// Why discarding stopped short.
#[derive(Debug)]
pub enum DiscardError {
    /// The body is, or ran, past the discard limit; this many bytes were
    /// read before that was known.
    TooLarge(u64),
    /// The chunked framing is malformed: close at once.
    Framing(ChunkError),
    /// The client went quiet, closed early, or failed.
    Io(io::Error),
}

/// Reads and drops the request body framed as `body`, at most `l.discard_limit`
/// bytes, within `l.time`. On success the connection's buffer holds whatever
/// the client pipelined after the body. Returns the bytes read.
pub async fn discard<S: Io>(
    client: &mut Buffered<S>,
    timer: &mut Timer,
    body: RequestBody,
    l: &Lingering,
) -> Result<u64, DiscardError> {
    let deadline = Instant::now() + l.time;
    match body {
        RequestBody::None => Ok(0),
        RequestBody::Length(n) => discard_length(client, timer, n, l, deadline).await,
        RequestBody::Chunked => discard_chunked(client, timer, l, deadline).await,
    }
}

/// RFC 9112 §6.2: exactly `n` bytes follow the head.
async fn discard_length<S: Io>(
    client: &mut Buffered<S>,
    timer: &mut Timer,
    n: u64,
    l: &Lingering,
    deadline: Instant,
) -> Result<u64, DiscardError> {
    if n > l.discard_limit {
        return Err(DiscardError::TooLarge(0));
    }
    let mut left = n;
    loop {
        let take = (client.unconsumed().len() as u64).min(left);
        // `take` fits in usize: it is at most the buffered length.
        client.consume(take as usize);
        left -= take;
        if left == 0 {
            return Ok(n);
        }
        read_more(client, timer, l, deadline)
            .await
            .map_err(DiscardError::Io)?;
    }
}

/// RFC 9112 §7.1: the strict decoder walks the framing; data is dropped.
async fn discard_chunked<S: Io>(
    client: &mut Buffered<S>,
    timer: &mut Timer,
    l: &Lingering,
    deadline: Instant,
) -> Result<u64, DiscardError> {
    let mut decoder = ChunkedDecoder::new();
    let mut read = 0u64;
    loop {
        let p = decoder
            .decode(client.unconsumed())
            .map_err(DiscardError::Framing)?;
        client.consume(p.consumed);
        read += p.consumed as u64;
        if p.done {
            return Ok(read);
        }
        if read > l.discard_limit {
            return Err(DiscardError::TooLarge(read));
        }
        if p.data.is_none() {
            read_more(client, timer, l, deadline)
                .await
                .map_err(DiscardError::Io)?;
        }
    }
}

/// One more read, bounded by the idle timeout and the overall deadline; the
/// client ending the stream here is an error (the body is not complete).
async fn read_more<S: Io>(
    client: &mut Buffered<S>,
    timer: &mut Timer,
    l: &Lingering,
    deadline: Instant,
) -> io::Result<()> {
    let wait = l
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    if wait.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    match client.fill(timer, wait).await? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

/// Closes in stages (RFC 9112 §9.6): TLS `close_notify` and a half-close,
/// then read and drop whatever still arrives until the client closes, goes
/// quiet for `l.timeout`, `l.time` passes, or `budget` bytes were read.
/// Returns the bytes read. The caller drops the connection afterwards.
pub async fn close<S: Io>(
    client: &mut Buffered<S>,
    timer: &mut Timer,
    budget: u64,
    l: &Lingering,
) -> u64 {
    let deadline = Instant::now() + l.time;
    let shutdown = Io::shutdown(&mut client.io);
    if !matches!(timer.within(l.timeout, shutdown).await, Ok(Ok(()))) {
        return 0;
    }
    let mut read = 0u64;
    loop {
        let buffered = client.unconsumed().len();
        client.consume(buffered);
        read += buffered as u64;
        if read >= budget {
            return read;
        }
        if read_more(client, timer, l, deadline).await.is_err() {
            return read;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 64 << 20;

    #[test]
    fn nothing_left_to_read_keeps_the_connection() {
        for body in [RequestBody::None, RequestBody::Length(0)] {
            assert_eq!(plan(BodyState::Unread, body, false, LIMIT), Plan::Clean);
        }
        for body in [RequestBody::Length(10), RequestBody::Chunked] {
            assert_eq!(plan(BodyState::Done, body, false, LIMIT), Plan::Clean);
        }
    }

    #[test]
    fn small_unread_bodies_are_discarded() {
        let p = plan(
            BodyState::Unread,
            RequestBody::Length(4 << 20),
            false,
            LIMIT,
        );
        assert_eq!(p, Plan::Discard);
        assert!(p.may_keep_alive());
        let p = plan(BodyState::Unread, RequestBody::Length(LIMIT), false, LIMIT);
        assert_eq!(p, Plan::Discard, "the limit itself is allowed");
        let p = plan(BodyState::Unread, RequestBody::Chunked, false, LIMIT);
        assert_eq!(p, Plan::Discard, "chunked: limited while reading");
    }

    #[test]
    fn large_or_unsure_bodies_linger() {
        let big = RequestBody::Length(10 << 30);
        assert_eq!(plan(BodyState::Unread, big, false, LIMIT), Plan::Linger);
        let small = RequestBody::Length(10);
        assert_eq!(plan(BodyState::Unread, small, true, LIMIT), Plan::Linger);
        assert_eq!(plan(BodyState::Unread, small, false, 0), Plan::Linger);
        assert_eq!(
            plan(BodyState::Abandoned, small, false, LIMIT),
            Plan::Linger
        );
        assert!(!Plan::Linger.may_keep_alive());
    }

    #[test]
    fn broken_framing_closes_at_once() {
        let p = plan(BodyState::Broken, RequestBody::Chunked, false, LIMIT);
        assert_eq!(p, Plan::Close);
        assert!(!p.may_keep_alive());
    }
}
