//! The relay, end to end. Against the real registry (plain HTTP and TLS): a
//! raw chunked PATCH upload read back whole and by Range, HEAD framing,
//! `Expect: 100-continue` only after auth, client and upstream keep-alive,
//! and the registry headers passing through. Against a fault-injecting fake
//! origin: refused, silent, garbage and mid-body failures, stale pooled
//! connections (an idempotent GET is retried, a POST never resent), the
//! headers the registry is sent, chunked and close-delimited responses, and
//! graceful shutdown with a response in flight. The chunked round trips
//! (plain and TLS), upstream keep-alive and the upstream read timeout run
//! a second time on the epoll driver (`driver = "epoll"`), the fallback
//! where io_uring is unavailable.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http::{self, Conn, Endpoint, RawResponse};
use support::origin::{self, Origin, Step};
use support::proxy::{Proxy, EPOLL};
use support::registry::Registry;
use support::skopeo::{sha256_digest, RandomStream};
use support::tls::Tls;

const USER: (&str, &str) = ("testuser", "testpassword");
const READER: (&str, &str) = ("reader", "readerpassword");
/// Short upstream timeouts for the fake-origin tests.
const FAST_UPSTREAM: &str = "connect_timeout = \"1s\"\nread_timeout = \"1s\"";
/// "Within N seconds" bound for answers that should come at once.
const PROMPT: Duration = Duration::from_secs(20);

// === harness ===

/// A regproxy (with an admin listener) in front of `upstream`.
struct Front {
    _dir: tempfile::TempDir,
    tls: Option<Tls>,
    proxy: Proxy,
}

/// `top`: top-level keys; `upstream_keys`: more `[upstream]` keys; `tail`: more tables.
fn front(upstream: SocketAddr, tls: bool, top: &str, upstream_keys: &str, tail: &str) -> Front {
    let dir = tempfile::tempdir().unwrap();
    support::write_htpasswd(&dir.path().join("users"), &[USER, READER]);
    let tls = tls.then(|| Tls::generate(&dir.path().join("tls")));
    let tls_table = tls.as_ref().map_or(String::new(), |t| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            t.server_cert().display(),
            t.server_key().display()
        )
    });
    let config = format!(
        r#"
listen = "127.0.0.1:0"
{top}
{tls_table}
[auth]
htpasswd = "users"
push_users = ["testuser"]
[upstream]
servers = ["{upstream}"]
{upstream_keys}
[admin]
listen = "127.0.0.1:0"
{tail}
"#
    );
    let proxy = Proxy::start(&config, dir.path());
    Front {
        _dir: dir,
        tls,
        proxy,
    }
}

impl Front {
    fn ep(&self) -> Endpoint {
        match &self.tls {
            Some(t) => t.endpoint(self.proxy.addr()),
            None => Endpoint::plain(self.proxy.addr()),
        }
    }

    /// The Host a client would send (the TLS certificate names `localhost`).
    fn host(&self) -> String {
        match &self.tls {
            Some(_) => format!("localhost:{}", self.proxy.addr().port()),
            None => self.proxy.addr().to_string(),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn connect(&self) -> Conn {
        Conn::connect(self.ep()).unwrap()
    }

    /// A keep-alive request with this front's Host (`extra` may override).
    fn req(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let host = self.host();
        let mut headers = extra.to_vec();
        let has = |n: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("host") {
            headers.push(("Host", &host));
        }
        if !has("connection") {
            headers.push(("Connection", "keep-alive"));
        }
        http::build_request(method, path, auth, &headers, body)
    }

    /// One request on a fresh connection, `Connection: close`.
    fn once(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: &[u8],
    ) -> RawResponse {
        let bytes = self.req(method, path, auth, &[("Connection", "close")], body);
        http::send_raw(self.ep(), &bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\n--- regproxy stderr ---\n{}\n--- access log ---\n{}",
                self.proxy.stderr_text(),
                self.proxy.access_log_text()
            )
        })
    }

    fn metric(&self, name: &str) -> u64 {
        self.proxy.metric(name)
    }
}

/// Sends `bytes` on `conn` and reads the answer (`HEAD` reads no body).
fn exchange(conn: &mut Conn, bytes: &[u8]) -> RawResponse {
    conn.send(bytes).unwrap();
    let r = if bytes.starts_with(b"HEAD ") {
        conn.read_head_response()
    } else {
        conn.read_response()
    };
    let r = r.unwrap();
    assert_api_version(&r);
    r
}

fn assert_api_version(r: &RawResponse) {
    assert_eq!(
        r.header_all("docker-distribution-api-version"),
        ["registry/2.0"],
        "every response carries the API version once: {r:?}"
    );
}

/// regproxy's own error answer: status, registry JSON with `code`, API version.
fn assert_error(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}\n{}", r.body_text());
    assert_api_version(r);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    let want = format!("{{\"errors\":[{{\"code\":\"{code}\"");
    assert!(r.body_text().starts_with(&want), "{}", r.body_text());
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    RandomStream::new(seed).fill(&mut data);
    data
}

