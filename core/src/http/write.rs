//! The heads regproxy writes: the request it forwards to the registry, the
//! response head it relays back, and the answers it makes itself.
//!
//! Forwarding follows the recipe's `proxy_set_header` lines (Host, X-Real-IP,
//! X-Forwarded-For, X-Forwarded-Proto) and RFC 9110 §7.6.1: hop-by-hop fields
//! stop here. Framing headers are always regenerated from the framing we
//! actually send, never copied, so a smuggled length cannot reach the registry.

use std::io::Write as _;
use std::net::IpAddr;

use super::head::{RequestBody, RequestHead, ResponseHead, Version};
use crate::error::ProxyError;
use crate::request_id::HEADER as REQUEST_ID;
use crate::text::IpText;

/// The interim answer for `Expect: 100-continue` (RFC 9110 §10.1.1), sent
/// once the request is authorized, so a rejected client never uploads. It
/// carries the API version like every other answer: some clients check it
/// on each response they read.
pub const CONTINUE_100: &[u8] =
    b"HTTP/1.1 100 Continue\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n";

/// The registry API version every response must carry; docker checks it.
pub const API_VERSION_HEADER: &str = "Docker-Distribution-Api-Version";
const API_VERSION: &str = "registry/2.0";

/// Facts about the client connection that shape the forwarded head.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub client_ip: IpAddr,
    pub tls: bool,
    /// Keep X-Forwarded-* and X-Real-IP set by a load balancer in front.
    pub trust_forwarded_headers: bool,
    /// Pass the client's Authorization header on to the registry.
    pub forward_authorization: bool,
    /// Pass method-override and URL-rewrite headers on (see
    /// [`OVERRIDE_HEADERS`]).
    pub keep_override_headers: bool,
    /// The request's body was read and dropped here (the registry ignores
    /// it on this route): forward the head without one.
    pub drop_body: bool,
    /// `Host` for a request that came without one (HTTP/1.0).
    pub default_host: &'a str,
    /// The request's id (`request_id`): sent as the only `X-Request-ID`,
    /// whatever the client sent.
    pub request_id: &'a str,
}

/// Headers some servers and frameworks read as "treat this request as
/// another method or path". distribution ignores them, but a registry or
/// middleware behind us might not, and our rules judged the method and path
/// on the request line: they are dropped unless the operator keeps them.
const OVERRIDE_HEADERS: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-rewrite-url",
];

/// Client-supplied proxy headers; a client must not be able to pose as a
/// load balancer unless the operator says one is there.
const FORWARDING_HEADERS: [&str; 6] = [
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
];

