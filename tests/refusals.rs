//! A refused request is never executed: a body the registry ignores (on a
//! DELETE, a GET, an upload's first POST) is read and checked before the
//! head goes out, so a malformed or unsent body gets its 400 with the
//! registry untouched. Also the smaller edges: an HTTP/1.0 request without
//! `Host`, method-override headers, and a response head trickled past
//! `read_timeout`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::http::{self, assert_registry_error, Conn, Endpoint, RawResponse};
use support::origin::{self, Origin, Step};
use support::proxy::Proxy;
use support::registry::Registry;

const ALICE: (&str, &str) = ("alice", "alice-pw");
const REPO: &str = "refusals/app";

/// A registry and a plain-HTTP regproxy in front of it.
struct Stack {
    _dir: tempfile::TempDir,
    registry: Registry,
    proxy: Proxy,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        support::write_htpasswd(&dir.path().join("users"), &[ALICE]);
        let config = format!(
            "listen = \"127.0.0.1:0\"\n[auth]\nhtpasswd = \"users\"\n\
             [upstream]\nservers = [\"{}\"]\n[client]\nlingering_timeout = \"1s\"\n",
            registry.addr()
        );
        let proxy = Proxy::start(&config, dir.path());
        Stack {
            _dir: dir,
            registry,
            proxy,
        }
    }

    fn ep(&self) -> Endpoint {
        Endpoint::plain(self.proxy.addr())
    }

    fn call(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> RawResponse {
        http::request(self.ep(), method, path, Some(ALICE), extra, body).unwrap()
    }

    /// Uploads a blob (POST, then PUT with the digest); its digest.
    fn put_blob(&self, data: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(data));
        let r = self.call("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "upload start: {}", r.body_text());
        let location = r.header("location").unwrap();
        let path = &location[location.find("/v2/").unwrap()..];
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={digest}");
        let r = self.call(
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "upload: {}", r.body_text());
        digest
    }

    /// Pushes a one-layer image; the manifest's digest.
    fn push_image(&self) -> String {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"a layer that is not really a tarball";
        let config_digest = self.put_blob(config);
        let layer_digest = self.put_blob(layer);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{layer_digest}"}}]}}"#,
            config.len(),
            layer.len()
        );
        let ct = [(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )];
        let r = self.call(
            "PUT",
            &format!("/v2/{REPO}/manifests/v1"),
            &ct,
            manifest.as_bytes(),
        );
        assert_eq!(r.status, 201, "manifest: {}", r.body_text());
        r.header("docker-content-digest").unwrap().to_owned()
    }

    fn manifest_status(&self, digest: &str) -> u16 {
        let accept = [(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )];
        self.call(
            "HEAD",
            &format!("/v2/{REPO}/manifests/{digest}"),
            &accept,
            b"",
        )
        .status
    }

    /// The registry's requests since `seen`, as "METHOD URI".
    fn reached_since(&self, seen: usize) -> Vec<String> {
        self.registry.settle(Duration::from_millis(300));
        self.registry.requests()[seen..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect()
    }

    /// Sends a raw request head (and `rest`) with alice's credentials, then
    /// half-closes, and reads the answer.
    fn raw(&self, request_line: &str, fields: &str, rest: &[u8]) -> RawResponse {
        let auth = http::basic_auth_value(ALICE.0, ALICE.1);
        let mut bytes =
            format!("{request_line}\r\nHost: localhost\r\nAuthorization: {auth}\r\n{fields}\r\n")
                .into_bytes();
        bytes.extend_from_slice(rest);
        let mut conn = Conn::connect(self.ep()).unwrap();
        conn.send(&bytes).unwrap();
        conn.shutdown_write().unwrap();
        conn.read_response().unwrap()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_delete_refused_for_its_body_deletes_nothing() {
    let s = Stack::start();
    let digest = s.push_image();
    assert_eq!(s.manifest_status(&digest), 200);
    let delete = format!("DELETE /v2/{REPO}/manifests/{digest} HTTP/1.1");
    let seen = s.registry.settle(Duration::from_millis(200));

    // A chunk line that is not hex.
    let r = s.raw(
        &delete,
        "Transfer-Encoding: chunked\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
    );
    assert_registry_error(&r, 400, "BAD_REQUEST", "DELETE with a bad chunk");
    // A declared body that never comes.
    let r = s.raw(&delete, "Content-Length: 10\r\n", b"");
    assert_registry_error(&r, 400, "BAD_REQUEST", "DELETE with an unsent body");
    // A body past what is read before forwarding.
    let r = s.raw(&delete, "Content-Length: 70000\r\n", b"");
    assert_registry_error(&r, 413, "BAD_REQUEST", "DELETE with a large body");

    assert_eq!(
        s.reached_since(seen),
        Vec::<String>::new(),
        "the registry saw them"
    );
    assert_eq!(s.manifest_status(&digest), 200, "the manifest was deleted");
    let log = s.proxy.wait_for_access_lines(3, Duration::from_secs(5));
    assert!(
        log.iter().filter(|l| l.contains("\" 400 ")).count() >= 2,
        "{log:?}"
    );

    // The control: the same DELETE without a body is executed.
    let r = s.call(
        "DELETE",
        &format!("/v2/{REPO}/manifests/{digest}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.body_text());
    assert_eq!(s.manifest_status(&digest), 404);
}

#[test]
fn an_upload_start_with_a_bad_chunk_opens_no_session() {
    let s = Stack::start();
    let seen = s.registry.settle(Duration::from_millis(200));
    let post = format!("POST /v2/{REPO}/blobs/uploads/ HTTP/1.1");
    let r = s.raw(
        &post,
        "Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\nzz\r\n",
    );
    assert_registry_error(&r, 400, "BAD_REQUEST", "upload POST with a bad chunk");
    assert_eq!(s.reached_since(seen), Vec::<String>::new());
}

#[test]
fn a_small_ignored_body_is_read_and_the_request_goes_on_without_it() {
    let s = Stack::start();
    let seen = s.registry.settle(Duration::from_millis(200));
    let r = s.call("GET", "/v2/", &[], b"hello");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let chunked = s.raw(
        "GET /v2/ HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 200, "{}", chunked.body_text());
    assert_eq!(s.reached_since(seen), vec!["GET /v2/", "GET /v2/"]);
}

/// A regproxy in front of a fake origin that answers each request with
/// `steps`, with `upstream` and `forwarding` keys added.
fn front(origin: &Origin, upstream: &str, forwarding: &str, dir: &std::path::Path) -> Proxy {
    support::write_htpasswd(&dir.join("users"), &[ALICE]);
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhtpasswd = \"users\"\n\
         [upstream]\nservers = [\"{}\"]\n{upstream}\n[forwarding]\n{forwarding}\n",
        origin.addr()
    );
    Proxy::start(&config, dir)
}

fn ok() -> Vec<Step> {
    vec![Step::Write(origin::response(200, &[], b"{}"))]
}

#[test]
fn http10_without_host_reaches_the_registry_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = Origin::start(|_| ok());
    let proxy = front(&o, "host = \"registry.internal:5000\"", "", dir.path());
    let auth = http::basic_auth_value(ALICE.0, ALICE.1);
    let r = http::send_raw(
        proxy.addr(),
        format!("GET /v2/ HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let reqs = o.wait_requests(1, Duration::from_secs(5));
    assert_eq!(reqs[0].header("host"), Some("registry.internal:5000"));
}

#[test]
fn override_headers_are_dropped_unless_kept() {
    let overrides = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Original-URL", "/v2/other/manifests/x"),
        ("X-Rewrite-URL", "/v2/other/"),
    ];
    for (keep, expect) in [(false, None), (true, Some("DELETE"))] {
        let dir = tempfile::tempdir().unwrap();
        let o = Origin::start(|_| ok());
        let proxy = front(
            &o,
            "",
            &format!("keep_override_headers = {keep}"),
            dir.path(),
        );
        let r = http::get(proxy.addr(), "/v2/", Some(ALICE), &overrides).unwrap();
        assert_eq!(r.status, 200);
        let reqs = o.wait_requests(1, Duration::from_secs(5));
        assert_eq!(
            reqs[0].header("x-http-method-override"),
            expect,
            "keep={keep}"
        );
        assert_eq!(reqs[0].header("x-original-url").is_some(), keep);
        assert_eq!(reqs[0].header("x-rewrite-url").is_some(), keep);
    }
}

#[test]
fn read_timeout_bounds_the_whole_response_head() {
    let dir = tempfile::tempdir().unwrap();
    // Each piece comes well within the timeout; the whole head does not.
    let gap = Duration::from_millis(400);
    let o = Origin::start(move |_| {
        let mut steps = vec![Step::Write(b"HTTP/1.1 200 OK\r\n".to_vec())];
        for i in 0..6 {
            steps.push(Step::Sleep(gap));
            steps.push(Step::Write(format!("X-Piece-{i}: {i}\r\n").into_bytes()));
        }
        steps.push(Step::Write(b"Content-Length: 0\r\n\r\n".to_vec()));
        steps
    });
    let proxy = front(&o, "read_timeout = \"1s\"", "", dir.path());
    let r = http::get(proxy.addr(), "/v2/", Some(ALICE), &[]).unwrap();
    assert_registry_error(&r, 504, "UNAVAILABLE", "trickled head");
}
