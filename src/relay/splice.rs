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

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use monoio::net::TcpStream;

use super::{RelayError, Timeouts};
use crate::sys::pipe::{self, NonBlocking, Pipe};

/// `splice_pipe_size` when the config does not set it: 1 MiB, the Linux
/// default `pipe-max-size`, 16 times the default pipe.
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;
/// Pipes a worker keeps for reuse; more concurrent splices make their own
/// and close them afterwards. Each costs two descriptors, no memory when
/// empty (pipe pages are allocated as data arrives).
const MAX_IDLE_PIPES: usize = 16;

/// The pipe size every worker asks for, set once at start by [`configure`].
static PIPE_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_PIPE_SIZE);

thread_local! {
    /// This worker's idle pipes, all empty.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
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

/// The size asked of F_SETPIPE_SZ: the request, at most the kernel's limit,
/// at least one page (the kernel rounds up to a power-of-two page count).
pub fn effective_size(requested: usize, kernel_max: Option<usize>) -> usize {
    const PAGE: usize = 4096;
    requested.min(kernel_max.unwrap_or(usize::MAX)).max(PAGE)
}

/// Moves exactly `n` bytes from `src` to `dst` (RFC 9112 §6.2: a length
/// known in advance, a Content-Length body or one chunk's data).
///
/// The waits for readiness are bounded by `t.src` and `t.dst`: how long one
/// side may stay silent, not how long the whole body may take.
pub async fn splice_exact(
    src: &mut TcpStream,
    dst: &mut TcpStream,
    n: u64,
    t: Timeouts,
) -> Result<(), RelayError> {
    let pipe = take_pipe().map_err(RelayError::Src)?;
    let mut state = Splice {
        left: n,
        in_pipe: 0,
    };
    let result = state.run(src, dst, &pipe, t).await;
    // A pipe with bytes still in it would hand them to the next body.
    if state.in_pipe == 0 {
        put_pipe(pipe);
    }
    result
}

/// Progress of one spliced transfer.
struct Splice {
    /// Bytes still to be read from the source.
    left: u64,
    /// Bytes read into the pipe, not yet written out.
    in_pipe: usize,
}

impl Splice {
    async fn run(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        pipe: &Pipe,
        t: Timeouts,
    ) -> Result<(), RelayError> {
        let _src_nb = NonBlocking::new(src).map_err(RelayError::Src)?;
        let _dst_nb = NonBlocking::new(dst).map_err(RelayError::Dst)?;
        // Assumed ready until the kernel says EAGAIN: a readiness wait per
        // call would double the system calls.
        let (mut src_ready, mut dst_ready) = (true, true);
        let cap = pipe.capacity();
        loop {
            while src_ready && self.left > 0 && self.in_pipe < cap {
                let want = clamp(self.left, cap - self.in_pipe);
                match pipe::splice_to_pipe(src, pipe, want) {
                    Ok(0) => return Err(RelayError::Src(io::ErrorKind::UnexpectedEof.into())),
                    Ok(got) => {
                        self.left -= got as u64;
                        self.in_pipe += got;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(RelayError::Src(e)),
                }
            }
            while dst_ready && self.in_pipe > 0 {
                match pipe::splice_from_pipe(pipe, dst, self.in_pipe) {
                    Ok(0) => return Err(RelayError::Dst(io::ErrorKind::WriteZero.into())),
                    Ok(put) => self.in_pipe -= put,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst_ready = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(RelayError::Dst(e)),
                }
            }
            if self.left == 0 && self.in_pipe == 0 {
                return Ok(());
            }
            // Bytes in the pipe and a full destination: only the receiver
            // can unblock us. Otherwise the pipe is empty or has room and
            // the source had nothing.
            if self.in_pipe > 0 && !dst_ready {
                wait(dst.writable(false), t.dst)
                    .await
                    .map_err(RelayError::Dst)?;
                dst_ready = true;
            } else if !src_ready {
                wait(src.readable(false), t.src)
                    .await
                    .map_err(RelayError::Src)?;
                src_ready = true;
            }
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

fn take_pipe() -> io::Result<Pipe> {
    match POOL.with(|p| p.borrow_mut().pop()) {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(PIPE_SIZE.load(Ordering::Relaxed)),
    }
}

fn put_pipe(pipe: Pipe) {
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
