//! The JSON access-log line: one object per line, fields in a fixed order,
//! absent ones left out (never `null`), so `jq` and log shippers read it
//! without a schema.
//!
//! | field | value |
//! |---|---|
//! | `time` | RFC 3339 UTC, milliseconds |
//! | `client` | the real client (through trusted balancers) |
//! | `user` | the authenticated user; absent if none |
//! | `method`, `path` | request line; `path` without the query |
//! | `repository`, `action` | from the route classifier; action is pull, push, delete, mount, catalog, ping or other |
//! | `digest` or `tag` | what the route names (a mount's or a monolithic upload's digest from the query) |
//! | `mount_from` | a mount's source repository |
//! | `status`, `bytes_in`, `bytes_out` | numbers; bytes are body bytes |
//! | `duration_ms` | whole request, milliseconds with microsecond decimals |
//! | `upstream_ttfb_ms` | registry time to its response head; absent if never forwarded |
//! | `upstream` | the registry server's address |
//! | `tls` | the TLS version (`TLSv1.3`, `TLSv1.2`); absent on plain |
//! | `user_agent`, `request_id`, `error` | strings; `error` only on failure |
//!
//! Strings are escaped by hand rather than with `serde_json`: the line is
//! written straight into the worker's buffer with no intermediate value or
//! allocation, and the escaping needed (quote, backslash, controls, invalid
//! UTF-8 as U+FFFD) is a dozen lines.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{rfc3339_millis, Entry, MAX_UA_CHARS};
use crate::route::summary::Reference;

/// Appends one JSON line for `e` to `out`.
pub fn format_entry(e: &Entry<'_>, now: SystemTime, out: &mut String) {
    out.push_str("{\"time\":\"");
    rfc3339_millis(now, out);
    let _ = write!(out, "\",\"client\":\"{}\"", e.client);
    if let Some(user) = e.user {
        field_str(out, "user", user.as_bytes());
    }
    field_str(out, "method", e.method.as_bytes());
    field_str(out, "path", e.path().as_bytes());
    let s = e.summary;
    if let Some(repo) = s.repository {
        field_str(out, "repository", repo.as_bytes());
    }
    field_str(out, "action", s.kind().as_str().as_bytes());
    match &s.reference {
        Some(Reference::Digest(d)) => field_str(out, "digest", d.as_bytes()),
        Some(Reference::Tag(t)) => field_str(out, "tag", t.as_bytes()),
        None => {}
    }
    if let Some(from) = s.mount_from {
        field_str(out, "mount_from", from.as_bytes());
    }
    let _ = write!(
        out,
        ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{}",
        e.status,
        e.bytes_in,
        e.bytes_out,
        millis(e.duration)
    );
    if let Some(ttfb) = e.upstream_ttfb {
        let _ = write!(out, ",\"upstream_ttfb_ms\":{}", millis(ttfb));
    }
    if let Some(up) = e.upstream {
        let _ = write!(out, ",\"upstream\":\"{up}\"");
    }
    if let Some(version) = e.tls {
        let _ = write!(out, ",\"tls\":\"{version}\"");
    }
    if let Some(ua) = e.user_agent {
        let cut = ua.len().min(MAX_UA_CHARS);
        field_str(out, "user_agent", ua.get(..cut).unwrap_or(ua));
    }
    field_str(out, "request_id", e.request_id.as_bytes());
    if let Some(err) = e.error {
        field_str(out, "error", err.as_bytes());
    }
    out.push_str("}\n");
}

/// Milliseconds with three decimals (microseconds).
fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `,"name":"value"` with `value` escaped.
fn field_str(out: &mut String, name: &str, value: &[u8]) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":\"");
    escape(value, out);
    out.push('"');
}

/// RFC 8259 §7: quote, backslash and controls escaped; bytes that are not
/// UTF-8 become U+FFFD, so the line is always valid JSON.
pub fn escape(value: &[u8], out: &mut String) {
    for c in String::from_utf8_lossy(value).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::summary::{Kind, Summary};
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_pull_line_is_valid_json_with_every_field() {
        let summary = Summary {
            kind: Some(Kind::Pull),
            repository: Some("team/app"),
            reference: Some(Reference::Tag("v1")),
            mount_from: None,
        };
        let e = Entry {
            client: "192.0.2.7".parse().expect("ip"),
            user: Some("alice"),
            method: "GET",
            target: "/v2/team/app/manifests/v1?x=1",
            http10: false,
            status: 200,
            bytes_in: 0,
            bytes_out: 528,
            duration: Duration::from_micros(2345),
            user_agent: Some(b"skopeo/1.9 \"q\"\n\xff"),
            error: Some("a \\ b"),
            request_id: "r-1",
            summary: &summary,
            upstream: Some("127.0.0.1:5000".parse().expect("addr")),
            upstream_ttfb: Some(Duration::from_micros(1500)),
            tls: Some("TLSv1.3"),
        };
        let mut out = String::new();
        format_entry(
            &e,
            UNIX_EPOCH + Duration::from_millis(1_795_926_263_123),
            &mut out,
        );
        assert_eq!(
            out,
            "{\"time\":\"2026-11-29T04:24:23.123Z\",\"client\":\"192.0.2.7\",\"user\":\"alice\",\
             \"method\":\"GET\",\"path\":\"/v2/team/app/manifests/v1\",\"repository\":\"team/app\",\
             \"action\":\"pull\",\"tag\":\"v1\",\"status\":200,\"bytes_in\":0,\"bytes_out\":528,\
             \"duration_ms\":2.345,\"upstream_ttfb_ms\":1.500,\"upstream\":\"127.0.0.1:5000\",\
             \"tls\":\"TLSv1.3\",\"user_agent\":\"skopeo/1.9 \\\"q\\\"\\n\u{fffd}\",\"request_id\":\"r-1\",\
             \"error\":\"a \\\\ b\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["user_agent"], "skopeo/1.9 \"q\"\n\u{fffd}");
    }

    #[test]
    fn controls_are_escaped() {
        let mut s = String::new();
        escape(b"a\x01\x7fb", &mut s);
        assert_eq!(s, "a\\u0001\\u007fb");
    }
}