/// A field name (bytes: names are tokens) against one of ours.
fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Writes the head forwarded to the registry for `req`, whose body will be
/// sent with framing `body`.
pub fn request_head(req: &RequestHead, fwd: &Forwarding, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The recipe: `proxy_set_header Host $http_host` — docker builds upload
    // URLs from it, so it must be the client's, not the upstream's address.
    // RFC 9112 §3.2: we speak HTTP/1.1 upstream, which requires a Host; an
    // HTTP/1.0 client may have sent none.
    let host = req.host().unwrap_or(fwd.default_host);
    header(out, "Host", host.as_bytes());

    let mut incoming_xff: Option<&[u8]> = None;
    let mut has_real_ip = false;
    let mut has_proto = false;
    for (name, value) in req.raw_headers() {
        if eq(name, "host")
            || eq(name, "content-length")
            || eq(name, REQUEST_ID)
            || eq(name, "expect")
            || req.is_connection_header(name)
        {
            continue;
        }
        if eq(name, "authorization") && !fwd.forward_authorization {
            continue;
        }
        if !fwd.keep_override_headers && OVERRIDE_HEADERS.iter().any(|h| eq(name, h)) {
            continue;
        }
        if FORWARDING_HEADERS.iter().any(|h| eq(name, h)) {
            if !fwd.trust_forwarded_headers {
                continue;
            }
            if eq(name, "x-forwarded-for") {
                // Folded into one appended value below.
                incoming_xff.get_or_insert(value);
                continue;
            }
            has_real_ip |= eq(name, "x-real-ip");
            has_proto |= eq(name, "x-forwarded-proto");
        }
        header(out, name, value);
    }

    let ip = IpText::new(fwd.client_ip);
    let ip = ip.as_bytes();
    if !has_real_ip {
        header(out, "X-Real-IP", ip);
    }
    // nginx's $proxy_add_x_forwarded_for: the incoming chain plus our peer.
    match incoming_xff {
        Some(chain) if !chain.is_empty() => {
            out.extend_from_slice(b"X-Forwarded-For: ");
            out.extend_from_slice(chain);
            out.extend_from_slice(b", ");
            out.extend_from_slice(ip);
            out.extend_from_slice(b"\r\n");
        }
        _ => header(out, "X-Forwarded-For", ip),
    }
    if !has_proto {
        let proto: &[u8] = if fwd.tls { b"https" } else { b"http" };
        header(out, "X-Forwarded-Proto", proto);
    }
    header(out, REQUEST_ID, fwd.request_id.as_bytes());
    // RFC 9112 §6.1-6.2: we send exactly one framing header of our own.
    match req.body {
        _ if fwd.drop_body => {}
        RequestBody::None => {}
        RequestBody::Length(n) => {
            header(
                out,
                "Content-Length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        RequestBody::Chunked => header(out, "Transfer-Encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a relayed response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body follows (HEAD, 204, 304, 1xx). A Content-Length from the
    /// registry still passes through: for HEAD it is the size of the blob.
    NoBody,
    Length(u64),
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0 clients only).
    Close,
}

/// Writes the response head relayed to the client.
pub fn response_head(
    resp: &ResponseHead,
    framing: ClientFraming,
    keep_alive: bool,
    request_id: &str,
    out: &mut Vec<u8>,
) {
    status_line(out, resp.status, resp.reason());
    let mut has_api_version = false;
    for (name, value) in resp.raw_headers() {
        if resp.is_connection_header(name) {
            continue;
        }
        // RFC 9110 §8.6: a 204 has no content and must not claim a length;
        // a 304's length describes a representation the client already has,
        // and some clients wait for that many bytes: neither is passed on.
        if eq(name, "content-length")
            && (framing != ClientFraming::NoBody || matches!(resp.status, 204 | 304))
        {
            continue;
        }
        // Ours replaces any the registry sent: one id per request.
        if eq(name, REQUEST_ID) {
            continue;
        }
        has_api_version |= eq(name, API_VERSION_HEADER);
        header(out, name, value);
    }
    if !has_api_version {
        header(out, API_VERSION_HEADER, API_VERSION.as_bytes());
    }
    // Empty: an answer to a connection refused before any request was read.
    if !request_id.is_empty() {
        header(out, REQUEST_ID, request_id.as_bytes());
    }
    match framing {
        ClientFraming::NoBody | ClientFraming::Close => {}
        ClientFraming::Length(n) => {
            header(
                out,
                "Content-Length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        ClientFraming::Chunked => header(out, "Transfer-Encoding", b"chunked"),
    }
    if !keep_alive || framing == ClientFraming::Close {
        header(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// What an answer served from the edge cache says about its file.
#[derive(Debug, Clone, Copy)]
pub struct CachedHead<'a> {
    /// 200, 206 (`range` set) or 416.
    pub status: u16,
    /// The whole body's size.
    pub size: u64,
    /// The bytes sent, first and last inclusive, for a 206.
    pub range: Option<(u64, u64)>,
    pub content_type: &'a str,
    /// `sha256:…`, sent as `Docker-Content-Digest` and as the `ETag`.
    pub digest: &'a str,
    /// A blob: the registry marks it cacheable for a year, as it never
    /// changes under its digest.
    pub blob: bool,
}

impl CachedHead<'_> {
    /// Body bytes that follow the head on a GET.
    pub fn body_len(&self) -> u64 {
        match (self.status, self.range) {
            (206, Some((start, end))) => end - start + 1,
            (200, _) => self.size,
            _ => 0,
        }
    }
}

/// Writes the head of an answer served from the edge cache, with the
/// headers the registry sends for the same blob or manifest (distribution's
/// blob and manifest handlers): `Docker-Content-Digest`, an `ETag` of the
/// quoted digest, `Accept-Ranges: bytes`, the stored `Content-Type`.
pub fn cached_response_head(c: &CachedHead, keep_alive: bool, request_id: &str, out: &mut Vec<u8>) {
    status_line(out, c.status, reason(c.status));
    if c.blob {
        header(out, "Cache-Control", b"max-age=31536000");
    }
    if c.status != 416 {
        header(out, "Content-Type", c.content_type.as_bytes());
        header(out, "Docker-Content-Digest", c.digest.as_bytes());
        out.extend_from_slice(b"ETag: \"");
        out.extend_from_slice(c.digest.as_bytes());
        out.extend_from_slice(b"\"\r\n");
    }
    header(out, "Accept-Ranges", b"bytes");
    let mut n = itoa::Buffer::new();
    match (c.status, c.range) {
        (206, Some((start, end))) => {
            out.extend_from_slice(b"Content-Range: bytes ");
            out.extend_from_slice(n.format(start).as_bytes());
            out.push(b'-');
            out.extend_from_slice(n.format(end).as_bytes());
            out.push(b'/');
            out.extend_from_slice(n.format(c.size).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        (416, _) => {
            out.extend_from_slice(b"Content-Range: bytes */");
            out.extend_from_slice(n.format(c.size).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    header(
        out,
        "Content-Length",
        itoa::Buffer::new().format(c.body_len()).as_bytes(),
    );
    header(out, API_VERSION_HEADER, API_VERSION.as_bytes());
    header(out, REQUEST_ID, request_id.as_bytes());
    if !keep_alive {
        header(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a `200` answer of regproxy's own with a JSON body: the token
/// service's answer. `Cache-Control: no-store`, as OAuth 2 (RFC 6749
/// §5.1) asks of any answer that carries a token.
pub fn json_response(
    body: &str,
    head_only: bool,
    keep_alive: bool,
    request_id: &str,
    out: &mut Vec<u8>,
) {
    status_line(out, 200, reason(200));
    header(out, "Content-Type", b"application/json");
    header(
        out,
        "Content-Length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    header(out, "Cache-Control", b"no-store");
    header(out, REQUEST_ID, request_id.as_bytes());
    if !keep_alive {
        header(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Picks the client framing for a response body framed as `upstream` by
/// the registry, for a client speaking `version`.
pub fn client_framing(upstream: super::head::ResponseBody, version: Version) -> ClientFraming {
    use super::head::ResponseBody as B;
    match (upstream, version) {
        (B::None, _) => ClientFraming::NoBody,
        (B::Length(n), _) => ClientFraming::Length(n),
        // RFC 9112 §7: chunked is HTTP/1.1 only; a 1.0 client reads to close.
        (B::Chunked | B::CloseDelimited, Version::Http11) => ClientFraming::Chunked,
        (B::Chunked | B::CloseDelimited, Version::Http10) => ClientFraming::Close,
    }
}

/// Writes a complete answer of regproxy's own: registry JSON error body,
/// the challenge on 401 (`challenge` is the whole `WWW-Authenticate`
/// value: `auth::token::basic_challenge` or `auth::token::challenge`),
/// and the API version header.
pub fn error_response(
    err: &ProxyError,
    challenge: &str,
    head_only: bool,
    keep_alive: bool,
    request_id: &str,
    out: &mut Vec<u8>,
) {
    let body = err.json_body();
    let status = err.status();
    status_line(out, status, reason(status));
    header(out, "Content-Type", b"application/json; charset=utf-8");
    header(
        out,
        "Content-Length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    header(out, API_VERSION_HEADER, API_VERSION.as_bytes());
    header(out, REQUEST_ID, request_id.as_bytes());
    if status == 401 {
        // Realm and service are validated at config load and scopes come
        // from the route grammar: no quotes or control characters.
        header(out, "WWW-Authenticate", challenge.as_bytes());
    }
    match err {
        ProxyError::TooManyRequests(secs) => {
            let _ = write!(out, "Retry-After: {secs}\r\n");
        }
        ProxyError::TooManyConnections { .. } | ProxyError::OutOfDescriptors => {
            header(out, "Retry-After", b"1")
        }
        _ => {}
    }
    if !keep_alive {
        header(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    // RFC 9110 §9.3.2: a HEAD answer carries the headers of a GET, no body.
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

// The heads below are written without `core::fmt`, with `itoa` and the
// formatters in `crate::text` (which says why).

/// `HTTP/1.1 {status} {reason}` and its CRLF.
fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: impl AsRef<[u8]>, value: &[u8]) {
    out.extend_from_slice(name.as_ref());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status regproxy itself sends; "Error" for one
/// without a phrase, so the status line never ends in a space.
fn reason(status: u16) -> &'static str {
    match super::reason::reason(status) {
        "" => "Error",
        phrase => phrase,
    }
}

#[cfg(test)]
mod tests;
