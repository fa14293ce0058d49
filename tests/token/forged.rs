//! Forged and broken Bearer tokens, and `/token`'s own answers, against one
//! registry and one regproxy (plain HTTP: nothing here is about TLS).
//!
//! Each forged token differs from a valid one in one thing, and the valid
//! ones are shown to pass first, so every 401 is that thing's. Every
//! refusal carries the Bearer challenge with `error="invalid_token"` (a
//! token for another repository: `insufficient_scope`), and the registry's
//! access log proves that nothing reached it.

use std::path::Path;
use std::time::Duration;

use regproxy_core::auth::jwt::Alg;
use serde_json::{json, Value};

use crate::support::http::{self, Endpoint, RawResponse};
use crate::support::token::{
    assert_bearer_401, b64, bearer, challenge_params, claims_of, fetch_token, forge, granted,
    header_of, hs256, now, repo_access, token_of, KeyFile, StackOpts, TokenStack, ISSUER, REALM,
    SERVICE,
};
use crate::support::wait_for;
use crate::{openssl_or_skip, pusher_reader_rules, PUSHER, READER};

const REPO: &str = "forged/app";
const MANIFEST: &str = "/v2/forged/app/manifests/v1";

fn stack() -> TokenStack {
    TokenStack::start(StackOpts {
        users: vec![PUSHER, READER],
        // Twenty forged tokens from one address would trip the failure
        // limit (token failures count), and this test is not about it.
        auth_extra: "max_failures = 0".into(),
        tail: format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            pusher_reader_rules()
        ),
        ..StackOpts::default()
    })
}

/// Our claims for a pull of [`REPO`], changed by `edit`, signed by `key`.
fn signed(key: &KeyFile, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = KeyFile::claims(repo_access(REPO, &["pull"]));
    edit(claims.as_object_mut().unwrap());
    key.sign_claims(&claims)
}

/// The registry answered (no manifest there): the token was taken.
fn assert_reached_registry(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 404, "{what}: {r:?} {}", r.body_text());
    assert!(
        r.body_text().contains("UNKNOWN"),
        "{what}: {}",
        r.body_text()
    );
}

