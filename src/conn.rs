//! The per-connection, per-request driver. One request, top to bottom:
//!
//! read head → route → authenticate → authorize → pick upstream →
//! forward head → relay request body → relay response → log and count
//! (`conn/record.rs`) → (discard or linger over an unread body).
//!
//! Each step is a call into a pure module (`http`, `auth`, `policy`) or the
//! relay; this file only sequences them and decides what the client is told
//! when one fails.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::AccessLog;
use crate::admission::{Admission, Slot};
use crate::auth::bearer::TokenCache;
use crate::auth::cache::LocalVerifier;
use crate::cache::Cache;
use crate::client_addr;
use crate::config::Config;
use crate::error::{chunk_error, ProxyError, Side};
use crate::http::head::{
    parse_request, Method, Parse, RequestBody, RequestHead, ResponseBody, ResponseHead, Version,
};
use crate::http::write::{self, ClientFraming, Forwarding, CONTINUE_100};
use crate::lingering::{self, BodyState, DiscardError, Plan};
use crate::live::AuthState;
use crate::metrics::top::TopTable;
use crate::metrics::WorkerMetrics;
use crate::policy::{self, Route};
use crate::relay::{self, Buffered, Encode, Framing, Io, Moved, Timeouts, Timer};
use crate::reload::Snapshot;
use crate::request_id::Generator;
use crate::route::{self, Target};
use crate::shutdown::Drain;
use crate::upstream::pool::Pool;
use regproxy_core::cache::cacheable::cacheable;
use regproxy_core::cache::confirm::Confirmations;

mod authn;
mod cached;
pub mod proxy_header;
mod record;
mod token;
mod upstream;

use record::Finished;
use upstream::{relay_error, Answered};

/// Everything a worker's requests share. One per worker, never across cores.
pub struct Ctx {
    pub config: Arc<Config>,
    pub verifier: LocalVerifier,
    /// Bearer and identity tokens this worker verified (`auth::bearer`).
    pub tokens: TokenCache,
    /// Users and policy; a reload swaps them between requests.
    pub auth: Snapshot<AuthState>,
    pub pool: Pool,
    /// The worker's admission: its descriptor budget, and the waiting
    /// connections a request may shed for a registry connection.
    pub admission: Rc<Admission>,
    pub metrics: Arc<Vec<WorkerMetrics>>,
    pub worker: usize,
    pub log: AccessLog,
    pub drain: Rc<Drain>,
    /// Request ids for requests that bring no trusted one.
    pub ids: Generator,
    /// This worker's busiest repositories, when `[admin] top_repositories`
    /// asks; the worker publishes it on its flush tick.
    pub top: Option<RefCell<TopTable>>,
    /// The edge cache, when `[cache]` is set and its folder usable.
    pub cache: Option<Arc<Cache>>,
    /// When the registry last confirmed a repository holds a digest, for
    /// the cache's hits (`conn/cached.rs`); this worker's own.
    pub confirmations: RefCell<Confirmations>,
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
    /// The negotiated TLS version, for the access log.
    tls_version: Option<&'static str>,
    /// Scratch for heads and re-encoded chunks.
    out: Vec<u8>,
    /// Bounds every timed wait of the connection's requests, on either side.
    timer: Timer,
}

impl<S: Io> Conn<S> {
    /// Between requests a connection keeps only small buffers: tens of
    /// thousands of idle keep-alive connections must not hold 64 KiB each.
    fn idle(&mut self) {
        self.client.release();
        if self.out.capacity() > IDLE_SCRATCH_BYTES {
            self.out = Vec::new();
        }
    }
}

/// Scratch kept between requests; a larger one (a big head, re-encoded
/// chunks) is freed and allocated again by the next request that needs it.
const IDLE_SCRATCH_BYTES: usize = 1024;

