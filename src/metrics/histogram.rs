//! Latency histograms with fixed Prometheus buckets, and the per-worker
//! traffic block (request duration and registry time to first byte by
//! action and status class, body bytes by action).
//!
//! A worker is the only writer of its block: an observation is a few
//! uncontended relaxed adds. Buckets are stored per bucket (not
//! cumulative) and made cumulative at scrape time, where the blocks of all
//! workers are summed, so `_bucket{le="+Inf"}` always equals `_count`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::route::summary::Kind;

/// Upper bounds, in microseconds: 1 ms to 60 s. One more bucket, `+Inf`,
/// follows.
pub const BOUNDS_US: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
const SLOTS: usize = BOUNDS_US.len() + 1;

/// Status classes, the `status` label.
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The [`CLASSES`] index of `status`; anything outside 200–499 counts as
/// 5xx, as `WorkerMetrics::count_status` does.
pub fn class_of(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        _ => 3,
    }
}

/// The bucket an observation of `us` microseconds falls in: the first
/// bound it does not exceed, or `+Inf`.
pub fn bucket_of(us: u64) -> usize {
    BOUNDS_US.partition_point(|&b| b < us)
}

/// One histogram, written by one worker.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(bucket_of(us)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (dst, src) in s.buckets.iter_mut().zip(&self.buckets) {
            *dst = src.load(Ordering::Relaxed);
        }
        s.sum_us = self.sum_us.load(Ordering::Relaxed);
        s
    }
}

/// A histogram's values, summed over workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub buckets: [u64; SLOTS],
    pub sum_us: u64,
}

impl Snapshot {
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `_bucket`, `_sum` and `_count` lines of series `name` with
    /// `labels` (`k="v",…`, without braces).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = match BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {:.6}\n{name}_count{{{labels}}} {cumulative}",
            self.sum_us as f64 / 1e6
        );
    }
}

/// A worker's traffic block: histograms per (action, status class), bytes
/// per action.
#[derive(Debug, Default)]
pub struct Traffic {
    duration: [[Histogram; 4]; Kind::ALL.len()],
    ttfb: [[Histogram; 4]; Kind::ALL.len()],
    bytes_in: [AtomicU64; Kind::ALL.len()],
    bytes_out: [AtomicU64; Kind::ALL.len()],
}

/// One finished request, as the traffic block counts it.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub kind: Kind,
    pub status: u16,
    pub duration: Duration,
    pub ttfb: Option<Duration>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Traffic {
    pub fn observe(&self, o: &Observation) {
        let (k, c) = (o.kind.index(), class_of(o.status));
        if let Some(h) = self.duration.get(k).and_then(|row| row.get(c)) {
            h.observe(o.duration);
        }
        if let (Some(t), Some(h)) = (o.ttfb, self.ttfb.get(k).and_then(|row| row.get(c))) {
            h.observe(t);
        }
        if let Some(b) = self.bytes_in.get(k) {
            b.fetch_add(o.bytes_in, Ordering::Relaxed);
        }
        if let Some(b) = self.bytes_out.get(k) {
            b.fetch_add(o.bytes_out, Ordering::Relaxed);
        }
    }
}

/// Prometheus text for the traffic blocks of all workers, summed.
pub fn render<'a>(blocks: impl Iterator<Item = &'a Traffic> + Clone, out: &mut String) {
    type Pick = fn(&Traffic) -> &[[Histogram; 4]; Kind::ALL.len()];
    let histograms: [(&str, &str, Pick); 2] = [
        (
            "regproxy_request_duration_seconds",
            "Whole requests, from the head's arrival to the answer's last byte, by action and status class.",
            |t| &t.duration,
        ),
        (
            "regproxy_upstream_ttfb_seconds",
            "From sending a request to the registry to reading its response head (upload bodies included), by action and status class.",
            |t| &t.ttfb,
        ),
    ];
    for (name, help, pick) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for kind in Kind::ALL {
            for (c, class) in CLASSES.iter().enumerate() {
                let mut sum = Snapshot::default();
                for t in blocks.clone() {
                    if let Some(h) = pick(t).get(kind.index()).and_then(|r| r.get(c)) {
                        sum.add(&h.snapshot());
                    }
                }
                // Label sets that never saw a request stay out of the
                // scrape; the rest stay forever, as counters do.
                if sum.count() > 0 {
                    let labels = format!("action=\"{}\",status=\"{class}\"", kind.as_str());
                    sum.render(name, &labels, out);
                }
            }
        }
    }
    type Bytes = fn(&Traffic) -> &[AtomicU64; Kind::ALL.len()];
    let bytes: [(&str, &str, Bytes); 2] = [
        (
            "regproxy_request_body_bytes_by_action_total",
            "Request body bytes read from clients, by action.",
            |t| &t.bytes_in,
        ),
        (
            "regproxy_response_body_bytes_by_action_total",
            "Response body bytes sent to clients, by action.",
            |t| &t.bytes_out,
        ),
    ];
    for (name, help, pick) in bytes {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for kind in Kind::ALL {
            let total: u64 = blocks
                .clone()
                .filter_map(|t| pick(t).get(kind.index()))
                .map(|a| a.load(Ordering::Relaxed))
                .sum();
            let _ = writeln!(out, "{name}{{action=\"{}\"}} {total}", kind.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(60_000_000), 14);
        assert_eq!(bucket_of(60_000_001), 15);
        assert_eq!(bucket_of(u64::MAX), 15);
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            [200, 204, 307, 401, 499, 502, 0].map(class_of),
            [0, 0, 1, 2, 2, 3, 3]
        );
    }

    #[test]
    fn render_is_cumulative_and_ends_at_count() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 700, 90_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.snapshot().render("x", "a=\"b\"", &mut out);
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"60\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 90.706000\n"), "{out}");
        assert!(out.ends_with("x_count{a=\"b\"} 5\n"), "{out}");
    }

    #[test]
    fn workers_are_summed_per_label_set() {
        let (a, b) = (Traffic::default(), Traffic::default());
        let pull = Observation {
            kind: Kind::Pull,
            status: 200,
            duration: Duration::from_millis(2),
            ttfb: Some(Duration::from_millis(1)),
            bytes_in: 0,
            bytes_out: 10,
        };
        a.observe(&pull);
        b.observe(&pull);
        b.observe(&Observation {
            kind: Kind::Ping,
            status: 401,
            ttfb: None,
            ..pull
        });
        let mut out = String::new();
        render([&a, &b].into_iter(), &mut out);
        let has = |line: &str| out.lines().any(|l| l == line);
        assert!(
            has("regproxy_request_duration_seconds_count{action=\"pull\",status=\"2xx\"} 2"),
            "{out}"
        );
        assert!(
            has("regproxy_request_duration_seconds_count{action=\"ping\",status=\"4xx\"} 1"),
            "{out}"
        );
        assert!(
            has("regproxy_upstream_ttfb_seconds_count{action=\"pull\",status=\"2xx\"} 2"),
            "{out}"
        );
        assert!(
            !out.contains("regproxy_upstream_ttfb_seconds_count{action=\"ping\""),
            "{out}"
        );
        assert!(
            has("regproxy_response_body_bytes_by_action_total{action=\"pull\"} 20"),
            "{out}"
        );
        assert!(
            has("regproxy_request_body_bytes_by_action_total{action=\"push\"} 0"),
            "{out}"
        );
    }
}
