//! The registry side of one request: a connection, forwarding the head
//! and body, reading the response head, and telling the failure kinds
//! apart: a stale pooled connection may be retried once, on another
//! connection; anything after the registry saw the request may not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Conn, Ctx, Exchange};
use crate::admission::FdLease;
use crate::error::{chunk_error, ProxyError, Side};
use crate::http::head::{parse_response, Method, Parse, RequestBody, RequestHead, ResponseHead};
use crate::lingering::BodyState;
use crate::metrics::WorkerMetrics;
use crate::relay::{self, bufpool, Buffered, Encode, Framing, Io, RelayError, Timeouts, Timer};
use crate::upstream::pool::{is_stale_connection_error, Lease, Upstream};
use crate::upstream::stream::UpstreamStream;

/// How long a request waits, once, for the descriptors closed on EMFILE to
/// be released (io_uring closes them asynchronously) before it tries again.
const EMFILE_RETRY_WAIT: Duration = Duration::from_millis(5);

/// A registry connection whose answer's head has arrived.
pub(super) struct Answered<'p> {
    pub upstream: Buffered<UpstreamStream>,
    pub server: SocketAddr,
    pub response: ResponseHead,
    /// Counts the request as outstanding at `server` until dropped.
    pub lease: Lease<'p>,
    /// The connection's descriptor in the worker's budget.
    pub fd: FdLease,
    /// The registry stopped reading the request body before its end.
    pub body_unfinished: bool,
}

/// Ends a registry answer: its buffer back to the pool, and its
/// connection too when `clean` (the answer was read to its end and nothing
/// unasked-for follows it).
pub(super) fn give_back(ctx: &Ctx, answered: Answered<'_>, clean: bool) {
    let Answered {
        upstream,
        server,
        fd,
        lease,
        ..
    } = answered;
    let (stream, buf) = upstream.into_parts();
    bufpool::give(buf);
    if clean {
        ctx.pool.put(Upstream {
            stream,
            server,
            reused: true,
            fd,
        });
    }
    // The request is no longer outstanding at the server.
    drop(lease);
}

/// Sends the request (its head already in `conn.out`) and reads the
/// answer's head. A request with nothing to resend that is idempotent is
/// retried once, on another connection (another server when one is up),
/// when the first closed before any answer: the registry never acted on
/// it (a stale pooled connection, or a replica going away).
pub(super) async fn ask_registry<'c, S: Io>(
    ctx: &'c Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    body: RequestBody,
    ex: &mut Exchange,
) -> Result<Answered<'c>, ProxyError> {
    // Only a request with nothing to resend may be retried: the body has
    // been streamed, not kept.
    let retryable = head.method.is_idempotent() && body == RequestBody::None;
    let mut failed_server = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let up = connect(ctx, failed_server).await?;
        let lease = ctx.pool.lease(up.server);
        WorkerMetrics::inc(if up.reused {
            &ctx.m().upstream_reuses_total
        } else {
            &ctx.m().upstream_connects_total
        });
        let (server, reused, fd) = (up.server, up.reused, up.fd);
        let mut upstream = Buffered::with_buf(up.stream, bufpool::take());
        ex.upstream = Some(server);
        let sent = Instant::now();
        let failure = match send_and_read_head(ctx, conn, head, body, &mut upstream, ex).await {
            Ok((response, body_unfinished)) => {
                ex.ttfb = Some(sent.elapsed());
                lease.responded(response.status);
                return Ok(Answered {
                    upstream,
                    server,
                    response,
                    lease,
                    fd,
                    body_unfinished,
                });
            }
            Err(failure) => failure,
        };
        bufpool::give(upstream.into_parts().1);
        match failure {
            Attempt::Stale(e) if retryable && attempt == 1 => {
                tracing::debug!(error = %e, upstream = %server, reused, "connection closed before an answer; retrying");
                WorkerMetrics::inc(&ctx.m().upstream_retries_total);
                if !reused {
                    lease.failed();
                }
                failed_server = Some(server);
            }
            Attempt::Stale(e) => {
                WorkerMetrics::inc(&ctx.m().upstream_errors_total);
                lease.failed();
                return Err(ProxyError::UpstreamFailed(e));
            }
            Attempt::Failed(e) | Attempt::BodyRefused(e) => {
                if e.side() == Side::Upstream {
                    WorkerMetrics::inc(&ctx.m().upstream_errors_total);
                    lease.failed();
                }
                return Err(e);
            }
        }
    }
}

/// One attempt: the request out, the answer's head in; with whether the
/// registry stopped reading the body first.
async fn send_and_read_head<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    body: RequestBody,
    upstream: &mut Buffered<UpstreamStream>,
    ex: &mut Exchange,
) -> Result<(ResponseHead, bool), Attempt> {
    let cfg = &ctx.config;
    let to_upstream = Timeouts {
        src: cfg.client.body_timeout,
        dst: cfg.upstream.read_timeout,
    };
    let sending = send_request(ctx, conn, body, &mut upstream.io, to_upstream, ex).await;
    match sending {
        // BodyRefused: the registry stopped reading the body. It has
        // usually answered already (an error, or a POST that ignores its
        // body): relay that answer rather than a 502; the unread rest of
        // the client's body means the client connection closes after it.
        Ok(()) | Err(Attempt::BodyRefused(_)) => {
            let answer = read_response_head(
                upstream,
                &head.method,
                &mut conn.timer,
                cfg.upstream.read_timeout,
            )
            .await;
            match sending {
                Err(Attempt::BodyRefused(e)) => {
                    answer.map(|r| (r, true)).map_err(|_| Attempt::Failed(e))
                }
                _ => answer.map(|r| (r, false)),
            }
        }
        Err(e) => Err(e),
    }
}

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
                // Boxed: a timer entry is cache-padded, and this rare
                // wait would otherwise size every request's future.
                Box::pin(monoio::time::sleep(EMFILE_RETRY_WAIT)).await;
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
    up: &mut UpstreamStream,
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
    // Boxed: a relay's state (about 2.8 KiB) would otherwise size every
    // request's boxed future, though most requests carry no body.
    let moved = Box::pin(relay::relay_body(
        &mut conn.client,
        up,
        body,
        Encode::Chunked,
        t,
        &mut conn.timer,
        &mut conn.out,
    ))
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
    reader: &mut Buffered<UpstreamStream>,
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
