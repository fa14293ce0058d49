//! `[upstream] tls = true`: the real registry serving HTTPS only (its
//! `http.tls`, with a certificate made here by rcgen), regproxy reaching it
//! over TLS. Blobs go up and come back byte-exact on a plain client leg and
//! with both legs TLS; a certificate for another name, or from a CA that is
//! not trusted, is a 502 that never reaches the registry's HTTP layer; the
//! health checks make the same handshake; a CA file with no certificate
//! stops the start, naming it.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::http::{self, Endpoint};
use support::proxy::Proxy;
use support::registry::{Registry, RegistryOpts, RegistryTls};
use support::skopeo::sha256_digest;
use support::tls::Tls;

const USER: &str = "alice";
const PASS: &str = "secret";

/// The registry over HTTPS with a certificate for `localhost` and
/// `127.0.0.1` signed by the returned CA, and a temp dir holding the
/// certificates and regproxy's files.
fn tls_registry() -> (tempfile::TempDir, Tls, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = Tls::generate(&dir.path().join("registry-tls"));
    let registry = Registry::start_with(RegistryOpts {
        tls: Some(RegistryTls::from(&tls)),
        ..RegistryOpts::default()
    });
    support::write_htpasswd(&dir.path().join("users"), &[(USER, PASS)]);
    (dir, tls, registry)
}

/// A plain listener, `top` before the tables, `[upstream]` at `registry`
/// with `upstream` added to it.
fn config(registry: &Registry, top: &str, upstream: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n{top}\n[auth]\nhtpasswd = \"users\"\n\
         [upstream]\nservers = [\"{}\"]\n{upstream}\n",
        registry.addr()
    )
}

/// `[upstream]` keys trusting `ca` (a PEM file).
fn tls_keys(ca: &Path) -> String {
    format!("tls = true\nca_file = \"{}\"\n", ca.display())
}

/// Pseudo-random bytes (xorshift), so no two blobs share a digest.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Uploads `data` to `repo` through `ep` (POST, then a monolithic PUT);
/// its digest.
fn push_blob(ep: &Endpoint, repo: &str, data: &[u8]) -> String {
    let location = http::start_upload(ep, repo, (USER, PASS));
    let digest = sha256_digest(data);
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={digest}");
    let r = http::request(ep, "PUT", &put, Some((USER, PASS)), &[], data).expect("PUT");
    assert_eq!(r.status, 201, "{r:?} {}", r.body_text());
    digest
}

/// GETs the blob back through `ep` and checks it byte for byte and by
/// digest; then HEAD, which must announce its length.
fn pull_blob(ep: &Endpoint, repo: &str, digest: &str, data: &[u8]) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let r = http::get(ep, &path, Some((USER, PASS)), &[]).expect("GET");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(sha256_digest(&r.body), digest);
    assert!(r.body == data, "the blob came back different");
    let r = http::request(ep, "HEAD", &path, Some((USER, PASS)), &[], b"").expect("HEAD");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some(&*data.len().to_string()));
    assert_eq!(r.header("docker-content-digest"), Some(digest));
}

/// How many requests of `method` on a path containing `part` the registry
/// logged: over HTTPS it logs only what came through a handshake.
fn logged(registry: &Registry, method: &str, part: &str) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.method == method && r.uri.contains(part))
        .count()
}

/// A plain client leg, the registry over TLS verified as its IP address
/// (the default name: the first server's host): a 3 MiB blob pushed and
/// pulled back exact, several requests on one pooled TLS connection.
#[test]
fn a_blob_goes_up_and_comes_back_through_a_tls_upstream() {
    let (dir, tls, registry) = tls_registry();
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"";
    let cfg = config(
        &registry,
        "",
        &format!("{}{admin}", tls_keys(&tls.ca_cert())),
    );
    let proxy = Proxy::start(&cfg, dir.path());
    let ep = Endpoint::plain(proxy.addr());

    let data = random_bytes(3 << 20, 1);
    let digest = push_blob(&ep, "edge/one", &data);
    pull_blob(&ep, "edge/one", &digest, &data);
    assert!(registry.has_blob(&digest));
    registry.settle(Duration::from_millis(200));
    assert_eq!(logged(&registry, "PUT", "/v2/edge/one/blobs/uploads/"), 1);
    assert_eq!(logged(&registry, "GET", &digest), 1);
    // Five requests, and the TLS connections were kept for the next.
    assert!(
        proxy.metric("regproxy_upstream_reuses_total") >= 1,
        "{}",
        proxy.stderr_text()
    );
}

