#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Condvar;
use std::task::{Context, Poll, Wake, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use regproxy_core::auth::jwt::{Alg, SigningKey};
use regproxy_core::auth::oidc::{Provider, Template};
use rustls::{ServerConfig, ServerConnection};

use super::*;

/// A JWKS with an RSA, an EC and an Ed25519 key (kids `rsa`, `ec`, `ed`)
/// and a token its RSA key signed, made by another implementation (the
/// jwt fuzz target's seeds).
const CORPUS_JWKS: &[u8] = include_bytes!("../../../fuzz/corpus/jwt/jwks");
const CORPUS_RS256: &[u8] = include_bytes!("../../../fuzz/corpus/jwt/rs256-oidc");
/// Inside the corpus token's validity.
const CORPUS_NOW: u64 = 1_800_000_000;

/// Waits are bounded by this; none should come near it.
const LIMIT: Duration = Duration::from_secs(20);

/// A JWKS of fresh ES256 keys under `kids`.
fn ec_jwks(kids: &[&str]) -> Vec<u8> {
    let keys: Vec<serde_json::Value> = kids
        .iter()
        .map(|kid| {
            let key = SigningKey::generate(Alg::Es256).unwrap().0;
            let spki = key.verify_key().spki_der().unwrap();
            let point = &spki[spki.len() - 65..];
            let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..])})
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

fn kids(h: &JwksHandle) -> Vec<String> {
    h.keys()
        .kids()
        .map(|k| k.unwrap_or("-").to_owned())
        .collect()
}

