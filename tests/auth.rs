//! Authentication and authorization against the real registry: the 401
//! challenge, the recipe's user-agent block, push restriction, the
//! credential cache (one bcrypt for a burst), the bounded hash pool, and
//! htpasswd reload.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::http::{self, Conn, RawResponse};
use support::stack::PlainStack;

fn stack_with(users: &[(&str, &str)], extra_auth: &str) -> PlainStack {
    let auth = format!("push_users = [\"testuser\"]\nreload_interval = \"100ms\"\n{extra_auth}");
    PlainStack::start(&support::htpasswd_text(users), "", &auth, "")
}

fn stack() -> PlainStack {
    stack_with(
        &[("testuser", "testpassword"), ("reader", "readerpassword")],
        "",
    )
}

fn assert_challenge(r: &RawResponse, what: &str) {
    http::assert_registry_error(r, 401, "UNAUTHORIZED", what);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Registry realm\""),
        "{what}"
    );
}

#[test]
fn missing_malformed_and_wrong_credentials_get_the_challenge() {
    let s = stack();
    let addr = s.proxy.addr();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("no Authorization", &[]),
        ("bearer scheme", &[("Authorization", "Bearer abc")]),
        ("bad base64", &[("Authorization", "Basic !!!")]),
        ("no colon", &[("Authorization", "Basic dGVzdHVzZXI=")]),
        ("empty", &[("Authorization", "Basic ")]),
    ];
    for (what, headers) in cases {
        let r = http::get(addr, "/v2/", None, headers).unwrap();
        assert_challenge(&r, what);
    }
    let wrong = http::get(addr, "/v2/", Some(("testuser", "nope")), &[]).unwrap();
    assert_challenge(&wrong, "wrong password");
    let unknown = http::get(addr, "/v2/", Some(("mallory", "testpassword")), &[]).unwrap();
    assert_challenge(&unknown, "unknown user");
    let ok = http::get(addr, "/v2/", Some(("testuser", "testpassword")), &[]).unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body_text(), "{}");
    assert_eq!(
        ok.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[test]
fn challenge_keeps_the_connection_for_the_retry_with_credentials() {
    // docker's flow: GET /v2/ → 401, then the same request with credentials.
    let s = stack();
    let mut conn = Conn::connect(s.proxy.addr()).unwrap();
    let keep = [("Connection", "keep-alive")];
    conn.send(&http::build_request("GET", "/v2/", None, &keep, b""))
        .unwrap();
    assert_challenge(&conn.read_response().unwrap(), "first request");
    conn.send(&http::build_request(
        "GET",
        "/v2/",
        Some(("reader", "readerpassword")),
        &keep,
        b"",
    ))
    .unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn recipe_user_agent_block_answers_404_before_auth() {
    let s = stack();
    let addr = s.proxy.addr();
    // (user agent, blocked?) — the PCRE `^(docker\/1\.(3|4|5(?!\.[0-9]-dev))|Go ).*$`
    let cases = [
        ("docker/1.3.0", true),
        ("docker/1.30.1", true),
        ("docker/1.4.1 go/go1.4", true),
        ("docker/1.5.0", true),
        ("docker/1.5", true),
        ("docker/1.5.10-dev", true),
        ("Go 1.1 package http", true),
        ("docker/1.5.0-dev", false),
        ("docker/1.5.1-dev git-commit/abc", false),
        ("docker/1.6.0", false),
        ("docker/20.10.7 go/go1.13.15", false),
        ("Go-http-client/1.1", false),
        ("go 1.1", false),
        ("Docker/1.3", false),
        // Leading whitespace is not part of a field value (RFC 9110 §5.5).
        (" docker/1.3", true),
    ];
    for (ua, blocked) in cases {
        let anon = http::get(addr, "/v2/", None, &[("User-Agent", ua)]).unwrap();
        let authed = http::get(
            addr,
            "/v2/",
            Some(("testuser", "testpassword")),
            &[("User-Agent", ua)],
        )
        .unwrap();
        if blocked {
            assert_eq!((anon.status, authed.status), (404, 404), "{ua:?}");
            assert!(anon.header("www-authenticate").is_none(), "{ua:?}");
            assert_eq!(
                anon.header("docker-distribution-api-version"),
                Some("registry/2.0")
            );
        } else {
            assert_eq!((anon.status, authed.status), (401, 200), "{ua:?}");
        }
    }
}

#[test]
fn push_by_pull_only_user_is_denied_and_never_forwarded() {
    let s = stack();
    let addr = s.proxy.addr();
    s.registry.settle(Duration::from_millis(200));
    let before = s.registry.request_count();
    for (method, path) in [
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("PUT", "/v2/team/app/manifests/latest"),
        ("PATCH", "/v2/team/app/blobs/uploads/abc"),
        ("DELETE", "/v2/team/app/manifests/sha256:00"),
    ] {
        let r = http::request(
            addr,
            method,
            path,
            Some(("reader", "readerpassword")),
            &[],
            b"{}",
        )
        .unwrap();
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(
            r.body_text()
                .starts_with("{\"errors\":[{\"code\":\"DENIED\""),
            "{}",
            r.body_text()
        );
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
    assert_eq!(
        s.registry.settle(Duration::from_millis(300)),
        before,
        "a refused push reached the registry"
    );
    // Pulls by the same user go through; pushes by a push user too.
    let pull = http::get(
        addr,
        "/v2/_catalog",
        Some(("reader", "readerpassword")),
        &[],
    )
    .unwrap();
    assert_eq!(pull.status, 200);
    let push = http::request(
        addr,
        "POST",
        "/v2/team/app/blobs/uploads/",
        Some(("testuser", "testpassword")),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(push.status, 202);
    assert!(push.header("docker-upload-uuid").is_some());
    assert!(push.header("location").is_some());
}

#[test]
fn hundred_concurrent_first_requests_cost_one_bcrypt() {
    // A production cost, so the first hash is still running while the
    // other 99 requests arrive.
    let users = support::htpasswd_bcrypt_cost("ci-robot", "s3cret-token", 12) + "\n";
    let s = PlainStack::start(&users, "", "", "");
    let proxy = &s.proxy;
    assert_eq!(proxy.metric("regproxy_password_hashes_total"), 0);

    const CLIENTS: usize = 100;
    let addr = proxy.addr();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr).unwrap();
                conn.set_timeout(Duration::from_secs(60)).unwrap();
                let req = http::build_request(
                    "GET",
                    "/v2/",
                    Some(("ci-robot", "s3cret-token")),
                    &[],
                    b"",
                );
                barrier.wait();
                conn.send(&req).unwrap();
                conn.read_response().unwrap().status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(proxy.metric("regproxy_password_hashes_total"), 1);

    // And the cache serves later requests on every worker without hashing.
    for _ in 0..20 {
        let r = http::get(addr, "/v2/", Some(("ci-robot", "s3cret-token")), &[]).unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(proxy.metric("regproxy_password_hashes_total"), 1);
}

#[test]
fn saturated_hash_pool_sheds_load_with_503() {
    let users = support::htpasswd_bcrypt_cost("u", "p", 12) + "\n";
    let s = PlainStack::start(
        &users,
        "",
        "hash_threads = 1\nhash_queue = 1\nmax_failures = 0",
        "",
    );
    let proxy = &s.proxy;
    const CLIENTS: usize = 12;
    let addr = proxy.addr();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let pass = format!("guess-{i}");
                let req = http::build_request("GET", "/v2/", Some(("u", &pass)), &[], b"");
                let mut conn = Conn::connect(addr).unwrap();
                conn.set_timeout(Duration::from_secs(60)).unwrap();
                barrier.wait();
                conn.send(&req).unwrap();
                conn.read_response().unwrap()
            })
        })
        .collect();
    let responses: Vec<RawResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    let refused = responses.iter().filter(|r| r.status == 401).count();
    assert_eq!(busy.len() + refused, CLIENTS, "{responses:?}");
    assert!(
        !busy.is_empty(),
        "12 distinct guesses against 1 thread + 1 queue slot must shed some"
    );
    assert!(
        busy[0]
            .body_text()
            .starts_with("{\"errors\":[{\"code\":\"UNAVAILABLE\""),
        "{}",
        busy[0].body_text()
    );
}