/// Both legs TLS: the client's to regproxy and regproxy's to the
/// registry, each with its own CA; an 8 MiB blob moves in batches both
/// ways.
#[test]
fn both_legs_tls_move_a_blob_both_ways() {
    let (dir, tls, registry) = tls_registry();
    let front = Tls::generate(&dir.path().join("front-tls"));
    let top = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"",
        front.server_cert().display(),
        front.server_key().display()
    );
    // The certificate's DNS name this time, where the IP address served
    // above.
    let upstream = format!("{}server_name = \"localhost\"", tls_keys(&tls.ca_cert()));
    let proxy = Proxy::start(&config(&registry, &top, &upstream), dir.path());
    let ep = front.endpoint(proxy.addr());

    let data = random_bytes(8 << 20, 2);
    let digest = push_blob(&ep, "edge/both", &data);
    pull_blob(&ep, "edge/both", &digest, &data);
    assert!(registry.has_blob(&digest));
}

/// Starts regproxy with `upstream` keys in front of the TLS registry, asks
/// it for `/v2/` and for a blob, and checks each is a 502 whose log line
/// says `why`, and that nothing reached the registry's HTTP layer.
fn refused_at_the_handshake(upstream: impl Fn(&Tls, &Path) -> String, why: &str) {
    let (dir, tls, registry) = tls_registry();
    let cfg = config(&registry, "", &upstream(&tls, dir.path()));
    let proxy = Proxy::start(&cfg, dir.path());
    let ep = Endpoint::plain(proxy.addr());
    for path in ["/v2/", &format!("/v2/edge/x/blobs/{}", sha256_digest(b"x"))] {
        let r = http::get(&ep, path, Some((USER, PASS)), &[]).expect("GET");
        http::assert_registry_error(&r, 502, "UNAVAILABLE", path);
    }
    assert!(
        proxy.wait_for_stderr(why, Duration::from_secs(5)),
        "no log line naming {why:?}:\n{}",
        proxy.stderr_text()
    );
    let stderr = proxy.stderr_text();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("upstream failure") && l.contains("TLS handshake")),
        "{stderr}"
    );
    assert_eq!(
        registry.settle(Duration::from_millis(200)),
        0,
        "{:?}",
        registry.requests()
    );
}

/// The registry's certificate names `localhost` and `127.0.0.1`, not the
/// name regproxy was told to expect.
#[test]
fn a_certificate_for_another_name_is_a_502() {
    refused_at_the_handshake(
        |tls, _| {
            format!(
                "{}server_name = \"registry.example\"",
                tls_keys(&tls.ca_cert())
            )
        },
        "certificate not valid for name \"registry.example\"",
    );
}

/// A CA that did not sign the registry's certificate.
#[test]
fn a_certificate_from_an_untrusted_ca_is_a_502() {
    refused_at_the_handshake(
        |_, dir| tls_keys(&Tls::generate(&dir.join("other-ca")).ca_cert()),
        "UnknownIssuer",
    );
}

/// A registry that accepts the connection and never answers the
/// ClientHello: `connect_timeout` bounds the handshake too, and the
/// request gets a 504 instead of waiting on it for ever.
#[test]
fn connect_timeout_bounds_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = Tls::generate(&dir.path().join("tls"));
    support::write_htpasswd(&dir.path().join("users"), &[(USER, PASS)]);
    let origin = support::origin::Origin::silent();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n[auth]\nhtpasswd = \"users\"\n[upstream]\n\
         servers = [\"{}\"]\nconnect_timeout = \"300ms\"\n{}",
        origin.addr(),
        tls_keys(&tls.ca_cert())
    );
    let proxy = Proxy::start(&cfg, dir.path());
    let r = http::get(proxy.addr(), "/v2/", Some((USER, PASS)), &[]).expect("GET");
    http::assert_registry_error(&r, 504, "UNAVAILABLE", "a silent registry");
    assert!(origin.connections() >= 1, "the TCP connect was not made");
}

