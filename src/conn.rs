//! The per-connection, per-request driver. One request, top to bottom:
//!
//! read head → route → authenticate → authorize → pick upstream →
//! forward head → relay request body → relay response → log.
//!
//! Each step is a call into a pure module (`http`, `auth`, `policy`) or the
//! relay; this file only sequences them and decides what the client is told
//! when one fails.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLog, Entry};
use crate::auth::acl::{Decision, Identity};
use crate::auth::basic::{self, Credentials};
use crate::auth::cache::{AuthFailure, LocalVerifier};
use crate::config::Config;
use crate::error::{chunk_error, ProxyError, Side};
use crate::http::head::{
    parse_request, parse_response, Method, Parse, RequestBody, RequestHead, ResponseBody,
    ResponseHead, Version,
};
use crate::http::write::{self, ClientFraming, Forwarding, CONTINUE_100};
use crate::live::AuthState;
use crate::metrics::WorkerMetrics;
use crate::policy::{self, Route};
use crate::relay::{
    self, Buffered, Encode, Framing, Io, Moved, RelayError, Timeouts, READ_BUF_BYTES,
};
use crate::reload::Snapshot;
use crate::route;
use crate::shutdown::Drain;
use crate::upstream::pool::{is_stale_connection_error, Pool, Upstream};
use monoio::net::TcpStream;

/// Everything a worker's requests share. One per worker, never across cores.
pub struct Ctx {
    pub config: Arc<Config>,
    pub verifier: LocalVerifier,
    /// Users and policy; a reload swaps them between requests.
    pub auth: Snapshot<AuthState>,
    pub pool: Pool,
    pub metrics: Arc<Vec<WorkerMetrics>>,
    pub worker: usize,
    pub log: AccessLog,
    pub drain: Rc<Drain>,
}

impl Ctx {
    fn m(&self) -> &WorkerMetrics {
        &self.metrics[self.worker]
    }
}

/// Per-connection state that outlives one request: buffers are reused.
struct Conn<S> {
    client: Buffered<S>,
    peer: SocketAddr,
    tls: bool,
    /// Spare read buffer for the upstream side of each exchange.
    upstream_buf: Vec<u8>,
    /// Scratch for heads and re-encoded chunks.
    out: Vec<u8>,
}

/// What the access log needs to know about one request.
#[derive(Default)]
struct Exchange {
    user: Option<String>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    /// Response bytes already went to the client: an error can only close.
    responded: bool,
    /// The client may send another request on this connection.
    keep_alive: bool,
}

/// Serves one client connection until it closes, fails, or the worker drains.
pub async fn serve<S: Io>(ctx: Rc<Ctx>, io: S, peer: SocketAddr, tls: bool) {
    let mut conn = Conn {
        client: Buffered::new(io),
        peer,
        tls,
        upstream_buf: Vec::new(),
        out: Vec::with_capacity(4096),
    };
    let mut first = true;
    loop {
        let head = match read_head(&ctx, &mut conn, first).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                // A bad head: answer, log, and close (RFC 9112 §11.2).
                let started = Instant::now();
                let mut ex = Exchange::default();
                fail(&ctx, &mut conn, &mut ex, &e, false).await;
                ctx.log.record(&Entry {
                    client: peer.ip(),
                    user: None,
                    method: "-",
                    target: "-",
                    http10: false,
                    status: ex.status,
                    bytes_in: 0,
                    bytes_out: 0,
                    duration: started.elapsed(),
                    user_agent: None,
                    error: Some(&e.to_string()),
                });
                break;
            }
        };
        first = false;
        WorkerMetrics::inc(&ctx.m().requests_total);
        let started = Instant::now();
        let mut ex = Exchange::default();
        let result = exchange(&ctx, &mut conn, &head, &mut ex).await;
        let error = match &result {
            Ok(()) => None,
            Err(e) => {
                // The connection survives a refusal only if no request body
                // is left unread: it would be parsed as the next head.
                ex.keep_alive = !e.closes_connection()
                    && head.keep_alive
                    && head.version == Version::Http11
                    && matches!(head.body, RequestBody::None | RequestBody::Length(0));
                fail(&ctx, &mut conn, &mut ex, e, head.method == Method::Head).await;
                Some(e.to_string())
            }
        };
        ctx.m().count_status(ex.status);
        ctx.log.record(&Entry {
            client: peer.ip(),
            user: ex.user.as_deref(),
            method: head.method.as_str(),
            target: head.target(),
            http10: head.version == Version::Http10,
            status: ex.status,
            bytes_in: ex.bytes_in,
            bytes_out: ex.bytes_out,
            duration: started.elapsed(),
            user_agent: head.header("user-agent"),
            error: error.as_deref(),
        });
        if !ex.keep_alive || ctx.drain.is_draining() {
            break;
        }
    }
    let _ = monoio::io::AsyncWriteRent::shutdown(&mut conn.client.io).await;
}

