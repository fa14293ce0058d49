//! regproxy as the token server of a registry in `auth: token` mode
//! (Debian's `docker-registry` 2.8): the registry trusts a self-signed
//! certificate of regproxy's signing key (`rootcertbundle`) and finds the
//! key by the token's `kid`, the libtrust key id; regproxy forwards each
//! client's token (`forward_authorization = true`). ES256 only: the
//! registry's libtrust refuses an Ed25519 certificate in the bundle (it
//! does not start).

use std::time::Duration;

use regproxy_core::auth::jwt::Alg;
use regproxy_core::auth::token::{ResourceActions, TokenIssuer};

use crate::support::http::{self, Endpoint};
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::skopeo::{
    docker_ref, make_image_dir, pulled_layer_digests, skopeo_copy, verify_dir_blobs, CopyOpts,
};
use crate::support::token::{bearer, now, KeyFile, StackOpts, TokenStack, ISSUER, SERVICE};
use crate::{openssl_or_skip, MIB, PUSHER};

/// The registry's `auth:` section trusting `cert`. Its `realm` is what
/// the registry's own challenges would name; behind regproxy clients see
/// regproxy's challenge, so a placeholder does.
fn token_auth_yaml(cert: &std::path::Path) -> String {
    format!(
        "  token:\n    realm: \"https://localhost/token\"\n    service: \"{SERVICE}\"\n    \
         issuer: \"{ISSUER}\"\n    rootcertbundle: \"{}\"",
        cert.display()
    )
}

/// A key, its certificate, and the registry trusting it.
fn token_mode_registry(dir: &std::path::Path, alg: Alg) -> (KeyFile, Registry) {
    let key = KeyFile::generate(&dir.join("token.key"), alg);
    let cert = key.self_signed_cert(&dir.join("token.crt"));
    let registry = Registry::start_with(RegistryOpts {
        auth: Some(token_auth_yaml(&cert)),
        ..RegistryOpts::default()
    });
    (key, registry)
}

fn access(name: &str, actions: &[&str]) -> Vec<ResourceActions> {
    vec![ResourceActions {
        kind: "repository".into(),
        class: None,
        name: name.into(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
    }]
}

/// No proxy: tokens regproxy-core's issuer signs, sent straight to the
/// registry. This is the format check (kid, alg, aud, access) on its own.
#[test]
fn token_mode_registry_accepts_tokens_regproxy_signs() {
    if openssl_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, registry) = token_mode_registry(dir.path(), Alg::Es256);
    let ep = Endpoint::plain(registry.addr());
    let issuer = TokenIssuer::new(
        KeyFile::load(&key.path).key,
        ISSUER,
        SERVICE,
        Duration::from_secs(300),
    );
    let token = |name: &str, actions: &[&str]| {
        issuer
            .issue(Some("alice"), &access(name, actions), now())
            .unwrap()
            .token
    };
    let anon = http::get(&ep, "/v2/", None, &[]).unwrap();
    assert_eq!(anon.status, 401, "token mode: {anon:?}");

    let t = token("rm/app", &["pull", "push"]);
    let r = bearer(&ep, "GET", "/v2/", &t);
    assert_eq!(
        r.status,
        200,
        "GET /v2/ with regproxy's token: {r:?} {}",
        r.body_text()
    );
    let r = bearer(&ep, "POST", "/v2/rm/app/blobs/uploads/", &t);
    assert_eq!(
        r.status,
        202,
        "upload with pull,push: {r:?} {}",
        r.body_text()
    );
    let r = bearer(&ep, "GET", "/v2/rm/app/tags/list", &t);
    assert_eq!(r.status, 404, "pull of an empty repository: {r:?}");

    // The registry applies the token's access itself.
    let pull_only = token("rm/app", &["pull"]);
    let r = bearer(&ep, "POST", "/v2/rm/app/blobs/uploads/", &pull_only);
    assert_eq!(r.status, 401, "upload with a pull token: {r:?}");
    let other = token("rm/other", &["pull", "push"]);
    let r = bearer(&ep, "POST", "/v2/rm/app/blobs/uploads/", &other);
    assert_eq!(r.status, 401, "another repository's token: {r:?}");

    // A key the bundle does not hold: refused.
    let stranger = KeyFile::generate(&dir.path().join("stranger.key"), Alg::Es256);
    let forged = TokenIssuer::new(stranger.key, ISSUER, SERVICE, Duration::from_secs(300))
        .issue(Some("alice"), &access("rm/app", &["pull", "push"]), now())
        .unwrap()
        .token;
    let r = bearer(&ep, "GET", "/v2/", &forged);
    assert_eq!(r.status, 401, "a stranger's key: {r:?}");
    eprintln!(
        "registry-mode: docker-registry 2.8 takes regproxy's ES256 token (kid = libtrust id)"
    );
}

/// skopeo pushes and pulls through regproxy (TLS, scheme bearer), which
/// forwards each token to the token-mode registry; the registry checks it
/// again and stores the image.
#[test]
fn skopeo_through_regproxy_to_a_token_mode_registry() {
    if openssl_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, registry) = token_mode_registry(dir.path(), Alg::Es256);
    let opts = StackOpts {
        users: vec![PUSHER],
        tls: true,
        tail: "[forwarding]\nforward_authorization = true\n".into(),
        ..StackOpts::default()
    };
    let s = TokenStack::start_in(dir, key, registry, &opts);
    let image = make_image_dir(&s.path("image"), &[2 * MIB, MIB / 2]);
    let certs = s.tls.as_ref().unwrap().cert_dir_for_skopeo();
    let target = docker_ref(s.proxy.addr(), "rm/app", "v1");
    skopeo_copy(
        &image.reference(),
        &target,
        &CopyOpts::push(&certs, PUSHER.0, PUSHER.1),
    )
    .assert_success();
    for layer in image.layer_digests() {
        assert!(s.registry.has_blob(&layer), "registry lacks {layer}");
    }
    let out = s.path("pulled");
    skopeo_copy(
        &target,
        &format!("dir:{}", out.display()),
        &CopyOpts::pull(&certs, PUSHER.0, PUSHER.1),
    )
    .assert_success();
    verify_dir_blobs(&out).unwrap();
    assert_eq!(pulled_layer_digests(&out), image.layer_digests());
    // The registry saw the tokens and took them: no 401 in its log.
    s.registry.settle(Duration::from_millis(300));
    let refused: Vec<_> = s
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(refused.is_empty(), "the registry refused: {refused:#?}");
}
