//! Sending a cache file, or the part of a fill already written, to a
//! client.
//!
//! To a plain client the bytes go with `sendfile(2)` from the page cache to
//! the socket, called until the socket is full and then waiting for it to
//! drain, as the splice relay does (`relay/splice.rs`). Over TLS they must
//! pass through user space to be encrypted: the file is read in large
//! batches (io_uring under that driver, so a page not in memory never
//! blocks the worker) into the batched TLS writer.
//!
//! A follower's source is a fill in flight: it sends what is written, then
//! waits on the flight ([`Flight::changed`]) for more.

use std::io;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::net::TcpStream;

use regproxy_core::cache::entry::HEADER_LEN;

use super::flight::{Flight, Stage};
use crate::relay::{bufpool, Io, RelayError, Timer};
use crate::sys::file as sysfile;
use crate::sys::pipe::NonBlocking;

/// At most this much per sendfile call: the call returns when the socket
/// buffer is full anyway; the cap keeps one call from holding the worker
/// long when the socket drains fast.
const SENDFILE_MAX: usize = 4 << 20;

/// Bytes one hit sends before it lets the worker's other connections run:
/// a client that reads as fast as sendfile writes (loopback, a fast LAN)
/// would otherwise take a whole layer's worth of the worker without a
/// pause, and the fleet bench saw hot pulls wait seconds for their first
/// byte behind it. nginx's `sendfile_max_chunk` (2m) is the same fix.
const SEND_QUANTUM: u64 = 2 << 20;

/// Where the bytes come from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a monoio::fs::File,
    /// A fill in flight, or `None` for a whole file.
    pub flight: Option<&'a Flight>,
    /// How long a follower waits for the fill to move.
    pub fill_timeout: Duration,
}

/// Sends body bytes `start..start + len` of `src` to `dst`, each wait on
/// the client bounded by `timeout`. Returns the bytes sent; an error says
/// which side failed.
pub async fn send<D: Io>(
    dst: &mut D,
    src: Source<'_>,
    start: u64,
    len: u64,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<u64, RelayError> {
    let _ = sysfile::advise_sequential(src.file);
    match dst.as_tcp() {
        Some(tcp) => sendfile_range(tcp, src, start, len, timer, timeout).await,
        None => read_and_write(dst, src, start, len, timer, timeout).await,
    }
}

/// Body bytes of `src` available up to `end` (exclusive), waiting for a
/// fill to write past `pos` if it has not yet.
async fn available(
    src: Source<'_>,
    pos: u64,
    end: u64,
    timer: &mut Timer,
) -> Result<u64, RelayError> {
    let Some(flight) = src.flight else {
        return Ok(end);
    };
    loop {
        let (written, stage) = (flight.written(), flight.stage());
        if written > pos {
            return Ok(written.min(end));
        }
        match stage {
            Stage::Failed | Stage::Abandoned => {
                return Err(RelayError::Src(io::Error::other(
                    "the fill this request followed failed",
                )))
            }
            // Done yet not past pos: the file is shorter than announced.
            Stage::Done => return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into())),
            Stage::Asking | Stage::Streaming => {}
        }
        if timer
            .within(src.fill_timeout, flight.changed(written, stage))
            .await
            .is_err()
        {
            return Err(RelayError::Src(io::ErrorKind::TimedOut.into()));
        }
    }
}

async fn sendfile_range(
    tcp: &mut TcpStream,
    src: Source<'_>,
    start: u64,
    len: u64,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<u64, RelayError> {
    // Under io_uring monoio keeps sockets blocking: sendfile on one would
    // sleep the whole worker until the client drained. Non-blocking while
    // the file moves, as for splice (`sys::pipe::NonBlocking`).
    let tcp: &TcpStream = tcp;
    let _nonblocking = NonBlocking::new(tcp).map_err(RelayError::Dst)?;
    let end = start + len;
    let mut pos = start;
    let mut warmed = start;
    let mut since_yield = 0;
    while pos < end {
        let ready = available(src, pos, end, timer).await?;
        while pos < ready {
            if pos >= warmed {
                warmed = ready.min(pos + SENDFILE_MAX as u64);
                warm(src.file, pos, warmed).await;
            }
            let want = usize::try_from(warmed - pos).map_or(SENDFILE_MAX, |n| n.min(SENDFILE_MAX));
            match sysfile::sendfile_now(tcp, src.file, HEADER_LEN + pos, want) {
                Ok(Some(0)) => {
                    return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(Some(n)) => {
                    pos += n as u64;
                    since_yield += n as u64;
                    if since_yield >= SEND_QUANTUM {
                        since_yield = 0;
                        YieldNow(false).await;
                    }
                }
                Ok(None) => match timer.within(timeout, tcp.writable(false)).await {
                    Ok(r) => r.map_err(RelayError::Dst)?,
                    Err(_elapsed) => return Err(RelayError::Dst(io::ErrorKind::TimedOut.into())),
                },
                Err(e) => return Err(RelayError::Dst(e)),
            }
        }
    }
    Ok(pos - start)
}

/// Lets the worker's other ready tasks run, and the driver collect I/O,
/// before this one goes on (monoio has no `yield_now`).
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Makes sure body bytes `start..end` are in memory before sendfile reads
/// them, so that a cold page never blocks the worker: when the first or
/// last page of the window is not, read-ahead is started for the whole
/// window and the task (not the worker) waits on an io_uring read of its
/// last byte. Two `preadv2` probes per window when all is cached.
async fn warm(file: &monoio::fs::File, start: u64, end: u64) {
    let (first, last) = (HEADER_LEN + start, HEADER_LEN + end - 1);
    if sysfile::is_cached(file, first) && sysfile::is_cached(file, last) {
        return;
    }
    let _ = sysfile::advise_willneed(file, first, end - start);
    let _ = file.read_at(Vec::with_capacity(1), last).await;
}

async fn read_and_write<D: Io>(
    dst: &mut D,
    src: Source<'_>,
    start: u64,
    len: u64,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<u64, RelayError> {
    let end = start + len;
    let mut pos = start;
    let (_slot, mut buf) = bufpool::batch();
    let cap = buf.capacity();
    let result = async {
        while pos < end {
            let ready = available(src, pos, end, timer).await?;
            let want = usize::try_from(ready - pos).map_or(cap, |n| n.min(cap));
            buf.clear();
            let (res, slice) = src
                .file
                .read_at(
                    std::mem::take(&mut buf).slice_mut(0..want),
                    HEADER_LEN + pos,
                )
                .await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(RelayError::Src(e)),
            }
            let n = buf.len();
            match timer
                .within(
                    timeout,
                    dst.write_all_slice(std::mem::take(&mut buf).slice(0..n)),
                )
                .await
            {
                Ok((res, slice)) => {
                    buf = slice.into_inner();
                    res.map_err(RelayError::Dst)?;
                }
                Err(_elapsed) => return Err(RelayError::Dst(io::ErrorKind::TimedOut.into())),
            }
            pos += n as u64;
        }
        Ok(pos - start)
    }
    .await;
    bufpool::give(buf);
    dst.trim();
    result
}