/// Reads the next request head. `Ok(None)`: the client closed cleanly
/// between requests, idled out, or the worker is draining.
async fn read_head<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    first: bool,
) -> Result<Option<RequestHead>, ProxyError> {
    let cfg = &ctx.config.client;
    // Between requests a connection may idle (nginx: keepalive_timeout);
    // once a head has begun it must arrive whole within the header timeout
    // (nginx: client_header_timeout), which also bounds the first request.
    let idle_timeout = if first {
        cfg.header_timeout
    } else {
        cfg.idle_timeout
    };
    let mut deadline: Option<Instant> = None;
    loop {
        let idle = conn.client.unconsumed().is_empty();
        if !idle {
            if let Parse::Complete { head, len } = parse_request(conn.client.unconsumed())? {
                conn.client.consume(len);
                return Ok(Some(head));
            }
        }
        let timeout = match deadline {
            None if idle => idle_timeout,
            None => {
                deadline = Some(Instant::now() + cfg.header_timeout);
                cfg.header_timeout
            }
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        let got = if idle {
            // Only an idle connection is closed by draining; a head in
            // progress is read and answered.
            let drain = ctx.drain.wait();
            monoio::select! {
                _ = drain => return Ok(None),
                r = conn.client.fill(timeout) => r,
            }
        } else {
            conn.client.fill(timeout).await
        };
        match got {
            Ok(0) if idle => return Ok(None),
            Ok(0) => {
                return Err(ProxyError::BadRequest(
                    "connection closed inside request head",
                ))
            }
            Ok(_) => {}
            Err(e) if idle && e.kind() == std::io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => return Err(ProxyError::ClientIo(e)),
        }
        if deadline.is_none() {
            deadline = Some(Instant::now() + cfg.header_timeout);
        }
    }
}

/// One request, after its head was read: the pipeline proper.
async fn exchange<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    // Route: only the registry API is proxied (the recipe's `location /v2/`).
    match policy::route(head.path()) {
        Route::Registry => {}
        Route::NotFound => return Err(ProxyError::NotFound),
        Route::BadPath => return Err(ProxyError::BadRequest("invalid request path")),
    }
    // The recipe refuses pre-1.6 docker clients before authenticating.
    if head
        .header("user-agent")
        .is_some_and(policy::is_blocked_user_agent)
    {
        return Err(ProxyError::NotFound);
    }

    // Which repository and action, by the registry's own route grammar.
    // A path the registry would read differently never reaches the rules.
    let target = route::classify(
        head.method.as_str(),
        head.path(),
        head.query(),
        head.header("content-type"),
    )?;

    // One snapshot decides the whole request, even if a reload lands
    // while it waits for a hash.
    let auth = ctx.auth.get();

    // Authenticate: credentials, if sent, must be right whatever the rules
    // would let an anonymous client do.
    let creds = authenticate(ctx, &auth, head, conn.peer.ip()).await?;
    let identity = match &creds {
        Some(c) => Identity::User(&c.user),
        None => Identity::Anonymous,
    };
    ex.user = creds.as_ref().map(|c| c.user.clone());

    // Authorize.
    match auth.acl.decide(identity, &auth.groups, &target) {
        Decision::Allow => {}
        Decision::NeedAuth => {
            WorkerMetrics::inc(&ctx.m().auth_failures_total);
            return Err(ProxyError::Unauthorized);
        }
        Decision::Deny => {
            WorkerMetrics::inc(&ctx.m().denied_total);
            return Err(ProxyError::Denied);
        }
    }
    drop(creds);

    // RFC 9110 §10.1.1: the client waits for our go-ahead before uploading;
    // it comes only now, after the request was authorized.
    if head.expect_continue && head.body != RequestBody::None {
        let (res, buf) = relay::write_all(
            &mut conn.client.io,
            CONTINUE_100.to_vec(),
            ctx.config.client.body_timeout,
        )
        .await;
        drop(buf);
        res.map_err(ProxyError::ClientIo)?;
    }

    forward(ctx, conn, head, ex).await
}

