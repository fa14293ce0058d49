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
//! | `cache` | the edge cache: `hit`, `stale` (served while the registry could not confirm), `wait` (followed another request's fill), `fill` or `miss`; absent when not cacheable or no cache |
//! | `user_agent`, `request_id`, `error` | strings; `error` only on failure |
//!
//! Strings are escaped by hand rather than with `serde_json`: the line is
//! written straight into the worker's buffer with no intermediate value or
//! allocation, and the escaping needed (quote, backslash, controls, invalid
//! UTF-8 as U+FFFD) is a dozen lines.

use std::time::SystemTime;

use super::{rfc3339_millis, Entry, MAX_UA_CHARS};
use crate::route::summary::Reference;
use crate::text::{push_duration, push_hex, push_int, push_socket_addr, IpText, Unit};

/// Appends one JSON line for `e` to `out`.
pub fn format_entry(e: &Entry<'_>, now: SystemTime, out: &mut String) {
    out.push_str("{\"time\":\"");
    rfc3339_millis(now, out);
    out.push_str("\",\"client\":\"");
    out.push_str(IpText::new(e.client).as_str());
    out.push('"');
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
    for (name, n) in [
        (",\"status\":", u64::from(e.status)),
        (",\"bytes_in\":", e.bytes_in),
        (",\"bytes_out\":", e.bytes_out),
    ] {
        out.push_str(name);
        push_int(out, n);
    }
    out.push_str(",\"duration_ms\":");
    push_duration(out, e.duration, Unit::Millis);
    if let Some(ttfb) = e.upstream_ttfb {
        out.push_str(",\"upstream_ttfb_ms\":");
        push_duration(out, ttfb, Unit::Millis);
    }
    if let Some(up) = e.upstream {
        out.push_str(",\"upstream\":\"");
        push_socket_addr(out, up);
        out.push('"');
    }
    if let Some(version) = e.tls {
        field_str(out, "tls", version.as_bytes());
    }
    if let Some(cache) = e.cache {
        field_str(out, "cache", cache.as_bytes());
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
    match std::str::from_utf8(value) {
        Ok(s) => escape_str(s, out),
        Err(_) => escape_str(&String::from_utf8_lossy(value), out),
    }
}

/// Copies `s` in runs between the bytes that need an escape; all of those
/// are ASCII, so every cut falls on a character boundary.
fn escape_str(s: &str, out: &mut String) {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(s.get(run..i).unwrap_or_default());
        if escaped.is_empty() {
            out.push_str("\\u");
            push_hex(out, u64::from(b), 4);
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::summary::{Kind, Summary};
    use std::time::{Duration, UNIX_EPOCH};

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
            cache: None,
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

    /// The escape as first written, one character at a time: the oracle
    /// for the run-copying one.
    fn escape_by_char(value: &[u8]) -> String {
        let mut out = String::new();
        for c in String::from_utf8_lossy(value).chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn escaping_matches_the_character_at_a_time_oracle() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain".to_vec(),
            b"\"quoted\" \\ back".to_vec(),
            "caf\u{e9} \u{1f600}\n".as_bytes().to_vec(),
            b"bad \xff\xfe utf-8 \xc3".to_vec(),
            b"\x00\x1f\x7f\x80".to_vec(),
        ];
        // Every byte at the start, the middle and the end of a string.
        for b in 0..=255u8 {
            inputs.push(vec![b]);
            inputs.push(vec![b'a', b, b'z']);
            inputs.push(vec![b'\xc3', b]);
        }
        for input in inputs {
            let mut s = String::new();
            escape(&input, &mut s);
            assert_eq!(s, escape_by_char(&input), "{input:?}");
        }
    }
}