/// A chunked body of `data` cut at `cuts`, with chunk extensions (bare,
/// valued, quoted), upper- and lower-case hex, and a trailer field.
fn chunked(data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &end) in cuts.iter().chain([&data.len()]).enumerate() {
        let piece = &data[start..end];
        start = end;
        let line = match i % 3 {
            0 => format!("{:x};piece={i}\r\n", piece.len()),
            1 => format!("{:X}\r\n", piece.len()),
            _ => format!("{:x};flag;note=\"a;b\"\r\n", piece.len()),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0;last\r\nX-Upload-Note: done\r\n\r\n");
    out
}

// === against the real registry ===

/// The top-level config key that selects `driver` (`io_uring`: the default).
fn driver_key(driver: &str) -> &'static str {
    match driver {
        "epoll" => EPOLL,
        _ => "",
    }
}

fn registry_front(tls: bool, top: &str) -> (Registry, Front) {
    let registry = Registry::start();
    let f = front(registry.addr(), tls, top, "", "");
    (registry, f)
}

/// POST, chunked PATCH, PUT ?digest=, then GET, HEAD, another request and a
/// Range GET on the same connection, on the workers' `driver`.
fn chunked_upload_round_trip(tls: bool, driver: &str) {
    let (registry, f) = registry_front(tls, driver_key(driver));
    f.proxy.assert_driver(driver);
    let repo = format!(
        "relay/chunked-{}-{driver}",
        if tls { "tls" } else { "plain" }
    );
    let data = random_bytes(300_000 + 17, 0x5eed + u64::from(tls));
    let digest = sha256_digest(&data);
    let mut conn = f.connect();

    let r = exchange(
        &mut conn,
        &f.req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            Some(USER),
            &[],
            b"",
        ),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").unwrap().to_owned();
    // The registry built it from the client's Host and X-Forwarded-Proto.
    let base = format!("{}://{}/v2/{repo}/blobs/uploads/", f.scheme(), f.host());
    assert!(location.starts_with(&base), "{location} vs {base}");
    let uuid = r.header("docker-upload-uuid").unwrap().to_owned();
    assert!(location.contains(&uuid), "{location} lacks {uuid}");
    assert_eq!(r.header("range"), Some("0-0"));

    let mut patch = format!(
        "PATCH {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nTrailer: X-Upload-Note\r\n\r\n",
        http::path_of(&location),
        f.host(),
        http::basic_auth_value(USER.0, USER.1)
    )
    .into_bytes();
    patch.extend_from_slice(&chunked(&data, &[1, 8, 4104, 69_640, 140_000, 300_010]));
    let r = exchange(&mut conn, &patch);
    assert_eq!(r.status, 202, "{r:?} {}", r.body_text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    assert_eq!(r.header("docker-upload-uuid"), Some(uuid.as_str()));
    let location = r.header("location").unwrap().to_owned();

    let put = format!("{}&digest={digest}", http::path_of(&location));
    let r = exchange(
        &mut conn,
        &f.req("PUT", &put, Some(USER), &[("Content-Length", "0")], b""),
    );
    assert_eq!(r.status, 201, "{r:?} {}", r.body_text());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let blob = format!("/v2/{repo}/blobs/{digest}");
    assert!(r.header("location").unwrap().ends_with(&blob), "{r:?}");
    assert!(registry.has_blob(&digest));

    let r = exchange(&mut conn, &f.req("GET", &blob, Some(READER), &[], b""));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "blob read back differs");

    let r = exchange(&mut conn, &f.req("HEAD", &blob, Some(READER), &[], b""));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    // Had a body followed the HEAD answer, this would read it as a head.
    let r = exchange(&mut conn, &f.req("GET", "/v2/", Some(READER), &[], b""));
    assert_eq!((r.status, r.body_text().as_str()), (200, "{}"));

    let r = exchange(
        &mut conn,
        &f.req(
            "GET",
            &blob,
            Some(READER),
            &[("Range", "bytes=1000-70999")],
            b"",
        ),
    );
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000-70999/{}", data.len()).as_str())
    );
    assert!(r.body == data[1000..71_000], "range body differs");
    assert!(
        !conn.is_closed(Duration::from_millis(300)),
        "keep-alive connection closed"
    );
}

#[test]
fn chunked_patch_upload_round_trips_over_plain_http() {
    chunked_upload_round_trip(false, "io_uring");
}

#[test]
fn chunked_patch_upload_round_trips_over_tls() {
    chunked_upload_round_trip(true, "io_uring");
}

/// The epoll driver: splice readiness, and keep-alive, on plain HTTP.
#[test]
fn chunked_patch_upload_round_trips_over_plain_http_on_epoll() {
    chunked_upload_round_trip(false, "epoll");
}

/// The epoll driver: TLS record batching on the same exchange.
#[test]
fn chunked_patch_upload_round_trips_over_tls_on_epoll() {
    chunked_upload_round_trip(true, "epoll");
}

