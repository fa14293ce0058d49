//! `regbench report ACCESS_LOG`: a real traffic log summarised in the same
//! tables as a benchmark run, so production traffic and a bench scenario
//! can be set side by side.
//!
//! Reads regproxy's access log in either format: JSON (`[log] format =
//! "json"`) as written, or the text line, whose action and repository are
//! derived from the request line by regproxy's own route classifier (the
//! same code that labelled the JSON line). Lines that are neither are
//! counted and skipped.
//! Three tables: per action (requests, errors, rate and MB/s over the
//! log's time span, latency percentiles of every request), the ten slowest
//! repositories by p99, and error causes (status and error message).
//!
//! Parsing and aggregation are plain functions over strings ([`Summary`]);
//! only [`run`] touches a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::report::{row, table_row};
use crate::stats::KindStats;
use crate::units::format_micros;

/// Repositories shown in the slowest table.
const SLOWEST: usize = 10;

/// The fields of a JSON log line this report reads.
#[derive(Debug, Deserialize)]
pub struct Line {
    pub time: Option<String>,
    #[serde(default)]
    pub action: String,
    pub repository: Option<String>,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub duration_ms: f64,
    pub error: Option<String>,
}

/// Everything the report prints.
#[derive(Debug, Default)]
pub struct Summary {
    pub actions: BTreeMap<String, Action>,
    /// Request durations per repository, in microseconds.
    pub repositories: BTreeMap<String, Vec<u64>>,
    /// (status, error) of failed requests, and how often.
    pub errors: BTreeMap<(u16, String), u64>,
    pub lines: u64,
    pub skipped: u64,
    /// Earliest and latest `time`, seconds since the epoch.
    pub span: Option<(f64, f64)>,
}

/// One action's requests.
#[derive(Debug, Default)]
pub struct Action {
    pub stats: KindStats,
    pub ok: u64,
    pub errors: u64,
}

impl Summary {
    /// Adds one log line; anything that is not a JSON object is skipped.
    pub fn add_line(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match serde_json::from_str::<Line>(text) {
            Ok(line) => self.add(&line),
            Err(_) => match parse_text(text) {
                Some(line) => self.add(&line),
                None => self.skipped += 1,
            },
        }
    }

    pub fn add(&mut self, line: &Line) {
        self.lines += 1;
        let latency = Duration::from_secs_f64((line.duration_ms / 1e3).max(0.0));
        let action = if line.action.is_empty() {
            "other"
        } else {
            &line.action
        };
        let a = self.actions.entry(action.to_owned()).or_default();
        a.stats.record(latency, line.bytes_in, line.bytes_out);
        if line.status >= 400 {
            a.errors += 1;
            let cause = line.error.clone().unwrap_or_else(|| "-".to_owned());
            *self.errors.entry((line.status, cause)).or_default() += 1;
        } else {
            a.ok += 1;
        }
        if let Some(repo) = &line.repository {
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.repositories.entry(repo.clone()).or_default().push(us);
        }
        if let Some(t) = line.time.as_deref().and_then(parse_rfc3339) {
            self.span = Some(match self.span {
                None => (t, t),
                Some((a, b)) => (a.min(t), b.max(t)),
            });
        }
    }

    /// The three tables.
    pub fn table(&self, source: &str) -> String {
        let secs = self.span.map_or(0.0, |(a, b)| b - a);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "regbench report {source}: {} requests over {secs:.2}s{}",
            self.lines,
            if self.skipped > 0 {
                format!(" ({} lines not understood, skipped)", self.skipped)
            } else {
                String::new()
            }
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<16} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "action", "ok", "errors", "req/s", "MB/s", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut total = KindStats::default();
        let (mut ok, mut errors) = (0, 0);
        for (name, a) in &self.actions {
            let mut r = row(name, &a.stats, secs);
            (r.ok, r.errors) = (a.ok, a.errors);
            table_row(&mut o, &r);
            merge_into(&mut total, &a.stats);
            (ok, errors) = (ok + a.ok, errors + a.errors);
        }
        let mut r = row("total", &total, secs);
        (r.ok, r.errors) = (ok, errors);
        table_row(&mut o, &r);

        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<40} {:>9} {:>8} {:>8} {:>10}",
            "slowest repositories", "requests", "p50", "p99", "total"
        );
        for (name, n, p50, p99, sum) in self.slowest() {
            let _ = writeln!(
                o,
                "{name:<40} {n:>9} {:>8} {:>8} {:>10}",
                format_micros(p50 as f64),
                format_micros(p99 as f64),
                format_micros(sum as f64)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(o, "errors");
            let mut causes: Vec<_> = self.errors.iter().collect();
            causes.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            for ((status, cause), n) in causes {
                let _ = writeln!(o, "  {status:<6} {n:>7}  {cause}");
            }
        }
        o
    }

    /// (repository, requests, p50 µs, p99 µs, total µs), slowest p99 first.
    pub fn slowest(&self) -> Vec<(String, usize, u64, u64, u64)> {
        let mut rows: Vec<_> = self
            .repositories
            .iter()
            .map(|(name, durations)| {
                let mut d = durations.clone();
                d.sort_unstable();
                (
                    name.clone(),
                    d.len(),
                    quantile(&d, 0.5),
                    quantile(&d, 0.99),
                    d.iter().sum::<u64>(),
                )
            })
            .collect();
        rows.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| b.4.cmp(&a.4)));
        rows.truncate(SLOWEST);
        rows
    }
}

