//! A worker's keep-alive connections to the registry.
//!
//! Each worker owns its pool outright (no lock, no sharing): requests take the
//! most recently returned idle connection, since it is the least likely to
//! have been closed by the registry's idle timer, and give it back once a
//! response has been read to its end.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::config::UpstreamConfig;
use crate::error::ProxyError;

/// A connection to one registry server.
#[derive(Debug)]
pub struct Upstream {
    pub stream: TcpStream,
    pub server: SocketAddr,
    /// It came from the idle pool: the registry may have closed it meanwhile,
    /// which makes a failure on first use retryable.
    pub reused: bool,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    server: SocketAddr,
    since: Instant,
}

#[derive(Debug)]
pub struct Pool {
    servers: Vec<SocketAddr>,
    next: Cell<usize>,
    idle: RefCell<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(cfg: &UpstreamConfig) -> Pool {
        Pool {
            servers: cfg.servers.clone(),
            next: Cell::new(0),
            idle: RefCell::new(VecDeque::new()),
            max_idle: cfg.max_idle_per_worker,
            idle_timeout: cfg.idle_timeout,
            connect_timeout: cfg.connect_timeout,
        }
    }

    /// An idle connection if there is a live one, else a new connection to
    /// the next server in round-robin order.
    pub async fn get(&self) -> Result<Upstream, ProxyError> {
        if let Some(up) = self.take_idle() {
            return Ok(up);
        }
        self.connect().await
    }

    /// A fresh connection, bypassing the idle pool (used for the retry after
    /// a stale pooled connection failed).
    pub async fn connect(&self) -> Result<Upstream, ProxyError> {
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        let server = self.servers[i % self.servers.len()];
        match monoio::time::timeout(self.connect_timeout, TcpStream::connect_addr(server)).await {
            Err(_elapsed) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => Err(ProxyError::UpstreamFailed(e)),
            Ok(Ok(stream)) => {
                // Heads are small writes; don't let Nagle hold them back.
                stream
                    .set_nodelay(true)
                    .map_err(ProxyError::UpstreamFailed)?;
                Ok(Upstream {
                    stream,
                    server,
                    reused: false,
                })
            }
        }
    }

    fn take_idle(&self) -> Option<Upstream> {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        while let Some(c) = idle.pop_back() {
            if now.duration_since(c.since) >= self.idle_timeout {
                // Everything older sits further towards the front: drop it all.
                idle.clear();
                return None;
            }
            if is_open(&c.stream) {
                return Some(Upstream {
                    stream: c.stream,
                    server: c.server,
                    reused: true,
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
            });
        }
    }

    /// Drops every idle connection (at shutdown).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// Whether a pooled connection is still usable: the registry has neither
/// closed it nor sent anything unsolicited. One non-blocking peek, far
/// cheaper than a failed request.
fn is_open(stream: &TcpStream) -> bool {
    use nix::errno::Errno;
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
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