/// A monolithic PUT with `Expect: 100-continue`: 100 only for an authorized
/// pusher; a wrong password gets 401 and a reader 403, neither a 100, and
/// neither reaches the registry.
fn expect_continue_after_auth(tls: bool) {
    let (registry, f) = registry_front(tls, "");
    let repo = "relay/expect";
    let data = random_bytes(150_000, 0xe4ec7 + u64::from(tls));
    let digest = sha256_digest(&data);
    let mut conn = f.connect();
    let r = exchange(
        &mut conn,
        &f.req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            Some(USER),
            &[],
            b"",
        ),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let put = format!(
        "{}&digest={digest}",
        http::path_of(r.header("location").unwrap())
    );
    let len = data.len().to_string();
    let head = |auth: (&str, &str)| {
        f.req(
            "PUT",
            &put,
            Some(auth),
            &[
                ("Content-Length", &len),
                ("Content-Type", "application/octet-stream"),
                ("Expect", "100-continue"),
            ],
            b"",
        )
    };

    let before = registry.settle(Duration::from_millis(300));
    for (auth, status, code) in [
        (("testuser", "wrong"), 401, "UNAUTHORIZED"),
        (READER, 403, "DENIED"),
    ] {
        let mut c = f.connect();
        c.send(&head(auth)).unwrap();
        let r = c.read_response().unwrap();
        assert_error(&r, status, code);
        assert!(
            c.is_closed(Duration::from_secs(5)),
            "refused upload left open"
        );
    }
    assert_eq!(
        registry.settle(Duration::from_millis(300)),
        before,
        "a refused upload reached the registry"
    );

    conn.send(&head(USER)).unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.status, 100, "{r:?}");
    let r = exchange(&mut conn, &data);
    assert_eq!(r.status, 201, "{r:?} {}", r.body_text());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let r = exchange(
        &mut conn,
        &f.req(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            Some(USER),
            &[],
            b"",
        ),
    );
    assert_eq!(r.status, 200);
    assert!(r.body == data, "uploaded blob differs");
}

#[test]
fn expect_100_continue_only_after_auth_plain() {
    expect_continue_after_auth(false);
}

#[test]
fn expect_100_continue_only_after_auth_tls() {
    expect_continue_after_auth(true);
}

#[test]
fn keep_alive_reuses_client_and_upstream_connections() {
    keep_alive_reuse("io_uring");
}

/// The epoll driver: a pooled connection's liveness check is a readiness
/// peek there too.
#[test]
fn keep_alive_reuses_client_and_upstream_connections_on_epoll() {
    keep_alive_reuse("epoll");
}

fn keep_alive_reuse(driver: &str) {
    let top = format!("workers = 1\n{}", driver_key(driver));
    let (_registry, f) = registry_front(false, &top);
    f.proxy.assert_driver(driver);
    let (connects0, reuses0) = (
        f.metric("regproxy_upstream_connects_total"),
        f.metric("regproxy_upstream_reuses_total"),
    );
    let paths = [
        "/v2/",
        "/v2/_catalog",
        "/v2/relay/none/tags/list",
        "/v2/",
        "/v2/",
    ];
    let mut conn = f.connect();
    for path in paths {
        let r = exchange(&mut conn, &f.req("GET", path, Some(READER), &[], b""));
        assert!(r.status == 200 || r.status == 404, "{path}: {r:?}");
        assert!(r.header("connection").is_none(), "{r:?}");
    }
    let r = exchange(&mut conn, &f.req("HEAD", "/v2/relay/none/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", Some(READER), &[], b""));
    assert_eq!(r.status, 404);
    assert!(
        !conn.is_closed(Duration::from_millis(300)),
        "client connection closed"
    );
    let n = paths.len() as u64 + 1;
    let reuses = f.metric("regproxy_upstream_reuses_total") - reuses0;
    let connects = f.metric("regproxy_upstream_connects_total") - connects0;
    assert_eq!(connects + reuses, n, "one upstream connection per request");
    assert!(
        reuses >= n - 1,
        "{reuses} reuses, {connects} connects over {n} requests"
    );

    // Another client connection on the same worker: the pool is shared.
    let mut other = f.connect();
    for _ in 0..3 {
        let r = exchange(&mut other, &f.req("GET", "/v2/", Some(READER), &[], b""));
        assert_eq!(r.status, 200);
    }
    let more = f.metric("regproxy_upstream_reuses_total") - reuses0 - reuses;
    assert!(more >= 3, "second client reused {more} pooled connections");
}

// === against the fake origin ===