/// What the access log and the connection's fate need to know about one
/// request.
struct Exchange {
    user: Option<String>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    /// Response bytes already went to the client: an error can only close.
    responded: bool,
    /// The client may send another request on this connection.
    keep_alive: bool,
    /// How far the request body was read.
    body: BodyState,
    /// `100 Continue` went out: the client was told to send its body.
    continued: bool,
    /// The head went to the registry: what it did is no longer ours alone.
    forwarded: bool,
    request_id: String,
    /// The registry server picked, and its time to a response head.
    upstream: Option<SocketAddr>,
    ttfb: Option<Duration>,
    /// What the edge cache did (`cached::outcome`); `None`: not cacheable,
    /// or no cache.
    cache: Option<&'static str>,
}

impl Exchange {
    fn new(body: RequestBody, request_id: String) -> Self {
        Exchange {
            user: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            responded: false,
            keep_alive: false,
            body: match body {
                RequestBody::None | RequestBody::Length(0) => BodyState::Done,
                RequestBody::Length(_) | RequestBody::Chunked => BodyState::Unread,
            },
            continued: false,
            forwarded: false,
            request_id,
            upstream: None,
            ttfb: None,
            cache: None,
        }
    }
}

/// Serves one client connection until it closes, fails, or the worker drains.
///
/// `slot` is the connection's standing with the worker's admission: busy
/// while a request is in flight, waiting (sheddable) between requests.
pub async fn serve<S: Io>(ctx: Rc<Ctx>, io: S, peer: SocketAddr, tls: bool, slot: Rc<Slot>) {
    let mut conn = Conn {
        tls_version: io.tls_version(),
        client: Buffered::new(io),
        peer,
        tls,
        out: Vec::new(),
        timer: Timer::new(),
    };
    let mut first = true;
    let end = loop {
        let head = match read_head(&ctx, &mut conn, first).await {
            Ok(Some(head)) => head,
            Ok(None) => break End::Close,
            Err(e) => {
                // A bad head: answer, log, and close (RFC 9112 §11.2).
                Box::pin(bad_head(&ctx, &mut conn, &e)).await;
                break End::Close;
            }
        };
        first = false;
        slot.busy();
        // Boxed, like every step but read_head: their state exists only
        // while a request is in flight, so the task of a connection that
        // waits for a head stays small (`admission`).
        if let Some(end) = Box::pin(request(&ctx, &mut conn, &head, &slot)).await {
            break end;
        }
    };
    match end {
        End::Close => {
            let _ = Io::shutdown(&mut conn.client.io).await;
        }
        End::Linger(budget) => {
            let lingering = &ctx.config.client.lingering;
            WorkerMetrics::inc(&ctx.m().lingering_closes_total);
            let read = Box::pin(lingering::close(
                &mut conn.client,
                &mut conn.timer,
                budget,
                lingering,
            ))
            .await;
            WorkerMetrics::add(&ctx.m().discarded_bytes_total, read);
        }
    }
}

/// Answers and logs a request head that could not be parsed.
async fn bad_head<S: Io>(ctx: &Ctx, conn: &mut Conn<S>, e: &ProxyError) {
    let started = Instant::now();
    let mut ex = Exchange::new(RequestBody::None, ctx.ids.generate());
    fail(ctx, conn, &mut ex, e, None, None).await;
    let error = e.to_string();
    let done = Finished::new(None, None, conn.peer.ip(), conn.tls_version, started);
    record::record(ctx, &done, &ex, Some(&error));
}

