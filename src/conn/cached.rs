//! The edge cache's phase of a request: after it was authorized, before
//! (or instead of) forwarding it.
//!
//! lookup → confirm with the registry → answer from the file, or fill it,
//! or forward as without a cache.
//!
//! Authorization is never the cache's: the rules ran before this, and a
//! hit is served only once the registry has confirmed that this repository
//! holds this digest (a `HEAD`, or its own 200 to a fill) within
//! `confirm_ttl`. Any other answer to the confirmation sends the client's
//! own request to the registry, so the client gets the registry's answer:
//! a blob cached through one repository is never served to a pull of
//! another that the registry would refuse.

use std::sync::Arc;
use std::time::Instant;

use regproxy_core::cache::cacheable::Cacheable;
use regproxy_core::cache::confirm::Confirmed;
use regproxy_core::cache::entry::{self, EntryMeta, Kind, HEADER_LEN};
use regproxy_core::cache::range::{self, RangeAnswer};

use super::upstream::{self, relay_error, Answered};
use super::{forward, forwarding, respond, send_head, Conn, Ctx, Exchange};
use crate::admission::FdLease;
use crate::cache::fill::{self, Outcome};
use crate::cache::flight::{Flight, Stage};
use crate::cache::serve::{self, Source};
use crate::cache::{Cache, Filler, Lookup};
use crate::error::{ProxyError, Side};
use crate::http::head::{Method, RequestBody, RequestHead, ResponseBody};
use crate::http::write::{self, CachedHead, ClientFraming};
use crate::metrics::WorkerMetrics;
use crate::relay::{Io, Timeouts};

/// The `cache` field of the access log.
pub(super) mod outcome {
    pub const HIT: &str = "hit";
    pub const STALE: &str = "stale";
    pub const WAIT: &str = "wait";
    pub const FILL: &str = "fill";
    pub const MISS: &str = "miss";
}

/// A cacheable request (`Cacheable`), with the cache on.
pub(super) async fn exchange<S: Io>(
    ctx: &Ctx,
    cache: &Arc<Cache>,
    conn: &mut Conn<S>,
    head: &RequestHead,
    c: &Cacheable,
    drop_body: bool,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let may_fill = head.method == Method::Get && head.header("range").is_none();
    let flight = match cache.lookup(&c.digest, may_fill) {
        Lookup::Miss => return miss(ctx, conn, head, drop_body, ex).await,
        Lookup::Fill(filler) => return fill(ctx, conn, head, c, drop_body, filler, ex).await,
        Lookup::Hit => None,
        Lookup::Follow(flight) => Some(flight),
    };
    let how = match confirm(ctx, cache, conn, head, c, ex).await {
        Confirm::Yes if flight.is_some() => outcome::WAIT,
        Confirm::Yes => outcome::HIT,
        Confirm::Stale => outcome::STALE,
        Confirm::No => return miss(ctx, conn, head, drop_body, ex).await,
    };
    let Some(opened) = open(ctx, cache, c, flight).await else {
        return miss(ctx, conn, head, drop_body, ex).await;
    };
    ex.cache = Some(how);
    let m = ctx.m();
    WorkerMetrics::inc(match how {
        outcome::WAIT => &m.cache_waits_total,
        outcome::STALE => &m.cache_stale_served_total,
        _ => &m.cache_hits_total,
    });
    answer(ctx, conn, head, c, &opened, ex).await
}

/// Forwarded as without a cache.
async fn miss<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    drop_body: bool,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    ex.cache = Some(outcome::MISS);
    WorkerMetrics::inc(&ctx.m().cache_misses_total);
    forward(ctx, conn, head, drop_body, ex).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// The registry says this repository holds the digest (now, or
    /// within `confirm_ttl`).
    Yes,
    /// The registry cannot say (down, 5xx, 429), and it last said yes
    /// within `stale_if_error`.
    Stale,
    /// Ask the registry for the request itself.
    No,
}

/// Whether the registry holds `c.digest` in `c.repository`, asking it with
/// one `HEAD` unless it said so within `confirm_ttl`.
async fn confirm<S: Io>(
    ctx: &Ctx,
    cache: &Cache,
    conn: &mut Conn<S>,
    head: &RequestHead,
    c: &Cacheable,
    ex: &mut Exchange,
) -> Confirm {
    let cfg = &cache.config;
    let known = ctx.confirmations.borrow().check(
        &c.repository,
        &c.digest,
        Instant::now(),
        cfg.confirm_ttl,
        cfg.stale_if_error,
    );
    if known == Confirmed::Fresh {
        return Confirm::Yes;
    }
    WorkerMetrics::inc(&ctx.m().cache_confirmations_total);
    let unavailable = |why: &dyn std::fmt::Display| {
        if known != Confirmed::Stale {
            return Confirm::No;
        }
        tracing::warn!(repository = %c.repository, digest = %c.digest, reason = %why,
            "cache: the registry cannot confirm; serving the cached copy within stale_if_error");
        Confirm::Stale
    };
    match ask_head(ctx, conn, head, ex).await {
        // 416: the probe carries the client's Range, and the registry
        // judges a range only against a blob it found in the repository.
        Ok(200..=299 | 416) => {
            ctx.confirmations
                .borrow_mut()
                .record(&c.repository, &c.digest, Instant::now());
            Confirm::Yes
        }
        Ok(status @ (429 | 500..)) => unavailable(&format_args!("the registry answered {status}")),
        Ok(_) => {
            ctx.confirmations
                .borrow_mut()
                .forget(&c.repository, &c.digest);
            Confirm::No
        }
        Err(e) => unavailable(&e),
    }
}