/// A port nothing listens on: bound, then released.
fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Sends `request` on a fresh plain connection and reads until the proxy
/// closes; the flag says whether it closed (rather than the wait running out).
fn read_to_close(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            // A read with SO_RCVTIMEO is not restarted after a signal or a
            // freeze/thaw of the process: EINTR, which means "read again".
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

#[test]
fn refused_upstream_is_502_unavailable() {
    let f = front(dead_port(), false, "", FAST_UPSTREAM, "");
    let started = Instant::now();
    let r = f.once("GET", "/v2/", Some(READER), b"");
    assert_error(&r, 502, "UNAVAILABLE");
    assert!(r.closed);
    let bytes = f.req(
        "HEAD",
        "/v2/x/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        Some(READER),
        &[],
        b"",
    );
    let r = http::send_raw(f.ep(), &bytes).unwrap();
    assert_eq!(r.status, 502);
    assert_api_version(&r);
    assert!(r.closed, "HEAD 502 must carry no body and close");
    assert!(started.elapsed() < PROMPT);
    assert!(f.metric("regproxy_upstream_errors_total") >= 2);
}

#[test]
fn silent_upstream_is_504_within_read_timeout() {
    silent_upstream_times_out("io_uring");
}

/// The epoll driver: its timers end the wait too.
#[test]
fn silent_upstream_is_504_within_read_timeout_on_epoll() {
    silent_upstream_times_out("epoll");
}

fn silent_upstream_times_out(driver: &str) {
    let o = Origin::silent();
    let f = front(o.addr(), false, driver_key(driver), FAST_UPSTREAM, "");
    f.proxy.assert_driver(driver);
    let started = Instant::now();
    let r = f.once("GET", "/v2/", Some(READER), b"");
    assert_error(&r, 504, "UNAVAILABLE");
    assert!(
        started.elapsed() < PROMPT,
        "504 took {:?}",
        started.elapsed()
    );
    assert!(o.connections() >= 1, "the origin was never connected to");
}

#[test]
fn garbage_from_upstream_is_502() {
    let o = Origin::start(|req| match req.target.as_str() {
        "/v2/fault/banner/manifests/latest" => vec![
            Step::Write(b"SSH-2.0-OpenSSH_9.6\r\nnot http\r\n\r\n".to_vec()),
            Step::Hang,
        ],
        "/v2/fault/binary/manifests/latest" => vec![
            Step::Write(vec![0, 159, 146, 150, 255, 13, 10, 13, 10]),
            Step::Close,
        ],
        "/v2/fault/truncated/manifests/latest" => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Len".to_vec()),
            Step::Close,
        ],
        _ => vec![
            Step::Write(b"HTTP/1.1 2xx Fine\r\n\r\n".to_vec()),
            Step::Close,
        ],
    });
    // A long read timeout: a 502 must come from the garbage, not the clock.
    let f = front(o.addr(), false, "", "read_timeout = \"60s\"", "");
    for path in [
        "/v2/fault/banner/manifests/latest",
        "/v2/fault/binary/manifests/latest",
        "/v2/fault/truncated/manifests/latest",
        "/v2/fault/status/manifests/latest",
    ] {
        let started = Instant::now();
        let r = f.once("GET", path, Some(READER), b"");
        assert_eq!(r.status, 502, "{path}: {r:?}");
        assert_api_version(&r);
        assert!(
            r.body_text().starts_with("{\"errors\":[{\"code\":"),
            "{path}: {}",
            r.body_text()
        );
        assert!(
            started.elapsed() < PROMPT,
            "{path}: took {:?}",
            started.elapsed()
        );
    }
}

const CUT_LEN: usize = 1_000_000;
const CUT_SENT: usize = 300_000;

/// Origin: `/v2/close` and `/v2/reset` send a head announcing CUT_LEN bytes,
/// CUT_SENT of them, then FIN or RST; `/v2/chunked-close` stops a chunked
/// body after some chunks.
fn cutting_origin() -> (Origin, Vec<u8>) {
    let data = random_bytes(CUT_LEN, 0xc07);
    let body = data.clone();
    let o = Origin::start(move |req| {
        let len = CUT_LEN.to_string();
        let mut out = origin::head(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &len),
            ],
        );
        match req.target.as_str() {
            "/v2/fault/close/manifests/latest" => {
                out.extend_from_slice(&body[..CUT_SENT]);
                vec![
                    Step::Write(out),
                    Step::Sleep(Duration::from_millis(200)),
                    Step::Close,
                ]
            }
            "/v2/fault/reset/manifests/latest" => {
                out.extend_from_slice(&body[..CUT_SENT]);
                vec![
                    Step::Write(out),
                    Step::Sleep(Duration::from_millis(300)),
                    Step::Reset,
                ]
            }
            _ => {
                let mut out = origin::head(200, &[("Transfer-Encoding", "chunked")]);
                let full = origin::chunked_body(&[&body[..100_000], &body[100_000..CUT_SENT]], &[]);
                // Everything but the last-chunk and trailer section.
                out.extend_from_slice(&full[..full.len() - 15]);
                vec![
                    Step::Write(out),
                    Step::Sleep(Duration::from_millis(200)),
                    Step::Close,
                ]
            }
        }
    });
    (o, data)
}

#[test]
fn upstream_close_mid_body_cuts_the_plain_client_short() {
    // Plain on both sides: the body moves by splice(2).
    let (o, data) = cutting_origin();
    let f = front(o.addr(), false, "workers = 1", FAST_UPSTREAM, "");
    let (bytes, closed) = read_to_close(
        f.proxy.addr(),
        &f.req(
            "GET",
            "/v2/fault/close/manifests/latest",
            Some(READER),
            &[],
            b"",
        ),
    );
    assert!(
        closed,
        "the proxy kept the client connection open after a cut body"
    );
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("content-length: {CUT_LEN}\r\n")),
        "{head}"
    );
    let body = &bytes[end..];
    assert!(
        body.len() < CUT_LEN,
        "client got {} of {CUT_LEN} bytes",
        body.len()
    );
    assert!(body == &data[..body.len()], "the part that came is corrupt");

    // The same over a keep-alive Conn: an error, never a clean response.
    let mut c = f.connect();
    c.send(&f.req(
        "GET",
        "/v2/fault/close/manifests/latest",
        Some(READER),
        &[],
        b"",
    ))
    .unwrap();
    let e = c.read_response().unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(
        o.requests().len(),
        2,
        "each request reached the origin once"
    );
}

