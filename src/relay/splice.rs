//! Body bytes between two plain TCP sockets with splice(2), driven by
//! readiness: they go socket → pipe → socket inside the kernel and never
//! enter user space.
//!
//! Why not io_uring's `IORING_OP_SPLICE` (monoio's `splice_to_pipe`): io_uring
//! never runs a splice inline but hands each one to an io-wq worker thread,
//! a wake-up and a context switch per call; on plain GETs that thread took
//! 68% of the proxy's CPU. Here the worker calls splice(2) itself with
//! `SPLICE_F_NONBLOCK` until the kernel says `EAGAIN`, and only then waits
//! for readiness (an io_uring poll, or epoll): HAProxy's raw_sock.c model.
//!
//! Each pipe is enlarged to `splice_pipe_size` (F_SETPIPE_SZ), so one splice
//! moves up to that much, and pipes are pooled per worker rather than made
//! per connection: an idle connection holds none.
//!
//! A pipe is two descriptors, taken from the worker's descriptor budget as
//! optional ones (`admission/fds.rs`, [`use_budget`]). When none can be
//! had (the budget's share for pipes is spent, or pipe2 fails with EMFILE)
//! a session does not open, and the caller copies the body through user
//! space instead: slower, never a failed request.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use monoio::net::TcpStream;

use super::{RelayError, Timeouts};
use crate::admission::{FdLease, Fds};
use crate::sys::pipe::{self, NonBlocking, Pipe};
use crate::sys::sockopt;
use std::os::fd::AsRawFd;

pub use crate::config::DEFAULT_PIPE_SIZE;
/// Pipes a worker keeps for reuse; more concurrent splices make their own
/// and close them afterwards. Each costs two descriptors (counted in the
/// budget, and closed first when it runs short), no memory when empty
/// (pipe pages are allocated as data arrives).
const MAX_IDLE_PIPES: usize = 16;

/// A known-length body of at least this many pipes' worth has its source
/// waited for a pipe's worth at a time ([`Session::batch_lowat`]): two or
/// three `setsockopt` calls per body, against a wake-up per arrival.
const BATCH_MIN_PIPES: u64 = 2;
/// How long a batched wait for the source may last before batching ends
/// for the body: a sender slower than a pipe's worth in this time (about
/// 20 MB/s with 1 MiB pipes) has its bytes passed on as they come, not
/// held back for up to the source's whole timeout.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// The pipe size every worker asks for, set once at start by [`configure`].
static PIPE_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_PIPE_SIZE);

/// A pipe and its two descriptors in the budget (`None`: no budget on
/// this thread, as in unit tests).
type Held = (Pipe, Option<FdLease>);

thread_local! {
    /// This worker's idle pipes, all empty.
    static POOL: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    /// The worker's descriptor budget, which new pipes are taken from.
    static BUDGET: RefCell<Option<Rc<Fds>>> = const { RefCell::new(None) };
    /// Whether sessions on this thread may peek past the front of the
    /// source's queue where the kernel can ([`Session::peek_ahead`]).
    static PEEK_AHEAD: Cell<bool> = const { Cell::new(true) };
}

/// Takes this thread's (worker's) pipes from `fds` from now on, and lets
/// it close idle pooled pipes when it runs short.
pub fn use_budget(fds: &Rc<Fds>) {
    BUDGET.with(|b| *b.borrow_mut() = Some(fds.clone()));
    fds.on_short(close_idle_pipe);
}

/// Closes one idle pooled pipe of this thread; whether there was one.
pub fn close_idle_pipe() -> bool {
    POOL.with(|p| {
        p.try_borrow_mut()
            .is_ok_and(|mut pool| pool.pop().is_some())
    })
}

/// Off: sessions on this thread never peek ahead, and splice chunk by
/// chunk as on kernels without TCP `SO_PEEK_OFF` (before 6.10). Tests use
/// it to cover that path on any kernel.
pub fn set_peek_ahead(on: bool) {
    PEEK_AHEAD.with(|p| p.set(on));
}

