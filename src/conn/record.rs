//! The last step of every request: its access-log line, its histograms
//! and bytes by action, and the busiest-repositories table. Everything
//! here reads what the request left in its [`Exchange`]; nothing can fail.
//!
//! A request whose head could not be parsed is logged (method and target
//! `-`) but not observed in the histograms, as it is not counted in
//! `requests_total` either: the histograms' counts are request counts.

use std::net::IpAddr;
use std::time::Instant;

use super::{Ctx, Exchange};
use crate::access_log::Entry;
use crate::http::head::{RequestHead, Version};
use crate::metrics::histogram::Observation;
use crate::route::summary::summarize;
use crate::route::Target;

/// What is known about a finished request besides its [`Exchange`].
pub(super) struct Finished<'a> {
    head: Option<&'a RequestHead>,
    target: Option<&'a Target>,
    client: IpAddr,
    tls: Option<&'static str>,
    started: Instant,
}

impl<'a> Finished<'a> {
    pub(super) fn new(
        head: Option<&'a RequestHead>,
        target: Option<&'a Target>,
        client: IpAddr,
        tls: Option<&'static str>,
        started: Instant,
    ) -> Self {
        Finished {
            head,
            target,
            client,
            tls,
            started,
        }
    }
}

/// Logs and counts one finished request.
pub(super) fn record(ctx: &Ctx, f: &Finished<'_>, ex: &Exchange, error: Option<&str>) {
    let duration = f.started.elapsed();
    let (method, target, path, query) = match f.head {
        Some(h) => (h.method.as_str(), h.target(), h.path(), h.query()),
        None => ("-", "-", "-", None),
    };
    let summary = summarize(method, path, query, f.target);
    if f.head.is_some() {
        ctx.m().traffic.observe(&Observation {
            kind: summary.kind(),
            status: ex.status,
            duration,
            ttfb: ex.ttfb,
            bytes_in: ex.bytes_in,
            bytes_out: ex.bytes_out,
        });
        if let (Some(top), Some(repo)) = (&ctx.top, summary.repository) {
            top.borrow_mut().record(repo, ex.bytes_in, ex.bytes_out);
        }
    }
    ctx.log.record(&Entry {
        client: f.client,
        user: ex.user.as_deref(),
        method,
        target,
        http10: f.head.is_some_and(|h| h.version == Version::Http10),
        status: ex.status,
        bytes_in: ex.bytes_in,
        bytes_out: ex.bytes_out,
        duration,
        user_agent: f.head.and_then(|h| h.header("user-agent")),
        error,
        request_id: &ex.request_id,
        summary: &summary,
        upstream: ex.upstream,
        upstream_ttfb: ex.ttfb,
        tls: f.tls,
        cache: ex.cache,
    });
}