/// The verified credentials of the request, or `None` when it sent none
/// (skopeo's empty `Basic Og==` included): anonymous, for the rules to judge.
async fn authenticate(
    ctx: &Ctx,
    auth: &AuthState,
    head: &RequestHead,
    client: std::net::IpAddr,
) -> Result<Option<Credentials>, ProxyError> {
    let refused = |e: ProxyError| {
        WorkerMetrics::inc(&ctx.m().auth_failures_total);
        e
    };
    let Some(value) = head.header("authorization") else {
        return Ok(None);
    };
    if basic::is_empty_credentials(value) {
        return Ok(None);
    }
    let creds = basic::decode(value).map_err(|e| refused(e.into()))?;
    match ctx.verifier.authenticate(&auth.users, &creds, client).await {
        Ok(()) => Ok(Some(creds)),
        Err(AuthFailure::Invalid) => Err(refused(ProxyError::Unauthorized)),
        Err(AuthFailure::Busy) => Err(ProxyError::AuthBusy),
        Err(AuthFailure::Limited(wait)) => Err(refused(ProxyError::TooManyRequests(wait.secs()))),
    }
}

/// Pick upstream → forward head → relay request body → relay response.
async fn forward<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let cfg = &ctx.config;
    let fwd = Forwarding {
        client_ip: conn.peer.ip(),
        tls: conn.tls,
        trust_forwarded_headers: cfg.forwarding.trust_forwarded_headers,
        forward_authorization: cfg.forwarding.forward_authorization,
    };
    conn.out.clear();
    write::request_head(head, &fwd, &mut conn.out);
    let to_upstream = Timeouts {
        src: cfg.client.body_timeout,
        dst: cfg.upstream.read_timeout,
    };
    // Only a request with nothing to resend may be retried (and only if it
    // is idempotent): the body has been streamed, not kept.
    let retryable = head.method.is_idempotent() && head.body == RequestBody::None;

    let mut attempt = 0;
    let mut body_unfinished = false;
    let (mut upstream, server, response) = loop {
        attempt += 1;
        let up = if attempt == 1 {
            ctx.pool.get().await
        } else {
            ctx.pool.connect().await
        }
        .inspect_err(|_| WorkerMetrics::inc(&ctx.m().upstream_errors_total))?;
        WorkerMetrics::inc(if up.reused {
            &ctx.m().upstream_reuses_total
        } else {
            &ctx.m().upstream_connects_total
        });
        let (server, reused) = (up.server, up.reused);
        let mut upstream = Buffered::with_buf(up.stream, take_buf(&mut conn.upstream_buf));

        let result = match send_request(ctx, conn, head, &mut upstream.io, to_upstream, ex).await {
            Ok(()) => {
                read_response_head(&mut upstream, &head.method, cfg.upstream.read_timeout).await
            }
            // The registry stopped reading the body: it has usually answered
            // already (an error, or a POST that ignores its body). Relay that
            // answer rather than a 502; the unread rest of the client's body
            // means the client connection closes after it.
            Err(Attempt::BodyRefused(e)) => {
                body_unfinished = true;
                read_response_head(&mut upstream, &head.method, cfg.upstream.read_timeout)
                    .await
                    .map_err(|_| Attempt::Failed(e))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) => break (upstream, server, resp),
            Err(failure) => {
                conn.upstream_buf = upstream.into_parts().1;
                match failure {
                    Attempt::Stale(e) if reused && retryable && attempt == 1 => {
                        tracing::debug!(error = %e, upstream = %server, "pooled connection was stale; retrying");
                        WorkerMetrics::inc(&ctx.m().upstream_retries_total);
                    }
                    Attempt::Stale(e) => {
                        WorkerMetrics::inc(&ctx.m().upstream_errors_total);
                        return Err(ProxyError::UpstreamFailed(e));
                    }
                    Attempt::Failed(e) | Attempt::BodyRefused(e) => {
                        if e.side() == Side::Upstream {
                            WorkerMetrics::inc(&ctx.m().upstream_errors_total);
                        }
                        return Err(e);
                    }
                }
            }
        }
    };

    // The response head, rewritten for the client.
    let keep_alive = head.keep_alive
        && head.version == Version::Http11
        && !body_unfinished
        && !ctx.drain.is_draining();
    let framing = write::client_framing(response.body, head.version);
    conn.out.clear();
    write::response_head(&response, framing, keep_alive, &mut conn.out);
    ex.status = response.status;
    ex.responded = true;
    let client_timeout = cfg.client.body_timeout;
    let (res, buf) = relay::write_all(
        &mut conn.client.io,
        std::mem::take(&mut conn.out),
        client_timeout,
    )
    .await;
    conn.out = buf;
    res.map_err(ProxyError::ClientIo)?;

    // The response body.
    let to_client = Timeouts {
        src: cfg.upstream.read_timeout,
        dst: client_timeout,
    };
    let body = match response.body {
        ResponseBody::None => None,
        ResponseBody::Length(n) => Some(Framing::Length(n)),
        ResponseBody::Chunked => Some(Framing::Chunked),
        ResponseBody::CloseDelimited => Some(Framing::Close),
    };
    let moved = match body {
        None => Ok(Moved::default()),
        Some(body) => {
            relay::relay_body(
                &mut upstream,
                &mut conn.client.io,
                body,
                encoding(framing),
                to_client,
                &mut conn.out,
            )
            .await
        }
    };
    let moved = moved.map_err(|e| relay_error(e, Side::Upstream))?;
    ex.bytes_out = moved.body;
    WorkerMetrics::add(&ctx.m().response_body_bytes_total, moved.body);
    WorkerMetrics::add(&ctx.m().spliced_bytes_total, moved.spliced);

    // Give the registry connection back only if its response ended cleanly
    // and nothing unasked-for follows it.
    let clean = response.keep_alive
        && !body_unfinished
        && response.body != ResponseBody::CloseDelimited
        && upstream.unconsumed().is_empty();
    let (stream, buf) = upstream.into_parts();
    conn.upstream_buf = buf;
    if clean {
        ctx.pool.put(Upstream {
            stream,
            server,
            reused: true,
        });
    }
    ex.keep_alive = keep_alive && framing != ClientFraming::Close;
    Ok(())
}

