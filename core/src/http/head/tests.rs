//! Table-driven tests for request and response head parsing.

use super::*;
use HeadError::{BadRequest, BadResponse, HeadTooLarge, NotImplemented, UriTooLong};

fn req(s: &str) -> RequestHead {
    match parse_request(s.as_bytes()) {
        Ok(Parse::Complete { head, len }) if len == s.len() => head,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn res(method: &Method, s: &str) -> Result<ResponseHead, HeadError> {
    match parse_response(s.as_bytes(), method)? {
        Parse::Complete { head, len } if len == s.len() => Ok(head),
        other => panic!("{s:?}: {other:?}"),
    }
}

fn partial(s: &str) -> Result<bool, HeadError> {
    parse_request(s.as_bytes()).map(|p| matches!(p, Parse::Partial))
}

#[test]
fn request_errors() {
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(MAX_URI_BYTES)
    );
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "Host: a\r\n".repeat(MAX_HEADERS + 1)
    );
    #[rustfmt::skip]
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", BadRequest("missing Host header")),
        ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", BadRequest("multiple Host headers")),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadRequest("invalid Host header")),
        ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BadRequest("invalid Host header")),
        ("GET / HTTP/1.1\r\nHost:\r\n\r\n", BadRequest("invalid Host header")),
        ("GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", BadRequest("invalid Host header")),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("asterisk-form request target")),
        ("GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("unsupported request-target form")),
        ("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("unsupported request-target form")),
        ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("fragment in request target")),
        ("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("invalid byte in request target")),
        ("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("userinfo in request target")),
        ("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("invalid authority in request target")),
        ("GET http://a\\b/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("invalid authority in request target")),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest("invalid request line")),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", BadRequest("unsupported HTTP version")),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadRequest("invalid header name")),
        ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", BadRequest("invalid header name")),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", BadRequest("invalid header value")),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", BadRequest("invalid header value")),
        ("GET / HTTP/1.1\rX", BadRequest("invalid line ending")),
        (&long, UriTooLong),
        (&many, HeadTooLarge),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_request(input.as_bytes()).err(),
            Some(want),
            "{input:?}"
        );
    }
}

