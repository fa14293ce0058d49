#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::auth::jwt::SigningKey;
use crate::auth::testkeys::{b64, forge, key, rs256_sign, rsa, signed_by};

const NOW: u64 = 1_800_000_000;
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GITLAB: &str = "https://gitlab.example.com";

fn rsa_jwk(kid: &str) -> Value {
    let (_, _, n, e) = rsa();
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64(n), "e": b64(e)})
}

fn ec_jwk(k: &SigningKey, kid: &str) -> Value {
    let point = &k.verify_key().spki_der().unwrap()[26..];
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])})
}

fn ed_jwk(k: &SigningKey, kid: &str) -> Value {
    let raw = &k.verify_key().spki_der().unwrap()[12..];
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(raw)})
}

fn jwks(keys: Vec<Value>) -> Jwks {
    parse_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// GitHub Actions' claims, in the shape its OIDC docs show.
fn github_claims(aud: &str, exp: u64) -> Value {
    json!({
        "jti": "example-id",
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "environment": "prod",
        "aud": aud,
        "ref": "refs/heads/main",
        "sha": "example-sha",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "actor_id": "12",
        "repository_visibility": "private",
        "repository_id": "74",
        "repository_owner_id": "65",
        "run_id": "example-run-id",
        "run_number": "10",
        "run_attempt": "2",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "workflow": "example-workflow",
        "head_ref": "",
        "base_ref": "",
        "event_name": "workflow_dispatch",
        "ref_type": "branch",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "iss": GITHUB,
        "nbf": NOW - 300,
        "exp": exp,
        "iat": NOW - 5
    })
}

/// GitLab CI `id_tokens` claims, in the shape its docs show.
fn gitlab_claims() -> Value {
    json!({
        "namespace_id": "72",
        "namespace_path": "my-group",
        "project_id": "20",
        "project_path": "my-group/my-project",
        "user_id": "1",
        "user_login": "sample-user",
        "user_email": "sample-user@example.com",
        "pipeline_id": "574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": "feature-branch-1",
        "ref_type": "branch",
        "ref_path": "refs/heads/feature-branch-1",
        "ref_protected": "false",
        "runner_id": 1,
        "runner_environment": "self-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "project_visibility": "public",
        "jti": "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b",
        "iss": GITLAB,
        "iat": NOW - 5,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "sub": "project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1",
        "aud": "regproxy"
    })
}

fn provider(issuer: &str, user: &str, groups: &[&str]) -> Provider {
    Provider {
        issuer: issuer.into(),
        audience: "regproxy".into(),
        leeway_secs: 60,
        user: Template::parse(user).unwrap(),
        groups: groups.iter().map(|g| Template::parse(g).unwrap()).collect(),
    }
}

fn rs256_token(kid: &str, claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "abc", "kid": kid});
    forge(&header.to_string(), &claims.to_string(), rs256_sign)
}

#[test]
fn github_token_maps_to_repository_and_owner() {
    let keys = jwks(vec![rsa_jwk("gh-1")]).keys;
    let p = provider(
        GITHUB,
        "{repository}",
        &["{repository_owner}", "gh-{actor}"],
    );
    let token = rs256_token("gh-1", &github_claims("regproxy", NOW + 300));
    let providers = [provider(GITLAB, "{project_path}", &[]), p.clone()];
    let chosen = select(&providers, token.as_bytes()).unwrap();
    assert_eq!(chosen.issuer, GITHUB);
    let id = chosen.verify(&keys, token.as_bytes(), NOW).unwrap();
    assert_eq!(
        id,
        OidcIdentity {
            user: "octo-org/octo-repo".into(),
            groups: vec!["octo-org".into(), "gh-octocat".into()],
            expires_at: NOW + 300,
        }
    );
    // GitHub's default audience is the owner's URL: not ours.
    let token = rs256_token(
        "gh-1",
        &github_claims("https://github.com/octo-org", NOW + 300),
    );
    assert_eq!(
        p.verify(&keys, token.as_bytes(), NOW),
        Err(OidcError::Jwt(JwtError::WrongAudience))
    );
    let token = rs256_token("gh-1", &github_claims("regproxy", NOW - 120));
    assert_eq!(
        p.verify(&keys, token.as_bytes(), NOW),
        Err(OidcError::Jwt(JwtError::Expired))
    );
}