/// Sends the client's request to the registry as a `HEAD` and returns the
/// answer's status.
async fn ask_head<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
) -> Result<u16, ProxyError> {
    let mut probe = head.clone();
    probe.method = Method::Head;
    probe.body = RequestBody::None;
    conn.out.clear();
    write::request_head(&probe, &forwarding(ctx, conn, ex, true), &mut conn.out);
    let answered = upstream::ask_registry(ctx, conn, &probe, RequestBody::None, ex).await?;
    let status = answered.response.status;
    let clean = answered.response.keep_alive && !answered.body_unfinished;
    upstream::give_back(ctx, answered, clean);
    Ok(status)
}

/// A cache file open for one answer.
struct Opened {
    file: monoio::fs::File,
    /// Its descriptor in the worker's budget.
    _fd: FdLease,
    flight: Option<Arc<Flight>>,
    size: u64,
    content_type: String,
    digest: String,
}

/// Opens the whole file of a hit, or the file of the fill a follower
/// follows once the registry's 200 came. `None`: there is none to read
/// (purged, the fill abandoned or failed, no descriptor to spare): the
/// request goes to the registry.
async fn open(
    ctx: &Ctx,
    cache: &Cache,
    c: &Cacheable,
    flight: Option<Arc<Flight>>,
) -> Option<Opened> {
    let fd = ctx.admission.fds().try_take_optional(1)?;
    let Some(flight) = flight else {
        return open_whole(cache, c, fd).await;
    };
    let mut stage = flight.stage();
    let wait = ctx.config.upstream.read_timeout;
    let deadline = Instant::now() + wait;
    while stage == Stage::Asking {
        let left = deadline.saturating_duration_since(Instant::now());
        if monoio::time::timeout(left, flight.changed(0, stage))
            .await
            .is_err()
        {
            return None;
        }
        stage = flight.stage();
    }
    let known = flight.known()?.clone();
    let file = match std::fs::File::open(&known.tmp) {
        Ok(f) => f,
        // Renamed into place since: the whole file.
        Err(_) if flight.stage() == Stage::Done => {
            std::fs::File::open(cache.path(&c.digest)).ok()?
        }
        Err(_) => return None,
    };
    if matches!(flight.stage(), Stage::Failed | Stage::Abandoned) {
        return None;
    }
    Some(Opened {
        file: monoio::fs::File::from_std(file).ok()?,
        _fd: fd,
        flight: Some(flight),
        size: known.size,
        content_type: known.content_type,
        digest: c.digest.to_string(),
    })
}

/// A hit's file, its header read and checked against the digest asked for.
async fn open_whole(cache: &Cache, c: &Cacheable, fd: FdLease) -> Option<Opened> {
    let file = match std::fs::File::open(cache.path(&c.digest)) {
        Ok(f) => monoio::fs::File::from_std(f).ok()?,
        Err(e) => {
            tracing::info!(digest = %c.digest, error = %e, "cache: an indexed file is gone; fetching again");
            cache.forget(&c.digest);
            return None;
        }
    };
    let (res, buf) = file.read_exact_at(vec![0u8; HEADER_LEN as usize], 0).await;
    let meta: Option<EntryMeta> = res.ok().and_then(|()| entry::decode(&buf).ok());
    match meta {
        Some(m) if m.digest == c.digest => Some(Opened {
            file,
            _fd: fd,
            flight: None,
            size: m.size,
            content_type: m.content_type,
            digest: c.digest.to_string(),
        }),
        _ => {
            tracing::warn!(digest = %c.digest, "cache: a file's header is damaged; removing it");
            cache.discard(&c.digest);
            None
        }
    }
}