/// A test CA written as PEM, and a server configuration for a leaf it
/// signed (SANs `127.0.0.1` and `localhost`).
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    server: Arc<ServerConfig>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own, so a client trusting another test CA reports an
    // unknown issuer rather than a bad signature.
    static SERIAL: AtomicUsize = AtomicUsize::new(0);
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    ca.distinguished_name
        .push(DnType::CommonName, format!("regproxy jwks test CA {n}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key.into())
            .unwrap();
    Pki {
        _dir: dir,
        ca_file,
        server: Arc::new(server),
    }
}

/// What the test server does with a connection.
#[derive(Clone)]
enum Reply {
    /// 200 with a Content-Length, plus extra header lines.
    Json(Vec<u8>, &'static str),
    /// These bytes after the request head; then close_notify or not.
    Raw(Vec<u8>, bool),
    /// Accepts and never answers, not even the TLS handshake.
    Hang,
}

fn raw(text: &str) -> Reply {
    Reply::Raw(text.as_bytes().to_vec(), true)
}

/// An HTTPS server on 127.0.0.1:0, on std threads, stopped on drop.
struct Server {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
    /// While true, answers wait after reading the request.
    gate: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(config: &Arc<ServerConfig>, reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            reply: Arc::new(Mutex::new(reply)),
            hits: Arc::default(),
            gate: Arc::default(),
            stop: Arc::default(),
        };
        let (config, reply, hits, gate, stop) = (
            Arc::clone(config),
            Arc::clone(&server.reply),
            Arc::clone(&server.hits),
            Arc::clone(&server.gate),
            Arc::clone(&server.stop),
        );
        thread::spawn(move || {
            for sock in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(sock) = sock else { continue };
                hits.fetch_add(1, Ordering::SeqCst);
                let reply = reply.lock().unwrap().clone();
                let (config, gate) = (Arc::clone(&config), Arc::clone(&gate));
                thread::spawn(move || serve(sock, config, reply, &gate));
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/keys?v=1", self.addr.port())
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn hold(&self, closed: bool) {
        *self.gate.0.lock().unwrap() = closed;
        self.gate.1.notify_all();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.hold(false);
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(sock: TcpStream, config: Arc<ServerConfig>, reply: Reply, gate: &(Mutex<bool>, Condvar)) {
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    if let Reply::Hang = reply {
        // Until the client gives up and closes.
        let _ = (&sock).read_to_end(&mut Vec::new());
        return;
    }
    let mut tls = rustls::StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    assert!(head.starts_with(b"GET /keys?v=1 HTTP/1.1\r\nHost: 127.0.0.1:"));
    let (lock, cvar) = gate;
    let held = lock.lock().unwrap();
    drop(
        cvar.wait_timeout_while(held, LIMIT, |closed| *closed)
            .unwrap(),
    );
    let (bytes, notify) = match reply {
        Reply::Json(body, extra) => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            (out, true)
        }
        Reply::Raw(bytes, notify) => (bytes, notify),
        Reply::Hang => unreachable!(),
    };
    let _ = tls.write_all(&bytes);
    if notify {
        tls.conn.send_close_notify();
    }
    let _ = tls.flush();
}

fn fast() -> Timing {
    Timing {
        refresh: Duration::from_secs(3600),
        retry: Duration::from_secs(3600),
        min_refetch: Duration::ZERO,
        timeout: Duration::from_secs(5),
        max_age_bounds: MAX_AGE_BOUNDS,
    }
}

/// A handle trusting `pki`'s CA, its refresher started.
fn handle(pki: &Pki, server: &Server, timing: Timing) -> (Arc<JwksHandle>, JoinHandle<()>) {
    let tls = client_config(Some(&pki.ca_file)).unwrap();
    let h = JwksHandle::with_timing("https://issuer.test", &server.url(), tls, timing);
    assert_eq!(h.keys().len(), 0, "no keys before the first fetch");
    let t = spawn_refresher(vec![Arc::clone(&h)]).unwrap().unwrap();
    (h, t)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Blocks on a receiver for at most `limit`; `None` if it is still pending.
fn wait(mut rx: oneshot::Receiver<()>, limit: Duration) -> Option<Result<(), oneshot::Canceled>> {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(r) = Pin::new(&mut rx).poll(&mut cx) {
            return Some(r);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        thread::park_timeout(left);
    }
}

fn done_at_once(rx: &mut oneshot::Receiver<()>) -> bool {
    matches!(rx.try_recv(), Ok(Some(())))
}

#[test]
fn the_first_fetch_installs_keys_and_bumps_the_generation() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a", "b"]), ""));
    let (h, _t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.generation() == 1);
    assert_eq!(kids(&h), ["a", "b"]);
    assert_eq!((h.fetches(), server.hits()), ((1, 0), 1));
}

#[test]
fn a_kid_miss_refetches_and_installs_the_rotated_key() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["old"]), ""));
    let (h, _t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.generation() == 1);
    let provider = Provider {
        issuer: "https://issuer.test".into(),
        audience: "regproxy".into(),
        leeway_secs: 60,
        user: Template::parse("{repository}").unwrap(),
        groups: vec![],
    };
    let err = provider
        .verify(&h.keys(), CORPUS_RS256, CORPUS_NOW)
        .unwrap_err();
    assert!(err.is_kid_miss(), "{err:?}");
    // The issuer rotates to an RSA key (kid "rsa") among others.
    server.set(Reply::Json(CORPUS_JWKS.to_vec(), ""));
    assert_eq!(wait(h.kid_miss(), LIMIT), Some(Ok(())));
    assert_eq!(kids(&h), ["rsa", "ec", "ed"]);
    assert_eq!((h.generation(), h.fetches(), server.hits()), (2, (2, 0), 2));
    let id = provider
        .verify(&h.keys(), CORPUS_RS256, CORPUS_NOW)
        .unwrap();
    assert_eq!(id.user, "org/app");
    // The same document again installs nothing new.
    assert_eq!(wait(h.kid_miss(), LIMIT), Some(Ok(())));
    assert_eq!((h.generation(), h.fetches()), (2, (3, 0)));
}

#[test]
fn kid_misses_are_rate_limited() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a"]), ""));
    let timing = Timing {
        min_refetch: Duration::from_secs(10),
        ..fast()
    };
    let (h, _t) = handle(&pki, &server, timing);
    wait_until("the first fetch", || h.fetches() == (1, 0));
    // Within 10 s of the start-up fetch: no fetch, answered at once.
    for _ in 0..2 {
        let mut rx = h.kid_miss();
        assert!(done_at_once(&mut rx), "a rate-limited kid miss waits");
    }
    assert_eq!((h.fetches(), server.hits()), ((1, 0), 1));
}

#[test]
fn kid_misses_during_a_fetch_wait_for_it_and_start_no_other() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a"]), ""));
    let (h, _t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.fetches() == (1, 0));
    server.hold(true);
    server.set(Reply::Json(ec_jwks(&["b"]), ""));
    let first = h.kid_miss();
    wait_until("the refetch to reach the server", || server.hits() == 2);
    let mut second = h.kid_miss();
    assert!(!done_at_once(&mut second), "joins the running fetch");
    server.hold(false);
    assert_eq!(wait(first, LIMIT), Some(Ok(())));
    assert_eq!(wait(second, LIMIT), Some(Ok(())));
    assert_eq!(kids(&h), ["b"]);
    assert_eq!((h.fetches(), server.hits()), ((2, 0), 2));
}