#[test]
fn htpasswd_changes_lock_out_changed_and_removed_users_at_once() {
    let s = stack();
    let addr = s.proxy.addr();
    let status = |user: &str, pass: &str| {
        http::get(addr, "/v2/", Some((user, pass)), &[])
            .unwrap()
            .status
    };
    // Warm the cache for both users.
    assert_eq!(status("testuser", "testpassword"), 200);
    assert_eq!(status("reader", "readerpassword"), 200);

    // testuser's password changes; reader is removed.
    rewrite(s.dir.path(), &[("testuser", "newpassword")]);
    let switched = support::wait_for(Duration::from_secs(10), || {
        (status("testuser", "newpassword") == 200).then_some(())
    });
    assert!(switched.is_some(), "the new htpasswd was not picked up");
    assert_eq!(
        status("testuser", "testpassword"),
        401,
        "old password still works"
    );
    assert_eq!(
        status("reader", "readerpassword"),
        401,
        "removed user still works"
    );

    // A broken file keeps the previous users and says why.
    std::fs::write(s.dir.path().join("users"), "testuser:{SHA}notbcrypt\n").unwrap();
    assert!(s
        .proxy
        .wait_for_stderr("reload failed", Duration::from_secs(10)));
    assert!(s.proxy.stderr_text().contains("users:1:"));
    assert_eq!(status("testuser", "newpassword"), 200);
}

fn rewrite(dir: &Path, users: &[(&str, &str)]) {
    // Write then rename, as editors and config management do.
    let tmp = dir.join("users.tmp");
    support::write_htpasswd(&tmp, users);
    std::fs::rename(&tmp, dir.join("users")).unwrap();
}

#[test]
fn secrets_never_reach_logs() {
    let s = stack();
    let addr = s.proxy.addr();
    for pass in ["testpassword", "wrong-secret-xyz"] {
        let _ = http::get(addr, "/v2/", Some(("testuser", pass)), &[]).unwrap();
    }
    let _ = http::request(
        addr,
        "POST",
        "/v2/x/blobs/uploads/",
        Some(("reader", "readerpassword")),
        &[],
        b"",
    )
    .unwrap();
    let lines = s.proxy.wait_for_access_lines(3, Duration::from_secs(5));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let all = s.proxy.access_log_text() + &s.proxy.stderr_text();
    for secret in [
        "testpassword",
        "wrong-secret-xyz",
        "readerpassword",
        "dGVzdHVzZXI6",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(
        all.contains(" testuser \"GET /v2/ HTTP/1.1\" 200 "),
        "{all}"
    );
    assert!(all.contains(" - \"GET /v2/ HTTP/1.1\" 401 "), "{all}");
}
