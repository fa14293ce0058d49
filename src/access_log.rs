//! The access log: one line per request, the last step of the pipeline.
//!
//! Each worker formats into its own bounded buffer ([`lines::Lines`]) and
//! hands whole buffers to its writer thread ([`writer`]) when the buffer
//! fills or its flush timer fires, so cores never contend for a log lock
//! per request and a worker never waits on a slow disk or a full pipe.
//! With `O_APPEND` (files) or the stdout lock, whole-buffer writes from
//! different writers never interleave mid-line.
//!
//! Back-pressure: a worker hands over a buffer only when its writer has
//! room ([`writer::QUEUED_BUFFERS`] buffers in flight); otherwise lines
//! keep collecting up to [`PENDING_LIMIT`] bytes, and past that each new
//! line is dropped and counted in `regproxy_access_log_dropped_total`
//! (as are lines whose write failed). Nothing is queued without bound: a
//! worker's log holds at most `PENDING_LIMIT` plus its queued buffers.
//!
//! Two formats (`[log] format`):
//! - `text`, space separated:
//!   `time client user "METHOD target HTTP/x" status bytes_in bytes_out seconds "user-agent" request_id=ID [error="…"]`
//! - `json`, one object per line ([`json`]).
//!
//! The user is `-` (text) or absent (json) unless the request
//! authenticated. No credential is ever written: the Authorization header
//! is not part of any field.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogTarget, LogFormat};
use crate::metrics::WorkerMetrics;
use crate::route::summary::Summary;
use crate::text::{push_byte_escape, push_duration, push_int, push_padded, IpText, Unit};

pub mod json;
pub mod lines;
mod writer;

use lines::Lines;

/// Buffered lines are handed to the writer once they reach this size.
const FLUSH_BYTES: usize = 32 * 1024;
/// Lines never wait longer than this for their write.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most bytes of lines a worker holds while its writer is behind; past
/// this, new lines are dropped and counted.
pub const PENDING_LIMIT: usize = 1024 * 1024;
/// Longest user-agent kept in a line; the rest is cut.
pub(crate) const MAX_UA_CHARS: usize = 256;

/// One finished request.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The real client: through trusted balancers, whom they report.
    pub client: IpAddr,
    pub user: Option<&'a str>,
    pub method: &'a str,
    /// The request target as sent (path and query).
    pub target: &'a str,
    pub http10: bool,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From the head's arrival to the last byte of the answer.
    pub duration: Duration,
    pub user_agent: Option<&'a [u8]>,
    pub error: Option<&'a str>,
    pub request_id: &'a str,
    /// Kind, repository, digest or tag.
    pub summary: &'a Summary<'a>,
    /// The registry server that answered, if the request was forwarded.
    pub upstream: Option<SocketAddr>,
    /// From sending the head to the registry until its response head was
    /// read (for an upload, the body's streaming included).
    pub upstream_ttfb: Option<Duration>,
    /// The TLS version of the client connection (`TLSv1.3`); `None`: plain.
    pub tls: Option<&'static str>,
    /// What the edge cache did: `hit`, `stale`, `wait`, `fill` or `miss`;
    /// `None`: not cacheable, or no cache.
    pub cache: Option<&'static str>,
}

impl Entry<'_> {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }
}

/// A worker's access log.
pub struct AccessLog {
    format: LogFormat,
    lines: RefCell<Lines>,
    /// `None` when the log is off, or after [`AccessLog::close`].
    tx: RefCell<Option<SyncSender<String>>>,
    writer: RefCell<Option<JoinHandle<()>>>,
    metrics: Arc<Vec<WorkerMetrics>>,
    worker: usize,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens worker `worker`'s log and starts its writer thread; drops are
    /// counted in `metrics[worker]`.
    pub fn open(
        target: &AccessLogTarget,
        format: LogFormat,
        metrics: Arc<Vec<WorkerMetrics>>,
        worker: usize,
    ) -> std::io::Result<AccessLog> {
        let (tx, writer) = match writer::start(target, metrics.clone(), worker)? {
            Some((tx, handle)) => (Some(tx), Some(handle)),
            None => (None, None),
        };
        Ok(AccessLog {
            format,
            lines: RefCell::new(Lines::new(PENDING_LIMIT, FLUSH_BYTES + 1024)),
            tx: RefCell::new(tx),
            writer: RefCell::new(writer),
            metrics,
            worker,
        })
    }

    pub fn record(&self, e: &Entry<'_>) {
        if self.tx.borrow().is_none() {
            return;
        }
        let (kept, full) = {
            let mut lines = self.lines.borrow_mut();
            let now = SystemTime::now();
            let kept = lines.push_with(|out| match self.format {
                LogFormat::Text => format_entry(e, now, out),
                LogFormat::Json => json::format_entry(e, now, out),
            });
            (kept, lines.len() >= FLUSH_BYTES)
        };
        if !kept {
            self.count_dropped(1);
        }
        if full {
            self.flush();
        }
    }

    /// Hands what is buffered to the writer, if it has room; never waits.
    pub fn flush(&self) {
        let tx = self.tx.borrow();
        let Some(tx) = tx.as_ref() else { return };
        let mut lines = self.lines.borrow_mut();
        if lines.is_empty() {
            return;
        }
        match tx.try_send(lines.take()) {
            Ok(()) => {}
            // The writer is behind: keep collecting, up to the limit.
            Err(TrySendError::Full(buf)) => lines.restore(buf),
            Err(TrySendError::Disconnected(buf)) => {
                self.count_dropped(lines::count(&buf));
            }
        }
    }