#[test]
fn request_framing() {
    use RequestBody::{Chunked, Length, None as Empty};
    let not_final = || Err(NotImplemented("unsupported transfer coding"));
    let unsupported = || Err(NotImplemented("unsupported transfer coding"));
    let bad_cl = || Err(BadRequest("invalid Content-Length"));
    #[rustfmt::skip]
    let cases = [
        ("1.1", "", Ok(Empty)),
        ("1.1", "Content-Length: 0\r\n", Ok(Length(0))),
        ("1.1", "Content-Length: 007\r\n", Ok(Length(7))),
        ("1.0", "Content-Length:  18446744073709551615 \r\n", Ok(Length(u64::MAX))),
        ("1.1", "Transfer-Encoding: chunked\r\n", Ok(Chunked)),
        ("1.1", "transfer-encoding: ChUnKeD\r\n", Ok(Chunked)),
        ("1.1", "Content-Length: 18446744073709551616\r\n", bad_cl()),
        ("1.1", "Content-Length: 1, 1\r\n", bad_cl()),
        ("1.1", "Content-Length: +1\r\n", bad_cl()),
        ("1.1", "Content-Length: -1\r\n", bad_cl()),
        ("1.1", "Content-Length: 1 1\r\n", bad_cl()),
        ("1.1", "Content-Length: 0x1\r\n", bad_cl()),
        ("1.1", "Content-Length: 1.0\r\n", bad_cl()),
        ("1.1", "Content-Length:\r\n", bad_cl()),
        ("1.1", "Content-Length: 1\r\nContent-Length: 1\r\n", Err(BadRequest("multiple Content-Length headers"))),
        ("1.1", "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", Err(BadRequest("both Content-Length and Transfer-Encoding"))),
        ("1.1", "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n", Err(BadRequest("both Content-Length and Transfer-Encoding"))),
        ("1.0", "Transfer-Encoding: chunked\r\n", Err(BadRequest("Transfer-Encoding in HTTP/1.0 request"))),
        ("1.1", "Transfer-Encoding: gzip\r\n", not_final()),
        ("1.1", "Transfer-Encoding: identity\r\n", not_final()),
        ("1.1", "Transfer-Encoding:\r\n", not_final()),
        ("1.1", "Transfer-Encoding: chunked, gzip\r\n", not_final()),
        ("1.1", "Transfer-Encoding: chunked;q=1\r\n", not_final()),
        ("1.1", "Transfer-Encoding: gzip, chunked\r\n", unsupported()),
        ("1.1", "Transfer-Encoding: chunked, chunked\r\n", unsupported()),
        ("1.1", "Transfer-Encoding: chunked,\r\n", unsupported()),
        ("1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", unsupported()),
        ("1.1", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", unsupported()),
    ];
    for (version, fields, want) in cases {
        let s = format!("POST /v2/ HTTP/{version}\r\nHost: a\r\n{fields}\r\n");
        let got = parse_request(s.as_bytes()).map(|p| match p {
            Parse::Complete { head, .. } => head.body,
            Parse::Partial => panic!("{s:?}: partial"),
        });
        assert_eq!(got, want, "{s:?}");
    }
}

#[test]
fn partial_heads_and_limits() {
    // Leading empty lines (RFC 9112 §2.2) count in `len`; so does nothing after the head.
    let whole = "\r\n\nPUT /v2/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    for end in 0..whole.len() {
        assert_eq!(partial(&whole[..end]), Ok(true), "{end}");
    }
    match parse_request(format!("{whole}abcGET").as_bytes()) {
        Ok(Parse::Complete { len, head }) => {
            assert_eq!((len, head.path()), (whole.len(), "/v2/x"))
        }
        other => panic!("{other:?}"),
    }

    let line = |target: usize| format!("GET /{} HTTP/1.1\r\n", "a".repeat(target - 1));
    let unfinished = format!(
        "GET /{}",
        "a".repeat(MAX_URI_BYTES + REQUEST_LINE_SLACK - 5)
    );
    assert_eq!(partial(&unfinished), Ok(true));
    assert_eq!(partial(&format!("{unfinished}a")), Err(UriTooLong));
    assert_eq!(partial(&format!("\r\n\r\n{unfinished}")), Ok(true));
    assert_eq!(partial(&line(MAX_URI_BYTES)), Ok(true));
    assert_eq!(partial(&line(MAX_URI_BYTES + 1)), Err(UriTooLong));
    // A head of exactly `n` bytes whose last field line is unfinished.
    let filler = |n: usize| format!("{}X: {}", line(10), "a".repeat(n - 28));
    assert_eq!(partial(&filler(MAX_HEAD_BYTES - 1)), Ok(true));
    assert_eq!(partial(&filler(MAX_HEAD_BYTES)), Err(HeadTooLarge));
    assert_eq!(
        partial(&"\r\n".repeat(MAX_HEAD_BYTES / 2)),
        Err(HeadTooLarge)
    );
    let oversized = format!("{}\r\nHost: a\r\n\r\n", filler(MAX_HEAD_BYTES));
    assert_eq!(
        parse_request(oversized.as_bytes()).err(),
        Some(HeadTooLarge)
    );
}

#[test]
fn keep_alive_and_expect() {
    #[rustfmt::skip]
    let cases = [
        ("1.1", "", true, false),
        ("1.1", "Connection: close\r\n", false, false),
        ("1.1", "Connection: Keep-Alive, CLOSE\r\n", false, false),
        ("1.1", "Connection: upgrade\r\nConnection: x, close\r\n", false, false),
        ("1.1", "Connection: keep-alive\r\nExpect: 100-Continue\r\n", true, true),
        ("1.1", "Expect: foo, 100-continue\r\n", true, true),
        ("1.1", "Expect: 100-continued\r\n", true, false),
        ("1.0", "", false, false),
        ("1.0", "Connection: keep-alive\r\nExpect: 100-continue\r\n", true, false),
        ("1.0", "Connection: foo,Keep-Alive\r\n", true, false),
        ("1.0", "Connection: keep-alive, close\r\n", false, false),
    ];
    for (version, fields, keep_alive, expect) in cases {
        let head = req(&format!("GET / HTTP/{version}\r\nHost: a\r\n{fields}\r\n"));
        let got = (head.keep_alive, head.expect_continue);
        assert_eq!(got, (keep_alive, expect), "{version} {fields:?}");
    }
}

