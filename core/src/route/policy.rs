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
mod tests {
    use super::*;

    #[test]
    fn user_agent_edge_cases() {
        // (user agent, blocked?, why)
        let cases: &[(&str, bool, &str)] = &[
            ("docker/1.3.0", true, "1.3 prefix"),
            ("docker/1.30.1", true, "prefix match: '3' then anything"),
            ("docker/1.4.1 go/go1.4", true, "1.4 prefix"),
            ("docker/1.5.0", true, "1.5 not followed by .D-dev"),
            ("docker/1.5.0-dev", false, "lookahead .0-dev matches"),
            ("docker/1.5.1-dev", false, "lookahead .1-dev matches"),
            ("docker/1.5.10-dev", true, "two digits: lookahead fails"),
            ("docker/1.5", true, "nothing after 5: lookahead fails"),
            ("docker/1.50", true, "'0' after 5: lookahead fails"),
            ("docker/1.6.0", false, "6 is not in (3|4|5)"),
            ("docker/1.2", false, "2 is not in (3|4|5)"),
            ("docker/20.10.7", false, "not docker/1."),
            ("Go 1.1 package http", true, "old Go client"),
            ("Go-http-client/1.1", false, "no space after Go"),
            ("go 1.1", false, "case-sensitive"),
            ("", false, "empty"),
            (" docker/1.3", false, "anchored at start"),
            ("Docker/1.3", false, "case-sensitive"),
        ];
        for &(ua, blocked, why) in cases {
            assert_eq!(
                is_blocked_user_agent(ua.as_bytes()),
                blocked,
                "{ua:?}: {why}"
            );
        }
    }

    #[test]
    fn user_agent_lookahead_details() {
        let cases: &[(&[u8], bool)] = &[
            // The lookahead needs only its own text; what follows is free.
            (b"docker/1.5.0-devel", false),
            (b"docker/1.5.9-dev go/1.4", false),
            // Each piece of `\.[0-9]-dev` must be exact.
            (b"docker/1.5.0-de", true),
            (b"docker/1.5.0-Dev", true),
            (b"docker/1.5x0-dev", true),
            (b"docker/1.5.a-dev", true),
            (b"docker/1.5.0_dev", true),
            (b"docker/1.5-dev", true),
            (b"docker/1.5.", true),
            // Truncated prefixes are not matches.
            (b"docker/1.", false),
            (b"docker/1", false),
            (b"docker/", false),
            (b"Go", false),
            (b"Go\t1.1", false),
            (b"Go ", true),
            // Arbitrary bytes after a blocked prefix do not matter.
            (b"docker/1.3\xff\x00", true),
            (b"Go \xff", true),
            (b"\xffGo ", false),
        ];
        for &(ua, blocked) in cases {
            assert_eq!(
                is_blocked_user_agent(ua),
                blocked,
                "{:?}",
                String::from_utf8_lossy(ua)
            );
        }
    }

    #[test]
    fn routes_only_v2_and_below() {
        for p in [
            "/v2/",
            "/v2/_catalog",
            "/v2/library/alpine/manifests/3.20",
            "/v2/library/alpine/blobs/sha256:abc",
            "/v2/a/blobs/uploads/",
            "/v2/a/blobs/uploads/6c0e?_state=x&digest=sha256%3Aabc",
            "/v2/?",
            "/v2/...",
            "/v2/a.b/c..d/.e/f.",
            "/v2/a%20b",
            "/v2/a%3a",
            // Empty segments are passed through; nginx's merge_slashes
            // would fold them, the registry simply 404s.
            "/v2//x",
        ] {
            assert_eq!(route(p), Route::Registry, "{p}");
        }
        for p in [
            "/",
            "",
            "/v2",
            "/v2x",
            "/v2x/",
            "/v1/",
            "/V2/",
            "/v3/",
            "v2/",
            "*",
            "/favicon.ico",
            "//v2/",
            "/v2?x=/v2/",
            "http://host/v2/",
        ] {
            assert_eq!(route(p), Route::NotFound, "{p}");
        }
    }

    #[test]
    fn query_is_not_part_of_the_path() {
        // Only the path is checked; dots and encodings in the query are the
        // upstream's business.
        assert_eq!(route("/v2/x?a=../b"), Route::Registry);
        assert_eq!(route("/v2/x?a=%2e%2e%2f"), Route::Registry);
        assert_eq!(route("/v2/x?a=%zz"), Route::Registry);
        assert_eq!(route("/v2/../x?a=b"), Route::BadPath);
    }

    #[test]
    fn dot_segments_are_bad() {
        for p in [
            "/v2/../x",
            "/v2/a/./b",
            "/v2/a/..",
            "/v2/a/.",
            "/v2/./",
            "/v2/..",
            "/../v2/",
            "/./v2/",
            "/x/../v2/",
            "/..",
            "/.",
        ] {
            assert_eq!(route(p), Route::BadPath, "{p}");
        }
    }

    #[test]
    fn encoded_separators_and_dots_are_bad() {
        for p in [
            "/v2/%2e%2e/x",
            "/v2/%2E%2E/x",
            "/v2/.%2e/x",
            "/v2/a%2fb",
            "/v2/a%2Fb",
            "/v2/a%5cb",
            "/v2/a%5Cb",
            "/v2/a%2e",
            "/v2/a%00",
            "%2fv2/",
        ] {
            assert_eq!(route(p), Route::BadPath, "{p}");
        }
    }

    #[test]
    fn raw_nul_backslash_and_controls_are_bad() {
        for p in [
            "/v2/a\0b",
            "/v2/a\\b",
            "/v2\\..\\x",
            "/v2/a\tb",
            "/v2/\x7f",
            "/\0",
        ] {
            assert_eq!(route(p), Route::BadPath, "{p:?}");
        }
    }

    #[test]
    fn malformed_escapes_are_bad() {
        for p in [
            "/v2/%", "/v2/%2", "/v2/%zz", "/v2/%g0", "/v2/%%2e", "/v2/a%2",
        ] {
            assert_eq!(route(p), Route::BadPath, "{p}");
        }
        // A well-formed escape right at the end is fine.
        assert_eq!(route("/v2/a%41"), Route::Registry);
        // Double encoding decodes once upstream to a literal "%2e".
        assert_eq!(route("/v2/%252e%252e/x"), Route::Registry);
    }

    #[test]
    fn non_ascii_paths_do_not_panic() {
        assert_eq!(route("/v2/é/%é"), Route::BadPath);
        assert_eq!(route("/v2/é"), Route::Registry);
        assert_eq!(route("/é/v2/"), Route::NotFound);
    }
}
