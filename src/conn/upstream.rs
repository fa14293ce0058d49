//! The registry side of one request: forwarding the head and body on one
//! connection attempt, reading the response head, and telling the failure
//! kinds apart (a stale pooled connection may be retried; anything after
//! the registry saw the request may not).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::{Conn, Ctx, Exchange};
use crate::error::{chunk_error, ProxyError, Side};
use crate::http::head::{parse_response, Method, Parse, RequestBody, ResponseHead};
use crate::lingering::BodyState;
use crate::metrics::WorkerMetrics;
use crate::relay::{self, Buffered, Encode, Framing, Io, RelayError, Timeouts, Timer};
use crate::upstream::pool::{is_stale_connection_error, Upstream};

/// How long a request waits, once, for the descriptors closed on EMFILE to
/// be released (io_uring closes them asynchronously) before it tries again.
const EMFILE_RETRY_WAIT: Duration = Duration::from_millis(5);

/// How one attempt at the registry failed.
pub(super) enum Attempt {
    /// The connection was dead before the registry saw the request.
    Stale(std::io::Error),
    /// Writing the request body to the registry failed; it may have
    /// answered early.
    BodyRefused(ProxyError),
    Failed(ProxyError),
}

/// A registry connection for one attempt: a pooled one, or a new one with
/// a descriptor from the budget, closing idle holders or shedding a
/// waiting connection for it (`Admission::room`). A retry (`failed`) goes
/// to another server when one is up. No descriptor to be had is a 503
/// with `Retry-After`, counted, never a 502: the registry is not at fault.
pub(super) async fn connect(ctx: &Ctx, failed: Option<SocketAddr>) -> Result<Upstream, ProxyError> {
    let m = ctx.m();
    for second in [false, true] {
        let room = || {
            let (fd, shed) = ctx.admission.room()?;
            if shed {
                WorkerMetrics::inc(&m.connections_shed_total);
            }
            Some(fd)
        };
        let got = match failed {
            None => ctx.pool.get(room).await,
            Some(s) => ctx.pool.connect_other(s, room).await,
        };
        match got {
            Ok(up) => return Ok(up),
            // The kernel is out although the budget had room: close what
            // can be closed, and try once more when it is gone.
            Err(ProxyError::UpstreamFailed(e)) if crate::sys::is_descriptor_exhaustion(&e) => {
                WorkerMetrics::inc(&m.descriptor_exhausted_total);
                if second {
                    break;
                }
                let idle = ctx.admission.reclaim_idle();
                let shed = ctx.admission.shed_one();
                if shed {
                    WorkerMetrics::inc(&m.connections_shed_total);
                }
                if idle == 0 && !shed {
                    break;
                }
                monoio::time::sleep(EMFILE_RETRY_WAIT).await;
            }
            Err(ProxyError::OutOfDescriptors) => break,
            Err(e) => {
                WorkerMetrics::inc(&m.upstream_errors_total);
                return Err(e);
            }
        }
    }
    WorkerMetrics::inc(&m.descriptor_refusals_total);
    Err(ProxyError::OutOfDescriptors)
}

/// Forwards the head and the request body (framed as `body`).
pub(super) async fn send_request<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    body: RequestBody,
    up: &mut TcpStream,
    t: Timeouts,
    ex: &mut Exchange,
) -> Result<(), Attempt> {
    let (res, buf) =
        relay::write_all(up, std::mem::take(&mut conn.out), &mut conn.timer, t.dst).await;
    conn.out = buf;
    if let Err(e) = res {
        return Err(if is_stale_connection_error(&e) {
            Attempt::Stale(e)
        } else {
            Attempt::Failed(upstream_io(e))
        });
    }
    ex.forwarded = true;
    let body = match body {
        RequestBody::None => return Ok(()),
        RequestBody::Length(n) => Framing::Length(n),
        RequestBody::Chunked => Framing::Chunked,
    };
    let moved = relay::relay_body(
        &mut conn.client,
        up,
        body,
        Encode::Chunked,
        t,
        &mut conn.timer,
        &mut conn.out,
    )
    .await;
    let moved = moved.map_err(|e| match e {
        RelayError::Dst(io) => {
            ex.body = BodyState::Abandoned;
            Attempt::BodyRefused(upstream_io(io))
        }
        other => {
            ex.body = BodyState::Broken;
            Attempt::Failed(relay_error(other, Side::Client))
        }
    })?;
    ex.body = BodyState::Done;
    ex.bytes_in = moved.body;
    WorkerMetrics::add(&ctx.m().request_body_bytes_total, moved.body);
    ctx.m().count_moved(&moved);
    Ok(())
}

/// Reads the registry's response head; `timeout` bounds the whole head,
/// not each read, so a registry trickling a byte at a time cannot hold the
/// request past it.
pub(super) async fn read_response_head(
    reader: &mut Buffered<TcpStream>,
    method: &Method,
    timer: &mut Timer,
    timeout: Duration,
) -> Result<ResponseHead, Attempt> {
    let deadline = Instant::now() + timeout;
    let mut received_any = false;
    loop {
        if !reader.unconsumed().is_empty() {
            match parse_response(reader.unconsumed(), method) {
                Ok(Parse::Complete { head, len }) => {
                    reader.consume(len);
                    // RFC 9110 §15.2: interim responses are not forwarded; we
                    // sent no Expect and no Upgrade, so none is meant for the
                    // client.
                    if (100..200).contains(&head.status) {
                        if head.status == 101 {
                            return Err(Attempt::Failed(ProxyError::UpstreamProtocol(
                                "unexpected protocol switch",
                            )));
                        }
                        continue;
                    }
                    return Ok(head);
                }
                Ok(Parse::Partial) => {}
                Err(e) => return Err(Attempt::Failed(e.into())),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Attempt::Failed(ProxyError::UpstreamTimeout));
        }
        match reader.fill(timer, left).await {
            Ok(0) if !received_any => {
                return Err(Attempt::Stale(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => {
                return Err(Attempt::Failed(ProxyError::UpstreamProtocol(
                    "connection closed inside response head",
                )))
            }
            Ok(_) => received_any = true,
            Err(e) if !received_any && is_stale_connection_error(&e) => {
                return Err(Attempt::Stale(e))
            }
            Err(e) => return Err(Attempt::Failed(upstream_io(e))),
        }
    }
}

pub(super) fn upstream_io(e: std::io::Error) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamFailed(e)
    }
}

/// Maps a relay failure to the side that caused it. `src` is who was sending.
pub(super) fn relay_error(e: RelayError, src: Side) -> ProxyError {
    let client_io = ProxyError::ClientIo;
    match (e, src) {
        (RelayError::Framing(c), side) => chunk_error(side, c),
        (RelayError::Src(e), Side::Upstream) | (RelayError::Dst(e), Side::Client) => upstream_io(e),
        (RelayError::Src(e), _) | (RelayError::Dst(e), _) => client_io(e),
    }
}