#[test]
fn gitlab_token_with_es256_and_templates() {
    let k = key(Alg::Es256);
    let keys = jwks(vec![rsa_jwk("rsa"), ec_jwk(&k, "ec")]).keys;
    let p = provider(GITLAB, "ci-{project_path}", &["{namespace_path}"]);
    let token = signed_by(
        &k,
        r#"{"alg":"ES256","kid":"ec"}"#,
        &gitlab_claims().to_string(),
    );
    let id = p.verify(&keys, token.as_bytes(), NOW).unwrap();
    assert_eq!(id.user, "ci-my-group/my-project");
    assert_eq!(id.groups, ["my-group"]);
    // Only string claims: runner_id is a number; a missing claim fails too.
    for bad in ["{runner_id}", "{no_such_claim}", "x-{head_ref}"] {
        let p = provider(GITLAB, bad, &[]);
        assert_eq!(
            p.verify(&keys, token.as_bytes(), NOW),
            Err(OidcError::MissingClaim),
            "{bad}"
        );
        let p = provider(GITLAB, "{project_path}", &[bad]);
        assert_eq!(
            p.verify(&keys, token.as_bytes(), NOW),
            Err(OidcError::MissingClaim),
            "{bad}"
        );
    }
    // A claim value that would make an invalid name: sub has ':'.
    let p = provider(GITLAB, "{sub}", &[]);
    assert_eq!(
        p.verify(&keys, token.as_bytes(), NOW),
        Err(OidcError::BadName)
    );
    let p = provider(GITLAB, "{project_path}", &["{user_email}"]);
    assert_eq!(
        p.verify(&keys, token.as_bytes(), NOW),
        Err(OidcError::BadName)
    );
}

#[test]
fn eddsa_and_key_selection() {
    let ed = key(Alg::EdDsa);
    let keys = jwks(vec![ed_jwk(&ed, "ed")]).keys;
    let p = provider(GITLAB, "{project_path}", &[]);
    let t = signed_by(
        &ed,
        r#"{"alg":"EdDSA","kid":"ed"}"#,
        &gitlab_claims().to_string(),
    );
    p.verify(&keys, t.as_bytes(), NOW).unwrap();
    // A rotated key: unknown kid, which the proxy answers with a refetch.
    let t = signed_by(
        &ed,
        r#"{"alg":"EdDSA","kid":"ed-2"}"#,
        &gitlab_claims().to_string(),
    );
    let e = p.verify(&keys, t.as_bytes(), NOW).unwrap_err();
    assert_eq!(e, OidcError::Jwt(JwtError::UnknownKid));
    assert!(e.is_kid_miss());
    // RS256 header over the EdDSA key's kid.
    let t = rs256_token("ed", &gitlab_claims());
    assert_eq!(
        p.verify(&keys, t.as_bytes(), NOW),
        Err(OidcError::Jwt(JwtError::AlgMismatch))
    );
}