/// Two registries on one storage, one with a certificate from a CA
/// regproxy does not trust: its failed handshake ejects it like a failed
/// connect, and every request is served by the other.
#[test]
fn a_failed_handshake_ejects_the_server_and_the_request_moves_on() {
    let (dir, tls, good) = tls_registry();
    let rogue_tls = Tls::generate(&dir.path().join("rogue-tls"));
    let rogue = Registry::start_with(RegistryOpts {
        storage: Some(good.storage().to_owned()),
        tls: Some(RegistryTls::from(&rogue_tls)),
        ..RegistryOpts::default()
    });
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nworkers = 1\n[auth]\nhtpasswd = \"users\"\n[upstream]\n\
         servers = [\"{}\", \"{}\"]\nhealth_interval = \"1h\"\n{}",
        rogue.addr(),
        good.addr(),
        tls_keys(&tls.ca_cert())
    );
    let proxy = Proxy::start(&cfg, dir.path());
    let ep = Endpoint::plain(proxy.addr());
    let data = random_bytes(64 << 10, 3);
    let digest = push_blob(&ep, "edge/failover", &data);
    for _ in 0..4 {
        pull_blob(&ep, "edge/failover", &digest, &data);
    }
    let stderr = proxy.stderr_text();
    let down = format!("upstream server marked down upstream={}", rogue.addr());
    assert!(stderr.contains(&down), "{stderr}");
    assert!(!stderr.contains("upstream failure"), "{stderr}");
    assert_eq!(rogue.settle(Duration::from_millis(100)), 0);
}

/// Health checks make the TLS handshake too: against the right CA they
/// reach the registry (which, serving HTTPS only, would log nothing for a
/// plain request) and keep the server up; against a name its certificate
/// does not carry they take it down.
#[test]
fn health_checks_speak_tls() {
    let (dir, tls, registry) = tls_registry();
    let checks = "health_checks = true\nhealth_interval = \"100ms\"\nhealth_fall = 1\n";
    let good = config(
        &registry,
        "",
        &format!("{}{checks}", tls_keys(&tls.ca_cert())),
    );
    let mut proxy = Proxy::start(&good, dir.path());
    let checked = support::wait_for(Duration::from_secs(10), || {
        let n = registry
            .requests()
            .iter()
            .filter(|r| r.user_agent == "regproxy-health" && r.status == 200)
            .count();
        (n >= 3).then_some(())
    });
    assert!(checked.is_some(), "{:?}", registry.requests());
    assert!(
        !proxy.stderr_text().contains("marked down"),
        "{}",
        proxy.stderr_text()
    );
    proxy.kill();

    let wrong = good.replace(
        "tls = true\n",
        "tls = true\nserver_name = \"registry.example\"\n",
    );
    let proxy = Proxy::start(&wrong, dir.path());
    assert!(
        proxy.wait_for_stderr("health checks failed", Duration::from_secs(10)),
        "{}",
        proxy.stderr_text()
    );
}

/// A CA file with no certificate in it stops the start, naming the file;
/// `regproxy check` says the same.
#[test]
fn a_ca_file_without_certificates_stops_the_start() {
    let (dir, _tls, registry) = tls_registry();
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let cfg = config(&registry, "", &tls_keys(&empty));
    let failed = match Proxy::try_start(&cfg, dir.path()) {
        Ok(_) => panic!("regproxy started with a CA file holding no certificate"),
        Err(f) => f,
    };
    assert!(failed.status.is_some_and(|s| !s.success()), "{failed:?}");
    assert!(
        failed.stderr.contains(&empty.display().to_string()),
        "{}",
        failed.stderr
    );
    let out = support::proxy::command()
        .args(["check", "--config"])
        .arg(dir.path().join("regproxy.toml"))
        .output()
        .expect("run regproxy check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&empty.display().to_string()), "{stderr}");
}
