//! Counters, one set per worker, and their sum in Prometheus text for the
//! admin port (`admin`).
//!
//! Each worker is the only writer of its own cache-line-aligned block, so a
//! counter bump is an uncontended relaxed add: no cross-core traffic on the
//! request path. The admin thread reads all blocks when scraped.
//!
//! Beside the plain counters: latency histograms and bytes by action
//! ([`histogram`]), and the opt-in busiest repositories ([`top`]). Labels
//! are bounded by construction: actions and status classes are fixed sets,
//! servers come from the config, repositories only through the top N.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::admission::StateGauges;
use crate::auth::cache::Verifier;
use crate::auth::jwks::JwksHandle;
use crate::cache::Cache;
use crate::health::{Board, ServerReport};

pub mod histogram;
pub mod top;

use histogram::Traffic;
use top::TopBoard;

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// One worker's counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerMetrics {
            $(pub $name: AtomicU64,)*
            /// Histograms and bytes by action.
            pub traffic: Traffic,
        }

        const COUNTERS: &[(&str, &str, fn(&WorkerMetrics) -> &AtomicU64)] = &[
            $((stringify!($name), $help, |m| &m.$name),)*
        ];
    };
}

counters! {
    connections_total: "Client connections accepted.",
    connections_shed_total: "Waiting connections closed to make room for new ones (never-completed heads first, authenticated keep-alive last).",
    connections_refused_total: "New connections answered 503 and closed: the worker was full of requests in flight.",
    connections_timed_out_total: "Connections closed for not completing a first request head within header_timeout of their accept.",
    connections_refused_per_ip_total: "New connections answered 429 and closed: their client address held max_connections_per_ip.",
    descriptor_refusals_total: "New connections and requests answered 503: the worker's descriptor budget was spent, nothing idle could be closed and no waiting connection shed.",
    descriptor_exhausted_total: "accept(2) calls and registry connects that failed with EMFILE or ENFILE (descriptors taken outside the budget). Each closes idle pooled descriptors and frees one (the worker's spare, or a shed waiting connection's) before trying again; with none to free, accepts back off and requests get 503.",
    tls_handshake_failures_total: "TLS handshakes that failed or timed out.",
    proxy_protocol_refused_total: "Connections closed for a missing, malformed or untrusted PROXY header.",
    requests_total: "Requests read from clients.",
    responses_2xx_total: "Responses with a 2xx status.",
    responses_3xx_total: "Responses with a 3xx status.",
    responses_4xx_total: "Responses with a 4xx status.",
    responses_5xx_total: "Responses with a 5xx status.",
    auth_failures_total: "Requests refused for missing or wrong credentials.",
    denied_total: "Requests refused by the push policy.",
    upstream_connects_total: "New connections opened to the registry.",
    upstream_reuses_total: "Requests sent on a pooled registry connection.",
    upstream_retries_total: "Idempotent body-less requests retried, on another server when one is up, after their connection closed before an answer.",
    upstream_errors_total: "Registry connections that failed or timed out.",
    request_body_bytes_total: "Request body bytes relayed to the registry.",
    response_body_bytes_total: "Response body bytes relayed to clients.",
    spliced_bytes_total: "Body bytes moved with splice(2), never copied to user space.",
    copied_bytes_total: "Body bytes relayed through user-space buffers (TLS, chunked re-encoding, or splice unavailable).",
    auth_cache_hits_total: "Credential checks answered by the worker's own cache, with no lock and no hash.",
    auth_cache_misses_total: "Credential checks that went past the worker's cache (shared cache, or a hash).",
    tokens_issued_total: "Bearer tokens signed and answered at /token.",
    token_cache_hits_total: "Bearer and identity tokens answered by the worker's own verified-token cache, with no signature check.",
    token_cache_misses_total: "Bearer and identity tokens whose signature was checked (first use on this worker, or new keys).",
    token_refusals_total: "Bearer and identity tokens refused: a bad signature, an unknown key, expired or not yet valid, a wrong issuer or audience, or malformed.",
    access_log_dropped_total: "Access-log lines dropped: the writer was behind past the buffer bound, or the write failed.",
    discarded_bodies_total: "Unread request bodies read and dropped after an early answer, keeping the connection.",
    lingering_closes_total: "Connections closed in stages (half-close, then read) after an early answer.",
    discarded_bytes_total: "Request body bytes read and dropped after an early answer.",
    cache_hits_total: "Edge cache: requests answered from a whole cached file, confirmed by the registry (or within confirm_ttl).",
    cache_misses_total: "Edge cache: cacheable requests the registry answered, fills included.",
    cache_waits_total: "Edge cache: requests that followed another request's fill, reading the file as it was written.",
    cache_fills_total: "Edge cache: files fetched whole, their digest checked, and kept.",
    cache_fill_failures_total: "Edge cache: fills that kept nothing: a digest mismatch, a body cut short, or a disk error.",
    cache_evictions_total: "Edge cache: files removed, least recently used first, to stay under max_size.",
    cache_stale_served_total: "Edge cache: requests answered from the cache while the registry could not confirm (down, 5xx, 429), within stale_if_error.",
    cache_confirmations_total: "Edge cache: HEAD requests sent to the registry to confirm a repository holds a cached digest.",
    cache_served_bytes_total: "Edge cache: body bytes sent to clients from cache files.",
    cache_upstream_bytes_total: "Edge cache: body bytes fills fetched from the registry.",
}

