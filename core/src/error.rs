//! The one error type of the request path.
//!
//! Every failure between reading a request head and finishing its response is
//! a [`ProxyError`]. It knows which side caused it (the client, the upstream
//! registry, or regproxy itself), so the access log can tell a 400 from a 502,
//! and it maps to the status and registry-style JSON body the client sees.

use std::fmt;
use std::io;

use crate::auth::basic::BasicError;
use crate::http::body::ChunkError;
use crate::http::head::HeadError;
use crate::route::RouteError;

/// Who caused a request to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse, or went away.
    Client,
    /// The registry behind us failed, refused, or was too slow.
    Upstream,
    /// regproxy itself could not serve the request (e.g. the hash pool is full).
    Internal,
}

/// What went wrong, in terms the client can be told.
#[non_exhaustive]
#[derive(Debug)]
pub enum ProxyError {
    /// The request head or body framing is malformed (400).
    BadRequest(&'static str),
    /// The request target is longer than we accept (414).
    UriTooLong,
    /// A body on a route whose body the registry ignores, larger than we
    /// read and check before forwarding (413).
    PayloadTooLarge,
    /// The request head is larger than we accept (431).
    HeadTooLarge,
    /// A transfer coding other than chunked (501).
    NotImplemented(&'static str),
    /// Not a registry path, or a blocked user agent (404).
    NotFound,
    /// Missing, malformed or wrong credentials (401 with a challenge).
    Unauthorized,
    /// A Bearer token that does not verify (401, `error="invalid_token"`).
    InvalidToken,
    /// A valid Bearer token whose grant does not cover the request (401,
    /// `error="insufficient_scope"`, as distribution answers it, so the
    /// client fetches a token with the scope).
    InsufficientScope,
    /// Valid credentials without permission for this action (403).
    Denied,
    /// A repository name the registry would refuse as too long (400).
    NameInvalid,
    /// A malformed digest where the route needs one (400).
    DigestInvalid,
    /// The registry route does not serve this method (405).
    MethodNotAllowed,
    /// Too many failed credential checks from this address or for this
    /// user; retry after this many seconds (429).
    TooManyRequests(u64),
    /// The credential verifier is saturated; shed load instead of queueing (503).
    AuthBusy,
    /// A new connection over the connection caps (`admission`): 429 when
    /// its address holds its share, 503 when the worker is full of
    /// requests in flight. Sent on a connection that is then closed.
    TooManyConnections { per_address: bool },
    /// The worker's descriptor budget has no room for a connection or its
    /// registry connection, and nothing could be closed for one (503 with
    /// `Retry-After`).
    OutOfDescriptors,
    /// No upstream connection could be made, or it failed mid-exchange (502).
    UpstreamFailed(io::Error),
    /// The upstream answered with something that is not valid HTTP/1.1 (502).
    UpstreamProtocol(&'static str),
    /// The upstream did not connect or answer in time (504).
    UpstreamTimeout,
    /// The client's connection failed or timed out; nothing can be sent back.
    ClientIo(io::Error),
}

impl ProxyError {
    /// Which side of the proxy this error belongs to.
    pub fn side(&self) -> Side {
        match self {
            Self::BadRequest(_)
            | Self::UriTooLong
            | Self::PayloadTooLarge
            | Self::HeadTooLarge
            | Self::NotImplemented(_)
            | Self::NotFound
            | Self::Unauthorized
            | Self::InvalidToken
            | Self::InsufficientScope
            | Self::Denied
            | Self::NameInvalid
            | Self::DigestInvalid
            | Self::MethodNotAllowed
            | Self::TooManyRequests(_)
            | Self::ClientIo(_) => Side::Client,
            Self::UpstreamFailed(_) | Self::UpstreamProtocol(_) | Self::UpstreamTimeout => {
                Side::Upstream
            }
            Self::AuthBusy | Self::OutOfDescriptors => Side::Internal,
            Self::TooManyConnections { per_address } => {
                if *per_address {
                    Side::Client
                } else {
                    Side::Internal
                }
            }
        }
    }

    /// The status code sent to the client.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::NameInvalid | Self::DigestInvalid => 400,
            Self::MethodNotAllowed => 405,
            Self::TooManyRequests(_) | Self::TooManyConnections { per_address: true } => 429,
            Self::TooManyConnections { per_address: false } => 503,
            Self::Unauthorized | Self::InvalidToken | Self::InsufficientScope => 401,
            Self::Denied => 403,
            Self::NotFound => 404,
            Self::UriTooLong => 414,
            Self::PayloadTooLarge => 413,
            Self::HeadTooLarge => 431,
            Self::NotImplemented(_) => 501,
            Self::UpstreamFailed(_) | Self::UpstreamProtocol(_) => 502,
            Self::AuthBusy | Self::OutOfDescriptors => 503,
            Self::UpstreamTimeout => 504,
            // Never written (the client is gone); logged as nginx does.
            Self::ClientIo(_) => 499,
        }
    }

    /// The registry error code (distribution's `errcode` vocabulary).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::InvalidToken | Self::InsufficientScope => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::NotFound => "NOT_FOUND",
            Self::NotImplemented(_) | Self::MethodNotAllowed => "UNSUPPORTED",
            Self::NameInvalid => "NAME_INVALID",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::TooManyRequests(_) | Self::TooManyConnections { per_address: true } => {
                "TOOMANYREQUESTS"
            }
            Self::AuthBusy
            | Self::OutOfDescriptors
            | Self::TooManyConnections { per_address: false }
            | Self::UpstreamFailed(_)
            | Self::UpstreamProtocol(_)
            | Self::UpstreamTimeout => "UNAVAILABLE",
            Self::BadRequest(_)
            | Self::UriTooLong
            | Self::PayloadTooLarge
            | Self::HeadTooLarge
            | Self::ClientIo(_) => "BAD_REQUEST",
        }
    }

    /// Whether the connection must be closed after answering. Framing errors
    /// leave the byte stream in an unknown state (RFC 9112 §11.2: a message
    /// with invalid framing must not be followed on the same connection).
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            Self::NotFound
                | Self::Unauthorized
                | Self::InvalidToken
                | Self::InsufficientScope
                | Self::Denied
                | Self::NameInvalid
                | Self::DigestInvalid
                | Self::MethodNotAllowed
                | Self::TooManyRequests(_)
        )
    }

    /// The client-facing message. It never contains credentials: nothing
    /// secret is ever stored in a `ProxyError`.
    pub fn message(&self) -> String {
        match self {
            Self::BadRequest(why) => format!("bad request: {why}"),
            Self::UriTooLong => "request URI too long".into(),
            Self::PayloadTooLarge => "request body too large for a route that takes none".into(),
            Self::HeadTooLarge => "request header fields too large".into(),
            Self::NotImplemented(why) => format!("not implemented: {why}"),
            Self::NotFound => "not found".into(),
            Self::Unauthorized => "authentication required".into(),
            Self::InvalidToken => "invalid or expired token".into(),
            Self::InsufficientScope => "token does not grant access to this resource".into(),
            Self::Denied => "requested access to the resource is denied".into(),
            Self::NameInvalid => "invalid repository name".into(),
            Self::DigestInvalid => "invalid digest".into(),
            Self::MethodNotAllowed => "method not allowed on this route".into(),
            Self::TooManyRequests(secs) => {
                format!("too many failed authentication attempts; retry in {secs}s")
            }
            Self::AuthBusy => "authentication service busy, retry later".into(),
            Self::TooManyConnections { per_address: true } => {
                "too many connections from this address; retry shortly".into()
            }
            Self::TooManyConnections { per_address: false } => {
                "too many connections; retry shortly".into()
            }
            Self::OutOfDescriptors => "too many open connections; retry shortly".into(),
            Self::UpstreamFailed(_) => "upstream registry unavailable".into(),
            Self::UpstreamProtocol(_) => "upstream registry sent an invalid response".into(),
            Self::UpstreamTimeout => "upstream registry timed out".into(),
            Self::ClientIo(_) => "client connection failed".into(),
        }
    }

    /// The registry-style JSON body: `{"errors":[{"code":…,"message":…}]}`.
    pub fn json_body(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str(r#"{"errors":[{"code":""#);
        out.push_str(self.code());
        out.push_str(r#"","message":""#);
        json_escape_into(&self.message(), &mut out);
        out.push_str(r#"","detail":null}]}"#);
        out.push('\n');
        out
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpstreamFailed(e) => write!(f, "upstream failed: {e}"),
            Self::UpstreamProtocol(why) => write!(f, "upstream protocol error: {why}"),
            Self::ClientIo(e) => write!(f, "client i/o: {e}"),
            other => f.write_str(&other.message()),
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<HeadError> for ProxyError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::BadRequest(why) => Self::BadRequest(why),
            HeadError::UriTooLong => Self::UriTooLong,
            HeadError::HeadTooLarge => Self::HeadTooLarge,
            HeadError::NotImplemented(why) => Self::NotImplemented(why),
            HeadError::BadResponse(why) => Self::UpstreamProtocol(why),
        }
    }
}

impl From<RouteError> for ProxyError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => Self::NotFound,
            RouteError::BadPath => Self::BadRequest("ambiguous request path"),
            RouteError::BadParameters => Self::BadRequest("ambiguous request parameters"),
            RouteError::NameInvalid => Self::NameInvalid,
            RouteError::DigestInvalid => Self::DigestInvalid,
            RouteError::MethodNotAllowed => Self::MethodNotAllowed,
        }
    }
}