    /// Writes everything still buffered and waits for the writer: for a
    /// stopping worker, which may wait.
    pub fn close(&self) {
        let Some(tx) = self.tx.borrow_mut().take() else {
            return;
        };
        let rest = self.lines.borrow_mut().take();
        if !rest.is_empty() && tx.send(rest).is_err() {
            tracing::warn!("access log writer gone; last lines dropped");
        }
        drop(tx);
        if let Some(handle) = self.writer.borrow_mut().take() {
            let _ = handle.join();
        }
    }

    fn count_dropped(&self, n: u64) {
        if let Some(m) = self.metrics.get(self.worker) {
            WorkerMetrics::add(&m.access_log_dropped_total, n);
        }
    }
}

/// Appends one line for `e` to `out`. Written without `core::fmt`
/// ([`crate::text`]): the line is formatted on the worker for every
/// request.
pub fn format_entry(e: &Entry<'_>, now: SystemTime, out: &mut String) {
    rfc3339_millis(now, out);
    out.push(' ');
    out.push_str(IpText::new(e.client).as_str());
    out.push(' ');
    out.push_str(e.user.unwrap_or("-"));
    out.push_str(" \"");
    out.push_str(e.method);
    out.push(' ');
    escape_into(e.target.as_bytes(), usize::MAX, out);
    out.push_str(if e.http10 {
        " HTTP/1.0\" "
    } else {
        " HTTP/1.1\" "
    });
    for n in [u64::from(e.status), e.bytes_in, e.bytes_out] {
        push_int(out, n);
        out.push(' ');
    }
    push_duration(out, e.duration, Unit::Seconds);
    out.push_str(" \"");
    escape_into(e.user_agent.unwrap_or(b"-"), MAX_UA_CHARS, out);
    out.push_str("\" request_id=");
    escape_into(e.request_id.as_bytes(), usize::MAX, out);
    if let Some(err) = e.error {
        out.push_str(" error=\"");
        escape_into(err.as_bytes(), usize::MAX, out);
        out.push('"');
    }
    out.push('\n');
}

/// Printable ASCII passes; quotes, backslashes, controls and non-ASCII
/// become `\xHH`, so a client cannot forge log lines. At most `max` bytes
/// of `bytes` are written. (Copying runs between escapes, as the JSON
/// format does, measured no faster for these short fields.)
fn escape_into(bytes: &[u8], max: usize, out: &mut String) {
    for &b in bytes.iter().take(max) {
        if matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            push_byte_escape(out, b);
        }
    }
}

/// `2026-11-29T04:24:23.123Z`. The part up to the seconds changes once a
/// second, so each thread keeps the last one it wrote and only the
/// milliseconds are new per line.
pub(crate) fn rfc3339_millis(t: SystemTime, out: &mut String) {
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            rfc3339_seconds(secs, text);
            *at = secs;
        }
        out.push_str(text);
    });
    out.push('.');
    push_padded(out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
}

/// `2026-11-29T04:24:23` for `secs` since the epoch, from the
/// civil-from-days algorithm (H. Hinnant), to keep a date crate out of the
/// hot path.
fn rfc3339_seconds(secs: u64, out: &mut String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Never before 1970: the time is clamped to the epoch above.
    push_padded(out, u64::try_from(year).unwrap_or(0), 4);
    for (sep, n) in [
        ('-', month as u64),
        ('-', day as u64),
        ('T', rem / 3600),
        (':', rem / 60 % 60),
        (':', rem % 60),
    ] {
        out.push(sep);
        push_padded(out, n, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_line_without_secrets() {
        let mut out = String::new();
        let e = Entry {
            client: "127.0.0.1".parse().expect("ip"),
            user: Some("testuser"),
            method: "GET",
            target: "/v2/",
            http10: false,
            status: 200,
            bytes_in: 0,
            bytes_out: 2,
            duration: Duration::from_micros(1500),
            user_agent: Some(b"docker/24 \"x\""),
            error: None,
            request_id: "r-1",
            summary: &Summary::default(),
            upstream: None,
            upstream_ttfb: None,
            tls: None,
            cache: None,
        };
        format_entry(
            &e,
            UNIX_EPOCH + Duration::from_millis(1_795_926_263_123),
            &mut out,
        );
        assert_eq!(
            out,
            "2026-11-29T04:24:23.123Z 127.0.0.1 testuser \"GET /v2/ HTTP/1.1\" 200 0 2 0.001500 \"docker/24 \\x22x\\x22\" request_id=r-1\n"
        );
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        let mut s = String::new();
        for ms in [
            1_795_926_263_123,
            1_795_926_263_999,
            1_795_926_264_000,
            1_795_926_263_001,
        ] {
            rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms), &mut s);
            s.push(' ');
        }
        assert_eq!(
            s,
            "2026-11-29T04:24:23.123Z 2026-11-29T04:24:23.999Z 2026-11-29T04:24:24.000Z 2026-11-29T04:24:23.001Z "
        );
    }

    #[test]
    fn dates_across_eras() {
        for (secs, want) in [
            (0u64, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ] {
            let mut s = String::new();
            rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs), &mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn control_bytes_are_escaped() {
        let mut s = String::new();
        escape_into(b"a\nb\xff", usize::MAX, &mut s);
        assert_eq!(s, "a\\x0Ab\\xFF");
    }

    #[test]
    fn every_byte_is_escaped_as_core_fmt_writes_it_and_max_cuts() {
        for b in 0..=255u8 {
            let mut s = String::new();
            escape_into(&[b'a', b, b'z'], usize::MAX, &mut s);
            let want = if (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
                format!("a{}z", char::from(b))
            } else {
                format!("a\\x{b:02X}z")
            };
            assert_eq!(s, want);
        }
        let mut s = String::new();
        escape_into(b"ab\"cd", 3, &mut s);
        assert_eq!(s, "ab\\x22");
    }
}