impl WorkerMetrics {
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Body bytes a relay moved, split into spliced and copied.
    pub fn count_moved(&self, moved: &crate::relay::Moved) {
        Self::add(&self.spliced_bytes_total, moved.spliced);
        Self::add(
            &self.copied_bytes_total,
            moved.body.saturating_sub(moved.spliced),
        );
    }

    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx_total,
            300..=399 => &self.responses_3xx_total,
            400..=499 => &self.responses_4xx_total,
            _ => &self.responses_5xx_total,
        };
        Self::inc(c);
    }
}

/// Everything the admin endpoint reports.
#[derive(Debug, Clone)]
pub struct Registry {
    pub workers: Arc<Vec<WorkerMetrics>>,
    /// Open connections by state, one block per worker.
    pub states: Arc<Vec<StateGauges>>,
    pub verifier: Arc<Verifier>,
    pub health: Arc<Board>,
    /// The busiest repositories, when `[admin] top_repositories` asks.
    pub top: Arc<TopBoard>,
    /// The edge cache, for its size gauges (0 without one).
    pub cache: Option<Arc<Cache>>,
    /// The https JWKS fetchers, for their fetch counts.
    pub jwks: Vec<Arc<JwksHandle>>,
}

/// One atomic of each worker's block, summed.
fn sum<T>(per_worker: &[T], get: impl Fn(&T) -> &AtomicU64) -> u64 {
    per_worker
        .iter()
        .map(|w| get(w).load(Ordering::Relaxed))
        .sum()
}

/// A metric family of one unlabelled sample, with its HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    out.push_str(&format!(
        "# HELP regproxy_{name} {help}\n# TYPE regproxy_{name} {kind}\nregproxy_{name} {value}\n"
    ));
}