#[test]
fn upstream_close_mid_body_cuts_the_tls_client_short() {
    let (o, _data) = cutting_origin();
    let f = front(o.addr(), true, "", FAST_UPSTREAM, "");
    for path in [
        "/v2/fault/close/manifests/latest",
        "/v2/fault/chunked-close/manifests/latest",
    ] {
        let mut c = f.connect();
        c.send(&f.req("GET", path, Some(READER), &[], b"")).unwrap();
        let e = c.read_response().unwrap_err();
        assert!(
            e.kind() == std::io::ErrorKind::UnexpectedEof,
            "{path}: a cut body must end in an unexpected close: {e}"
        );
        assert!(c.is_closed(Duration::from_secs(5)));
    }
}

#[test]
fn upstream_cut_chunked_body_never_gets_a_last_chunk() {
    let (o, _data) = cutting_origin();
    let f = front(o.addr(), false, "", FAST_UPSTREAM, "");
    let (bytes, closed) = read_to_close(
        f.proxy.addr(),
        &f.req(
            "GET",
            "/v2/fault/chunked-close/manifests/latest",
            Some(READER),
            &[],
            b"",
        ),
    );
    assert!(closed);
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        !bytes.ends_with(b"0\r\n\r\n"),
        "a cut chunked body was terminated cleanly"
    );
    let mut c = f.connect();
    c.send(&f.req(
        "GET",
        "/v2/fault/chunked-close/manifests/latest",
        Some(READER),
        &[],
        b"",
    ))
    .unwrap();
    assert!(
        c.read_response().is_err(),
        "a cut chunked body read as complete"
    );
}

#[test]
fn upstream_reset_mid_body_is_never_a_complete_response() {
    let (o, _data) = cutting_origin();
    let f = front(o.addr(), false, "", FAST_UPSTREAM, "");
    for _ in 0..3 {
        let mut c = f.connect();
        c.send(&f.req(
            "GET",
            "/v2/fault/reset/manifests/latest",
            Some(READER),
            &[],
            b"",
        ))
        .unwrap();
        match c.read_response() {
            Err(_) => {}
            // The RST may beat the head: then an honest 502.
            Ok(r) => assert_error(&r, 502, "UNAVAILABLE"),
        }
        assert!(c.is_closed(Duration::from_secs(5)));
    }
}

fn ok_json(status: u16) -> Vec<u8> {
    origin::response(status, &[("Content-Type", "application/json")], b"{}")
}

#[test]
fn idle_upstream_close_is_noticed_before_reuse() {
    // Every origin connection serves one request, then closes while idle.
    let o = Origin::start(|req| {
        let status = if req.method == "POST" { 202 } else { 200 };
        vec![
            Step::Write(ok_json(status)),
            Step::Sleep(Duration::from_millis(100)),
            Step::Close,
        ]
    });
    let f = front(o.addr(), false, "workers = 1", FAST_UPSTREAM, "");
    for (i, method) in ["GET", "GET", "POST"].into_iter().enumerate() {
        let r = f.once(
            method,
            "/v2/relay/stale/blobs/uploads/",
            Some(USER),
            if method == "POST" { b"hello" } else { b"" },
        );
        assert!(r.status == 200 || r.status == 202, "{method} #{i}: {r:?}");
        assert!(
            o.wait_closed(i + 1, PROMPT),
            "origin did not close connection {i}"
        );
        // The origin's FIN has reached the proxy's pooled end: it left
        // ESTABLISHED (CLOSE_WAIT, or gone once the proxy noticed).
        let fin_in = support::wait_for(PROMPT, || {
            let pooled = support::tcp::sockets()
                .into_iter()
                .any(|s| s.remote == o.addr() && s.state == support::tcp::ESTABLISHED);
            (!pooled).then_some(())
        });
        assert!(fin_in.is_some(), "the proxy's end never saw the FIN");
    }
    let reqs = o.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.method == "POST").count(),
        1,
        "{reqs:?}"
    );
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(o.connections(), 3);
    assert!(
        reqs.iter().all(|r| r.index == 0),
        "a dead pooled connection was written to"
    );
    assert_eq!(f.metric("regproxy_upstream_retries_total"), 0);
    assert_eq!(f.metric("regproxy_upstream_reuses_total"), 0);
}