/// Sets the pipe size from the config, capped by the kernel's
/// `/proc/sys/fs/pipe-max-size` (an unprivileged F_SETPIPE_SZ past it fails
/// with EPERM). Returns the size used; says so in the log when capped.
pub fn configure(requested: usize) -> usize {
    let size = effective_size(requested, pipe::pipe_max_size());
    if size < requested {
        tracing::info!(
            requested,
            used = size,
            limit_file = pipe::PIPE_MAX_SIZE_FILE,
            "splice_pipe_size capped by the kernel's pipe-max-size"
        );
    }
    PIPE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// The pipe size this process asks for (a pipe may get less: [`Pipe::new`]).
pub fn pipe_size() -> usize {
    PIPE_SIZE.load(Ordering::Relaxed)
}

/// The size asked of F_SETPIPE_SZ: the request, at most the kernel's limit,
/// at least one page (the kernel rounds up to a power-of-two page count).
pub fn effective_size(requested: usize, kernel_max: Option<usize>) -> usize {
    const PAGE: usize = 4096;
    requested.min(kernel_max.unwrap_or(usize::MAX)).max(PAGE)
}

/// Moves exactly `n` bytes from `src` to `dst` (RFC 9112 §6.2: a length
/// known in advance, a Content-Length body or one chunk's data).
/// `Ok(false)`: no pipe could be had and nothing moved; copy instead.
///
/// The waits for readiness are bounded by `t.src` and `t.dst`: how long one
/// side may stay silent, not how long the whole body may take.
pub async fn splice_exact(
    src: &TcpStream,
    dst: &TcpStream,
    n: u64,
    t: Timeouts,
) -> Result<bool, RelayError> {
    let Some(mut s) = Session::open(src, dst, t)? else {
        return Ok(false);
    };
    s.batch = n >= BATCH_MIN_PIPES * s.pipe().capacity() as u64;
    s.pass(n).await?;
    s.flush().await?;
    Ok(true)
}

/// A run of spliced transfers from `src` to `dst` through one pipe, with
/// both sockets non-blocking while it lasts. Bytes may stay in the pipe
/// between [`Session::pass`] calls, so that several chunks go out in one
/// splice; [`Session::flush`] writes them out.
pub struct Session<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    pipe: Option<Held>,
    /// Bytes read into the pipe, not yet written out.
    in_pipe: usize,
    /// Assumed ready until the kernel says EAGAIN: a readiness wait per
    /// call would double the system calls.
    src_ready: bool,
    dst_ready: bool,
    t: Timeouts,
    /// The source's `SO_PEEK_OFF` as the kernel holds it, once enabled.
    peek_off: Option<i32>,
    /// Whether waits for the source ask for a pipe's worth of bytes
    /// (`SO_RCVLOWAT`) rather than any ([`Session::batch_lowat`]).
    batch: bool,
    /// The source's `SO_RCVLOWAT` as this session set it (1, the default,
    /// when untouched).
    lowat: usize,
    _nonblocking: (NonBlocking<'a, TcpStream>, NonBlocking<'a, TcpStream>),
}

impl<'a> Session<'a> {
    /// A session through a pipe from the pool or the budget; `Ok(None)`
    /// when none can be had (counted), with the sockets untouched.
    pub fn open(
        src: &'a TcpStream,
        dst: &'a TcpStream,
        t: Timeouts,
    ) -> Result<Option<Self>, RelayError> {
        let Some(pipe) = take_pipe() else {
            return Ok(None);
        };
        let nb_src = NonBlocking::new(src).map_err(RelayError::Src)?;
        let nb_dst = NonBlocking::new(dst).map_err(RelayError::Dst)?;
        Ok(Some(Self {
            src,
            dst,
            pipe: Some(pipe),
            in_pipe: 0,
            src_ready: true,
            dst_ready: true,
            t,
            peek_off: None,
            batch: false,
            lowat: 1,
            _nonblocking: (nb_src, nb_dst),
        }))
    }