#[test]
fn a_hanging_server_costs_only_the_timeout_and_keeps_the_keys() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a"]), ""));
    let timeout = Duration::from_millis(800);
    let (h, _t) = handle(&pki, &server, Timing { timeout, ..fast() });
    wait_until("the first fetch", || h.generation() == 1);
    server.set(Reply::Hang);
    let started = Instant::now();
    let mut rx = h.kid_miss();
    wait_until("the refetch to reach the server", || server.hits() == 2);
    // Meanwhile the keys are there, and the waiter still waits: keys()
    // did not wait for the fetch.
    assert_eq!(kids(&h), ["a"]);
    assert!(
        matches!(rx.try_recv(), Ok(None)),
        "keys() waited on the fetch"
    );
    assert_eq!(wait(rx, LIMIT), Some(Ok(())));
    let took = started.elapsed();
    assert!(took >= timeout && took < LIMIT, "{took:?}");
    let err = h.last_error().unwrap();
    assert!(err.contains("no answer within 0.8s"), "{err}");
    assert_eq!(
        (kids(&h), h.generation(), h.fetches()),
        (vec!["a".into()], 1, (1, 1))
    );
}

#[test]
fn a_lying_server_changes_nothing_and_each_lie_is_counted() {
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a"]), ""));
    let (h, _t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.generation() == 1);
    let big = vec![b' '; 300 * 1024];
    let lies = [
        (raw("garbage\r\n\r\n"), "unreadable response"),
        (
            raw("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
            "HTTP 500 Internal Server Error, only 200",
        ),
        (
            raw("HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1/\r\nContent-Length: 0\r\n\r\n"),
            "redirects are not followed",
        ),
        (Reply::Json(big.clone(), ""), "larger than 262144 bytes"),
        (
            Reply::Raw(
                [
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4b000\r\n".as_slice(),
                    &big,
                    b"\r\n0\r\n\r\n",
                ]
                .concat(),
                true,
            ),
            "larger than 262144 bytes",
        ),
        (
            Reply::Raw(
                [
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".as_slice(),
                    &big,
                ]
                .concat(),
                true,
            ),
            "larger than 262144 bytes",
        ),
        (
            Reply::Json(b"<html>not found</html>".to_vec(), ""),
            "not a JSON object",
        ),
        (
            Reply::Json(
                br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#.to_vec(),
                "",
            ),
            "no usable signing key",
        ),
        (
            Reply::Json(ec_jwks(&["b"]), "Content-Encoding: gzip\r\n"),
            "Content-Encoding \"gzip\"",
        ),
        (
            raw("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"keys\": []"),
            "closed after 11 of 1000 body bytes",
        ),
        // A close-delimited body cut short without close_notify.
        (
            Reply::Raw(
                [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &ec_jwks(&["b"])].concat(),
                false,
            ),
            "close_notify",
        ),
    ];
    let count = lies.len() as u64;
    for (i, (lie, why)) in lies.into_iter().enumerate() {
        server.set(lie);
        assert_eq!(wait(h.kid_miss(), LIMIT), Some(Ok(())), "lie {i}");
        assert_eq!(h.fetches(), (1, i as u64 + 1), "lie {i} was taken");
        let err = h.last_error().unwrap();
        assert!(err.contains(why), "lie {i}: {err}");
    }
    assert_eq!((kids(&h), h.generation()), (vec!["a".into()], 1));
    assert_eq!(h.fetches(), (1, count));
}

#[test]
fn chunked_and_close_delimited_documents_are_taken() {
    let pki = pki();
    let doc = ec_jwks(&["c"]);
    let chunked = [
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            10
        )
        .as_bytes(),
        &doc[..10],
        format!("\r\n{:x};ext=1\r\n", doc.len() - 10).as_bytes(),
        &doc[10..],
        b"\r\n0\r\n\r\n",
    ]
    .concat();
    let server = Server::start(&pki.server, Reply::Raw(chunked, true));
    let (h, _t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.fetches() == (1, 0));
    assert_eq!(kids(&h), ["c"]);
    let close = [b"HTTP/1.0 200 OK\r\n\r\n".as_slice(), &ec_jwks(&["d"])].concat();
    server.set(Reply::Raw(close, true));
    assert_eq!(wait(h.kid_miss(), LIMIT), Some(Ok(())));
    assert_eq!((kids(&h), h.fetches()), (vec!["d".into()], (2, 0)));
}

