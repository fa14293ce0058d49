//! A worker's keep-alive connections to the registry, and which server a
//! request goes to.
//!
//! Each worker owns its pool outright (no lock, no sharing): requests take the
//! most recently returned idle connection, since it is the least likely to
//! have been closed by the registry's idle timer, and give it back once a
//! response has been read to its end.
//!
//! Every connection, in use or idle, holds a descriptor of the worker's
//! budget (`admission/fds.rs`): a new one is opened only with a lease the
//! caller finds room for, and the worker closes idle ones
//! ([`Pool::close_oldest_idle`]) when the budget runs short. A connect
//! that fails for lack of descriptors (EMFILE) says nothing about the
//! server, which is not ejected for it.
//!
//! Selection: least outstanding requests (this worker's) among the servers
//! the shared [`Board`] says are up, ties broken round-robin; when none is
//! up, all of them (logged), since a wrong health verdict must not turn
//! into a total outage. A connect failure ejects the server and moves on to
//! another one: nothing was sent yet, so this is safe for every request.
//!
//! With `[upstream] tls = true` a connection is made whole (TCP connect
//! and TLS handshake) within `connect_timeout`, and a failed handshake (a
//! certificate the CA did not sign, or not for `server_name`) counts as a
//! failed connect: the server is ejected and the request moves on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::stream::UpstreamStream;
use crate::admission::FdLease;
use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::health::Board;
use crate::tls::RegistryTls;

/// A connection to one registry server.
#[derive(Debug)]
pub struct Upstream {
    pub stream: UpstreamStream,
    pub server: SocketAddr,
    /// It came from the idle pool: the registry may have closed it meanwhile,
    /// which makes a failure on first use retryable.
    pub reused: bool,
    /// Its descriptor in the worker's budget.
    pub fd: FdLease,
}

#[derive(Debug)]
struct Idle {
    stream: UpstreamStream,
    server: SocketAddr,
    since: Instant,
    fd: FdLease,
}

#[derive(Debug)]
pub struct Pool {
    servers: Vec<SocketAddr>,
    next: Cell<usize>,
    idle: RefCell<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// `[upstream] tls`: every connection is TLS, verified as configured.
    tls: Option<RegistryTls>,
    board: Arc<Board>,
    worker: usize,
    /// This worker's requests in flight, per server.
    outstanding: Vec<Cell<u32>>,
    /// The last pick found no server up (logged once per episode).
    all_down: Cell<bool>,
}

impl Pool {
    pub fn new(
        cfg: &UpstreamConfig,
        tls: Option<RegistryTls>,
        board: Arc<Board>,
        worker: usize,
    ) -> Pool {
        Pool {
            servers: cfg.servers.clone(),
            next: Cell::new(0),
            idle: RefCell::new(VecDeque::new()),
            max_idle: cfg.max_idle_per_worker,
            idle_timeout: cfg.idle_timeout,
            connect_timeout: cfg.connect_timeout,
            tls,
            outstanding: cfg.servers.iter().map(|_| Cell::new(0)).collect(),
            board,
            worker,
            all_down: Cell::new(false),
        }
    }

    /// An idle connection to the server selection picks if there is a live
    /// one, else a new connection with the descriptor `room` finds
    /// ([`ProxyError::OutOfDescriptors`] when it finds none).
    pub async fn get(
        &self,
        room: impl FnOnce() -> Option<FdLease>,
    ) -> Result<Upstream, ProxyError> {
        let i = self.pick(None);
        if let Some(up) = self.take_idle(self.servers[i]) {
            return Ok(up);
        }
        let fd = room().ok_or(ProxyError::OutOfDescriptors)?;
        // Boxed: a dial's state (about 2 KiB) would otherwise size every
        // request's boxed future, though most requests take a pooled
        // connection.
        Box::pin(self.connect_from(i, fd)).await
    }

    /// A fresh connection to another server than `failed` when there is
    /// one up: a retry should not meet the same fault.
    pub async fn connect_other(
        &self,
        failed: SocketAddr,
        room: impl FnOnce() -> Option<FdLease>,
    ) -> Result<Upstream, ProxyError> {
        let i = self.pick(self.index(failed));
        let fd = room().ok_or(ProxyError::OutOfDescriptors)?;
        Box::pin(self.connect_from(i, fd)).await
    }

