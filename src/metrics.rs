//! Counters, one set per worker, and their sum in Prometheus text for the
//! admin port (`admin`).
//!
//! Each worker is the only writer of its own cache-line-aligned block, so a
//! counter bump is an uncontended relaxed add: no cross-core traffic on the
//! request path. The admin thread reads all blocks when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::auth::cache::Verifier;

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// One worker's counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerMetrics { $(pub $name: AtomicU64,)* }

        const COUNTERS: &[(&str, &str, fn(&WorkerMetrics) -> &AtomicU64)] = &[
            $((stringify!($name), $help, |m| &m.$name),)*
        ];
    };
}

counters! {
    connections_total: "Client connections accepted.",
    tls_handshake_failures_total: "TLS handshakes that failed or timed out.",
    requests_total: "Requests read from clients.",
    responses_2xx_total: "Responses with a 2xx status.",
    responses_3xx_total: "Responses with a 3xx status.",
    responses_4xx_total: "Responses with a 4xx status.",
    responses_5xx_total: "Responses with a 5xx status.",
    auth_failures_total: "Requests refused for missing or wrong credentials.",
    denied_total: "Requests refused by the push policy.",
    upstream_connects_total: "New connections opened to the registry.",
    upstream_reuses_total: "Requests sent on a pooled registry connection.",
    upstream_retries_total: "Idempotent requests retried after a stale pooled connection.",
    upstream_errors_total: "Registry connections that failed or timed out.",
    request_body_bytes_total: "Request body bytes relayed to the registry.",
    response_body_bytes_total: "Response body bytes relayed to clients.",
    spliced_bytes_total: "Body bytes moved with splice(2), never copied to user space.",
    discarded_bodies_total: "Unread request bodies read and dropped after an early answer, keeping the connection.",
    lingering_closes_total: "Connections closed in stages (half-close, then read) after an early answer.",
    discarded_bytes_total: "Request body bytes read and dropped after an early answer.",
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
    pub verifier: Arc<Verifier>,
}

impl Registry {
    /// Prometheus text exposition format, summed over workers.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        for (name, help, get) in COUNTERS {
            let total: u64 = self
                .workers
                .iter()
                .map(|w| get(w).load(Ordering::Relaxed))
                .sum();
            out.push_str(&format!(
                "# HELP regproxy_{name} {help}\n# TYPE regproxy_{name} counter\nregproxy_{name} {total}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP regproxy_password_hashes_total Password hashes computed (bcrypt runs), all cores.\n\
             # TYPE regproxy_password_hashes_total counter\nregproxy_password_hashes_total {}\n",
            self.verifier.hash_runs()
        ));
        out
    }
}