/// One request after its head: the exchange, its answer on failure, the
/// log line, and what the connection does next (`None`: read the next
/// request).
async fn request<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    slot: &Rc<Slot>,
) -> Option<End> {
    let lingering = ctx.config.client.lingering;
    WorkerMetrics::inc(&ctx.m().requests_total);
    let started = Instant::now();
    // A trusted balancer's X-Request-ID is kept; otherwise a new one.
    let trusted = client_addr::peer_is_trusted(conn.peer.ip(), &ctx.config.forwarding);
    let id = ctx.ids.pick(head.header("x-request-id"), trusted);
    let mut ex = Exchange::new(head.body, id);
    // The address the brute-force limiter counts and the log records:
    // behind a trusted balancer, the client it reports, not the
    // balancer (src/client_addr.rs). Upstream headers still name the peer.
    let client = client_addr::of_request(conn.peer.ip(), &ctx.config.forwarding, head).ip;
    let mut target = None;
    let result = exchange(ctx, conn, head, &mut ex, client, &mut target).await;
    // What the unread rest of the request, if any, calls for.
    let plan = lingering::plan(
        ex.body,
        head.body,
        head.expect_continue && !ex.continued,
        lingering.discard_limit,
    );
    let error = match &result {
        Ok(()) => None,
        Err(e) => {
            ex.keep_alive = !e.closes_connection()
                && head.keep_alive
                && head.version == Version::Http11
                && plan.may_keep_alive();
            fail(ctx, conn, &mut ex, e, Some(head), target.as_ref()).await;
            Some(if ex.forwarded && ex.body == BodyState::Broken {
                format!("{e} (the registry saw the head and part of the body)")
            } else {
                e.to_string()
            })
        }
    };
    ctx.m().count_status(ex.status);
    let done = Finished::new(
        Some(head),
        target.as_ref(),
        client,
        conn.tls_version,
        started,
    );
    record::record(ctx, &done, &ex, error.as_deref());
    let keep_alive = ex.keep_alive && !ctx.drain.is_draining();
    slot.waiting(ex.user.is_some());
    conn.idle();
    match (plan, keep_alive) {
        (Plan::Clean, true) => None,
        (Plan::Discard, true) => {
            match lingering::discard(&mut conn.client, &mut conn.timer, head.body, &lingering).await
            {
                Ok(read) => {
                    WorkerMetrics::add(&ctx.m().discarded_bytes_total, read);
                    WorkerMetrics::inc(&ctx.m().discarded_bodies_total);
                    None
                }
                Err(DiscardError::TooLarge(read)) => {
                    WorkerMetrics::add(&ctx.m().discarded_bytes_total, read);
                    Some(End::Linger(lingering.discard_limit.saturating_sub(read)))
                }
                // A broken or stalled body: nothing to wait for.
                Err(DiscardError::Framing(_) | DiscardError::Io(_)) => Some(End::Close),
            }
        }
        (Plan::Discard | Plan::Linger, _) => Some(End::Linger(lingering.discard_limit)),
        (Plan::Clean | Plan::Close, _) => Some(End::Close),
    }
}

/// How a connection ends.
enum End {
    /// Shut down at once: nothing of the request is left unread, or the
    /// stream cannot be trusted.
    Close,
    /// Close in stages, reading and dropping at most this many bytes.
    Linger(u64),
}