#[test]
fn stale_pooled_connection_retries_get_but_never_resends_post() {
    // The second request on every origin connection meets a close, as when
    // the registry's idle timer fires just as the request arrives.
    let o = Origin::start(|req| match req.index {
        0 => vec![Step::Write(ok_json(if req.method == "POST" {
            202
        } else {
            200
        }))],
        _ => vec![Step::Close],
    });
    let f = front(o.addr(), false, "workers = 1", FAST_UPSTREAM, "");

    assert_eq!(
        f.once("GET", "/v2/fault/a/manifests/latest", Some(READER), b"")
            .status,
        200
    );
    let r = f.once("GET", "/v2/fault/b/manifests/latest", Some(READER), b"");
    assert_eq!(
        r.status, 200,
        "an idempotent GET on a stale connection must be retried: {r:?}"
    );
    assert_api_version(&r);
    assert_eq!(f.metric("regproxy_upstream_retries_total"), 1);
    let seen: Vec<_> = o
        .requests()
        .iter()
        .map(|r| (r.target.clone(), r.conn, r.index))
        .collect();
    assert_eq!(
        seen,
        [
            ("/v2/fault/a/manifests/latest".into(), 0, 0),
            ("/v2/fault/b/manifests/latest".into(), 0, 1),
            ("/v2/fault/b/manifests/latest".into(), 1, 0)
        ]
    );

    // The pool now holds connection 1; its next request meets the close.
    // A monolithic upload (with `digest`): a POST whose body is forwarded.
    let r = f.once(
        "POST",
        "/v2/relay/stale/blobs/uploads/?digest=sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        Some(USER),
        b"hello",
    );
    assert_error(&r, 502, "UNAVAILABLE");
    let posts: Vec<_> = o
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(
        posts.len(),
        1,
        "the POST reached the origin {} times",
        posts.len()
    );
    assert_eq!(posts[0].body, b"hello");
    assert_eq!(
        f.metric("regproxy_upstream_retries_total"),
        1,
        "a POST was retried"
    );
    // The origin must not see it later either. Not synchronisation: a
    // resend would have no event to wait for, so this is a bounded window
    // in which one would show.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        o.requests().iter().filter(|r| r.method == "POST").count(),
        1
    );
    // And the proxy recovers with a fresh connection.
    assert_eq!(
        f.once("GET", "/v2/fault/c/manifests/latest", Some(READER), b"")
            .status,
        200
    );
}

