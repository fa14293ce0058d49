//! The admin port: `GET /metrics` (Prometheus text) and `GET /healthz`, on
//! its own thread and its own small runtime, off the workers.
//!
//! A liveness probe must get its answer whatever other clients of the port
//! do, so:
//! - connections are served concurrently (one task each), up to
//!   [`MAX_ADMIN_CONNECTIONS`]; past that a new connection is closed at once
//!   rather than left waiting;
//! - each connection has one deadline for the whole exchange
//!   ([`ADMIN_REQUEST_DEADLINE`]), so a client trickling a byte at a time
//!   cannot hold a slot longer than that;
//! - the head goes through the main path's parser and limits
//!   (`http::head`: [`MAX_HEAD_BYTES`], URI and field-count limits), read
//!   into one buffer that starts at [`FIRST_READ_BYTES`] and grows to at
//!   most that size, so an endless line costs 32 KiB and an answer of 431,
//!   not memory, and an idle connection costs about 1 KiB.
//!
//! At most 256 × 32 KiB = 8 MiB of head buffers exist at any time. Someone
//! who can open 256 connections to the admin port can still keep probes
//! out for up to the deadline at a time: keep the port on a private
//! address, as the example config does.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::http::head::{parse_request, HeadError, Method, Parse, MAX_HEAD_BYTES};
use crate::metrics::Registry;

/// Connections served at once; more are closed on accept. Scrapers and
/// probes open one or two at a time.
pub const MAX_ADMIN_CONNECTIONS: usize = 256;
/// The head buffer's first size; it doubles as the head grows.
pub const FIRST_READ_BYTES: usize = 1024;
/// The whole exchange (head in, answer out) must fit in this.
pub const ADMIN_REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (EMFILE and the like) before the next, so a
/// descriptor shortage does not spin the thread.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the admin endpoints on `addr` from a thread of its own. Returns
/// the bound address (the config may ask for port 0).
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<SocketAddr> {
    // Bound here, so a bad address fails the start with its reason.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("regproxy-admin".into())
        .spawn(move || {
            // epoll is plenty for a few scrapes a minute.
            let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match runtime {
                Ok(mut rt) => rt.block_on(accept_loop(listener, registry)),
                Err(e) => tracing::error!(error = %e, "admin port: cannot start its runtime"),
            }
        })?;
    Ok(local)
}

async fn accept_loop(listener: std::net::TcpListener, registry: Registry) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin port: cannot register the listener");
            return;
        }
    };
    let registry = Rc::new(registry);
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if open.get() >= MAX_ADMIN_CONNECTIONS {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (registry, open) = (registry.clone(), open.clone());
        monoio::spawn(async move {
            match monoio::time::timeout(ADMIN_REQUEST_DEADLINE, answer(stream, &registry)).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "admin request failed"),
                Err(_) => tracing::debug!("admin request timed out"),
                Ok(Ok(())) => {}
            }
            open.set(open.get() - 1);
        });
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ_BYTES);
    let reply = loop {
        let len = buf.len();
        if len >= MAX_HEAD_BYTES {
            break Reply::error(431, "request head too large");
        }
        if len == buf.capacity() {
            buf.reserve_exact((len * 2).min(MAX_HEAD_BYTES) - len);
        }
        let cap = buf.capacity().min(MAX_HEAD_BYTES);
        let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
        buf = slice.into_inner();
        if res? == 0 {
            // Closed before a whole head: nothing to answer.
            return Ok(());
        }
        match parse_request(&buf) {
            Ok(Parse::Partial) => continue,
            Ok(Parse::Complete { head, .. }) => break route(&head.method, head.path(), registry),
            Err(e) => break Reply::from_head_error(&e),
        }
    };
    drop(buf);
    let (res, _) = stream.write_all(reply.into_bytes()).await;
    res.map(drop)
}

fn route(method: &Method, path: &str, registry: &Registry) -> Reply {
    let head_only = *method == Method::Head;
    if !matches!(method, Method::Get | Method::Head) {
        return Reply::error(405, "method not allowed");
    }
    let body = match path {
        "/metrics" => registry.render(),
        // Not ready while no registry server is healthy: a balancer should
        // send clients to an instance that can serve them.
        "/healthz" if !registry.health.any_up() => {
            return Reply::error(503, "no healthy upstream server")
        }
        "/healthz" => "ok\n".to_owned(),
        _ => return Reply::error(404, "not found"),
    };
    Reply {
        status: 200,
        body,
        head_only,
    }
}

/// An answer, always `Connection: close`.
struct Reply {
    status: u16,
    body: String,
    head_only: bool,
}

impl Reply {
    fn error(status: u16, why: &str) -> Reply {
        Reply {
            status,
            body: format!("{why}\n"),
            head_only: false,
        }
    }

    fn from_head_error(e: &HeadError) -> Reply {
        match e {
            HeadError::UriTooLong => Reply::error(414, "URI too long"),
            HeadError::HeadTooLarge => Reply::error(431, "request head too large"),
            HeadError::NotImplemented(_) => Reply::error(501, "not implemented"),
            HeadError::BadRequest(_) | HeadError::BadResponse(_) => {
                Reply::error(400, "bad request")
            }
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let reason = crate::http::reason::reason(self.status);
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}