/// Reads the next request head. `Ok(None)`: the client closed cleanly
/// between requests, idled out, or the worker is draining and the
/// connection is idle between requests.
///
/// The first head has no timer here: the worker's admission sweep closes a
/// connection whose first head is not complete within `header_timeout` of
/// its accept (nginx: client_header_timeout), so a connection that waits
/// for it holds no timer entry. Between requests a connection may idle for
/// `idle_timeout` (nginx: keepalive_timeout); once a later head has begun
/// it must arrive whole within `header_timeout`.
async fn read_head<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    first: bool,
) -> Result<Option<RequestHead>, ProxyError> {
    let cfg = &ctx.config.client;
    let mut deadline: Option<Instant> = None;
    loop {
        let idle = conn.client.unconsumed().is_empty();
        if !idle {
            if let Parse::Complete { head, len } = parse_request(conn.client.unconsumed())? {
                conn.client.consume(len);
                return Ok(Some(head));
            }
        }
        // Only a connection idle between requests is closed by draining.
        // A head in progress is read and answered, and so is a fresh
        // connection's first request (nginx does the same): its client
        // connected before the listener closed and has a request on the
        // way, which a restart must not lose. The admission sweep still
        // closes it if the head is not whole within `header_timeout`.
        let drain = (idle && !first).then(|| ctx.drain.wait());
        let got = if first {
            until_drained(drain, conn.client.fill_untimed()).await
        } else {
            let timeout = match deadline {
                None if idle => cfg.idle_timeout,
                None => {
                    deadline = Some(Instant::now() + cfg.header_timeout);
                    cfg.header_timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            until_drained(drain, conn.client.fill(&mut conn.timer, timeout)).await
        };
        let Some(got) = got else {
            return Ok(None);
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
        if deadline.is_none() && !first {
            deadline = Some(Instant::now() + cfg.header_timeout);
        }
    }
}

/// `read`'s result, or `None` if `drain` (when given) completes first.
async fn until_drained<T>(
    drain: Option<impl std::future::Future<Output = ()>>,
    read: impl std::future::Future<Output = T>,
) -> Option<T> {
    match drain {
        None => Some(read.await),
        Some(drain) => monoio::select! {
            _ = drain => None,
            r = read => Some(r),
        },
    }
}

/// One request, after its head was read: the pipeline proper. The
/// classified target is left in `target` for the log.
async fn exchange<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
    client: IpAddr,
    target: &mut Option<Target>,
) -> Result<(), ProxyError> {
    // The token service answers `/token` itself, when it is configured.
    // It and the cache's path are boxed: their state (up to 4.5 KiB) would
    // otherwise size every request's boxed future, which is copied into its
    // allocation whole (`request_future_size` in conn/tests.rs).
    if policy::is_token_endpoint(head.path()) {
        let auth = ctx.auth.get();
        if let Some(service) = &auth.tokens {
            return Box::pin(token::exchange(ctx, conn, head, ex, client, &auth, service)).await;
        }
    }
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
    // An empty body carries no form parameters, whatever it is labelled
    // (`curl -d ''` labels it a form): route it as if unlabelled.
    let content_type = match head.body {
        RequestBody::None | RequestBody::Length(0) => None,
        RequestBody::Length(_) | RequestBody::Chunked => head.header("content-type"),
    };
    let target = &*target.insert(route::classify(
        head.method.as_str(),
        head.path(),
        head.query(),
        content_type,
    )?);

    // One snapshot decides the whole request, even if a reload lands
    // while it waits for a hash.
    let auth = ctx.auth.get();
    let who = authn::authenticate(ctx, &auth, head, client).await?;
    ex.user = who.name().map(str::to_owned);
    authn::authorize(ctx, &auth, &who, target)?;
    drop(who);

    // RFC 9110 §10.1.1: the client waits for our go-ahead before uploading;
    // it comes only now, after the request was authorized.
    if head.expect_continue && head.body != RequestBody::None {
        send_continue(ctx, conn, ex).await?;
    }

    // A body the registry would ignore is read and checked here, before the
    // head goes anywhere: a request refused for its body is never executed.
    let drop_body = !target.reads_body() && ex.body == BodyState::Unread;
    if drop_body {
        check_ignored_body(ctx, conn, head, ex).await?;
    }
    if let Some(cache) = &ctx.cache {
        if let Some(c) = cacheable(head.method.as_str(), head.path(), target) {
            return Box::pin(cached::exchange(ctx, cache, conn, head, &c, drop_body, ex)).await;
        }
    }
    forward(ctx, conn, head, drop_body, ex).await
}

/// `100 Continue`: the client may send its body.
async fn send_continue<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let (res, _) = relay::write_all(
        &mut conn.client.io,
        CONTINUE_100.to_vec(),
        &mut conn.timer,
        ctx.config.client.body_timeout,
    )
    .await;
    res.map_err(ProxyError::ClientIo)?;
    ex.continued = true;
    Ok(())
}

/// Largest body read and checked on a route whose body the registry
/// ignores (GET, HEAD, DELETE, an upload's first POST): no client sends
/// one, so this only bounds what a confused or hostile client costs.
const IGNORED_BODY_LIMIT: u64 = 64 * 1024;

/// Reads the whole of a body the registry ignores and checks its framing.
/// Too large: 413. Malformed or cut short: 400. Either way nothing has
/// been sent to the registry.
async fn check_ignored_body<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let timeout = ctx.config.client.body_timeout;
    let limits = lingering::Lingering {
        discard_limit: IGNORED_BODY_LIMIT,
        time: timeout,
        timeout,
    };
    match lingering::discard(&mut conn.client, &mut conn.timer, head.body, &limits).await {
        Ok(read) => {
            ex.body = BodyState::Done;
            ex.bytes_in = read;
            Ok(())
        }
        Err(DiscardError::TooLarge(read)) => {
            if read > 0 {
                // Part of a chunked body was taken: its framing was sound.
                ex.body = BodyState::Abandoned;
            }
            Err(ProxyError::PayloadTooLarge)
        }
        Err(DiscardError::Framing(c)) => {
            ex.body = BodyState::Broken;
            Err(chunk_error(Side::Client, c))
        }
        Err(DiscardError::Io(e)) => {
            ex.body = BodyState::Broken;
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Err(ProxyError::BadRequest("request body ended early"))
            } else {
                Err(ProxyError::ClientIo(e))
            }
        }
    }
}