/// Headers a client sends that the registry must never see, by default.
const HOP_BY_HOP: [(&str, &str); 8] = [
    ("Connection", "keep-alive, X-Hop"),
    ("X-Hop", "named by Connection"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
    ("Proxy-Connection", "keep-alive"),
    ("Trailer", "X-Checksum"),
];

fn forwarding_request(f: &Front, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![
        ("Host", "registry.example.test:5043"),
        ("User-Agent", "docker/27.0 relay-test"),
        ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ("X-Custom", "end-to-end"),
    ];
    headers.extend_from_slice(&HOP_BY_HOP);
    headers.extend_from_slice(extra);
    f.req(
        "GET",
        "/v2/relay/fwd/manifests/1",
        Some(USER),
        &headers,
        b"",
    )
}

fn echo_origin() -> Origin {
    Origin::start(|_| vec![Step::Write(ok_json(200))])
}

fn assert_end_to_end_kept_hop_by_hop_dropped(req: &origin::Request) {
    assert_eq!(
        req.header_all("host"),
        ["registry.example.test:5043"],
        "{}",
        req.head
    );
    assert_eq!(req.header("user-agent"), Some("docker/27.0 relay-test"));
    assert_eq!(
        req.header("accept"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(req.header("x-custom"), Some("end-to-end"));
    for (name, _) in HOP_BY_HOP {
        assert!(
            req.header(name).is_none(),
            "{name} was forwarded:\n{}",
            req.head
        );
    }
    for name in ["content-length", "transfer-encoding", "expect"] {
        assert!(
            req.header(name).is_none(),
            "{name} on a bodiless GET:\n{}",
            req.head
        );
    }
}

fn forwarding_default(tls: bool) {
    let o = echo_origin();
    let f = front(o.addr(), tls, "", FAST_UPSTREAM, "");
    let mut c = f.connect();
    // Plain first, then what a client posing as a balancer would send.
    let spoof = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-Proto", if tls { "http" } else { "https" }),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
    ];
    for extra in [&[][..], &spoof[..]] {
        let r = exchange(&mut c, &forwarding_request(&f, extra));
        assert_eq!((r.status, r.body_text().as_str()), (200, "{}"));
    }
    let reqs = o.wait_requests(2, PROMPT);
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_end_to_end_kept_hop_by_hop_dropped(req);
        assert_eq!(req.header_all("x-real-ip"), ["127.0.0.1"], "{}", req.head);
        assert_eq!(
            req.header_all("x-forwarded-for"),
            ["127.0.0.1"],
            "{}",
            req.head
        );
        assert_eq!(
            req.header_all("x-forwarded-proto"),
            [f.scheme()],
            "{}",
            req.head
        );
        assert!(req.header("x-forwarded-host").is_none(), "{}", req.head);
        assert!(req.header("forwarded").is_none(), "{}", req.head);
        assert!(
            req.header("authorization").is_none(),
            "credentials forwarded:\n{}",
            req.head
        );
    }
}

#[test]
fn registry_gets_forwarding_headers_and_no_credentials_plain() {
    forwarding_default(false);
}

#[test]
fn registry_gets_forwarding_headers_and_no_credentials_tls() {
    forwarding_default(true);
}

#[test]
fn trusted_forwarding_headers_are_kept_and_authorization_forwarded_when_asked() {
    let o = echo_origin();
    let tail = "[forwarding]\ntrust_forwarded_headers = true\nforward_authorization = true";
    let f = front(o.addr(), false, "", FAST_UPSTREAM, tail);
    let mut c = f.connect();
    let balancer = [
        ("X-Forwarded-For", "1.1.1.1, 2.2.2.2"),
        ("X-Real-IP", "1.1.1.1"),
        ("X-Forwarded-Proto", "https"),
    ];
    for extra in [&balancer[..], &[][..]] {
        let r = exchange(&mut c, &forwarding_request(&f, extra));
        assert_eq!(r.status, 200);
    }
    let reqs = o.wait_requests(2, PROMPT);
    let auth = http::basic_auth_value(USER.0, USER.1);
    for req in &reqs {
        assert_end_to_end_kept_hop_by_hop_dropped(req);
        assert_eq!(
            req.header_all("authorization"),
            [auth.as_str()],
            "{}",
            req.head
        );
    }
    let (lb, direct) = (&reqs[0], &reqs[1]);
    assert_eq!(
        lb.header_all("x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 127.0.0.1"],
        "{}",
        lb.head
    );
    assert_eq!(lb.header_all("x-real-ip"), ["1.1.1.1"], "{}", lb.head);
    assert_eq!(lb.header_all("x-forwarded-proto"), ["https"], "{}", lb.head);
    assert_eq!(
        direct.header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        direct.head
    );
    assert_eq!(
        direct.header_all("x-real-ip"),
        ["127.0.0.1"],
        "{}",
        direct.head
    );
    assert_eq!(
        direct.header_all("x-forwarded-proto"),
        ["http"],
        "{}",
        direct.head
    );
}

#[test]
fn chunked_request_body_reaches_the_origin_re_chunked_and_intact() {
    let o = Origin::start(|_| vec![Step::Write(origin::response(202, &[("Range", "0-0")], b""))]);
    let f = front(o.addr(), false, "workers = 1", FAST_UPSTREAM, "");
    let mut c = f.connect();
    let sent: Vec<Vec<u8>> = vec![random_bytes(100_000, 0xb0d1), b"x".to_vec()];
    for data in &sent {
        let mut patch = format!(
            "PATCH /v2/relay/up/blobs/uploads/u HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             Transfer-Encoding: chunked\r\nTrailer: X-Upload-Note\r\n\r\n",
            f.host(),
            http::basic_auth_value(USER.0, USER.1)
        )
        .into_bytes();
        let cuts: &[usize] = if data.len() > 1 {
            &[3, 4013, 70_000]
        } else {
            &[]
        };
        patch.extend_from_slice(&chunked(data, cuts));
        let r = exchange(&mut c, &patch);
        assert_eq!(r.status, 202, "{r:?}\n{}", r.body_text());
    }
    let reqs = o.wait_requests(2, PROMPT);
    assert_eq!(reqs.len(), 2);
    for (req, data) in reqs.iter().zip(&sent) {
        assert!(req.chunked, "{}", req.head);
        assert_eq!(
            req.header_all("transfer-encoding"),
            ["chunked"],
            "{}",
            req.head
        );
        assert!(req.header("content-length").is_none(), "{}", req.head);
        assert!(req.header("trailer").is_none(), "{}", req.head);
        assert!(
            &req.body == data,
            "the origin got {} bytes, not the {} sent",
            req.body.len(),
            data.len()
        );
    }
    // The client's plain chunk lines (upper-case hex) pass unchanged; lines
    // with extensions are rewritten, and the trailer section is dropped.
    // 4,010 is FAA: upper case shows.
    let sizes = [3, 4010, 65_987, 30_000];
    let mut want = Vec::new();
    let mut at = 0;
    for (i, n) in sizes.into_iter().enumerate() {
        let line = if i % 3 == 1 {
            format!("{n:X}\r\n")
        } else {
            format!("{n:x}\r\n")
        };
        want.extend_from_slice(line.as_bytes());
        want.extend_from_slice(&sent[0][at..at + n]);
        want.extend_from_slice(b"\r\n");
        at += n;
    }
    want.extend_from_slice(b"0\r\n\r\n");
    assert!(
        reqs[0].raw_body == want,
        "{:?}",
        String::from_utf8_lossy(&reqs[0].raw_body[..40])
    );
    assert_eq!(reqs[1].raw_body, b"1\r\nx\r\n0\r\n\r\n");
    // Both uploads went over one pooled origin connection, in order.
    assert_eq!((reqs[1].conn, reqs[1].index), (0, 1));
}

#[test]
fn chunked_and_close_delimited_responses_are_reframed_per_client_version() {
    let data = random_bytes(200_003, 0xc4);
    let body = data.clone();
    let o = Origin::start(move |req| {
        let pieces: [&[u8]; 5] = [
            &body[..1],
            &body[1..4097],
            &body[4097..100_000],
            &body[100_000..100_001],
            &body[100_001..],
        ];
        match req.target.as_str() {
            "/v2/fault/chunked/manifests/latest" => {
                let mut out = origin::head(
                    200,
                    &[
                        ("Transfer-Encoding", "chunked"),
                        ("Docker-Distribution-Api-Version", "registry/2.0"),
                    ],
                );
                out.extend_from_slice(&origin::chunked_body(&pieces, &[("X-Checksum", "abc")]));
                vec![Step::Write(out)]
            }
            _ => {
                let mut out = origin::head(
                    200,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Connection", "close"),
                    ],
                );
                out.extend_from_slice(&body);
                vec![Step::Write(out), Step::Close]
            }
        }
    });
    let f = front(o.addr(), false, "workers = 1", FAST_UPSTREAM, "");

    // HTTP/1.1: valid chunked both times, and the connection stays usable.
    let mut c = f.connect();
    for path in [
        "/v2/fault/chunked/manifests/latest",
        "/v2/fault/close-delimited/manifests/latest",
        "/v2/fault/chunked/manifests/latest",
    ] {
        let r = exchange(&mut c, &f.req("GET", path, Some(READER), &[], b""));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.chunked,
            "{path}: not chunked to an HTTP/1.1 client: {r:?}"
        );
        assert!(r.header("content-length").is_none(), "{path}");
        assert!(r.body == data, "{path}: body differs");
    }
    assert!(!c.is_closed(Duration::from_millis(300)));
    // The cleanly ended chunked response left its origin connection pooled.
    assert_eq!(o.connections(), 2, "{:?}", o.requests());

    // HTTP/1.0: no chunked; the body runs to the close.
    for path in [
        "/v2/fault/chunked/manifests/latest",
        "/v2/fault/close-delimited/manifests/latest",
    ] {
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
            f.host(),
            http::basic_auth_value(READER.0, READER.1)
        );
        let r = http::send_raw(f.ep(), req.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_api_version(&r);
        assert!(
            !r.chunked && r.body_until_close && r.closed,
            "{path}: {r:?}"
        );
        assert!(r.header("transfer-encoding").is_none() && r.header("content-length").is_none());
        assert!(r.body == data, "{path}: HTTP/1.0 body differs");
    }
}