    /// Connects to server `first`; on failure ejects it and tries the next
    /// pick, each server at most once. Out of descriptors, it stops there:
    /// no server is at fault, and every other would fail the same way.
    async fn connect_from(&self, first: usize, fd: FdLease) -> Result<Upstream, ProxyError> {
        let mut tried = vec![false; self.servers.len()];
        let mut i = first;
        loop {
            tried[i] = true;
            let err = match self.connect_to(self.servers[i]).await {
                Ok((stream, server)) => {
                    return Ok(Upstream {
                        stream,
                        server,
                        reused: false,
                        fd,
                    })
                }
                Err(ProxyError::UpstreamFailed(e)) if crate::sys::is_descriptor_exhaustion(&e) => {
                    return Err(ProxyError::UpstreamFailed(e))
                }
                Err(e) => e,
            };
            self.board.eject(i, "connect failed");
            self.count_error(i);
            match self.pick_untried(&tried) {
                Some(next) => {
                    tracing::debug!(error = %err, upstream = %self.servers[i], next = %self.servers[next], "connect failed; trying another server");
                    i = next;
                }
                None => return Err(err),
            }
        }
    }

    /// Which server the next request goes to: least outstanding among
    /// those up (never `exclude` if another will do), else among all.
    fn pick(&self, exclude: Option<usize>) -> usize {
        let n = self.servers.len();
        let up = |i: usize| self.board.is_up(i) && Some(i) != exclude;
        let any_up = (0..n).any(up);
        if any_up {
            self.all_down.set(false);
        } else if !self.all_down.replace(true) && n > 1 {
            tracing::warn!(
                worker = self.worker,
                "no upstream server is healthy; sending requests to all of them"
            );
        }
        let eligible = |i: usize| {
            if any_up {
                up(i)
            } else {
                Some(i) != exclude || n == 1
            }
        };
        let start = self.next.get();
        self.next.set(start.wrapping_add(1));
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if eligible(i)
                && best.is_none_or(|b| self.outstanding[i].get() < self.outstanding[b].get())
            {
                best = Some(i);
            }
        }
        best.unwrap_or(start % n)
    }

    /// The best server not yet tried for this request, up ones first.
    fn pick_untried(&self, tried: &[bool]) -> Option<usize> {
        let fresh = |i: &usize| !tried[*i];
        let by_load = |i: &usize| self.outstanding[*i].get();
        (0..self.servers.len())
            .filter(fresh)
            .filter(|&i| self.board.is_up(i))
            .min_by_key(by_load)
            .or_else(|| (0..self.servers.len()).filter(fresh).min_by_key(by_load))
    }

    fn count_error(&self, i: usize) {
        let stats = self.board.stats(self.worker, i);
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn index(&self, server: SocketAddr) -> Option<usize> {
        self.servers.iter().position(|s| *s == server)
    }

    /// Marks a request in flight on `server` until the lease drops; the
    /// lease also records how the exchange went.
    pub fn lease(&self, server: SocketAddr) -> Lease<'_> {
        let i = self.index(server).unwrap_or(0);
        self.outstanding[i].set(self.outstanding[i].get() + 1);
        let stats = self.board.stats(self.worker, i);
        stats.outstanding.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        Lease {
            pool: self,
            i,
            started: Instant::now(),
        }
    }

    /// A new connection to `server`: TCP, then the TLS handshake when the
    /// registry speaks TLS, the two within `connect_timeout`.
    async fn connect_to(
        &self,
        server: SocketAddr,
    ) -> Result<(UpstreamStream, SocketAddr), ProxyError> {
        let opened = async {
            let stream = TcpStream::connect_addr(server)
                .await
                .map_err(ProxyError::UpstreamFailed)?;
            // Heads are small writes; don't let Nagle hold them back.
            stream
                .set_nodelay(true)
                .map_err(ProxyError::UpstreamFailed)?;
            let Some(tls) = &self.tls else {
                return Ok(UpstreamStream::Plain(stream));
            };
            match crate::tls::connect(tls.config.clone(), tls.name.clone(), stream).await {
                Ok(tls) => Ok(UpstreamStream::Tls(tls)),
                Err(e) => Err(ProxyError::UpstreamFailed(std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {server} failed: {e}"),
                ))),
            }
        };
        match monoio::time::timeout(self.connect_timeout, opened).await {
            Err(_elapsed) => Err(ProxyError::UpstreamTimeout),
            Ok(opened) => opened.map(|stream| (stream, server)),
        }
    }

    /// The newest live idle connection to `server`. Expired ones, and
    /// dead ones met on the way, are dropped.
    fn take_idle(&self, server: SocketAddr) -> Option<Upstream> {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        // Everything older than the first expired one sits further towards
        // the front: drop it all.
        if let Some(cut) = idle
            .iter()
            .rposition(|c| now.duration_since(c.since) >= self.idle_timeout)
        {
            idle.drain(..=cut);
        }
        while let Some(pos) = idle.iter().rposition(|c| c.server == server) {
            let mut c = idle.remove(pos)?;
            if c.stream.is_open() {
                return Some(Upstream {
                    stream: c.stream,
                    server: c.server,
                    reused: true,
                    fd: c.fd,
                });
            }
        }
        None
    }

    /// Returns a connection whose last response was read completely.
    pub fn put(&self, up: Upstream) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        if self.max_idle > 0 {
            idle.push_back(Idle {
                stream: up.stream,
                server: up.server,
                since: Instant::now(),
                fd: up.fd,
            });
        }
    }

    /// Closes the idle connection that has waited longest, giving its
    /// descriptor back to the budget; whether there was one.
    pub fn close_oldest_idle(&self) -> bool {
        // Never called while the pool itself holds the list.
        match self.idle.try_borrow_mut() {
            Ok(mut idle) => idle.pop_front().is_some(),
            Err(_) => false,
        }
    }

    /// Drops every idle connection (at shutdown).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// One request in flight on one server, from picking it to the end of the