/// Pick upstream → forward head → relay request body → relay response.
/// `drop_body`: the body was already read and is not forwarded.
async fn forward<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    drop_body: bool,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let body = if drop_body {
        RequestBody::None
    } else {
        head.body
    };
    conn.out.clear();
    write::request_head(head, &forwarding(ctx, conn, ex, drop_body), &mut conn.out);
    let answered = upstream::ask_registry(ctx, conn, head, body, ex).await?;
    respond(ctx, conn, head, answered, ex).await
}

/// How a head is forwarded for this connection and request.
fn forwarding<'a, S>(
    ctx: &'a Ctx,
    conn: &Conn<S>,
    ex: &'a Exchange,
    drop_body: bool,
) -> Forwarding<'a> {
    let cfg = &ctx.config;
    Forwarding {
        client_ip: conn.peer.ip(),
        tls: conn.tls,
        trust_forwarded_headers: cfg.forwarding.trust_forwarded_headers,
        forward_authorization: cfg.forwarding.forward_authorization,
        keep_override_headers: cfg.forwarding.keep_override_headers,
        drop_body,
        default_host: &cfg.upstream.host,
        request_id: &ex.request_id,
    }
}

/// Whether the client connection may carry another request after this
/// answer.
fn keeps_alive(ctx: &Ctx, head: &RequestHead, body_unfinished: bool) -> bool {
    head.keep_alive
        && head.version == Version::Http11
        && !body_unfinished
        && !ctx.drain.is_draining()
}

/// Writes the registry's answer head, rewritten, to the client; with it the
/// body's first bytes when the whole body is small and already read from
/// `upstream` (one write, and over TLS one record). Returns those bytes' count.
async fn send_head<S: Io, U: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    response: &ResponseHead,
    framing: ClientFraming,
    keep_alive: bool,
    ex: &mut Exchange,
    upstream: Option<&mut Buffered<U>>,
) -> Result<u64, ProxyError> {
    conn.out.clear();
    write::response_head(response, framing, keep_alive, &ex.request_id, &mut conn.out);
    let early = match (response.body, upstream) {
        (ResponseBody::Length(n), Some(up)) if n <= COALESCE_BODY_BYTES => {
            up.take_into(&mut conn.out, n)
        }
        _ => 0,
    };
    ex.status = response.status;
    ex.responded = true;
    write_out(ctx, conn).await?;
    Ok(early)
}

/// Writes `conn.out` to the client.
async fn write_out<S: Io>(ctx: &Ctx, conn: &mut Conn<S>) -> Result<(), ProxyError> {
    let (res, buf) = relay::write_all(
        &mut conn.client.io,
        std::mem::take(&mut conn.out),
        &mut conn.timer,
        ctx.config.client.body_timeout,
    )
    .await;
    conn.out = buf;
    res.map_err(ProxyError::ClientIo)
}