#[test]
fn sigterm_lets_the_in_flight_response_finish_then_exits_zero() {
    let data = random_bytes(500_000, 0x51e);
    let gate = Arc::new(AtomicBool::new(false));
    let (body, gate2) = (data.clone(), gate.clone());
    let o = Origin::start(move |req| match req.target.as_str() {
        "/v2/fault/slow/manifests/latest" => {
            let len = body.len().to_string();
            let mut first = origin::head(200, &[("Content-Length", &len)]);
            first.extend_from_slice(&body[..200_000]);
            vec![
                Step::Write(first),
                Step::Sleep(Duration::from_secs(1)),
                Step::Await(gate2.clone()),
                Step::Write(body[200_000..].to_vec()),
            ]
        }
        _ => vec![Step::Write(ok_json(200))],
    });
    let mut f = front(
        o.addr(),
        false,
        "workers = 2\nshutdown_timeout = \"60s\"",
        "read_timeout = \"60s\"",
        "",
    );
    let addr = f.proxy.addr();

    // An idle keep-alive connection, which draining must close.
    let mut idle = f.connect();
    assert_eq!(
        exchange(&mut idle, &f.req("GET", "/v2/", Some(READER), &[], b"")).status,
        200
    );

    let slow = f.req(
        "GET",
        "/v2/fault/slow/manifests/latest",
        Some(READER),
        &[],
        b"",
    );
    let ep = f.ep();
    let client = std::thread::spawn(move || {
        let mut c = Conn::connect(ep).unwrap();
        c.send(&slow).unwrap();
        let r = c.read_response();
        let closed = c.is_closed(Duration::from_secs(10));
        (r, closed)
    });
    assert!(
        o.wait_requests(2, PROMPT).len() >= 2,
        "the slow request never reached the origin"
    );
    f.proxy.send_signal("TERM");

    let refused = support::wait_for(PROMPT, || {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    assert!(
        refused.is_some(),
        "new connections still accepted after SIGTERM"
    );
    assert!(
        idle.is_closed(PROMPT),
        "idle keep-alive connection not closed by the drain"
    );
    assert!(
        f.proxy.try_wait().is_none(),
        "exited with a response in flight"
    );

    gate.store(true, Ordering::SeqCst);
    let (r, closed) = client.join().unwrap();
    let r = r.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "in-flight body damaged by the drain");
    assert!(closed, "connection left open after draining");
    let status = f
        .proxy
        .wait_exit(Duration::from_secs(60))
        .expect("regproxy did not exit after the drain");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        f.proxy.stderr_text()
    );
}

/// A connection accepted before SIGTERM whose first request comes well
/// after it (a client on a slow link, or one that connected just as a
/// restart began) is still answered, with `Connection: close`. One that
/// never sends is closed by `header_timeout`, not held for the whole
/// `shutdown_timeout`.
#[test]
fn sigterm_still_answers_a_fresh_connections_first_request() {
    let o = Origin::start(|_| vec![Step::Write(ok_json(200))]);
    let mut f = front(
        o.addr(),
        false,
        "workers = 1\nshutdown_timeout = \"60s\"",
        "",
        "[client]\nheader_timeout = \"4s\"",
    );
    let mut fresh = f.connect();
    let silent = f.connect();
    // Both accepted: the worker counts them before the stop.
    let open = support::wait_for(PROMPT, || {
        (f.proxy.metric("regproxy_connections_open{state=\"head\"}") >= 2).then_some(())
    });
    assert!(open.is_some(), "connections not accepted");
    f.proxy.send_signal("TERM");
    let stopped = Instant::now();

    // Longer than any grace a worker could give before closing: the time
    // passing is what the test is about, not something to wait for.
    std::thread::sleep(Duration::from_millis(1500));
    let r = exchange(&mut fresh, &f.req("GET", "/v2/", Some(READER), &[], b""));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "a draining worker keeps the connection: {r:?}"
    );
    assert!(fresh.is_closed(PROMPT), "answered connection left open");

    let status = f
        .proxy
        .wait_exit(PROMPT)
        .expect("regproxy did not exit once the silent connection timed out");
    assert!(status.success(), "exit status {status}");
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "the silent connection held the drain for {waited:?}"
    );
    drop(silent);
}
