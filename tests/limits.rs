//! Every refusal of malformed request framing, end to end: regproxy in front
//! of the real registry, plain HTTP and TLS side by side. Each refusal must
//! carry its status and the registry-style JSON body, close the connection,
//! and leave the registry untouched (its access log does not grow).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::http::{self, Conn, Endpoint, RawResponse};
use support::proxy::Proxy;
use support::registry::{LoggedRequest, Registry};
use support::skopeo::sha256_digest;
use support::tls::Tls;

const USER: &str = "testuser";
const PASS: &str = "testpassword";
/// How long the registry's access log must stay unchanged to count as settled.
const QUIET: Duration = Duration::from_millis(300);

/// One registry with two regproxies in front of it: plain HTTP and TLS.
struct Stack {
    _dir: tempfile::TempDir,
    registry: Registry,
    tls: Tls,
    plain: Proxy,
    secure: Proxy,
}

fn stack() -> Stack {
    stack_with("")
}

/// `extra` is appended to both configs (e.g. a `[client]` table).
fn stack_with(extra: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let tls = Tls::generate(&dir.path().join("tls"));
    let users = dir.path().join("users");
    support::write_htpasswd(&users, &[(USER, PASS)]);
    let config = |tls_table: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n{tls_table}\n[auth]\nhtpasswd = \"{users}\"\n\
             push_users = [\"{USER}\"]\n[upstream]\nservers = [\"{upstream}\"]\n{extra}\n",
            users = users.display(),
            upstream = registry.addr(),
        )
    };
    let tls_table = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"",
        tls.server_cert().display(),
        tls.server_key().display()
    );
    let plain = Proxy::start(&config(""), &dir.path().join("plain"));
    let secure = Proxy::start(&config(&tls_table), &dir.path().join("tls-proxy"));
    Stack {
        _dir: dir,
        registry,
        tls,
        plain,
        secure,
    }
}

impl Stack {
    /// The plain endpoint, then the TLS one.
    fn endpoints(&self) -> [Endpoint; 2] {
        [
            Endpoint::plain(self.plain.addr()),
            self.tls.endpoint(self.secure.addr()),
        ]
    }

    /// The registry's requests once its access log is quiet.
    fn registry_requests(&self) -> Vec<LoggedRequest> {
        self.registry.settle(QUIET);
        self.registry.requests()
    }

    /// Runs `check` and asserts that no request reached the registry meanwhile.
    fn assert_nothing_forwarded(&self, what: &str, check: impl FnOnce()) {
        let before = self.registry_requests();
        check();
        let after = self.registry_requests();
        assert_eq!(
            after.len(),
            before.len(),
            "{what}: requests reached the registry: {:?}",
            &after[before.len().min(after.len())..]
        );
    }
}

/// `Authorization: Basic …` for the push user.
fn auth() -> String {
    format!("Authorization: {}", http::basic_auth_value(USER, PASS))
}

/// `line`, then `Host: localhost`, valid credentials, the `extra` field
/// lines, the empty line and `body`.
fn req(line: &str, extra: &[&str], body: &str) -> Vec<u8> {
    let mut fields = vec!["Host: localhost".to_owned(), auth()];
    fields.extend(extra.iter().map(|s| (*s).to_owned()));
    raw(line, &fields, body)
}

