//! What a run measured. Every thread keeps its own [`Stats`] (no sharing on
//! the request path) and the main thread merges them at the end; the only
//! shared state is [`Live`], a handful of relaxed counters for the progress
//! line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::Failure;

/// Latencies are recorded in nanoseconds between these bounds; faster or
/// slower values are clamped (and max is kept exactly on the side).
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 3_600 * 1_000_000_000;
/// Three significant digits: p99 of 1.234 ms is told from 1.235 ms.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Images remembered for `--json` (push lists what it pushed).
pub const MAX_IMAGES: usize = 100;

/// Counters the progress line reads while the run goes.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub ops: AtomicU64,
}

impl Live {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latency and volume of one request kind (or one operation kind).
#[derive(Debug, Clone)]
pub struct KindStats {
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub sent: u64,
    pub received: u64,
    pub max_ns: u64,
}

impl Default for KindStats {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            ok: 0,
            errors: 0,
            sent: 0,
            received: 0,
            max_ns: 0,
        }
    }
}

impl KindStats {
    pub fn record(&mut self, latency: Duration, sent: u64, received: u64) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
        self.max_ns = self.max_ns.max(ns);
        self.ok += 1;
        self.sent += sent;
        self.received += received;
    }

    fn merge(&mut self, other: &KindStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        self.sent += other.sent;
        self.received += other.received;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The latency at `quantile` (0..=1), in microseconds.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        // The histogram reports a bucket's upper edge, which may lie a
        // fraction above the largest value actually seen.
        self.hist.value_at_quantile(quantile).min(self.max_ns) as f64 / 1_000.0
    }

    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1_000.0
    }

    pub fn mean_us(&self) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        self.hist.mean() / 1_000.0
    }
}

/// Failures of one kind on one request kind, and one message to show.
#[derive(Debug, Clone)]
pub struct ErrorStats {
    pub count: u64,
    pub sample: String,
}

/// An image a run pushed or pulled, for `--json` and the tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageRecord {
    pub action: &'static str,
    pub repository: String,
    pub tag: String,
    pub manifest_digest: String,
    /// Config first, then the layers in manifest order.
    pub blobs: Vec<String>,
}

/// One thread's measurements, merged into one at the end.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: BTreeMap<&'static str, KindStats>,
    pub ops: BTreeMap<&'static str, KindStats>,
    /// New connections: TCP connect plus the TLS handshake.
    pub connects: KindStats,
    /// Keyed by (request or operation kind, failure kind).
    pub errors: BTreeMap<(String, String), ErrorStats>,
    /// Operations cut at the hard deadline.
    pub cancelled: u64,
    pub images: Vec<ImageRecord>,
}

impl Stats {
    pub fn request_ok(&mut self, kind: &'static str, latency: Duration, sent: u64, received: u64) {
        self.requests
            .entry(kind)
            .or_default()
            .record(latency, sent, received);
    }

    pub fn op_ok(&mut self, kind: &'static str, latency: Duration) {
        self.ops.entry(kind).or_default().record(latency, 0, 0);
    }

    /// Counts a failed request (or connection attempt) and files its
    /// failure for the error table.
    pub fn request_failed(&mut self, kind: &'static str, f: &Failure) {
        self.requests.entry(kind).or_default().errors += 1;
        self.file_error(kind, f);
    }

    /// Counts a failed operation. Its cause was filed by the request that
    /// failed, so it is not filed twice.
    pub fn op_failed(&mut self, kind: &'static str) {
        self.ops.entry(kind).or_default().errors += 1;
    }

    pub fn file_error(&mut self, kind: &str, f: &Failure) {
        let e = self
            .errors
            .entry((kind.to_owned(), f.kind.clone()))
            .or_insert_with(|| ErrorStats {
                count: 0,
                sample: f.message.clone(),
            });
        e.count += 1;
    }

    pub fn remember(&mut self, image: ImageRecord) {
        if self.images.len() < MAX_IMAGES {
            self.images.push(image);
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (k, v) in &other.requests {
            self.requests.entry(k).or_default().merge(v);
        }
        for (k, v) in &other.ops {
            self.ops.entry(k).or_default().merge(v);
        }
        for (k, v) in other.errors {
            self.errors
                .entry(k)
                .and_modify(|e| e.count += v.count)
                .or_insert(v);
        }
        self.connects.merge(&other.connects);
        self.cancelled += other.cancelled;
        for image in other.images {
            self.remember(image);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Stats::default();
        for us in 1..=1000u64 {
            a.request_ok("blob GET", Duration::from_micros(us), 0, 10);
        }
        let mut b = Stats::default();
        b.request_ok("blob GET", Duration::from_secs(2), 5, 0);
        b.request_failed("blob GET", &Failure::new("digest", "first"));
        b.request_failed("blob GET", &Failure::new("digest", "second"));
        b.op_failed("pull");
        a.merge(b);
        let k = &a.requests["blob GET"];
        assert_eq!(k.ok, 1001);
        assert_eq!(k.errors, 2);
        assert_eq!((k.sent, k.received), (5, 10_000));
        let p50 = k.quantile_us(0.5);
        assert!((499.0..=502.0).contains(&p50), "{p50}");
        let p99 = k.quantile_us(0.99);
        assert!((989.0..=992.0).contains(&p99), "{p99}");
        assert_eq!(k.max_us(), 2e6);
        let e = &a.errors[&("blob GET".to_owned(), "digest".to_owned())];
        assert_eq!((e.count, e.sample.as_str()), (2, "first"));
        assert_eq!(a.errors.values().map(|e| e.count).sum::<u64>(), 2);
        assert_eq!(a.ops["pull"].errors, 1);
        assert_eq!(KindStats::default().quantile_us(0.99), 0.0);
    }

    #[test]
    fn images_are_bounded() {
        let mut s = Stats::default();
        for i in 0..MAX_IMAGES + 5 {
            s.remember(ImageRecord {
                action: "push",
                repository: "r".into(),
                tag: i.to_string(),
                manifest_digest: String::new(),
                blobs: vec![],
            });
        }
        assert_eq!(s.images.len(), MAX_IMAGES);
    }
}