fn merge_into(total: &mut KindStats, k: &KindStats) {
    let _ = total.hist.add(&k.hist);
    total.ok += k.ok;
    total.sent += k.sent;
    total.received += k.received;
    total.max_ns = total.max_ns.max(k.max_ns);
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// `2026-11-29T04:24:23.123Z` as seconds since the epoch (UTC only, as
/// regproxy writes it).
pub fn parse_rfc3339(t: &str) -> Option<f64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.splitn(3, ':');
    let (hh, mm) = (
        h.next()?.parse::<i64>().ok()?,
        h.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = h.next()?.parse().ok()?;
    // Days from civil (H. Hinnant), the inverse of the log's formatter.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// A text-format line:
/// `time client user "METHOD target HTTP/x" status in out seconds "ua" [request_id=…] [error="…"]`.
pub fn parse_text(text: &str) -> Option<Line> {
    let (time, rest) = text.split_once(' ')?;
    parse_rfc3339(time)?;
    let (_client, rest) = rest.split_once(' ')?;
    let (_user, rest) = rest.split_once(' ')?;
    // Quotes inside the request line are written as \x22, so the next
    // quote closes it.
    let rest = rest.strip_prefix('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut fields = rest.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let bytes_in = fields.next()?.parse().ok()?;
    let bytes_out = fields.next()?.parse().ok()?;
    let seconds: f64 = fields.next()?.parse().ok()?;
    let error = rest
        .split_once(" error=\"")
        .map(|(_, e)| e.strip_suffix('"').unwrap_or(e).to_owned());
    let mut parts = request.split(' ');
    let method = parts.next()?;
    let target = parts.next().unwrap_or("-");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let route = regproxy_core::route::classify(method, path, query, None).ok();
    let summary = regproxy_core::route::summary::summarize(method, path, query, route.as_ref());
    Some(Line {
        time: Some(time.to_owned()),
        action: summary.kind().as_str().to_owned(),
        repository: summary.repository.map(str::to_owned),
        status,
        bytes_in,
        bytes_out,
        duration_ms: seconds * 1e3,
        error,
    })
}

/// Reads `path` and prints the report.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut s = Summary::default();
    for line in text.lines() {
        s.add_line(line);
    }
    if s.lines == 0 {
        anyhow::bail!("{}: no regproxy access-log lines", path.display());
    }
    print!("{}", s.table(&path.display().to_string()));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"time":"2026-11-29T04:24:23.000Z","client":"127.0.0.1","method":"GET","path":"/v2/","action":"ping","status":200,"bytes_in":0,"bytes_out":2,"duration_ms":1.000,"request_id":"a"}
{"time":"2026-11-29T04:24:24.000Z","client":"127.0.0.1","user":"u","method":"GET","path":"/v2/a/manifests/v1","repository":"a","action":"pull","tag":"v1","status":200,"bytes_in":0,"bytes_out":1000,"duration_ms":5.000,"request_id":"b"}
{"time":"2026-11-29T04:24:25.000Z","client":"127.0.0.1","method":"GET","path":"/v2/b/manifests/v1","repository":"b","action":"pull","tag":"v1","status":401,"bytes_in":0,"bytes_out":0,"duration_ms":50.000,"request_id":"c","error":"authentication required"}
not a log line
"#;

    #[test]
    fn aggregates_actions_repositories_and_errors() {
        let mut s = Summary::default();
        for l in LOG.lines() {
            s.add_line(l);
        }
        assert_eq!((s.lines, s.skipped), (3, 1));
        let pull = &s.actions["pull"];
        assert_eq!((pull.ok, pull.errors, pull.stats.received), (1, 1, 1000));
        assert_eq!(s.errors[&(401, "authentication required".to_owned())], 1);
        let slowest = s.slowest();
        assert_eq!(slowest[0].0, "b");
        assert_eq!(slowest[0].3, 50_000);
        assert_eq!(s.span, Some((1_795_926_263.0, 1_795_926_265.0)));
        let t = s.table("log");
        assert!(
            t.starts_with(
                "regbench report log: 3 requests over 2.00s (1 lines not understood, skipped)"
            ),
            "{t}"
        );
        assert!(t.contains("\npull "), "{t}");
        assert!(
            t.contains("  401          1  authentication required"),
            "{t}"
        );
    }

    #[test]
    fn text_lines_are_classified_like_json_ones() {
        let l = parse_text(
            "2026-11-29T04:45:22.183Z 127.0.0.1 u \"PUT /v2/team/app/manifests/1 HTTP/1.1\" 201 402 0 0.004745 \"skopeo/1.9.3\" request_id=x",
        )
        .unwrap();
        assert_eq!(
            (l.action.as_str(), l.repository.as_deref()),
            ("push", Some("team/app"))
        );
        assert_eq!((l.status, l.bytes_in, l.bytes_out), (201, 402, 0));
        assert!((l.duration_ms - 4.745).abs() < 1e-9);
        assert_eq!(l.error, None);
        let l = parse_text(
            "2026-11-29T04:45:22.183Z 127.0.0.1 - \"POST /v2/a/blobs/uploads/?mount=sha256:00&from=b HTTP/1.1\" 401 0 0 0.000100 \"x\" request_id=y error=\"authentication required\"",
        )
        .unwrap();
        assert_eq!(l.action, "mount");
        assert_eq!(l.error.as_deref(), Some("authentication required"));
        let l =
            parse_text("2026-11-29T04:45:22.183Z 127.0.0.1 - \"- - HTTP/1.1\" 400 0 0 0.0 \"-\"")
                .unwrap();
        assert_eq!((l.action.as_str(), l.repository), ("other", None));
        assert!(parse_text("garbage line").is_none());
    }

    #[test]
    fn rfc3339_round_trips_the_log_format() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:01.500Z"),
            Some(951_782_401.5)
        );
        assert_eq!(parse_rfc3339("2000-02-29 00:00:01"), None);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99)), (50, 99));
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