/// `line`, exactly `fields`, the empty line and `body`.
fn raw(line: &str, fields: &[String], body: &str) -> Vec<u8> {
    let mut text = format!("{line}\r\n");
    for f in fields {
        text.push_str(f);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// The registry error code regproxy uses for a status.
fn code_for(status: u16) -> &'static str {
    match status {
        404 => "NOT_FOUND",
        501 => "UNSUPPORTED",
        _ => "BAD_REQUEST",
    }
}

/// An answer from regproxy itself: status, the registry's JSON error body
/// with `reason` in its message, and the API version header.
fn assert_error_answer(r: &RawResponse, status: u16, reason: &str, what: &str) {
    http::assert_registry_error(r, status, code_for(status), what);
    let body = r.body_text();
    assert!(
        body.contains(reason),
        "{what}: expected {reason:?} in {body:?}"
    );
}

/// A refusal: [`assert_error_answer`], and the connection closed
/// (announced, and done).
fn assert_refused(r: &RawResponse, status: u16, reason: &str, what: &str) {
    assert_error_answer(r, status, reason, what);
    assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
    assert!(r.closed, "{what}: the connection stayed open");
}

/// A raw request, the status and the reason its refusal must carry.
struct Case {
    what: String,
    bytes: Vec<u8>,
    status: u16,
    reason: &'static str,
}

fn case(what: impl Into<String>, bytes: Vec<u8>, status: u16, reason: &'static str) -> Case {
    Case {
        what: what.into(),
        bytes,
        status,
        reason,
    }
}

/// Each case is refused as it says on both transports, and none of them
/// reaches the registry.
fn assert_table_refused(s: &Stack, cases: &[Case]) {
    assert_table_refused_on(s, &s.endpoints(), cases);
}

fn assert_table_refused_on(s: &Stack, endpoints: &[Endpoint], cases: &[Case]) {
    s.assert_nothing_forwarded("refusal table", || {
        for ep in endpoints {
            for c in cases {
                let what = format!("{} ({ep:?})", c.what);
                let r = http::send_raw(ep, &c.bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_refused(&r, c.status, c.reason, &what);
            }
        }
    });
}

#[test]
fn counting_sees_a_forwarded_request() {
    // The control for every "nothing reached the registry" below: the same
    // kind of request, well framed, does show up in the registry's log.
    let s = stack();
    for ep in s.endpoints() {
        let before = s.registry_requests().len();
        let bytes = req(
            "POST /v2/limits/control/blobs/uploads/ HTTP/1.1",
            &["Content-Length: 0", "Connection: close"],
            "",
        );
        let r = http::send_raw(&ep, &bytes).unwrap();
        assert_eq!(r.status, 202, "{ep:?}: {r:?}");
        let after = s.registry_requests();
        assert_eq!(after.len(), before + 1, "{ep:?}: {after:?}");
        assert_eq!(
            after.last().unwrap().uri,
            "/v2/limits/control/blobs/uploads/"
        );
    }
}

#[test]
fn ambiguous_framing_and_hosts_get_400() {
    let s = stack();
    let both = "both Content-Length and Transfer-Encoding";
    let bad_cl = "invalid Content-Length";
    let multi_cl = "multiple Content-Length headers";
    // POSTs with these field lines and body, each to its own repository.
    let posts: &[(&[&str], &str, &str)] = &[
        (
            &["Content-Length: 5", "Transfer-Encoding: chunked"],
            "0\r\n\r\n",
            both,
        ),
        (
            &["Transfer-Encoding: chunked", "Content-Length: 5"],
            "0\r\n\r\n",
            both,
        ),
        (
            &["Content-Length: 0", "Transfer-Encoding: chunked"],
            "0\r\n\r\n",
            both,
        ),
        (
            &["Content-Length: 5", "Content-Length: 5"],
            "hello",
            multi_cl,
        ),
        (
            &["Content-Length: 5", "Content-Length: 0"],
            "hello",
            multi_cl,
        ),
        (&["Content-Length: 5, 5"], "hello", bad_cl),
        (&["Content-Length: -1"], "", bad_cl),
        (&["Content-Length: abc"], "", bad_cl),
        (&["Content-Length: +5"], "hello", bad_cl),
        (&["Content-Length: 0x5"], "hello", bad_cl),
        (&["Content-Length:"], "", bad_cl),
        (&["Content-Length: 18446744073709551616"], "", bad_cl),
        (
            &["Transfer-Encoding : chunked"],
            "0\r\n\r\n",
            "invalid header name",
        ),
        // Obsolete line folding.
        (&["Content-Length:", " 0"], "", "invalid header name"),
    ];
    let mut cases: Vec<Case> = posts
        .iter()
        .enumerate()
        .map(|(i, (fields, body, reason))| {
            let line = format!("POST /v2/limits/post{i}/blobs/uploads/ HTTP/1.1");
            case(fields.join(" / "), req(&line, fields, body), 400, reason)
        })
        .collect();
    // GETs with these Host lines instead of the usual one.
    let multi_host = "multiple Host headers";
    let hosts: &[(&[&str], &str)] = &[
        (&[], "missing Host header"),
        (&["Host: localhost", "Host: evil.example"], multi_host),
        (&["Host: localhost", "Host: localhost"], multi_host),
        (&["Host:"], "invalid Host header"),
        (&["Host: localhost/x"], "invalid Host header"),
    ];
    cases.extend(hosts.iter().enumerate().map(|(i, (hosts, reason))| {
        let line = format!("GET /v2/limits/host{i}/tags/list HTTP/1.1");
        let mut fields: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        fields.push(auth());
        case(
            format!("Host lines {hosts:?}"),
            raw(&line, &fields, ""),
            400,
            reason,
        )
    }));
    cases.push(case(
        "Transfer-Encoding in HTTP/1.0",
        req(
            "POST /v2/limits/te10/blobs/uploads/ HTTP/1.0",
            &["Transfer-Encoding: chunked"],
            "0\r\n\r\n",
        ),
        400,
        "Transfer-Encoding in HTTP/1.0 request",
    ));
    cases.push(case(
        "HTTP/1.2",
        req("GET /v2/limits/version/tags/list HTTP/1.2", &[], ""),
        400,
        "unsupported HTTP version",
    ));
    assert_table_refused(&s, &cases);
}

#[test]
fn ambiguous_paths_get_400() {
    let s = stack();
    let path = "invalid request path";
    let cases: Vec<Case> = [
        ("/v2/../x", path),
        ("/v2/limits/../../v2/other/tags/list", path),
        ("/v2/./limits/tags/list", path),
        ("/v2/limits/..", path),
        ("/v2/limits/..?n=1", path),
        ("/v2/limits/%2e%2e/other/tags/list", path),
        ("/v2/limits/%2E%2E/other/tags/list", path),
        ("/v2/limits/.%2e/other/tags/list", path),
        ("/v2/%2e/limits/tags/list", path),
        ("/v2/limits%2fencoded/tags/list", path),
        ("/v2/limits%2Fencoded/tags/list", path),
        ("/v2/limits%5cencoded/tags/list", path),
        ("/v2/limits\\x/tags/list", path),
        ("/v2/limits%00/tags/list", path),
        ("/v2/limits%zz/tags/list", path),
        ("/v2/limits%2/tags/list", path),
        // Refused by the target rules before routing.
        ("/v2/limits/x#fragment", "fragment in request target"),
        ("*", "asterisk-form request target"),
        ("localhost:443", "unsupported request-target form"),
        ("http://user@localhost/v2/", "userinfo in request target"),
    ]
    .into_iter()
    .map(|(target, reason)| {
        let bytes = req(&format!("GET {target} HTTP/1.1"), &[], "");
        case(target, bytes, 400, reason)
    })
    .collect();
    assert_table_refused(&s, &cases);
}

#[test]
fn transfer_codings_other_than_chunked_get_501() {
    let s = stack();
    let patch = |te: &[&str]| {
        let fields: Vec<String> = te
            .iter()
            .map(|v| format!("Transfer-Encoding: {v}"))
            .collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        req(
            "PATCH /v2/limits/codings/blobs/uploads/x HTTP/1.1",
            &fields,
            "0\r\n\r\n",
        )
    };
    let cases: Vec<Case> = [
        vec!["gzip"],
        vec!["gzip, chunked"],
        vec!["chunked, chunked"],
        vec!["chunked", "chunked"],
        vec!["gzip", "chunked"],
        vec!["chunked, gzip"],
        vec!["identity"],
        vec!["chunked,"],
        vec!["CHUNKED, chunked"],
    ]
    .into_iter()
    .map(|te| {
        let what = format!("Transfer-Encoding: {}", te.join(" / "));
        case(what, patch(&te), 501, "unsupported transfer coding")
    })
    .collect();
    assert_table_refused(&s, &cases);
}

/// `GET target` with `n` filler fields of `len` value bytes each, after
/// Host and Authorization.
fn with_fillers(target: &str, n: usize, len: usize) -> Vec<u8> {
    let fillers: Vec<String> = (0..n)
        .map(|i| format!("X-Filler-{i:03}: {}", "f".repeat(len)))
        .collect();
    let fillers: Vec<&str> = fillers.iter().map(String::as_str).collect();
    req(&format!("GET {target} HTTP/1.1"), &fillers, "")
}

/// A `GET /v2/?pad=…` head, with credentials, of exactly `total` bytes.
fn head_of_exactly(total: usize) -> Vec<u8> {
    // 20 fillers keep the field count far from its limit; the remainder
    // goes into the target's query.
    let base = with_fillers("/v2/?pad=", 20, 0).len();
    let per = (total - base) / 20;
    let rest = total - base - 20 * per;
    let bytes = with_fillers(&format!("/v2/?pad={}", "p".repeat(rest)), 20, per);
    assert_eq!(bytes.len(), total, "head arithmetic");
    bytes
}

/// `GET` of a target of exactly `len` bytes under `/v2/`.
fn target_of_exactly(len: usize) -> String {
    let target = format!("/v2/?pad={}", "t".repeat(len - "/v2/?pad=".len()));
    assert_eq!(target.len(), len);
    target
}

#[test]
fn oversized_heads_get_431_and_long_targets_414() {
    let s = stack();
    const HEAD: usize = 32 * 1024;
    const URI: usize = 8 * 1024;
    let large = "request header fields too large";
    let long = "request URI too long";
    let get = |target: &str| req(&format!("GET {target} HTTP/1.1"), &[], "");
    let cases = [
        case(
            "head 1 byte over 32 KiB",
            head_of_exactly(HEAD + 1),
            431,
            large,
        ),
        case("head of 40 KiB", with_fillers("/v2/", 40, 1000), 431, large),
        // Host + Authorization + 99 fillers = 101 fields, a few KiB in all.
        case("101 fields", with_fillers("/v2/", 99, 1), 431, large),
        case("500 fields", with_fillers("/v2/", 498, 1), 431, large),
        // Empty lines before the request line count towards the head.
        case(
            "33 KiB of CRLF",
            ["\r\n".repeat(33 * 512).into_bytes(), get("/v2/")].concat(),
            431,
            large,
        ),
        case(
            "target 1 byte over 8 KiB",
            get(&target_of_exactly(URI + 1)),
            414,
            long,
        ),
        // Longer than the whole head limit: still blamed on the target.
        case(
            "target of 40 KiB",
            get(&target_of_exactly(40 * 1024)),
            414,
            long,
        ),
    ];
    assert_table_refused(&s, &cases);
    // More than regproxy's read buffer, refused before it is all read, so
    // the client's write fails. Plain only: the harness's TLS client (rustls
    // StreamOwned) retries its unsent bytes before every read, so after a
    // failed write it can no longer read the answer that did arrive.
    assert_table_refused_on(
        &s,
        &s.endpoints()[..1],
        &[case(
            "head of 256 KiB",
            with_fillers("/v2/", 64, 4096),
            431,
            large,
        )],
    );

    // Exactly at each limit the request is forwarded.
    let at_limit: Vec<(&str, Vec<u8>)> = vec![
        ("head of exactly 32 KiB", head_of_exactly(HEAD)),
        ("exactly 100 header fields", with_fillers("/v2/", 98, 1)),
        (
            "target of exactly 8 KiB",
            req(&format!("GET {} HTTP/1.1", target_of_exactly(URI)), &[], ""),
        ),
    ];
    for ep in s.endpoints() {
        for (what, bytes) in &at_limit {
            let before = s.registry_requests().len();
            let r = http::send_raw(&ep, bytes).unwrap();
            assert_eq!(r.status, 200, "{what} ({ep:?}): {r:?}");
            assert_eq!(r.body_text(), "{}", "{what}");
            assert_eq!(
                s.registry_requests().len(),
                before + 1,
                "{what} ({ep:?}) did not reach the registry"
            );
        }
    }
}

#[test]
fn paths_outside_v2_get_404_with_registry_json() {
    let s = stack();
    let targets = [
        "/",
        "/v2",
        "/v1/",
        "/v2x",
        "/v2x/",
        "/V2/",
        "/v1/_ping",
        "/metrics",
        "/v2?x=/v2/",
    ];
    s.assert_nothing_forwarded("404s", || {
        for ep in s.endpoints() {
            for target in targets {
                let what = format!("{target} ({ep:?})");
                // With and without credentials: routing comes before auth.
                for bytes in [
                    req(&format!("GET {target} HTTP/1.1"), &[], ""),
                    raw(
                        &format!("GET {target} HTTP/1.1"),
                        &["Host: localhost".to_owned()],
                        "",
                    ),
                ] {
                    let r = http::send_raw(&ep, &bytes).unwrap();
                    assert_error_answer(&r, 404, "not found", &what);
                    assert!(r.header("www-authenticate").is_none(), "{what}");
                }
            }
        }
    });
    // A 404 is not a framing error: a keep-alive connection carries on.
    for ep in s.endpoints() {
        let mut conn = Conn::connect(&ep).unwrap();
        conn.send(&req("GET /v1/ HTTP/1.1", &[], "")).unwrap();
        let r = conn.read_response().unwrap();
        assert_eq!(r.status, 404, "{ep:?}: {r:?}");
        assert_eq!(r.header("connection"), None, "{ep:?}: {r:?}");
        conn.send(&req("GET /v2/ HTTP/1.1", &[], "")).unwrap();
        let r = conn.read_response().unwrap();
        assert_eq!(r.status, 200, "{ep:?}: {r:?}");
    }
}

/// The head of a chunked PATCH to `path`, with credentials.
fn chunked_patch(path: &str) -> Vec<u8> {
    req(
        &format!("PATCH {path} HTTP/1.1"),
        &[
            "Content-Type: application/octet-stream",
            "Transfer-Encoding: chunked",
        ],
        "",
    )
}

#[test]
fn malformed_chunks_get_400_and_commit_nothing() {
    let s = stack();
    // A good chunk, then the fault, all in one write: regproxy decodes what
    // it has read before passing it on, so it usually meets the fault
    // before forwarding any body byte (the split test covers the rest).
    let bodies: [(&str, &str); 6] = [
        ("bad hex size", "5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("missing CRLF after data", "5\r\nhelloXX0\r\n\r\n"),
        ("LF only after data", "5\r\nhello\n0\r\n\r\n"),
        (
            "size over 64 bits",
            "5\r\nhello\r\n10000000000000000\r\nx\r\n",
        ),
        ("signed size", "5\r\nhello\r\n-1\r\nx\r\n0\r\n\r\n"),
        ("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
    ];
    let blobs_before = s.registry.blob_count();
    for ep in s.endpoints() {
        for (i, (what, body)) in bodies.iter().enumerate() {
            let what = format!("{what} ({ep:?})");
            let repo = format!("limits/chunks{i}");
            let path = http::start_upload(&ep, &repo, (USER, PASS));
            let before = s.registry_requests().len();

            let mut bytes = chunked_patch(&path);
            bytes.extend_from_slice(body.as_bytes());
            let r = http::send_raw(&ep, &bytes).unwrap();
            assert_refused(&r, 400, "malformed chunked body", &what);

            assert_patch_failed_upstream(&s, before, &path, &what);
            assert_upload_empty_then_completes(&s, &ep, &path, &what);
        }
    }
    // Only the blob completed on purpose exists ("hello", every time).
    assert_eq!(
        s.registry.blob_count(),
        blobs_before + 1,
        "a broken upload left a blob behind"
    );
}

/// The head of a PATCH with a malformed chunked body is valid, so regproxy
/// has forwarded it before meeting the fault, then dropped the registry
/// connection: the registry logs exactly that PATCH, failed (its body ended
/// early), and nothing else since `before`.
fn assert_patch_failed_upstream(s: &Stack, before: usize, path: &str, what: &str) {
    let logged = support::wait_for(Duration::from_secs(30), || {
        let seen = s.registry.requests();
        seen[before..]
            .iter()
            .any(|r| r.method == "PATCH")
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "{what}: the registry never logged the PATCH"
    );
    let seen = s.registry_requests();
    let new = &seen[before..];
    assert_eq!(new.len(), 1, "{what}: {new:?}");
    assert_eq!(
        (new[0].method.as_str(), new[0].uri.as_str()),
        ("PATCH", path)
    );
    assert!(
        new[0].status >= 400,
        "{what}: the registry accepted a truncated body: {new:?}"
    );
}

/// The upload session at `path` holds no data, and a clean monolithic PUT
/// of "hello" then completes it with the right digest.
fn assert_upload_empty_then_completes(s: &Stack, ep: &Endpoint, path: &str, what: &str) {
    let status = http::get(ep, path, Some((USER, PASS)), &[]).unwrap();
    assert_eq!(status.status, 204, "{what}: upload status {status:?}");
    assert_eq!(status.header("range"), Some("0-0"), "{what}: {status:?}");
    let digest = sha256_digest(b"hello");
    let put_path = format!(
        "{}&digest={digest}",
        http::path_of(status.header("location").expect("Location"))
    );
    let put = http::request(ep, "PUT", &put_path, Some((USER, PASS)), &[], b"hello").unwrap();
    assert_eq!(put.status, 201, "{what}: {put:?}");
    assert_eq!(put.header("docker-content-digest"), Some(digest.as_str()));
    assert!(s.registry.has_blob(&digest), "{what}");
}

#[test]
fn malformed_chunk_after_forwarded_data_gets_400_and_no_blob() {
    // The bad chunk comes in a later write, after a good chunk that regproxy
    // has read (and likely passed on already): the registry sees a chunked body that
    // never ends and fails that PATCH. Whether distribution then keeps the
    // session empty or invalidates it depends on how far its copy got; in
    // neither case may a blob be committed.
    let s = stack();
    let blobs_before = s.registry.blob_count();
    for ep in s.endpoints() {
        let path = http::start_upload(&ep, "limits/split", (USER, PASS));
        let before = s.registry_requests().len();
        let mut conn = Conn::connect(&ep).unwrap();
        let mut first = chunked_patch(&path);
        first.extend_from_slice(b"5\r\nhello\r\n");
        conn.send(&first).unwrap();
        // regproxy has read the good chunk before the bad one is sent.
        let client = conn.local_addr().unwrap();
        let read = support::wait_for(Duration::from_secs(10), || {
            (support::tcp::unread(ep.addr, client) == 0).then_some(())
        });
        assert!(read.is_some(), "regproxy did not read the first chunk");
        // The proxy may close as soon as it sees the fault; a failed write
        // is fine as long as the answer can be read.
        let _ = conn.send(b"zz\r\n0\r\n\r\n");
        let r = conn.read_response().unwrap();
        let what = format!("split chunk ({ep:?})");
        assert_refused_on(&mut conn, &r, 400, "malformed chunked body", &what);
        assert_patch_failed_upstream(&s, before, &path, &what);
        let status = http::get(&ep, &path, Some((USER, PASS)), &[]).unwrap();
        match status.status {
            204 => assert_eq!(status.header("range"), Some("0-0"), "{what}: {status:?}"),
            404 => assert!(
                status.body_text().contains("BLOB_UPLOAD_INVALID")
                    || status.body_text().contains("BLOB_UPLOAD_UNKNOWN"),
                "{what}: {status:?}"
            ),
            other => panic!("{what}: upload status {other}: {status:?}"),
        }
    }
    assert_eq!(s.registry.blob_count(), blobs_before);
}

/// [`assert_refused`] for a response read from a [`Conn`], whose close is
/// checked here.
fn assert_refused_on(conn: &mut Conn, r: &RawResponse, status: u16, reason: &str, what: &str) {
    let closed = conn.is_closed(Duration::from_secs(10));
    let r = RawResponse {
        closed,
        ..r.clone()
    };
    assert_refused(&r, status, reason, what);
}

#[test]
fn bad_request_after_a_good_one_on_a_keep_alive_connection() {
    let s = stack();
    let both = "both Content-Length and Transfer-Encoding";
    let good = req("GET /v2/ HTTP/1.1", &[], "");
    let bad = req(
        "POST /v2/limits/ka/blobs/uploads/ HTTP/1.1",
        &["Content-Length: 0", "Transfer-Encoding: chunked"],
        "0\r\n\r\n",
    );
    for ep in s.endpoints() {
        // One after the other.
        let before = s.registry_requests().len();
        let mut conn = Conn::connect(&ep).unwrap();
        conn.send(&good).unwrap();
        let r = conn.read_response().unwrap();
        assert_eq!(r.status, 200, "{ep:?}: {r:?}");
        assert!(!conn.is_closed(Duration::from_millis(200)), "{ep:?}");
        conn.send(&bad).unwrap();
        let r = conn.read_response().unwrap();
        assert_refused_on(&mut conn, &r, 400, both, &format!("keep-alive ({ep:?})"));
        assert_eq!(s.registry_requests().len(), before + 1, "{ep:?}");

        // Pipelined in one write: the good one is answered first.
        let before = s.registry_requests().len();
        let mut conn = Conn::connect(&ep).unwrap();
        conn.send(&[good.clone(), bad.clone()].concat()).unwrap();
        let r = conn.read_response().unwrap();
        assert_eq!(r.status, 200, "{ep:?}: {r:?}");
        let r = conn.read_response().unwrap();
        assert_refused_on(&mut conn, &r, 400, both, &format!("pipelined ({ep:?})"));
        assert_eq!(s.registry_requests().len(), before + 1, "{ep:?}");
    }
}

#[test]
fn garbage_gets_400_and_close() {
    let s = stack();
    let line = "invalid request line";
    let raw_cases: &[(&str, &[u8], &str)] = &[
        ("binary", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n", line),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
            line,
        ),
        ("words", b"hello there\r\n\r\n", line),
        ("no target", b"GET\r\n\r\n", line),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.2\r\n", line),
        ("NUL in the method", b"GE\x00T /v2/ HTTP/1.1\r\n\r\n", line),
    ];
    let mut cases: Vec<Case> = raw_cases
        .iter()
        .map(|(what, bytes, reason)| case(*what, bytes.to_vec(), 400, reason))
        .collect();
    cases.push(case(
        "control byte in a field value",
        req("GET /v2/ HTTP/1.1", &["X-Bad: a\x01b"], ""),
        400,
        "invalid header value",
    ));
    cases.push(case(
        "non-ASCII in the target",
        req("GET /v2/caf\u{e9}/tags/list HTTP/1.1", &[], ""),
        400,
        "invalid byte in request target",
    ));
    assert_table_refused(&s, &cases);
}

#[test]
fn half_heads_and_dropped_clients_do_not_hurt_the_proxy() {
    let mut s = stack();
    let half = b"GET /v2/ HTTP/1.1\r\nHost: local";
    s.assert_nothing_forwarded("half heads", || {
        for ep in s.endpoints() {
            for round in 0..10 {
                let mut conn = Conn::connect(&ep).unwrap();
                conn.send(half).unwrap();
                if round % 2 == 0 {
                    // Half-closed: a plain client can still read the
                    // refusal. Over TLS a TCP half-close without
                    // close_notify is a truncation; just closing is fine.
                    conn.shutdown_write().unwrap();
                    match conn.read_response() {
                        Ok(r) => assert_refused_on(
                            &mut conn,
                            &r,
                            400,
                            "connection closed inside request head",
                            &format!("half head ({ep:?})"),
                        ),
                        Err(e) => assert!(
                            ep.is_tls() && e.kind() == std::io::ErrorKind::UnexpectedEof,
                            "half head ({ep:?}): {e}"
                        ),
                    }
                }
                // Odd rounds: the client vanishes with the head unfinished.
            }
            // Connections that send nothing at all, and a TCP connection
            // that leaves a TLS handshake unfinished.
            for _ in 0..5 {
                drop(std::net::TcpStream::connect(ep.addr).unwrap());
                let mut tcp = std::net::TcpStream::connect(ep.addr).unwrap();
                std::io::Write::write_all(&mut tcp, b"\x16\x03\x01\x00").unwrap();
                drop(tcp);
            }
        }
    });
    for ep in s.endpoints() {
        let r = http::get(&ep, "/v2/", Some((USER, PASS)), &[]).unwrap();
        assert_eq!(r.status, 200, "{ep:?} stopped serving: {r:?}");
    }
    assert!(s.plain.try_wait().is_none(), "plain proxy exited");
    assert!(s.secure.try_wait().is_none(), "TLS proxy exited");
}

#[test]
fn a_head_that_never_finishes_is_closed_at_the_header_timeout() {
    let s = stack_with("[client]\nheader_timeout = \"2s\"\n");
    s.assert_nothing_forwarded("slow head", || {
        for ep in s.endpoints() {
            let mut conn = Conn::connect(&ep).unwrap();
            conn.send(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            // Generous: the point is that it closes, not how fast.
            assert!(
                conn.is_closed(Duration::from_secs(30)),
                "{ep:?}: an unfinished head kept the connection"
            );
        }
    });
}

/// A connection's waits share one timer (`relay/timer.rs`), re-armed for
/// each. Each must still be bounded by its own timeout, also when it is
/// shorter than the one before: after a request whose writes and reads
/// were bounded by 900 s, an idle keep-alive connection closes at
/// `idle_timeout`, and a second head that stops halfway at
/// `header_timeout`; a body that stalls after a request closes at
/// `body_timeout`.
#[test]
fn keep_alive_waits_are_bounded_by_their_own_timeouts_after_longer_ones() {
    let s = stack_with(
        "[client]\nidle_timeout = \"1s\"\nheader_timeout = \"1s\"\nbody_timeout = \"2s\"\n",
    );
    let keep_alive = [("Connection", "keep-alive")];
    let get = http::build_request("GET", "/v2/", Some((USER, PASS)), &keep_alive, b"");
    // Well under the 900 s of the longer waits before, well over the
    // timeouts under test: a busy machine must not fail it.
    let bound = Duration::from_secs(20);
    for ep in s.endpoints() {
        let answered = |conn: &mut Conn| {
            conn.send(&get).unwrap();
            let r = conn.read_response().unwrap();
            assert_eq!(r.status, 200, "{ep:?}: {r:?}");
        };
        let closes_within = |conn: &mut Conn, what: &str| {
            let started = std::time::Instant::now();
            assert!(
                conn.is_closed(Duration::from_secs(60)),
                "{ep:?}: {what} kept the connection"
            );
            assert!(
                started.elapsed() < bound,
                "{ep:?}: {what} closed after {:?}",
                started.elapsed()
            );
        };

        let mut idle = Conn::connect(&ep).unwrap();
        answered(&mut idle);
        answered(&mut idle);
        closes_within(&mut idle, "an idle keep-alive connection");

        let mut half_head = Conn::connect(&ep).unwrap();
        answered(&mut half_head);
        half_head
            .send(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        closes_within(&mut half_head, "a second head that stopped halfway");

        let mut stalled = Conn::connect(&ep).unwrap();
        answered(&mut stalled);
        let mut put = http::build_request(
            "PUT",
            "/v2/limits/manifests/stalled",
            Some((USER, PASS)),
            &[("Connection", "keep-alive"), ("Content-Length", "100")],
            b"",
        );
        put.extend_from_slice(&[b'{'; 10]);
        stalled.send(&put).unwrap();
        let started = std::time::Instant::now();
        // Either an error answer or a close, and within the bound.
        let answer = stalled.read_response();
        if let Ok(r) = &answer {
            assert!(r.status >= 400, "{ep:?}: a stalled body was answered {r:?}");
        }
        assert!(
            started.elapsed() < bound,
            "{ep:?}: a stalled body held on for {:?}",
            started.elapsed()
        );
        // The rest of that body never comes: the connection cannot be reused.
        closes_within(&mut stalled, "a connection whose body stalled");
    }
}
