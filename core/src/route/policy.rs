//! Request policy: the decisions around authentication.
//!
//! Pipeline role: after the head is read and *before* authenticating, the
//! connection core asks [`route`] whether the path is ours at all and
//! [`is_blocked_user_agent`] whether the client is one the registry cannot
//! serve; neither needs credentials, so rejected requests never cost a
//! bcrypt verification. Which repository and action the request means is
//! `route::classify`'s job, and who may do it `auth::acl`'s.
//!
//! These reproduce the nginx recipe this proxy replaces (`location /v2/` and
//! the User-Agent `if`) so a migration changes nothing a client can observe,
//! except that ambiguous paths are now refused outright.

/// True for the clients the nginx recipe turns away with 404:
///
/// ```nginx
/// if ($http_user_agent ~ "^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$") { return 404; }
/// ```
///
/// That is: Docker 1.3–1.5 (which cannot speak the v2 API properly, except
/// 1.5 dev builds `1.5.N-dev` that had the fix), and the bare Go HTTP client
/// of Go ≤ 1.5, whose User-Agent was `Go 1.1 package http`. Hand-written
/// rather than a regex: the pattern is fixed, and this avoids a dependency
/// on a per-request hot path. Case-sensitive and anchored at the start, as
/// PCRE would be; the `.*$` tail matches anything (header values cannot
/// contain newlines), so only prefixes matter.
pub fn is_blocked_user_agent(ua: &[u8]) -> bool {
    if ua.starts_with(b"Go ") {
        return true;
    }
    let Some(minor) = ua.strip_prefix(b"docker/1.") else {
        return false;
    };
    match minor.split_first() {
        Some((b'3' | b'4', _)) => true,
        // `5(?!\.[0-9]-dev)`: blocked unless followed by exactly
        // '.', one digit, "-dev" (anything may follow that).
        Some((b'5', after)) => !is_single_digit_dev(after),
        _ => false,
    }
}

/// Does `s` start with `.D-dev` for one ASCII digit D?
fn is_single_digit_dev(s: &[u8]) -> bool {
    matches!(s, [b'.', d, b'-', b'd', b'e', b'v', ..] if d.is_ascii_digit())
}

/// What to do with a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Under `/v2/`: authenticate and forward.
    Registry,
    /// Outside `/v2/`: 404, without asking for credentials.
    NotFound,
    /// A path that different parsers could read differently (dot-segments,
    /// encoded separators, NUL, backslash, bad escapes): 400.
    BadPath,
}

/// The token service's path (`auth::token`; served only with `[auth.token]`).
pub const TOKEN_PATH: &str = "/token";

/// Whether a request-target (origin-form) is the token service's: exactly
/// `/token`, with or without a query.
pub fn is_token_endpoint(target: &str) -> bool {
    target.split_once('?').map_or(target, |(p, _query)| p) == TOKEN_PATH
}

/// Routes a request-target (origin-form, `/path?query`).
///
/// The registry decodes and normalises paths its own way, so anything that
/// could mean one thing to us and another upstream is refused instead of
/// normalised: we never want to authorize one path and forward another.
pub fn route(target: &str) -> Route {
    let path = target.split_once('?').map_or(target, |(p, _query)| p);
    if !is_unambiguous(path) {
        return Route::BadPath;
    }
    // nginx `location /v2/` is a case-sensitive prefix match; "/v2" itself
    // and "/v2x" fall outside it.
    if path.starts_with("/v2/") {
        Route::Registry
    } else {
        Route::NotFound
    }
}

/// Rejects everything that could make the path we check differ from the
/// path the upstream resolves.
fn is_unambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    // Backslash is a separator to some servers; NUL truncates in C; other
    // control bytes have no business in a path (the HTTP parser should have
    // refused them already; this does not rely on it).
    if bytes.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return false;
    }
    let mut rest = bytes;
    while let Some(pct) = rest.iter().position(|&b| b == b'%') {
        let Some(&[hi, lo]) = rest.get(pct + 1..pct + 3) else {
            return false;
        };
        let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
            // nginx answers 400 to a malformed escape too.
            return false;
        };
        // '.', '/', '\' and NUL, encoded: they would become dot-segments,
        // separators or truncation only after decoding, i.e. upstream.
        if matches!((hi << 4) | lo, b'.' | b'/' | b'\\' | 0) {
            return false;
        }
        rest = &rest[pct + 3..];
    }
    // RFC 3986 §3.3 dot-segments, wherever they sit.
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

use super::hex_value;

#[cfg(test)]
mod tests;