#[test]
fn untrusted_issuers_are_refused() {
    let providers = [provider(GITHUB, "{repository}", &[])];
    // Signed by a key the configured issuer does not hold, claiming to be
    // another issuer: no provider to pick.
    let t = rs256_token("x", &gitlab_claims());
    assert_eq!(
        select(&providers, t.as_bytes()).unwrap_err(),
        OidcError::UntrustedIssuer
    );
    let no_iss = json!({"exp": NOW + 60, "aud": "regproxy"});
    let t = rs256_token("x", &no_iss);
    assert_eq!(
        select(&providers, t.as_bytes()).unwrap_err(),
        OidcError::UntrustedIssuer
    );
    // Claiming the trusted issuer, signed by another key under its kid.
    let keys = jwks(vec![rsa_jwk("gh-1")]).keys;
    let stranger = key(Alg::Es256);
    let claims = github_claims("regproxy", NOW + 300).to_string();
    let t = signed_by(&stranger, r#"{"alg":"ES256","kid":"gh-1"}"#, &claims);
    let p = select(&providers, t.as_bytes()).unwrap();
    assert_eq!(
        p.verify(&keys, t.as_bytes(), NOW),
        Err(OidcError::Jwt(JwtError::AlgMismatch))
    );
    assert_eq!(
        select(&providers, b"not a token").unwrap_err(),
        OidcError::Jwt(JwtError::NotCompact)
    );
}

#[test]
fn jwks_parsing_skips_what_it_cannot_use() {
    let k = key(Alg::Es256);
    let ed = key(Alg::EdDsa);
    let mut wrong_alg = rsa_jwk("rs512");
    wrong_alg["alg"] = json!("RS512");
    let mut enc = ec_jwk(&k, "enc");
    enc["use"] = json!("enc");
    let mut ec_alg_mismatch = ec_jwk(&k, "ec-as-eddsa");
    ec_alg_mismatch["alg"] = json!("EdDSA");
    let set = jwks(vec![
        rsa_jwk("a"),
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}),
        wrong_alg,
        enc,
        ec_alg_mismatch,
        json!({"kty": "RSA", "kid": "short", "n": b64([0xffu8; 128]), "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "padded", "n": "AA==", "e": "AQAB"}),
        ec_jwk(&k, "a"),
        json!("not an object"),
        ec_jwk(&k, "ec"),
        ed_jwk(&ed, "ed"),
    ]);
    assert_eq!(
        set.keys.kids().collect::<Vec<_>>(),
        [Some("a"), Some("ec"), Some("ed")]
    );
    assert_eq!(set.skipped.len(), 9, "{:#?}", set.skipped);
    assert!(set
        .skipped
        .iter()
        .any(|s| s.contains("\"hmac\"") && s.contains("unsupported")));
    let err = |s: &str| parse_jwks(s.as_bytes()).unwrap_err();
    assert_eq!(err("[]"), JwksError::Json);
    assert_eq!(err("{"), JwksError::Json);
    assert_eq!(err(r#"{"keys":[],"keys":[]}"#), JwksError::Json);
    assert_eq!(err(r#"{"key":[]}"#), JwksError::NoKeys);
    assert_eq!(err(r#"{"keys":[]}"#), JwksError::NoUsableKey);
    assert_eq!(err(r#"{"keys":[{"kty":"oct"}]}"#), JwksError::NoUsableKey);
    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(MAX_JWKS_BYTES));
    assert_eq!(err(&big), JwksError::TooLarge);
}

#[test]
fn templates() {
    let t = Template::parse("ci-{project_path}/{ref}").unwrap();
    assert_eq!(t.claims().collect::<Vec<_>>(), ["project_path", "ref"]);
    let claims = gitlab_claims();
    assert_eq!(
        t.render(claims.as_object().unwrap()).unwrap(),
        "ci-my-group/my-project/feature-branch-1"
    );
    assert_eq!(Template::parse("ci").unwrap().claims().count(), 0);
    for bad in ["", "{", "}", "{}", "a{b", "a}b", "{a b}", "{a}{", "{{a}}"] {
        assert!(Template::parse(bad).is_err(), "{bad:?}");
    }
}

/// The jwt fuzz target's seeds were signed by another implementation
/// (Python's `cryptography`: RS256, ES256 as r‖s, Ed25519) and must verify
/// here, with its JWKS; the forged ones must fail as they were forged.
#[test]
fn tokens_from_another_implementation() {
    use crate::auth::token::TokenVerifier;
    macro_rules! seed {
        ($name:literal) => {
            include_bytes!(concat!("../../../../fuzz/corpus/jwt/", $name)).as_slice()
        };
    }
    let keys = parse_jwks(seed!("jwks")).unwrap().keys;
    let p = provider(
        "https://issuer.test",
        "{repository}",
        &["ci-{repository_owner}"],
    );
    for t in [seed!("rs256-oidc"), seed!("es256-oidc")] {
        let id = p.verify(&keys, t, NOW).unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups.as_slice()),
            ("org/app", &["ci-org".to_owned()][..])
        );
    }
    let v = TokenVerifier {
        keys,
        issuer: "regproxy".into(),
        service: "registry.test".into(),
        leeway_secs: 60,
    };
    for t in [seed!("eddsa-own"), seed!("es256-own-aud-array")] {
        let got = v.verify(t, NOW).unwrap();
        assert_eq!(got.subject.as_deref(), Some("alice"));
        assert_eq!(got.access.len(), 2);
    }
    use crate::auth::token::TokenError::Jwt;
    assert_eq!(
        v.verify(seed!("alg-none"), NOW),
        Err(Jwt(JwtError::AlgNone))
    );
    assert_eq!(v.verify(seed!("hs256"), NOW), Err(Jwt(JwtError::AlgHmac)));
    assert_eq!(v.verify(seed!("crit"), NOW), Err(Jwt(JwtError::Crit)));
    assert_eq!(
        v.verify(seed!("dup-key"), NOW),
        Err(Jwt(JwtError::DuplicateKey(jwt::Part::Header)))
    );
}
