//! The verified-token cache: hits, what invalidates an entry, and that
//! failures are never kept.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;
use regproxy_core::auth::jwt::{self, Alg};
use regproxy_core::auth::oidc::Template;
use regproxy_core::auth::token::ResourceActions;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn service() -> TokenService {
    let (key, _) = SigningKey::generate(Alg::Es256).expect("key");
    let keys = KeySet::from_own_keys([key.verify_key().clone()]).expect("keys");
    TokenService {
        verifier: TokenVerifier {
            keys,
            issuer: "regproxy".into(),
            service: "r.test".into(),
            leeway_secs: 0,
        },
        issuer: TokenIssuer::new(key, "regproxy", "r.test", Duration::from_secs(300)),
        realm: None,
        service: "r.test".into(),
    }
}

fn pull(name: &str) -> Vec<ResourceActions> {
    vec![ResourceActions {
        kind: "repository".into(),
        class: None,
        name: name.into(),
        actions: vec!["pull".into()],
    }]
}

#[test]
fn a_token_is_checked_once_per_key_set() {
    let svc = service();
    let cache = TokenCache::new().expect("cache");
    let t = svc
        .issuer
        .issue(Some("ci"), &pull("app"), now())
        .expect("issue");
    let t = t.token.as_bytes();
    assert!(cache.hit_access(1, t).is_none());
    let a = cache.verify_access(&svc, 1, t).expect("valid");
    assert_eq!(a.subject.as_deref(), Some("ci"));
    assert_eq!(cache.hit_access(1, t), Some(a));
    // A reload (new epoch) checks it again.
    assert!(cache.hit_access(2, t).is_none());
}

#[test]
fn refusals_are_never_kept() {
    let svc = service();
    let cache = TokenCache::new().expect("cache");
    let t = svc.issuer.issue(None, &pull("app"), now()).expect("issue");
    let mut bad = t.token.clone();
    bad.push('A');
    for _ in 0..2 {
        assert!(cache.verify_access(&svc, 1, bad.as_bytes()).is_err());
    }
    assert!(cache.entries.borrow().is_empty());
    // Expired (issued long ago for 300 s): refused, not kept.
    let old = svc
        .issuer
        .issue(None, &pull("app"), now() - 10_000)
        .expect("issue");
    assert!(cache.verify_access(&svc, 1, old.token.as_bytes()).is_err());
    assert!(cache.entries.borrow().is_empty());
}

#[test]
fn another_services_keys_do_not_verify() {
    let (svc, other) = (service(), service());
    let cache = TokenCache::new().expect("cache");
    let t = other
        .issuer
        .issue(Some("ci"), &pull("app"), now())
        .expect("issue");
    assert!(cache.verify_access(&svc, 1, t.token.as_bytes()).is_err());
}

#[test]
fn a_kept_entry_ends_with_its_token() {
    let cache = TokenCache::new().expect("cache");
    let key = cache.hash(b'a', b"t");
    let entry = |until| Entry {
        verified: Verified::Access(Rc::new(AccessToken {
            subject: None,
            expires_at: until,
            access: Vec::new(),
        })),
        until,
        keys: (1, 0),
    };
    cache.put(key, entry(100), 50);
    assert!(cache.get(&key, (1, 0), 100).is_some());
    assert!(cache.get(&key, (1, 0), 101).is_none());
    assert!(
        cache.get(&key, (1, 7), 100).is_none(),
        "a new JWKS generation"
    );
}

/// An issuer whose keys came from a file.
fn oidc_issuer(key: &SigningKey) -> OidcIssuers {
    let keys = KeySet::from_own_keys([key.verify_key().clone()]).expect("keys");
    OidcIssuers {
        providers: vec![Provider {
            issuer: "https://ci.test".into(),
            audience: "regproxy".into(),
            leeway_secs: 0,
            user: Template::parse("{repository}").expect("template"),
            groups: vec![Template::parse("{repository_owner}").expect("template")],
        }],
        keys: vec![IssuerKeys::File(Arc::new(keys))],
    }
}

/// A GitHub-shaped identity token.
fn id_token(key: &SigningKey, iss: &str) -> String {
    let claims: Map<String, Value> = json!({
        "iss": iss, "aud": "regproxy", "sub": "repo:org/app:ref:refs/heads/main",
        "repository": "org/app", "repository_owner": "org",
        "iat": now(), "nbf": now(), "exp": now() + 300,
    })
    .as_object()
    .expect("object")
    .clone();
    jwt::sign(key, &claims).expect("sign")
}

#[test]
fn identity_tokens_map_claims_and_are_kept() {
    let (key, _) = SigningKey::generate(Alg::Es256).expect("key");
    let issuers = oidc_issuer(&key);
    let cache = TokenCache::new().expect("cache");
    let t = id_token(&key, "https://ci.test");
    assert!(issuers.claims(t.as_bytes()));
    block_on(async {
        assert!(cache.hit_identity(&issuers, 1, t.as_bytes()).is_none());
        let id = cache
            .verify_identity(&issuers, 1, t.as_bytes())
            .await
            .expect("valid");
        assert_eq!(id.user, "org/app");
        assert_eq!(id.groups, ["org"]);
        assert_eq!(cache.hit_identity(&issuers, 1, t.as_bytes()), Some(id));
    });
}

#[test]
fn identity_tokens_of_other_issuers_are_not_claimed() {
    let (key, _) = SigningKey::generate(Alg::Es256).expect("key");
    let issuers = oidc_issuer(&key);
    let cache = TokenCache::new().expect("cache");
    let t = id_token(&key, "https://elsewhere.test");
    assert!(!issuers.claims(t.as_bytes()));
    assert!(!issuers.claims(b"not-a-jwt"));
    assert!(!OidcIssuers::default().claims(t.as_bytes()));
    block_on(async {
        assert_eq!(
            cache
                .verify_identity(&issuers, 1, t.as_bytes())
                .await
                .expect_err("untrusted"),
            OidcError::UntrustedIssuer
        );
        // Signed by a key the issuer does not have.
        let (stranger, _) = SigningKey::generate(Alg::Es256).expect("key");
        let forged = id_token(&stranger, "https://ci.test");
        assert!(cache
            .verify_identity(&issuers, 1, forged.as_bytes())
            .await
            .is_err());
    });
    assert!(cache.entries.borrow().is_empty());
}