impl Registry {
    /// Prometheus text exposition format, summed over workers.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        for (name, help, get) in COUNTERS {
            family(&mut out, name, "counter", help, sum(&self.workers, get));
        }
        out.push_str(&format!(
            "# HELP regproxy_password_hashes_total Password hashes computed (bcrypt runs), all cores.\n\
             # TYPE regproxy_password_hashes_total counter\nregproxy_password_hashes_total {}\n",
            self.verifier.hash_runs()
        ));
        self.render_states(&mut out);
        out.push_str(&format!(
            "# HELP regproxy_hash_queue_depth Password checks waiting for a hash thread.\n\
             # TYPE regproxy_hash_queue_depth gauge\nregproxy_hash_queue_depth {}\n",
            self.verifier.queue_depth()
        ));
        let (bytes, entries) = self.cache.as_ref().map_or((0, 0), |c| c.gauges());
        family(
            &mut out,
            "cache_bytes",
            "gauge",
            "Edge cache: body bytes held on disk.",
            bytes,
        );
        family(
            &mut out,
            "cache_entries",
            "gauge",
            "Edge cache: files held on disk.",
            entries,
        );
        let (ok, failed) = self.jwks.iter().map(|h| h.fetches()).fold((0, 0), |a, f| {
            (a.0 + f.0, a.1 + f.1)
        });
        out.push_str(&format!(
            "# HELP regproxy_jwks_fetches_total Fetches of the OIDC issuers' https JWKS documents, by outcome (an error keeps the keys held).\n\
             # TYPE regproxy_jwks_fetches_total counter\n\
             regproxy_jwks_fetches_total{{result=\"ok\"}} {ok}\n\
             regproxy_jwks_fetches_total{{result=\"error\"}} {failed}\n"
        ));
        histogram::render(self.workers.iter().map(|w| &w.traffic), &mut out);
        self.render_servers(&mut out);
        self.top.render(&mut out);
        out
    }

    /// Open client connections by state, and the descriptor budgets,
    /// summed over workers.
    fn render_states(&self, out: &mut String) {
        out.push_str(
            "# HELP regproxy_connections_open Open client connections: head = no request head completed yet (handshake included), idle = keep-alive between requests, active = a request in flight.\n\
             # TYPE regproxy_connections_open gauge\n",
        );
        let states: [(&str, Gauge); 3] = [
            ("head", |g| &g.head),
            ("idle", |g| &g.idle),
            ("active", |g| &g.active),
        ];
        for (state, get) in states {
            let n = sum(&self.states, get);
            out.push_str(&format!(
                "regproxy_connections_open{{state=\"{state}\"}} {n}\n"
            ));
        }
        let families: [(&str, &str, &str, Gauge); 3] = [
            (
                "descriptors_budgeted",
                "gauge",
                "Descriptors the workers' budgets have handed out: client and registry sockets (pooled ones included) and pipes.",
                |g| &g.descriptors,
            ),
            (
                "descriptor_budget",
                "gauge",
                "The workers' descriptor budgets together: RLIMIT_NOFILE less the reserve.",
                |g| &g.descriptor_budget,
            ),
            (
                "pipe_fallbacks_total",
                "counter",
                "Bodies between plain sockets copied through user space because no pipe was to be had (the budget's share for pipes was spent, or pipe2 failed).",
                |g| &g.pipe_fallbacks,
            ),
        ];
        for (name, kind, help, get) in families {
            family(out, name, kind, help, sum(&self.states, get));
        }
    }

    /// Per registry server: health, requests, errors, in flight, and the
    /// latency histogram.
    fn render_servers(&self, out: &mut String) {
        let rows = self.health.report();
        let families: [Family; 4] = [
            (
                "upstream_server_up",
                "gauge",
                "1 when the server takes traffic, 0 when health checks or ejection took it out.",
                |r| u8::from(r.up).to_string(),
            ),
            (
                "upstream_server_requests_total",
                "counter",
                "Requests sent to the server.",
                |r| r.requests.to_string(),
            ),
            (
                "upstream_server_errors_total",
                "counter",
                "Connect failures, broken exchanges and 5xx answers from the server.",
                |r| r.errors.to_string(),
            ),
            (
                "upstream_server_outstanding",
                "gauge",
                "Requests in flight on the server.",
                |r| r.outstanding.to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            out.push_str(&format!(
                "# HELP regproxy_{name} {help}\n# TYPE regproxy_{name} {kind}\n"
            ));
            for r in &rows {
                out.push_str(&format!(
                    "regproxy_{name}{{server=\"{}\"}} {}\n",
                    r.server,
                    value(r)
                ));
            }
        }
        // Every configured server, answered or not: a server that never
        // responds is what this family is for.
        let name = "regproxy_upstream_server_response_seconds";
        out.push_str(&format!(
            "# HELP {name} Time from picking the server to its response head (upload bodies included); _count is the responses, requests_total less those that got none.\n# TYPE {name} histogram\n"
        ));
        for r in &rows {
            r.latency
                .render(name, &format!("server=\"{}\"", r.server), out);
        }
    }
}

/// One connection-state gauge of a worker's block.
type Gauge = fn(&StateGauges) -> &AtomicU64;

/// One per-server metric: name, type, help, and its value in a row.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ServerReport) -> String,
);