fn encoding(f: ClientFraming) -> Encode {
    if f == ClientFraming::Close {
        Encode::Raw
    } else {
        Encode::Chunked
    }
}

/// How one attempt at the registry failed.
enum Attempt {
    /// The connection was dead before the registry saw the request.
    Stale(std::io::Error),
    /// Writing the request body to the registry failed; it may have
    /// answered early.
    BodyRefused(ProxyError),
    Failed(ProxyError),
}

/// Forwards the head and the request body.
async fn send_request<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    up: &mut TcpStream,
    t: Timeouts,
    ex: &mut Exchange,
) -> Result<(), Attempt> {
    let (res, buf) = relay::write_all(up, std::mem::take(&mut conn.out), t.dst).await;
    conn.out = buf;
    if let Err(e) = res {
        return Err(if is_stale_connection_error(&e) {
            Attempt::Stale(e)
        } else {
            Attempt::Failed(upstream_io(e))
        });
    }
    let body = match head.body {
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
        &mut conn.out,
    )
    .await;
    let moved = moved.map_err(|e| match e {
        RelayError::Dst(io) => Attempt::BodyRefused(upstream_io(io)),
        other => Attempt::Failed(relay_error(other, Side::Client)),
    })?;
    ex.bytes_in = moved.body;
    WorkerMetrics::add(&ctx.m().request_body_bytes_total, moved.body);
    WorkerMetrics::add(&ctx.m().spliced_bytes_total, moved.spliced);
    Ok(())
}

async fn read_response_head(
    reader: &mut Buffered<TcpStream>,
    method: &Method,
    timeout: Duration,
) -> Result<ResponseHead, Attempt> {
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
        match reader.fill(timeout).await {
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

/// The connection's spare upstream buffer, allocated on first use.
fn take_buf(spare: &mut Vec<u8>) -> Vec<u8> {
    let mut buf = std::mem::take(spare);
    buf.clear();
    if buf.capacity() < READ_BUF_BYTES {
        buf = Vec::with_capacity(READ_BUF_BYTES);
    }
    buf
}

fn upstream_io(e: std::io::Error) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamFailed(e)
    }
}

/// Maps a relay failure to the side that caused it. `src` is who was sending.
fn relay_error(e: RelayError, src: Side) -> ProxyError {
    let client_io = ProxyError::ClientIo;
    match (e, src) {
        (RelayError::Framing(c), side) => chunk_error(side, c),
        (RelayError::Src(e), Side::Upstream) | (RelayError::Dst(e), Side::Client) => upstream_io(e),
        (RelayError::Src(e), _) | (RelayError::Dst(e), _) => client_io(e),
    }
}

/// Answers the client with `err` if nothing was sent yet; records the
/// status. The connection stays open only if `ex.keep_alive` already says so.
async fn fail<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    ex: &mut Exchange,
    err: &ProxyError,
    head_only: bool,
) {
    if ex.responded {
        // Mid-body: the only honest signal left is closing the connection.
        ex.keep_alive = false;
        return;
    }
    let keep_alive = ex.keep_alive && !ctx.drain.is_draining();
    ex.keep_alive = keep_alive;
    ex.status = err.status();
    if matches!(err, ProxyError::ClientIo(_)) {
        return;
    }
    if err.side() == Side::Upstream {
        tracing::warn!(error = %err, client = %conn.peer, "upstream failure");
    }
    conn.out.clear();
    write::error_response(
        err,
        &ctx.config.auth.realm,
        head_only,
        keep_alive,
        &mut conn.out,
    );
    let (res, buf) = relay::write_all(
        &mut conn.client.io,
        std::mem::take(&mut conn.out),
        ctx.config.client.body_timeout,
    )
    .await;
    conn.out = buf;
    if res.is_err() {
        ex.keep_alive = false;
    }
}
