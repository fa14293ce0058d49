//! Early answers that reach the client (RFC 9112 §9.6), against the real
//! registry: a client that writes its whole upload before reading must get
//! regproxy's 401 or 403, not a reset, and keep its connection when the body
//! was small enough to drain. Also: empty form bodies pass, and a pipelined
//! request after a drained body is answered as itself.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{self, assert_registry_error, Conn, RawResponse};
use support::stack::TlsStack;
use support::tls::Tls;

const MIB: usize = 1 << 20;
/// A body the default `discard_limit` (64 MiB) drains.
const SMALL_BODY: usize = 4 * MIB;
/// The read buffer regproxy reads a body with; a lingering close may read
/// one beyond its budget.
const READ_BUF: u64 = 64 << 10;
const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");

/// A registry, a TLS regproxy (alice may push, bob may pull) with an admin
/// port, and the test's files.
type Stack = TlsStack;

/// `client` goes into the `[client]` table.
fn stack(client: &str) -> Stack {
    let tail = format!("[admin]\nlisten = \"127.0.0.1:0\"\n[client]\n{client}\n");
    TlsStack::start(&[ALICE, BOB], "push_users = [\"alice\"]", &tail)
}

fn random_body(len: usize) -> Vec<u8> {
    let mut body = vec![0u8; len];
    getrandom::fill(&mut body).unwrap();
    body
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn with_query(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// A keep-alive request head (no `Connection: close`).
fn head(method: &str, path: &str, creds: Option<(&str, &str)>, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut h = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: early-answers-test\r\n"
    );
    if let Some((u, p)) = creds {
        h.push_str(&format!(
            "Authorization: {}\r\n",
            http::basic_auth_value(u, p)
        ));
    }
    for (k, v) in fields {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// `body` as a chunked body of 64 KiB chunks.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for piece in body.chunks(64 << 10) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn assert_challenge(r: &RawResponse, what: &str) {
    assert_registry_error(r, 401, "UNAUTHORIZED", what);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm="),
        "{what}: {challenge:?}"
    );
}

fn announces_close(r: &RawResponse) -> bool {
    r.header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Sends `request` whole, without reading, then reads one response.
fn send_then_read(conn: &mut Conn, request: &[u8]) -> RawResponse {
    conn.send(request).unwrap();
    conn.read_response().unwrap()
}

#[test]
fn unauthenticated_upload_is_drained_answered_and_retried_on_the_same_connection() {
    let s = stack("");
    let body = random_body(SMALL_BODY);
    let digest = format!("sha256:{}", sha256_hex(&body));

    // Content-Length PUT, the way the failing client sends it.
    let upload = with_query(
        &http::start_upload(s.ep(), "early/put", ALICE),
        &format!("digest={digest}"),
    );
    let len = body.len().to_string();
    let fields = [
        ("Content-Length", len.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    let mut conn = Conn::connect(s.ep()).unwrap();
    let mut request = head("PUT", &upload, None, &fields);
    request.extend_from_slice(&body);
    let r = send_then_read(&mut conn, &request);
    assert_challenge(&r, "PUT without credentials");
    assert!(!announces_close(&r), "a drained body keeps the connection");
    let mut retry = head("PUT", &upload, Some(ALICE), &fields);
    retry.extend_from_slice(&body);
    let r = send_then_read(&mut conn, &retry);
    assert_eq!(
        r.status,
        201,
        "retry on the same connection: {}",
        r.body_text()
    );
    assert!(s.registry.has_blob(&digest), "the blob was not stored");

    // Chunked PATCH, as docker and podman send layers.
    let upload = http::start_upload(s.ep(), "early/patch", ALICE);
    let te = [
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "application/octet-stream"),
    ];
    let mut request = head("PATCH", &upload, None, &te);
    request.extend_from_slice(&chunked(&body));
    let r = send_then_read(&mut conn, &request);
    assert_challenge(&r, "chunked PATCH without credentials");
    assert!(!announces_close(&r));
    let mut retry = head("PATCH", &upload, Some(ALICE), &te);
    retry.extend_from_slice(&chunked(&body));
    let r = send_then_read(&mut conn, &retry);
    assert_eq!(r.status, 202, "chunked retry: {}", r.body_text());

    assert_eq!(s.proxy.metric("regproxy_discarded_bodies_total"), 2);
    let drained = s.proxy.metric("regproxy_discarded_bytes_total");
    assert!(
        drained >= 2 * SMALL_BODY as u64,
        "drained only {drained} bytes"
    );
}

#[test]
fn a_rule_refusal_drains_the_body_too() {
    let s = stack("");
    let upload = http::start_upload(s.ep(), "early/denied", ALICE);
    let body = random_body(SMALL_BODY);
    let digest = format!("sha256:{}", sha256_hex(&body));
    let path = with_query(&upload, &format!("digest={digest}"));
    let len = body.len().to_string();
    let mut conn = Conn::connect(s.ep()).unwrap();
    let mut request = head("PUT", &path, Some(BOB), &[("Content-Length", len.as_str())]);
    request.extend_from_slice(&body);
    let r = send_then_read(&mut conn, &request);
    assert_registry_error(&r, 403, "DENIED", "bob may not push");
    assert!(!announces_close(&r));
    let r = send_then_read(&mut conn, &head("GET", "/v2/", Some(BOB), &[]));
    assert_eq!(r.status, 200, "the next request on the same connection");
    assert!(!s.registry.has_blob(&digest));
}

#[test]
fn a_pipelined_request_after_a_drained_body_is_answered_as_itself() {
    let s = stack("");
    let seen = s.registry.settle(Duration::from_millis(200));
    // The refused body looks like a request: it must never be parsed as one.
    let smuggled = b"GET /v2/_catalog HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let len = smuggled.len().to_string();
    let mut bytes = head(
        "POST",
        "/v2/early/pipe/blobs/uploads/",
        None,
        &[
            ("Content-Length", len.as_str()),
            ("Content-Type", "application/octet-stream"),
        ],
    );
    bytes.extend_from_slice(smuggled);
    bytes.extend_from_slice(&head("GET", "/v2/", Some(ALICE), &[]));
    let mut conn = Conn::connect(s.ep()).unwrap();
    conn.send(&bytes).unwrap();
    let first = conn.read_response().unwrap();
    assert_challenge(&first, "pipelined POST");
    let second = conn.read_response().unwrap();
    assert_eq!(
        second.status,
        200,
        "pipelined GET /v2/: {}",
        second.body_text()
    );
    assert!(!conn.is_closed(Duration::from_millis(200)));
    s.registry.settle(Duration::from_millis(300));
    let reached: Vec<_> = s.registry.requests()[seen..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        reached,
        vec!["GET /v2/".to_owned()],
        "what reached the registry"
    );
    let lines = s.proxy.wait_for_access_lines(2, Duration::from_secs(5));
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn expect_continue_without_a_go_ahead_is_answered_and_closed_in_stages() {
    let s = stack("");
    let len = SMALL_BODY.to_string();
    let mut conn = Conn::connect(s.ep()).unwrap();
    let request = head(
        "PUT",
        "/v2/early/expect/blobs/uploads/x?digest=sha256:00",
        None,
        &[("Content-Length", len.as_str()), ("Expect", "100-continue")],
    );
    let r = send_then_read(&mut conn, &request);
    assert_challenge(&r, "Expect without credentials");
    assert!(
        r.interim.is_empty(),
        "no 100 Continue for a refused request"
    );
    assert!(announces_close(&r), "the body may or may not follow: close");
    assert!(conn.is_closed(Duration::from_secs(10)), "not closed");
    assert_eq!(s.proxy.metric("regproxy_lingering_closes_total"), 1);
}

/// Writes `head` and then up to `cap` body bytes without reading, until the
/// server stops taking them (a write blocks for a second, or fails); then
/// reads everything the server sent until it closed. Returns the bytes of
/// body written, the server's bytes, and when the server closed.
fn flood_then_read(
    addr: SocketAddr,
    tls: Option<&Tls>,
    head: &[u8],
    cap: usize,
) -> (usize, Vec<u8>, Instant) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut io = FloodIo::new(tcp, tls);
    io.write(head).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut written = 0;
    while written < cap && io.write(&chunk).is_ok() {
        written += chunk.len();
    }
    let mut got = Vec::new();
    io.read_to_close(&mut got);
    (written, got, Instant::now())
}

/// A raw client connection that can keep writing and then read what is
/// left, even after the server reset it: with TLS, rustls is driven by hand
/// so a failed write leaves nothing pending that would block the read.
struct FloodIo {
    tcp: TcpStream,
    tls: Option<rustls::ClientConnection>,
}

impl FloodIo {
    fn new(mut tcp: TcpStream, tls: Option<&Tls>) -> FloodIo {
        let tls = tls.map(|t| {
            let name = "localhost".try_into().unwrap();
            let mut c = rustls::ClientConnection::new(t.client_config(), name).unwrap();
            while c.is_handshaking() {
                c.complete_io(&mut tcp).unwrap();
            }
            c.set_buffer_limit(None);
            c
        });
        FloodIo { tcp, tls }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.tcp.write_all(data),
            Some(c) => {
                c.writer().write_all(data)?;
                while c.wants_write() {
                    c.write_tls(&mut self.tcp)?;
                }
                Ok(())
            }
        }
    }

    /// Everything readable until end of stream, close_notify or reset.
    fn read_to_close(&mut self, out: &mut Vec<u8>) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match &mut self.tls {
                None => match self.tcp.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                },
                Some(c) => {
                    match c.read_tls(&mut self.tcp) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if c.process_new_packets().is_err() {
                        return;
                    }
                    match c.reader().read_to_end(out) {
                        Ok(_) => return, // close_notify
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

#[test]
fn a_declared_huge_body_gets_its_401_then_a_bounded_lingering_close() {
    let limit = MIB as u64;
    let lingering_time = Duration::from_secs(10);
    let s = stack("discard_limit = \"1MiB\"\nlingering_time = \"10s\"\nlingering_timeout = \"2s\"");
    let request = head(
        "PUT",
        "/v2/early/huge/blobs/uploads/x?digest=sha256:00",
        None,
        &[("Content-Length", "10737418240")],
    );
    let started = Instant::now();
    let (written, got, closed_at) =
        flood_then_read(s.proxy.addr(), Some(&s.tls), &request, 256 * MIB);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 401 "),
        "no 401 reached the client: {text:?}"
    );
    assert!(text.contains("WWW-Authenticate: Basic realm="), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(
        closed_at - started < lingering_time,
        "connection lasted {:?}",
        closed_at - started
    );
    let read = s.proxy.metric("regproxy_discarded_bytes_total");
    assert!(
        read <= limit + READ_BUF,
        "regproxy read {read} bytes of the body (limit {limit})"
    );
    assert!(
        written < 256 * MIB,
        "regproxy kept reading: {written} bytes taken"
    );
    assert_eq!(s.proxy.metric("regproxy_lingering_closes_total"), 1);
    assert_eq!(
        s.registry.request_count(),
        0,
        "nothing reaches the registry"
    );
}

#[test]
fn with_discarding_off_a_small_body_still_gets_its_answer() {
    let s = stack("discard_limit = 0\nlingering_timeout = \"2s\"");
    let request = head(
        "PUT",
        "/v2/early/off/blobs/uploads/x?digest=sha256:00",
        None,
        &[("Content-Length", "4194304")],
    );
    let (_, got, _) = flood_then_read(s.proxy.addr(), Some(&s.tls), &request, SMALL_BODY);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 401 "), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(s.proxy.metric("regproxy_discarded_bodies_total"), 0);
}

fn curl(s: &Stack, args: &[&str]) -> String {
    let url = format!(
        "https://localhost:{}/v2/early/form/blobs/uploads/",
        s.proxy.addr().port()
    );
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--http1.1"])
        .arg("--cacert")
        .arg(s.tls.ca_cert())
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", s.proxy.addr().port()),
        ])
        .args(["-u", &format!("{}:{}", ALICE.0, ALICE.1), "-X", "POST"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_with_an_empty_form_body_opens_an_upload() {
    let s = stack("");
    assert_eq!(curl(&s, &["-d", ""]), "202", "curl -X POST -d ''");
    // A form body with content could carry parameters the rules never saw.
    assert_eq!(curl(&s, &["-d", "mount=sha256:00&from=other/repo"]), "400");
}