    /// Turns on peeking past the front of the source's queue
    /// ([`Session::peek_at`]); `false` where the kernel cannot (TCP
    /// `SO_PEEK_OFF` needs Linux 6.10).
    pub fn peek_ahead(&mut self) -> bool {
        if self.peek_off.is_none()
            && PEEK_AHEAD.with(Cell::get)
            && sockopt::set_peek_offset(self.src.as_raw_fd(), 0).is_ok()
        {
            self.peek_off = Some(0);
        }
        self.peek_off.is_some()
    }

    /// Bytes of the pipe not yet filled.
    pub fn room(&self) -> usize {
        self.pipe().capacity() - self.in_pipe
    }

    /// Moves the next `n` bytes of `src` toward `dst`. They are read into
    /// the pipe while it has room and written out while the destination
    /// takes them, each side waited for only when it alone can move next
    /// ([`Session::wait_either`]); some may still be in the pipe on return.
    pub async fn pass(&mut self, n: u64) -> Result<(), RelayError> {
        let mut left = n;
        loop {
            let cap = self.pipe().capacity();
            while self.src_ready && left > 0 && self.in_pipe < cap {
                let want = clamp(left, cap - self.in_pipe);
                match pipe::splice_to_pipe(self.src, self.pipe(), want) {
                    Ok(0) => return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into())),
                    Ok(got) => {
                        left -= got as u64;
                        self.in_pipe += got;
                        // A non-blocking splice takes all the queue holds
                        // (up to `want`, or until the pipe's slots run
                        // out): a short one means the next would say
                        // EAGAIN. Skip that call.
                        self.src_ready = got == want;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.src_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(RelayError::Src(e)),
                }
            }
            if left == 0 {
                return Ok(());
            }
            self.write_ready()?;
            if !(self.src_ready && self.in_pipe < cap) {
                self.batch_lowat(left)?;
                self.wait_either().await?;
            }
        }
    }

    /// With batching on, has a wait for the source end only once the bytes
    /// left of the body or a pipe's worth, whichever is less, are queued
    /// (`SO_RCVLOWAT`): on loopback a fast sender otherwise wakes the worker
    /// for every few segments, each wake-up a splice in and out more. The
    /// kernel still wakes early when the receive window or memory runs
    /// short, so a wait never outlasts what the sender can send. Set once
    /// per body and once more for its tail.
    fn batch_lowat(&mut self, left: u64) -> Result<(), RelayError> {
        if !self.batch {
            return Ok(());
        }
        let want = clamp(left, self.pipe().capacity()).max(1);
        if want != self.lowat {
            self.set_lowat(want)?;
        }
        Ok(())
    }

    fn set_lowat(&mut self, bytes: usize) -> Result<(), RelayError> {
        sockopt::set_recv_lowat(self.src.as_raw_fd(), bytes).map_err(RelayError::Src)?;
        self.lowat = bytes;
        Ok(())
    }

    /// How long the next wait for the source may last: [`BATCH_WAIT`]
    /// while it asks for a batch, else the source's timeout.
    fn src_wait(&self) -> Duration {
        if self.lowat > 1 {
            self.t.src.min(BATCH_WAIT)
        } else {
            self.t.src
        }
    }

    /// A source wait that timed out while asking for a batch: the sender
    /// is slower than a pipe's worth per [`BATCH_WAIT`], not silent.
    /// Batching ends for the body and the source is tried again; if it has
    /// nothing, the next wait (for any byte, bounded by `t.src`) decides.
    /// `Err` otherwise.
    fn src_timed_out(&mut self, e: io::Error) -> Result<(), RelayError> {
        if e.kind() == io::ErrorKind::TimedOut && self.lowat > 1 {
            self.batch = false;
            self.set_lowat(1)?;
            self.src_ready = true;
            return Ok(());
        }
        Err(RelayError::Src(e))
    }

    /// Writes out what the pipe holds until it is empty or the destination
    /// is full, without waiting.
    fn write_ready(&mut self) -> Result<(), RelayError> {
        while self.dst_ready && self.in_pipe > 0 {
            match pipe::splice_from_pipe(self.pipe(), self.dst, self.in_pipe) {
                Ok(0) => return Err(RelayError::Dst(io::ErrorKind::WriteZero.into())),
                Ok(put) => {
                    // Short: the send buffer is full, as EAGAIN would say.
                    self.dst_ready = put == self.in_pipe;
                    self.in_pipe -= put;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.dst_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RelayError::Dst(e)),
            }
        }
        Ok(())
    }

    /// Waits for whichever side can move bytes next: the source, when the
    /// pipe has room; the destination, when the pipe has bytes. Both
    /// sockets keep moving while the other waits, as in HAProxy's event
    /// loop, instead of the pipe being written out before the source is
    /// waited for. (The losing readiness wait is cancelled when dropped:
    /// monoio's `async-cancel`.)
    async fn wait_either(&mut self) -> Result<(), RelayError> {
        let for_src = !self.src_ready && self.in_pipe < self.pipe().capacity();
        let for_dst = !self.dst_ready && self.in_pipe > 0;
        let (src, dst, t) = (self.src, self.dst, self.t);
        let src_wait = self.src_wait();
        match (for_src, for_dst) {
            (true, true) => {
                monoio::select! {
                    r = wait(src.readable(false), src_wait) => match r {
                        Ok(()) => self.src_ready = true,
                        Err(e) => self.src_timed_out(e)?,
                    },
                    r = wait(dst.writable(false), t.dst) => {
                        r.map_err(RelayError::Dst)?;
                        self.dst_ready = true;
                    }
                }
            }
            (true, false) => self.src_readable().await?,
            (false, true) => self.dst_writable().await?,
            // Not reached: a full pipe has bytes, an empty one room.
            (false, false) => {}
        }
        Ok(())
    }

    /// Writes out everything in the pipe.
    pub async fn flush(&mut self) -> Result<(), RelayError> {
        while self.in_pipe > 0 {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Copies bytes of the source's receive queue, `offset` bytes past its
    /// front (0 unless [`Session::peek_ahead`] is on), into `buf` without
    /// consuming them. `Ok(0)` is the end of the stream; `WouldBlock`:
    /// nothing there yet ([`Session::wait_src`]).
    pub fn peek_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, RelayError> {
        if let Some(kernel) = self.peek_off {
            let want = i32::try_from(offset)
                .map_err(|_| RelayError::Src(io::ErrorKind::InvalidInput.into()))?;
            if kernel != want {
                sockopt::set_peek_offset(self.src.as_raw_fd(), want).map_err(RelayError::Src)?;
                self.peek_off = Some(want);
            }
        } else if offset > 0 {
            return Err(RelayError::Src(io::ErrorKind::InvalidInput.into()));
        }
        match pipe::peek(self.src, buf) {
            Ok(n) => {
                // A peek moves the offset on by what it copied.
                self.peek_off = self.peek_off.map(|o| o.saturating_add(n as i32));
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.src_ready = false;
                Err(RelayError::Src(e))
            }
            r => r.map_err(RelayError::Src),
        }
    }

    /// Waits until the source has bytes, having written out the pipe first:
    /// what is in it must not wait on the sender.
    pub async fn wait_src(&mut self) -> Result<(), RelayError> {
        self.flush().await?;
        self.src_readable().await
    }

    /// One wait, bounded by `t.src`, for the source to have bytes (a
    /// batch of them while [`Session::batch_lowat`] asks for one).
    async fn src_readable(&mut self) -> Result<(), RelayError> {
        match wait(self.src.readable(false), self.src_wait()).await {
            Ok(()) => self.src_ready = true,
            Err(e) => self.src_timed_out(e)?,
        }
        Ok(())
    }

    /// One wait, bounded by `t.dst`, for the destination to take bytes.
    async fn dst_writable(&mut self) -> Result<(), RelayError> {
        wait(self.dst.writable(false), self.t.dst)
            .await
            .map_err(RelayError::Dst)?;
        self.dst_ready = true;
        Ok(())
    }

    /// Waits until more than `queued` bytes are at the front of the
    /// source's queue (`SO_RCVLOWAT`; readiness alone would fire at once
    /// for the bytes already there), having written out the pipe first.
    pub async fn wait_src_beyond(&mut self, queued: usize) -> Result<(), RelayError> {
        self.flush().await?;
        let fd = self.src.as_raw_fd();
        sockopt::set_recv_lowat(fd, queued + 1).map_err(RelayError::Src)?;
        let waited = wait(self.src.readable(false), self.t.src).await;
        // Back to the default, whatever happened: later reads and polls of
        // this socket expect it.
        let reset = sockopt::set_recv_lowat(fd, 1);
        waited.and(reset).map_err(RelayError::Src)?;
        self.src_ready = true;
        Ok(())
    }

    /// Writes out what the pipe holds until it is empty or the destination
    /// is full; then, if bytes are left, waits once for the destination.
    async fn write_out(&mut self) -> Result<(), RelayError> {
        self.write_ready()?;
        // Bytes in the pipe and a full destination: only the receiver can
        // unblock us.
        if self.in_pipe > 0 && !self.dst_ready {
            self.dst_writable().await?;
        }
        Ok(())
    }

    fn pipe(&self) -> &Pipe {
        // Present from `open` until `drop`.
        &self
            .pipe
            .as_ref()
            .unwrap_or_else(|| unreachable!("pipe taken before drop"))
            .0
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if self.lowat > 1 {
            // Back to the default for the reads and polls of the next
            // request (setsockopt on an open socket does not fail).
            let _ = sockopt::set_recv_lowat(self.src.as_raw_fd(), 1);
        }
        if self.peek_off.is_some() {
            // Off again, for the reads of the next request. Failing leaves
            // an offset that only MSG_PEEK reads, which nothing else does.
            let _ = sockopt::set_peek_offset(self.src.as_raw_fd(), -1);
        }
        // A pipe with bytes still in it would hand them to the next body.
        if let (0, Some(pipe)) = (self.in_pipe, self.pipe.take()) {
            put_pipe(pipe);
        }
    }
}

/// One readiness wait, bounded by `timeout`.
async fn wait(
    ready: impl std::future::Future<Output = io::Result<()>>,
    timeout: Duration,
) -> io::Result<()> {
    match monoio::time::timeout(timeout, ready).await {
        Ok(r) => r,
        Err(_elapsed) => Err(io::ErrorKind::TimedOut.into()),
    }
}

fn clamp(left: u64, room: usize) -> usize {
    usize::try_from(left).map_or(room, |l| l.min(room))
}

/// A pooled pipe, else a new one if the budget has room for it and the
/// kernel makes it; `None` (counted in the budget's gauges) otherwise.
fn take_pipe() -> Option<Held> {
    if let Some(held) = POOL.with(|p| p.borrow_mut().pop()) {
        return Some(held);
    }
    let budget = BUDGET.with(|b| b.borrow().clone());
    let lease = match &budget {
        Some(fds) => match fds.try_take_optional(2) {
            Some(lease) => Some(lease),
            None => {
                fds.note_pipe_fallback();
                return None;
            }
        },
        None => None,
    };
    match Pipe::new(PIPE_SIZE.load(Ordering::Relaxed)) {
        Ok(pipe) => Some((pipe, lease)),
        Err(e) => {
            // EMFILE or ENFILE, most likely: nothing is lost by copying.
            tracing::debug!(error = %e, "no pipe for splice; copying");
            if let Some(fds) = &budget {
                fds.note_pipe_fallback();
            }
            None
        }
    }
}

fn put_pipe(pipe: Held) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < MAX_IDLE_PIPES {
            pool.push(pipe);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_size_is_capped_by_the_kernel_limit() {
        assert_eq!(effective_size(1 << 20, Some(1 << 20)), 1 << 20);
        assert_eq!(effective_size(4 << 20, Some(1 << 20)), 1 << 20);
        assert_eq!(effective_size(256 << 10, Some(1 << 20)), 256 << 10);
        assert_eq!(effective_size(4 << 20, None), 4 << 20);
        assert_eq!(effective_size(0, Some(1 << 20)), 4096);
    }

    #[test]
    fn clamp_never_exceeds_the_room() {
        assert_eq!(clamp(u64::MAX, 1 << 20), 1 << 20);
        assert_eq!(clamp(10, 1 << 20), 10);
    }
}