/// Every forged or broken token of the issue's list, one by one.
fn forgery_list(key: &KeyFile, dir: &Path, issued: &str) -> Vec<(&'static str, String)> {
    let kid = key.kid().to_owned();
    let claims = KeyFile::claims(repo_access(REPO, &["pull"])).to_string();
    let stranger = KeyFile::generate(&dir.join("stranger.key"), Alg::Es256);
    let other_issuer = KeyFile::generate(&dir.join("other-issuer.key"), Alg::EdDsa);
    let t = now();
    let mut tampered = claims_of(issued);
    tampered.insert("access".into(), repo_access(REPO, &["pull", "push"]));
    tampered.insert("sub".into(), "root".into());
    let mut parts = issued.split('.');
    let (h, _, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let changed_payload = format!("{h}.{}.{sig}", b64(Value::Object(tampered).to_string()));
    let big = signed(key, |c| {
        c.insert("pad".into(), "x".repeat(16 * 1024).into());
    });
    vec![
        (
            "alg none",
            forge(r#"{"alg":"none","typ":"JWT"}"#, &claims, |_| Vec::new()),
        ),
        (
            "alg none with our kid",
            forge(
                &json!({"alg": "none", "kid": kid}).to_string(),
                &claims,
                |_| Vec::new(),
            ),
        ),
        (
            "HS256 keyed with the public key PEM",
            forge(
                &json!({"alg": "HS256", "kid": kid, "typ": "JWT"}).to_string(),
                &claims,
                |m| hs256(key.public_pem().as_bytes(), m),
            ),
        ),
        (
            "HS256 keyed with the public key DER",
            forge(
                &json!({"alg": "HS256", "kid": kid, "typ": "JWT"}).to_string(),
                &claims,
                |m| hs256(&key.spki_der(), m),
            ),
        ),
        (
            "unknown kid, signed by our key",
            key.sign_raw(
                &json!({"alg": "ES256", "kid": "AAAA:BBBB:CCCC:DDDD:EEEE:FFFF:GGGG:HHHH:IIII:JJJJ:KKKK:LLLL"}).to_string(),
                &claims,
            ),
        ),
        ("another key's kid and signature", signed(&stranger, |_| {})),
        (
            "crit header, signed by our key",
            key.sign_raw(
                &json!({"alg": "ES256", "kid": kid, "crit": ["exp"]}).to_string(),
                &claims,
            ),
        ),
        (
            "expired an hour ago",
            signed(key, |c| {
                c.insert("exp".into(), (t - 3600).into());
                c.insert("nbf".into(), (t - 3900).into());
                c.insert("iat".into(), (t - 3900).into());
            }),
        ),
        (
            "nbf an hour ahead",
            signed(key, |c| {
                c.insert("nbf".into(), (t + 3600).into());
                c.insert("exp".into(), (t + 7200).into());
            }),
        ),
        (
            "wrong aud",
            signed(key, |c| {
                c.insert("aud".into(), "another-service".into());
            }),
        ),
        (
            "wrong iss",
            signed(key, |c| {
                c.insert("iss".into(), "not-regproxy".into());
            }),
        ),
        (
            "no exp",
            signed(key, |c| {
                c.remove("exp");
            }),
        ),
        ("changed payload (push added)", changed_payload),
        ("16 KiB token, validly signed", big),
        (
            "a second, untrusted issuer",
            signed(&other_issuer, |c| {
                c.insert("iss".into(), "https://issuer.invalid".into());
            }),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ]
}

#[test]
fn forged_and_broken_tokens_get_401_and_reach_nothing() {
    if openssl_or_skip().is_none() {
        return;
    }
    let s = stack();
    let ep = s.ep();
    // The controls: a token from /token and one signed here both pass.
    let issued = s.token(Some(READER), &[&format!("repository:{REPO}:pull")]);
    assert_reached_registry(&bearer(&ep, "GET", MANIFEST, &issued), "issued token");
    let own = signed(&s.signing, |_| {});
    assert_reached_registry(&bearer(&ep, "GET", MANIFEST, &own), "hand-signed token");
    let cases = forgery_list(&s.signing, s.dir.path(), &issued);
    let before = s.registry.settle(Duration::from_millis(300));

    for (what, token) in &cases {
        let r = bearer(&ep, "GET", MANIFEST, token);
        assert_bearer_401(&r, Some("invalid_token"), what);
        let (_, params) = challenge_params(r.header("www-authenticate").unwrap());
        assert_eq!(
            params.get("scope").map(String::as_str),
            Some("repository:forged/app:pull"),
            "{what}"
        );
    }
    // A valid token for another repository: insufficient_scope.
    let other = s.token(Some(PUSHER), &["repository:forged/other:pull,push"]);
    let r = bearer(&ep, "GET", MANIFEST, &other);
    assert_bearer_401(&r, Some("insufficient_scope"), "another repository's token");
    // A pull token on an upload: insufficient_scope, scope pull,push.
    let r = bearer(&ep, "POST", "/v2/forged/app/blobs/uploads/", &issued);
    assert_bearer_401(&r, Some("insufficient_scope"), "push with a pull token");
    let (_, params) = challenge_params(r.header("www-authenticate").unwrap());
    assert_eq!(
        params.get("scope").map(String::as_str),
        Some("repository:forged/app:pull,push")
    );

    // 1 MiB does not fit the 32 KiB request head: refused as a head
    // (431) before any token logic, and the worker lives on.
    let huge = format!("Bearer {}", "A".repeat(1 << 20));
    let raw = http::build_request("GET", MANIFEST, None, &[("Authorization", &huge)], b"");
    let r = http::send_raw(&ep, &raw).unwrap();
    assert_eq!(r.status, 431, "1 MiB token: {r:?}");
    assert_reached_registry(
        &bearer(&ep, "GET", MANIFEST, &issued),
        "after the 1 MiB token",
    );

    assert_eq!(
        s.registry.settle(Duration::from_millis(300)),
        before + 1,
        "only the last control reached the registry: {:#?}",
        s.registry.requests()
    );
    eprintln!(
        "forged: {} forged tokens refused with invalid_token",
        cases.len()
    );
}

fn form_post(ep: &Endpoint, body: &str) -> RawResponse {
    http::request(
        ep,
        "POST",
        "/token",
        None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .unwrap()
}

fn assert_basic_401(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    let value = r.header("www-authenticate").unwrap_or_default();
    assert_eq!(value, format!("Basic realm=\"{REALM}\""), "{what}");
}

#[test]
fn token_endpoint_refusals_and_partial_grants() {
    if openssl_or_skip().is_none() {
        return;
    }
    let s = stack();
    let ep = s.ep();
    let basic = |(u, p): (&str, &str)| http::basic_auth_value(u, p);
    let pull_push = format!("repository:{REPO}:pull,push");

    // Credentials.
    let wrong = basic((READER.0, "wrong"));
    let r = fetch_token(&ep, SERVICE, &[&pull_push], Some(&wrong));
    assert_basic_401(&r, "wrong password");
    let r = fetch_token(&ep, SERVICE, &[&pull_push], Some(&basic(("nobody", "x"))));
    assert_basic_401(&r, "unknown user");
    // The request's shape.
    let reader = basic(READER);
    let r = fetch_token(&ep, "another-service", &[&pull_push], Some(&reader));
    assert_eq!(r.status, 400, "wrong service: {r:?}");
    assert!(
        r.header("content-type").is_some_and(|c| c.contains("json")),
        "{r:?}"
    );
    for bad in [
        "repository:forged/app",
        "nonsense",
        "repository::pull",
        "repository:forged/app:pull:x",
    ] {
        let r = fetch_token(&ep, SERVICE, &[bad], Some(&reader));
        assert_eq!(r.status, 400, "malformed scope {bad:?}: {r:?}");
    }

    // Anonymous: 200, nothing granted (no rule names anonymous).
    let anon = token_of(&fetch_token(&ep, SERVICE, &[&pull_push], None));
    assert!(
        granted(&anon).is_empty(),
        "anonymous got {:?}",
        granted(&anon)
    );
    // Partial grant: reader asks pull,push and gets pull.
    let t = token_of(&fetch_token(&ep, SERVICE, &[&pull_push], Some(&reader)));
    assert_eq!(granted(&t), [(REPO.to_owned(), vec!["pull".to_owned()])]);
    let (claims, header) = (claims_of(&t), header_of(&t));
    assert_eq!(claims["sub"], READER.0);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(header["kid"], s.signing.kid());
    assert_eq!(header["alg"], "ES256");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        (now() + 240..=now() + 310).contains(&exp),
        "default lifetime 5m: exp {exp}"
    );
    // Several scopes, each its grant.
    let p = s.token(Some(PUSHER), &[&pull_push, "repository:forged/lib:pull"]);
    let mut got = granted(&p);
    got.sort();
    assert_eq!(
        got,
        [
            (REPO.to_owned(), vec!["pull".to_owned(), "push".to_owned()]),
            ("forged/lib".to_owned(), vec!["pull".to_owned()]),
        ]
    );

    // POST /token, the password grant (containerd's first try).
    let form = |user: &str, pass: &str, grant: &str| {
        format!("grant_type={grant}&username={user}&password={pass}&service={SERVICE}&scope=repository%3Aforged%2Fapp%3Apull&client_id=tests")
    };
    let r = form_post(&ep, &form(READER.0, READER.1, "password"));
    let posted = token_of(&r);
    assert_eq!(
        granted(&posted),
        [(REPO.to_owned(), vec!["pull".to_owned()])]
    );
    let r = form_post(&ep, &form(READER.0, "wrong", "password"));
    assert_eq!(r.status, 401, "POST with a wrong password: {r:?}");
    let r = form_post(&ep, &form(READER.0, READER.1, "refresh_token"));
    assert_eq!(r.status, 400, "another grant type: {r:?}");
}

/// Tokens at work: the reader's pulls and cannot push, the pusher's
/// pushes; Basic still works on /v2/ in bearer mode; the challenges'
/// scope and realm; the access log's user; the issue counter.
#[test]
fn tokens_at_work_and_challenges_in_bearer_mode() {
    if openssl_or_skip().is_none() {
        return;
    }
    let s = stack();
    let ep = s.ep();
    let pull_push = format!("repository:{REPO}:pull,push");
    let t = s.token(Some(READER), &[&pull_push]);
    let p = s.token(Some(PUSHER), &[&pull_push]);

    // The reader's token pulls, and cannot push; the push reaches nothing.
    let before = s.registry.settle(Duration::from_millis(300));
    assert_reached_registry(&bearer(&ep, "GET", MANIFEST, &t), "reader's pull");
    let r = bearer(&ep, "POST", "/v2/forged/app/blobs/uploads/", &t);
    assert_bearer_401(&r, Some("insufficient_scope"), "reader's push");
    assert_eq!(s.registry.settle(Duration::from_millis(300)), before + 1);
    // The pusher's token pushes.
    let r = bearer(&ep, "POST", "/v2/forged/app/blobs/uploads/", &p);
    assert_eq!(r.status, 202, "pusher's upload: {r:?} {}", r.body_text());

    // Bearer mode still takes Basic on /v2/ (a migration aid); no
    // credentials get the Bearer challenge (no scope on /v2/ itself).
    let r = http::get(&ep, "/v2/forged/app/tags/list", Some(READER), &[]).unwrap();
    assert_eq!(r.status, 404, "Basic in bearer mode: {r:?}");
    let r = http::get(&ep, "/v2/", None, &[]).unwrap();
    assert_bearer_401(&r, None, "GET /v2/ without credentials");
    let (_, params) = challenge_params(r.header("www-authenticate").unwrap());
    assert!(!params.contains_key("scope"), "{params:?}");
    let r = http::request(&ep, "POST", "/v2/forged/app/blobs/uploads/", None, &[], b"").unwrap();
    assert_bearer_401(&r, None, "upload without credentials");
    let (_, params) = challenge_params(r.header("www-authenticate").unwrap());
    assert_eq!(params["scope"], "repository:forged/app:pull,push");
    assert_eq!(params["realm"], format!("http://{}/token", s.proxy.addr()));

    // The access log names the token's subject; the issue counter moved.
    let line = |l: &str| l.contains("reader \"GET /v2/forged/app/manifests/v1");
    let found = wait_for(Duration::from_secs(10), || {
        s.proxy.access_log_lines().into_iter().find(|l| line(l))
    });
    assert!(found.is_some(), "{}", s.proxy.access_log_text());
    // Two tokens issued above; workers publish their counters a moment
    // later.
    let issued = wait_for(Duration::from_secs(10), || {
        let n = s.proxy.metric("regproxy_tokens_issued_total");
        (n >= 2).then_some(n)
    });
    assert!(
        issued.is_some(),
        "regproxy_tokens_issued_total stays under 2"
    );
}

/// The harness itself, without regproxy: every forgery is refused by
/// regproxy-core's verifier for this key, and the controls pass, so the
/// end-to-end refusals above test the proxy's wiring.
#[test]
fn forgeries_are_what_regproxy_core_refuses() {
    use regproxy_core::auth::jwt::KeySet;
    use regproxy_core::auth::token::TokenVerifier;
    if openssl_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = KeyFile::generate(&dir.path().join("token.key"), Alg::Es256);
    let verifier = TokenVerifier {
        keys: KeySet::from_own_keys([key.key.verify_key().clone()]).unwrap(),
        issuer: ISSUER.to_owned(),
        service: SERVICE.to_owned(),
        leeway_secs: 60,
    };
    let own = signed(&key, |_| {});
    assert!(verifier.verify(own.as_bytes(), now()).is_ok());
    for (what, token) in forgery_list(&key, dir.path(), &own) {
        assert!(
            verifier.verify(token.as_bytes(), now()).is_err(),
            "core took {what}"
        );
    }
}