/// Relays the registry's answer to the client: its head rewritten, then
/// its body; gives the registry connection back when the answer ended
/// cleanly.
async fn respond<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    mut answered: Answered<'_>,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let keep_alive = keeps_alive(ctx, head, answered.body_unfinished);
    let framing = write::client_framing(answered.response.body, head.version);
    let early = send_head(
        ctx,
        conn,
        &answered.response,
        framing,
        keep_alive,
        ex,
        Some(&mut answered.upstream),
    )
    .await?;
    let moved = respond_body(
        ctx,
        conn,
        &mut answered.upstream,
        &answered.response,
        framing,
        early,
    )
    .await?;
    ex.bytes_out = early + moved.body;
    WorkerMetrics::add(&ctx.m().response_body_bytes_total, ex.bytes_out);
    ctx.m().count_moved(&Moved {
        body: ex.bytes_out,
        spliced: moved.spliced,
    });
    // Give the registry connection back only if its response ended cleanly
    // and nothing unasked-for follows it.
    let response = &answered.response;
    let clean = response.keep_alive
        && !answered.body_unfinished
        && response.body != ResponseBody::CloseDelimited
        && answered.upstream.unconsumed().is_empty();
    upstream::give_back(ctx, answered, clean);
    ex.keep_alive = keep_alive && framing != ClientFraming::Close;
    Ok(())
}

/// The response body, after the `early` bytes that left with the head.
async fn respond_body<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    upstream: &mut Buffered<crate::upstream::stream::UpstreamStream>,
    response: &ResponseHead,
    framing: ClientFraming,
    early: u64,
) -> Result<Moved, ProxyError> {
    let to_client = Timeouts {
        src: ctx.config.upstream.read_timeout,
        dst: ctx.config.client.body_timeout,
    };
    let body = match response.body {
        ResponseBody::None => return Ok(Moved::default()),
        // The whole body left with the head (most small answers).
        ResponseBody::Length(n) if n == early => return Ok(Moved::default()),
        ResponseBody::Length(n) => Framing::Length(n - early),
        ResponseBody::Chunked => Framing::Chunked,
        ResponseBody::CloseDelimited => Framing::Close,
    };
    // Boxed, as in `send_request`: a relay's state (about 2.8 KiB) is only
    // needed when a body is left, and would otherwise size every request.
    Box::pin(relay::relay_body(
        upstream,
        &mut conn.client.io,
        body,
        encoding(framing),
        to_client,
        &mut conn.timer,
        &mut conn.out,
    ))
    .await
    .map_err(|e| relay_error(e, Side::Upstream))
}

/// A response body at most this large goes out in the head's write when
/// it arrived with the head (one TLS record holds 16 KiB).
const COALESCE_BODY_BYTES: u64 = 16 * 1024;

fn encoding(f: ClientFraming) -> Encode {
    if f == ClientFraming::Close {
        Encode::Raw
    } else {
        Encode::Chunked
    }
}

/// Answers the client with `err` if nothing was sent yet; records the
/// status. The connection stays open only if `ex.keep_alive` already says so.
async fn fail<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    ex: &mut Exchange,
    err: &ProxyError,
    head: Option<&RequestHead>,
    target: Option<&Target>,
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
    let challenge = if err.status() == 401 {
        authn::challenge(ctx, conn.tls, head, target, err)
    } else {
        String::new()
    };
    // RFC 9110 §9.3.2: a HEAD answer carries the headers of a GET, no body.
    let head_only = head.is_some_and(|h| h.method == Method::Head);
    write::error_response(
        err,
        &challenge,
        head_only,
        keep_alive,
        &ex.request_id,
        &mut conn.out,
    );
    let (res, buf) = relay::write_all(
        &mut conn.client.io,
        std::mem::take(&mut conn.out),
        &mut conn.timer,
        ctx.config.client.body_timeout,
    )
    .await;
    conn.out = buf;
    if res.is_err() {
        ex.keep_alive = false;
    }
}

#[cfg(test)]
mod tests;