impl From<BasicError> for ProxyError {
    fn from(_: BasicError) -> Self {
        // RFC 7617 §2: a malformed credential is answered like a wrong one.
        Self::Unauthorized
    }
}

/// A chunk framing error, attributed to whichever side sent the chunks.
pub fn chunk_error(side: Side, _cause: ChunkError) -> ProxyError {
    match side {
        Side::Upstream => ProxyError::UpstreamProtocol("malformed chunked response body"),
        Side::Client | Side::Internal => ProxyError::BadRequest("malformed chunked body"),
    }
}

fn json_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_maps_to_registry_json() {
        let e = ProxyError::Unauthorized;
        assert_eq!(e.status(), 401);
        assert_eq!(e.side(), Side::Client);
        assert_eq!(
            e.json_body(),
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":null}]}\n"
        );
        assert!(!e.closes_connection());
    }

    #[test]
    fn statuses_by_side() {
        let cases: Vec<(ProxyError, u16, Side)> = vec![
            (ProxyError::BadRequest("x"), 400, Side::Client),
            (ProxyError::UriTooLong, 414, Side::Client),
            (ProxyError::PayloadTooLarge, 413, Side::Client),
            (ProxyError::HeadTooLarge, 431, Side::Client),
            (ProxyError::NotImplemented("gzip"), 501, Side::Client),
            (ProxyError::Denied, 403, Side::Client),
            (ProxyError::AuthBusy, 503, Side::Internal),
            (ProxyError::OutOfDescriptors, 503, Side::Internal),
            (
                ProxyError::UpstreamFailed(io::ErrorKind::ConnectionRefused.into()),
                502,
                Side::Upstream,
            ),
            (ProxyError::UpstreamTimeout, 504, Side::Upstream),
        ];
        for (e, status, side) in cases {
            assert_eq!((e.status(), e.side()), (status, side), "{e}");
        }
    }

    #[test]
    fn escapes_json() {
        let mut s = String::new();
        json_escape_into("a\"b\\c\n", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\u000a");
    }
}