/// Answers from an open file: the head, then the body or the range asked for.
async fn answer<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    c: &Cacheable,
    opened: &Opened,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let etag = format!("\"{}\"", opened.digest);
    let (status, span) = match range::answer(
        header_str(head, "range"),
        header_str(head, "if-range"),
        &etag,
        opened.size,
    ) {
        RangeAnswer::Full => (200, None),
        RangeAnswer::Partial { start, end } => (206, Some((start, end))),
        RangeAnswer::Unsatisfiable => (416, None),
    };
    let cached = CachedHead {
        status,
        size: opened.size,
        range: span,
        content_type: &opened.content_type,
        digest: &opened.digest,
        blob: c.kind == Kind::Blob,
    };
    let keep_alive = super::keeps_alive(ctx, head, false);
    conn.out.clear();
    write::cached_response_head(&cached, keep_alive, &ex.request_id, &mut conn.out);
    ex.status = status;
    ex.responded = true;
    super::write_out(ctx, conn).await?;
    let len = if head.method == Method::Head {
        0
    } else {
        cached.body_len()
    };
    if len > 0 {
        let src = Source {
            file: &opened.file,
            flight: opened.flight.as_deref(),
            fill_timeout: ctx.config.upstream.read_timeout,
        };
        let start = span.map_or(0, |(s, _)| s);
        let sent = serve::send(
            &mut conn.client.io,
            src,
            start,
            len,
            &mut conn.timer,
            ctx.config.client.body_timeout,
        )
        .await;
        let sent = sent.map_err(|e| relay_error(e, Side::Upstream))?;
        ex.bytes_out = sent;
        WorkerMetrics::add(&ctx.m().cache_served_bytes_total, sent);
        WorkerMetrics::add(&ctx.m().response_body_bytes_total, sent);
    }
    ex.keep_alive = keep_alive;
    Ok(())
}

fn header_str<'h>(head: &'h RequestHead, name: &str) -> Option<&'h str> {
    head.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

/// A miss that fills: the client's GET goes to the registry, and a 200
/// with a length that fits goes to the client and into the cache at once.
async fn fill<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    c: &Cacheable,
    drop_body: bool,
    mut filler: Filler,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    WorkerMetrics::inc(&ctx.m().cache_misses_total);
    conn.out.clear();
    write::request_head(head, &forwarding(ctx, conn, ex, drop_body), &mut conn.out);
    let answered = upstream::ask_registry(ctx, conn, head, RequestBody::None, ex).await?;
    let size = match answered.response.body {
        ResponseBody::Length(n) if answered.response.status == 200 && filler.fits(n) => n,
        _ => {
            filler.abandon();
            ex.cache = Some(outcome::MISS);
            return respond(ctx, conn, head, answered, ex).await;
        }
    };
    let content_type = answered
        .response
        .header("content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let (file, evicted) = match filler.begin(c.kind, size, &content_type) {
        Ok(began) => began,
        Err(e) => {
            tracing::warn!(digest = %c.digest, error = %e, "cache: cannot start a fill; forwarding uncached");
            WorkerMetrics::inc(&ctx.m().cache_fill_failures_total);
            filler.abandon();
            ex.cache = Some(outcome::MISS);
            return respond(ctx, conn, head, answered, ex).await;
        }
    };
    WorkerMetrics::add(&ctx.m().cache_evictions_total, evicted as u64);
    ctx.confirmations
        .borrow_mut()
        .record(&c.repository, &c.digest, Instant::now());
    ex.cache = Some(outcome::FILL);
    tee(ctx, conn, head, answered, filler, file, size, ex).await
}

/// The fill's answer: the registry's head, then its body through the file.
#[allow(clippy::too_many_arguments)]
async fn tee<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    answered: Answered<'_>,
    filler: Filler,
    file: std::fs::File,
    size: u64,
    ex: &mut Exchange,
) -> Result<(), ProxyError> {
    let keep_alive = super::keeps_alive(ctx, head, answered.body_unfinished);
    let digest = filler.digest().to_string();
    let mut answered = answered;
    send_head::<S, S>(
        ctx,
        conn,
        &answered.response,
        ClientFraming::Length(size),
        keep_alive,
        ex,
        None,
    )
    .await?;
    let t = Timeouts {
        src: ctx.config.upstream.read_timeout,
        dst: ctx.config.client.body_timeout,
    };
    let teed = fill::tee(
        &mut answered.upstream,
        &mut conn.client.io,
        filler,
        file,
        size,
        t,
        &mut conn.timer,
    )
    .await;
    let m = ctx.m();
    ex.bytes_out = teed.sent;
    WorkerMetrics::add(&m.response_body_bytes_total, teed.sent);
    WorkerMetrics::add(&m.cache_upstream_bytes_total, teed.fetched);
    let whole = teed.fetched == size;
    let result = match teed.outcome {
        Outcome::Kept { evicted } => {
            WorkerMetrics::inc(&m.cache_fills_total);
            WorkerMetrics::add(&m.cache_evictions_total, evicted as u64);
            Ok(())
        }
        Outcome::Mismatch => {
            WorkerMetrics::inc(&m.cache_fill_failures_total);
            tracing::error!(%digest, path = head.path(),
                "cache: the registry's body does not match its digest; nothing kept, the client's connection closed");
            Err(ProxyError::UpstreamProtocol(
                "the registry's body does not match its digest",
            ))
        }
        Outcome::Cut(e) => {
            WorkerMetrics::inc(&m.cache_fill_failures_total);
            Err(upstream::upstream_io(e))
        }
        Outcome::Disk(_) => {
            WorkerMetrics::inc(&m.cache_fill_failures_total);
            Ok(())
        }
    };
    let clean = whole && answered.response.keep_alive && answered.upstream.unconsumed().is_empty();
    upstream::give_back(ctx, answered, clean);
    result?;
    if let Some(e) = teed.client_error {
        return Err(ProxyError::ClientIo(e));
    }
    ex.keep_alive = keep_alive;
    Ok(())
}
