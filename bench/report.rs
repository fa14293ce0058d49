//! The end-of-run report: one structure, printed as a table on stdout and
//! written as JSON with `--json FILE`, so both always say the same thing.
//!
//! Rates are over the measured phase's wall time (setup excluded). MB are
//! decimal (10^6 bytes) and count body bytes both ways; latencies are from
//! the first byte written to the last byte of the response read, connecting
//! excluded (connections have their own row).

use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::{Outcome, RunConfig};
use crate::stats::{ImageRecord, KindStats};
use crate::units::{format_bytes, format_count, format_micros};

/// Latency percentiles of one row, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// One row of a table: a request kind, an operation kind, or a total.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// Completed with an expected answer.
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub mb_per_second: f64,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    /// The request (or `connect`) that failed.
    pub request: String,
    /// What went wrong: `status 401`, `digest`, `timeout`, ...
    pub kind: String,
    pub count: u64,
    pub sample: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub image: Option<String>,
    pub seconds: f64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub scenario: String,
    pub target: String,
    pub threads: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub count: Option<u64>,
    pub duration_s: Option<f64>,
    pub blob_size: u64,
    pub layers: u32,
    pub monolithic: bool,
    pub verify: bool,
    pub setup: Setup,
    pub elapsed_s: f64,
    /// Every request together.
    pub total: Row,
    pub requests: Vec<Row>,
    pub operations: Vec<Row>,
    pub connects: Row,
    pub errors: Vec<ErrorRow>,
    /// Operations cut at the deadline's grace period.
    pub cancelled: u64,
    pub images: Vec<ImageRecord>,
}

pub(crate) fn row(name: &str, k: &KindStats, secs: f64) -> Row {
    let secs = secs.max(1e-9);
    Row {
        name: name.to_owned(),
        ok: k.ok,
        errors: k.errors,
        per_second: k.ok as f64 / secs,
        bytes_sent: k.sent,
        bytes_received: k.received,
        mb_per_second: (k.sent + k.received) as f64 / secs / 1e6,
        latency_us: Latency {
            p50: k.quantile_us(0.5),
            p90: k.quantile_us(0.9),
            p99: k.quantile_us(0.99),
            p99_9: k.quantile_us(0.999),
            max: k.max_us(),
            mean: k.mean_us(),
        },
    }
}

impl Report {
    pub fn new(cfg: &RunConfig, out: &Outcome) -> Self {
        let secs = out.elapsed.as_secs_f64();
        let s = &out.stats;
        let mut total = KindStats::default();
        for k in s.requests.values() {
            // Same bounds everywhere, so adding cannot fail.
            let _ = total.hist.add(&k.hist);
            total.ok += k.ok;
            total.errors += k.errors;
            total.sent += k.sent;
            total.received += k.received;
            total.max_ns = total.max_ns.max(k.max_ns);
        }
        let plan = &cfg.plan;
        Self {
            version: env!("CARGO_PKG_VERSION"),
            scenario: plan.scenario.to_string(),
            target: cfg.target.url.clone(),
            threads: out.threads,
            concurrency: cfg.concurrency,
            connections: cfg.connections,
            count: cfg.count,
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            blob_size: plan.blob_size,
            layers: plan.layers,
            monolithic: cfg.monolithic,
            verify: cfg.verify,
            setup: Setup {
                image: out.setup.image.clone(),
                seconds: out.setup.seconds,
            },
            elapsed_s: secs,
            total: row("all requests", &total, secs),
            requests: s.requests.iter().map(|(n, k)| row(n, k, secs)).collect(),
            operations: s.ops.iter().map(|(n, k)| row(n, k, secs)).collect(),
            connects: row("connect", &s.connects, secs),
            errors: s
                .errors
                .iter()
                .map(|((request, kind), e)| ErrorRow {
                    request: request.clone(),
                    kind: kind.clone(),
                    count: e.count,
                    sample: e.sample.clone(),
                })
                .collect(),
            cancelled: s.cancelled,
            images: s.images.clone(),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|e| e.count).sum()
    }

    pub fn to_json(&self) -> String {
        // Plain numbers and strings: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let ops: u64 = self.operations.iter().map(|r| r.ok + r.errors).sum();
        let _ = writeln!(
            o,
            "regbench {} {}: {ops} operations in {:.2}s ({} threads, {} clients, {} connections{})",
            self.scenario,
            self.target,
            self.elapsed_s,
            self.threads,
            self.concurrency,
            self.connections,
            if self.monolithic { ", monolithic" } else { "" },
        );
        if let Some(image) = &self.setup.image {
            let _ = writeln!(o, "image: {image}, prepared in {:.2}s", self.setup.seconds);
        }
        if matches!(self.scenario.as_str(), "push" | "pull" | "ci") {
            let _ = writeln!(
                o,
                "blobs: {} x {}{}",
                self.layers,
                format_bytes(self.blob_size),
                if self.verify {
                    ", digests verified"
                } else {
                    ", not verified"
                }
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<16} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "request", "ok", "errors", "req/s", "MB/s", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in &self.requests {
            table_row(&mut o, r);
        }
        table_row(&mut o, &self.total);
        if self.connects.ok + self.connects.errors > 0 {
            table_row(&mut o, &self.connects);
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<16} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "operation", "ok", "errors", "ops/s", "", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in &self.operations {
            table_row(&mut o, r);
        }
        if self.cancelled > 0 {
            let _ = writeln!(o, "cancelled at the deadline: {}", self.cancelled);
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(o, "errors");
            for e in &self.errors {
                let _ = writeln!(
                    o,
                    "  {:<14} {:<12} {:>7}  {}",
                    e.request, e.kind, e.count, e.sample
                );
            }
        }
        o
    }
}

pub(crate) fn table_row(o: &mut String, r: &Row) {
    let mb = if r.bytes_sent + r.bytes_received > 0 {
        format!("{:.2}", r.mb_per_second)
    } else {
        "-".to_owned()
    };
    let lat = |v: f64| {
        if r.ok == 0 {
            "-".to_owned()
        } else {
            format_micros(v)
        }
    };
    let l = &r.latency_us;
    let _ = writeln!(
        o,
        "{:<16} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        r.name,
        r.ok,
        r.errors,
        format_count(r.per_second),
        mb,
        lat(l.p50),
        lat(l.p90),
        lat(l.p99),
        lat(l.p99_9),
        lat(l.max),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rows_and_table() {
        let mut k = KindStats::default();
        for _ in 0..10 {
            k.record(Duration::from_micros(500), 1_000_000, 0);
        }
        let r = row("upload PATCH", &k, 2.0);
        assert_eq!(r.ok, 10);
        assert_eq!(r.per_second, 5.0);
        assert_eq!(r.mb_per_second, 5.0);
        assert!((r.latency_us.p99 - 500.0).abs() < 1.0);
        let mut o = String::new();
        table_row(&mut o, &r);
        assert!(o.starts_with("upload PATCH"), "{o}");
        assert!(o.contains("500µs"), "{o}");
        let empty = row("connect", &KindStats::default(), 0.0);
        let mut o = String::new();
        table_row(&mut o, &empty);
        assert!(o.trim_end().ends_with('-'), "{o}");
    }
}