#[test]
fn targets() {
    #[rustfmt::skip]
    let cases = [
        ("/v2/a/b?n=1&last=x", "/v2/a/b?n=1&last=x", "/v2/a/b", Some("n=1&last=x"), "h"),
        ("/v2/?", "/v2/?", "/v2/", Some(""), "h"),
        ("http://r.example:5000/v2/x?q", "/v2/x?q", "/v2/x", Some("q"), "r.example:5000"),
        ("HTTPS://[::1]:443/v2/", "/v2/", "/v2/", None, "[::1]:443"),
        ("http://r.example", "/", "/", None, "r.example"),
        ("http://r.example?a=/b", "/?a=/b", "/", Some("a=/b"), "r.example"),
    ];
    for (raw, target, path, query, host) in cases {
        let head = req(&format!("GET {raw} HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n"));
        assert_eq!(
            (head.target(), head.path(), head.query()),
            (target, path, query)
        );
        assert_eq!(
            (head.host(), head.header("x")),
            (Some(host), Some(&b"y"[..])),
            "{raw}"
        );
    }
    let old = req("GET /x HTTP/1.0\n\n");
    assert_eq!((old.host(), old.version), (None, Version::Http10));
}

#[test]
fn fields_and_methods() {
    let head = req(
        "GET /v2/ HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nAuthorization: Basic c2VjcmV0\r\n\
                    x-a: 2\r\nX-Obs: caf\u{e9}\t\r\n\r\n",
    );
    assert_eq!(head.header("X-a"), Some(&b"1"[..]));
    assert_eq!(head.header("x-obs"), Some("caf\u{e9}".as_bytes()));
    assert_eq!(head.header("missing"), None);
    let names: Vec<_> = head.headers().map(|(n, _)| n).collect();
    assert_eq!(names, ["Host", "X-A", "Authorization", "x-a", "X-Obs"]);
    let debug = format!("{head:?}");
    assert!(
        debug.contains("<redacted>") && !debug.contains("c2VjcmV0"),
        "{debug}"
    );
    assert!(debug.contains("\"/v2/\""), "{debug}");

    #[rustfmt::skip]
    let methods = [
        ("GET", Method::Get, true, true),
        ("HEAD", Method::Head, true, true),
        ("OPTIONS", Method::Options, true, true),
        ("PUT", Method::Put, false, true),
        ("DELETE", Method::Delete, false, true),
        ("POST", Method::Post, false, false),
        ("PATCH", Method::Patch, false, false),
        ("TRACE", Method::Other("TRACE".into()), true, true),
        ("get", Method::Other("get".into()), false, false),
    ];
    for (token, method, safe, idempotent) in methods {
        assert_eq!(
            req(&format!("{token} / HTTP/1.1\r\nHost: a\r\n\r\n")).method,
            method
        );
        let got = (method.as_str(), method.is_safe(), method.is_idempotent());
        assert_eq!(got, (token, safe, idempotent));
    }
}

#[test]
fn hop_by_hop() {
    let head = req(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Trace , keep-alive\r\n\
                    Connection: x-other\r\nX-Kept: 1\r\n\r\n",
    );
    #[rustfmt::skip]
    let hop = ["Connection", "keep-alive", "Proxy-Connection", "te", "TRAILER", "Transfer-Encoding",
               "Upgrade", "Proxy-Authenticate", "proxy-authorization", "x-trace", "X-Other"];
    for name in hop {
        assert!(head.is_connection_header(name.as_bytes()), "{name}");
    }
    for name in [
        "Host",
        "X-Kept",
        "Authorization",
        "Content-Length",
        "x-trace2",
        "",
    ] {
        assert!(!head.is_connection_header(name.as_bytes()), "{name}");
    }
    let r = res(
        &Method::Get,
        "HTTP/1.1 200 OK\r\nConnection: X-A\r\nContent-Length: 0\r\n\r\n",
    );
    let r = r.unwrap();
    assert!(r.is_connection_header(b"x-a") && !r.is_connection_header(b"content-length"));
    // The options are found whatever case the field's name is in, and a
    // head with no Connection field names none.
    let head = req("GET / HTTP/1.1\r\nHost: a\r\ncOnNeCtIoN: x-b\r\n\r\n");
    assert!(head.is_connection_header(b"X-B"));
    let head = req("GET / HTTP/1.1\r\nHost: a\r\nX-B: x-c\r\n\r\n");
    assert!(!head.is_connection_header(b"x-b") && !head.is_connection_header(b"x-c"));
}