#[test]
fn an_untrusted_certificate_installs_nothing() {
    let (ours, theirs) = (pki(), pki());
    let server = Server::start(&theirs.server, Reply::Json(ec_jwks(&["a"]), ""));
    let (h, _t) = handle(&ours, &server, fast());
    wait_until("the first fetch", || h.fetches() == (0, 1));
    assert_eq!((h.keys().len(), h.generation()), (0, 0));
    let err = h.last_error().unwrap();
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
}

#[test]
fn failures_are_retried_and_max_age_is_obeyed() {
    let pki = pki();
    let server = Server::start(
        &pki.server,
        raw("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
    );
    let timing = Timing {
        retry: Duration::from_millis(100),
        max_age_bounds: (Duration::from_millis(100), Duration::from_millis(300)),
        ..fast()
    };
    let (h, _t) = handle(&pki, &server, timing);
    wait_until("the first, failed fetch", || h.fetches() == (0, 1));
    server.set(Reply::Json(
        ec_jwks(&["a"]),
        "Cache-Control: public, max-age=86400\r\n",
    ));
    wait_until("the retry", || h.generation() == 1);
    // max-age (bounded to 300 ms here) brings the next fetch, no kid miss.
    server.set(Reply::Json(ec_jwks(&["b"]), ""));
    wait_until("the refresh", || h.generation() == 2);
    assert_eq!(kids(&h), ["b"]);
}

#[test]
fn the_refresher_ends_when_the_handles_are_dropped() {
    assert!(spawn_refresher(Vec::new()).unwrap().is_none());
    let pki = pki();
    let server = Server::start(&pki.server, Reply::Json(ec_jwks(&["a"]), ""));
    let (h, t) = handle(&pki, &server, fast());
    wait_until("the first fetch", || h.generation() == 1);
    let again = spawn_refresher(vec![Arc::clone(&h)]).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(t.thread().name(), Some("regproxy-jwks"));
    drop(h);
    wait_until("the refresher to end", || t.is_finished());
}

#[test]
fn a_bad_url_or_ca_file_is_a_clear_error() {
    let pki = pki();
    let tls = client_config(Some(&pki.ca_file)).unwrap();
    let h = JwksHandle::new("i", "https://u:p@host/keys", tls);
    assert!(h.attempt().unwrap_err().contains("credentials in the URL"));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = client_config(Some(&empty)).unwrap_err().to_string();
    assert!(err.contains("empty.pem"), "{err}");
}

#[test]
fn urls() {
    let ok = |url: &str| {
        let t = fetch::parse_url(url).unwrap();
        let (h, p, a, path) = t.parts();
        (h.to_owned(), p, a.to_owned(), path.to_owned())
    };
    let s = String::from;
    assert_eq!(
        ok("https://token.actions.githubusercontent.com/.well-known/jwks"),
        (
            s("token.actions.githubusercontent.com"),
            443,
            s("token.actions.githubusercontent.com"),
            s("/.well-known/jwks")
        )
    );
    assert_eq!(ok("https://h:8443"), (s("h"), 8443, s("h:8443"), s("/")));
    assert_eq!(ok("https://h?a=b#frag"), (s("h"), 443, s("h"), s("/?a=b")));
    assert_eq!(
        ok("https://[::1]:9/k"),
        (s("::1"), 9, s("[::1]:9"), s("/k"))
    );
    assert_eq!(
        ok("https://127.0.0.1/k#x"),
        (s("127.0.0.1"), 443, s("127.0.0.1"), s("/k"))
    );
    for bad in [
        "http://h/k",
        "https:///k",
        "https://h:0/k",
        "https://h:99999/k",
        "https://h:x/k",
        "https://[::1/k",
        "https://[::1]x/k",
        "https://::1/k",
        "https://u@h/k",
        "https://h/k\r\nX: y",
        "https://h/ k",
        "https://h/é",
    ] {
        assert!(fetch::parse_url(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn max_age_is_bounded() {
    let t = Timing::default();
    assert_eq!(t.next_refresh(None), REFRESH);
    assert_eq!(
        t.next_refresh(Some(Duration::ZERO)),
        Duration::from_secs(300)
    );
    assert_eq!(
        t.next_refresh(Some(Duration::from_secs(7200))),
        Duration::from_secs(7200)
    );
    assert_eq!(
        t.next_refresh(Some(Duration::from_secs(1 << 40))),
        Duration::from_secs(86_400)
    );
}
