//! The access log: one line per request, the last step of the pipeline.
//!
//! Each worker formats into its own buffer and writes whole lines in one
//! `write(2)` when the buffer fills or its flush timer fires, so cores never
//! contend for a log lock per request. With `O_APPEND` (files) or a pipe
//! (stdout), whole-buffer writes from different workers never interleave
//! mid-line.
//!
//! Format, space separated:
//! `time client user "METHOD target HTTP/x" status bytes_in bytes_out seconds "user-agent" [error="…"]`
//! The user is `-` unless the request authenticated. No credential is ever
//! written: the Authorization header is not part of any field.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::AccessLogTarget;

/// Buffered lines are written once they reach this size.
const FLUSH_BYTES: usize = 32 * 1024;
/// Lines never wait longer than this for their write.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Longest user-agent kept in a line; the rest is cut.
const MAX_UA_CHARS: usize = 256;

/// One finished request.
#[derive(Debug)]
pub struct Entry<'a> {
    pub client: IpAddr,
    pub user: Option<&'a str>,
    pub method: &'a str,
    pub target: &'a str,
    pub http10: bool,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub user_agent: Option<&'a [u8]>,
    pub error: Option<&'a str>,
}

enum Sink {
    Stdout,
    File(File),
    Off,
}

/// A worker's access log.
pub struct AccessLog {
    sink: Sink,
    buf: RefCell<String>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> io::Result<AccessLog> {
        let sink = match target {
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::Off => Sink::Off,
            AccessLogTarget::File(path) => Sink::File(open_append(path)?),
        };
        Ok(AccessLog {
            sink,
            buf: RefCell::new(String::with_capacity(FLUSH_BYTES + 1024)),
        })
    }

    pub fn record(&self, e: &Entry<'_>) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        let full = {
            let mut buf = self.buf.borrow_mut();
            format_entry(e, SystemTime::now(), &mut buf);
            buf.len() >= FLUSH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Writes what is buffered. Errors are reported once per flush on stderr
    /// and the lines dropped: a full disk must not stop the proxy.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let res = match &self.sink {
            Sink::Stdout => io::stdout().lock().write_all(buf.as_bytes()),
            Sink::File(f) => (&*f).write_all(buf.as_bytes()),
            Sink::Off => Ok(()),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "access log write failed; lines dropped");
        }
        buf.clear();
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends one line for `e` to `out`.
pub fn format_entry(e: &Entry<'_>, now: SystemTime, out: &mut String) {
    rfc3339_millis(now, out);
    let _ = write!(out, " {} {} \"", e.client, e.user.unwrap_or("-"));
    out.push_str(e.method);
    out.push(' ');
    escape_into(e.target.as_bytes(), usize::MAX, out);
    out.push_str(if e.http10 {
        " HTTP/1.0\" "
    } else {
        " HTTP/1.1\" "
    });
    let _ = write!(
        out,
        "{} {} {} {:.6} \"",
        e.status,
        e.bytes_in,
        e.bytes_out,
        e.duration.as_secs_f64()
    );
    escape_into(e.user_agent.unwrap_or(b"-"), MAX_UA_CHARS, out);
    out.push('"');
    if let Some(err) = e.error {
        out.push_str(" error=\"");
        escape_into(err.as_bytes(), usize::MAX, out);
        out.push('"');
    }
    out.push('\n');
}

/// Printable ASCII passes; quotes, backslashes, controls and non-ASCII
/// become `\xHH`, so a client cannot forge log lines.
fn escape_into(bytes: &[u8], max: usize, out: &mut String) {
    for &b in bytes.iter().take(max) {
        match b {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// `2026-11-29T04:24:23.123Z`, from the civil-from-days algorithm
/// (H. Hinnant), to keep a date crate out of the hot path.
fn rfc3339_millis(t: SystemTime, out: &mut String) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
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
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    );
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
        };
        format_entry(
            &e,
            UNIX_EPOCH + Duration::from_millis(1_795_926_263_123),
            &mut out,
        );
        assert_eq!(
            out,
            "2026-11-29T04:24:23.123Z 127.0.0.1 testuser \"GET /v2/ HTTP/1.1\" 200 0 2 0.001500 \"docker/24 \\x22x\\x22\"\n"
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
}