#[test]
fn response_framing() {
    use ResponseBody::{Chunked, CloseDelimited, Length, None as Empty};
    let (get, head) = (Method::Get, Method::Head);
    #[rustfmt::skip]
    let cases = [
        (&get, "200 OK", "Content-Length: 5\r\n", Length(5), true),
        (&get, "200 OK", "Content-Length: 5, 5\r\ncontent-length: 5\r\n", Length(5), true),
        (&get, "200 OK", "Transfer-Encoding: chunked\r\n", Chunked, true),
        (&get, "200 OK", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", Chunked, false),
        (&get, "200 OK", "", CloseDelimited, false),
        (&get, "200 OK", "Connection: close\r\nContent-Length: 1\r\n", Length(1), false),
        (&head, "200 OK", "Content-Length: 5\r\n", Empty, true),
        (&head, "200 OK", "Transfer-Encoding: chunked\r\n", Empty, true),
        (&head, "200 OK", "", Empty, true),
        (&get, "204 No Content", "Content-Length: 5\r\n", Empty, true),
        (&get, "304 Not Modified", "Transfer-Encoding: chunked\r\n", Empty, true),
        (&get, "100 Continue", "", Empty, true),
        (&get, "101 Switching Protocols", "Connection: upgrade\r\n", Empty, true),
        (&get, "199", "Content-Length: x\r\n", Empty, true),
        (&get, "404 Not Found", "Content-Length: 0\r\n", Length(0), true),
    ];
    for (method, status, fields, body, keep_alive) in cases {
        let r = res(method, &format!("HTTP/1.1 {status}\r\n{fields}\r\n")).unwrap();
        assert_eq!(
            (r.body, r.keep_alive),
            (body, keep_alive),
            "{method:?} {status} {fields:?}"
        );
    }
    let old = |fields: &str| res(&get, &format!("HTTP/1.0 200 OK\r\n{fields}\r\n")).unwrap();
    assert!(!old("Content-Length: 1\r\n").keep_alive);
    assert!(old("Content-Length: 1\r\nConnection: keep-alive\r\n").keep_alive);
    assert!(!old("Connection: keep-alive\r\n").keep_alive);
}

#[test]
fn response_errors() {
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "X: y\r\n".repeat(MAX_HEADERS + 1)
    );
    #[rustfmt::skip]
    let cases = [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting Content-Length"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "conflicting Content-Length"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", "invalid Content-Length"),
        ("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "invalid Content-Length"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "chunked applied more than once"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported transfer coding"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "unsupported transfer coding"),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported transfer coding"),
        ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0 response"),
        ("HTTP/1.1 099 Odd\r\n\r\n", "invalid status code"),
        ("HTTP/1.1 600 Odd\r\n\r\n", "invalid status code"),
        ("HTTP/1.1 2000 OK\r\n\r\n", "invalid status line"),
        ("HTTP/2 200\r\n\r\n", "unsupported HTTP version"),
        ("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", "invalid header name"),
        (&many, "too many response headers"),
    ];
    for (input, why) in cases {
        assert_eq!(
            res(&Method::Get, input).err(),
            Some(BadResponse(why)),
            "{input:?}"
        );
    }
}

#[test]
fn response_partial_reason_and_limit() {
    let whole = "\r\nHTTP/1.1 404 Not  Found\r\nContent-Length: 2\r\n\r\n";
    for end in 0..whole.len() {
        let partial = parse_response(&whole.as_bytes()[..end], &Method::Get);
        assert!(matches!(partial, Ok(Parse::Partial)), "{end}: {partial:?}");
    }
    let r = res(&Method::Get, whole).unwrap();
    assert_eq!(
        (r.status, r.reason(), r.version),
        (404, "Not  Found", Version::Http11)
    );
    assert_eq!(
        res(&Method::Get, "HTTP/1.1 200\r\n\r\n").unwrap().reason(),
        ""
    );
    let obs = res(&Method::Get, "HTTP/1.1 200 \u{e9}\r\nX: \u{e9}\r\n\r\n").unwrap();
    assert_eq!(
        (obs.reason(), obs.header("x")),
        ("", Some("\u{e9}".as_bytes()))
    );
    let big = format!(
        "HTTP/1.1 200 OK\r\nX: {}",
        "a".repeat(MAX_RESPONSE_HEAD_BYTES)
    );
    let too_large = Some(BadResponse("response head too large"));
    assert_eq!(
        parse_response(big.as_bytes(), &Method::Get).err(),
        too_large
    );
    let big = format!("{big}\r\n\r\n");
    assert_eq!(
        parse_response(big.as_bytes(), &Method::Get).err(),
        too_large
    );
}

#[test]
fn display() {
    #[rustfmt::skip]
    let cases = [
        (BadRequest("x"), "bad request: x"),
        (UriTooLong, "request target too long"),
        (HeadTooLarge, "request head too large"),
        (NotImplemented("y"), "not implemented: y"),
        (BadResponse("z"), "bad upstream response: z"),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
}