/// exchange. Dropping it ends the request's count.
#[derive(Debug)]
pub struct Lease<'a> {
    pool: &'a Pool,
    i: usize,
    started: Instant,
}

impl Lease<'_> {
    /// The response head arrived: records latency, and a 5xx as a failure
    /// towards passive ejection.
    pub fn responded(&self, status: u16) {
        let stats = self.pool.board.stats(self.pool.worker, self.i);
        stats.latency.observe(self.started.elapsed());
        if status >= 500 {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            self.pool.board.note_failure(self.i);
        } else {
            self.pool.board.note_success(self.i);
        }
    }

    /// The exchange failed on the server's side (reset, timeout, garbage).
    pub fn failed(&self) {
        self.pool.count_error(self.i);
        self.pool.board.note_failure(self.i);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let o = &self.pool.outstanding[self.i];
        o.set(o.get().saturating_sub(1));
        let stats = self.pool.board.stats(self.pool.worker, self.i);
        stats.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether an I/O error on a reused connection means the registry had closed
/// it before our request arrived.
pub fn is_stale_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let cfg = UpstreamConfig {
            servers: (1..=n)
                .map(|p| SocketAddr::from(([127, 0, 0, 1], u16::try_from(p).expect("port"))))
                .collect(),
            ..UpstreamConfig::default()
        };
        Pool::new(&cfg, None, Arc::new(Board::new(&cfg, 1)), 0)
    }

    #[test]
    fn picks_least_outstanding_round_robin_on_ties() {
        let p = pool(3);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let a = p.lease(p.servers[0]);
        let b = p.lease(p.servers[1]);
        for _ in 0..5 {
            assert_eq!(p.pick(None), 2);
        }
        drop(a);
        let next: Vec<usize> = (0..4).map(|_| p.pick(None)).collect();
        assert!(next.iter().all(|&i| i == 0 || i == 2), "{next:?}");
        drop(b);
    }

    #[test]
    fn never_picks_a_down_server_while_another_is_up() {
        let p = pool(3);
        p.board.eject(1, "test");
        for _ in 0..30 {
            assert_ne!(p.pick(None), 1);
        }
        // Excluding the failed one moves a retry elsewhere.
        for _ in 0..30 {
            assert_eq!(p.pick(Some(0)), 2);
        }
    }

    #[test]
    fn all_down_falls_back_to_all() {
        let p = pool(2);
        p.board.eject(0, "test");
        p.board.eject(1, "test");
        let picks: Vec<usize> = (0..4).map(|_| p.pick(None)).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
        assert_eq!(p.pick(Some(0)), 1);
        let single = pool(1);
        assert_eq!(single.pick(Some(0)), 0);
    }

    #[test]
    fn untried_prefers_up_servers() {
        let p = pool(3);
        p.board.eject(1, "test");
        assert_eq!(p.pick_untried(&[true, false, false]), Some(2));
        assert_eq!(p.pick_untried(&[true, false, true]), Some(1));
        assert_eq!(p.pick_untried(&[true, true, true]), None);
    }

    #[test]
    fn lease_counts_requests_errors_and_outstanding() {
        let p = pool(2);
        {
            let l = p.lease(p.servers[1]);
            assert_eq!(p.board.report()[1].outstanding, 1);
            l.responded(503);
        }
        let r = &p.board.report()[1];
        assert_eq!((r.requests, r.errors, r.outstanding), (1, 1, 0));
    }
}
