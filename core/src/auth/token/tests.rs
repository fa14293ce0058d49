#![allow(clippy::unwrap_used)]

use super::*;
use crate::auth::acl::Rule;
use crate::auth::groups::{Groups, WithClaimGroups};
use crate::auth::jwt::{Alg, JwtError};
use crate::auth::testkeys::{forge, hs256, key, signed_by};
use crate::route::classify;

const NOW: u64 = 1_800_000_000;

fn ra(kind: &str, name: &str, actions: &[&str]) -> ResourceActions {
    ResourceActions {
        kind: kind.into(),
        class: None,
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

fn target(method: &str, uri: &str) -> Target {
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    classify(method, path, query, None).unwrap()
}

#[test]
fn scopes_parse_per_scope_md() {
    assert_eq!(
        parse_scopes("repository:team/app:pull,push").unwrap(),
        [ra("repository", "team/app", &["pull", "push"])]
    );
    assert_eq!(
        parse_scopes("repository:a:pull registry:catalog:*").unwrap(),
        [
            ra("repository", "a", &["pull"]),
            ra("registry", "catalog", &["*"])
        ]
    );
    let plugin = parse_scopes("repository(plugin):x/y:pull,pull").unwrap();
    assert_eq!(plugin[0].class.as_deref(), Some("plugin"));
    assert_eq!(plugin[0].actions, ["pull"]);
    assert_eq!(plugin[0].to_string(), "repository(plugin):x/y:pull");
    assert_eq!(
        parse_scopes("repository:a:").unwrap()[0].actions,
        Vec::<String>::new()
    );
    for (bad, why) in [
        ("repository:app", ScopeError::Malformed),
        ("repository", ScopeError::Malformed),
        ("Repository:app:pull", ScopeError::Malformed),
        ("repository(:app:pull", ScopeError::Malformed),
        ("repository(Plugin):app:pull", ScopeError::Malformed),
        ("repository:App:pull", ScopeError::BadName),
        ("repository:a//b:pull", ScopeError::BadName),
        ("repository:localhost:5000/app:pull", ScopeError::BadName),
        ("repository::pull", ScopeError::BadName),
        ("registry:other:*", ScopeError::BadName),
        ("repository:app:PULL", ScopeError::BadAction),
        ("repository:app:pull;push", ScopeError::BadAction),
    ] {
        assert_eq!(parse_scopes(bad), Err(why), "{bad}");
    }
}

#[test]
fn token_request_query() {
    let q = "account=alice&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=registry.test\
             &scope=repository:lib/base:pull+registry:catalog:*&client_id=docker";
    let req = TokenRequest::parse(q).unwrap();
    assert_eq!(req.service.as_deref(), Some("registry.test"));
    assert_eq!(
        req.scopes,
        [
            ra("repository", "team/app", &["pull", "push"]),
            ra("repository", "lib/base", &["pull"]),
            ra("registry", "catalog", &["*"]),
        ]
    );
    assert_eq!(TokenRequest::parse("").unwrap(), TokenRequest::default());
    assert_eq!(TokenRequest::parse("scope=%zz"), Err(ScopeError::BadQuery));
    assert_eq!(TokenRequest::parse("scope=%ff"), Err(ScopeError::BadQuery));
    let many = vec!["scope=repository:a:pull"; MAX_SCOPES + 1].join("&");
    assert_eq!(TokenRequest::parse(&many), Err(ScopeError::TooMany));
    assert_eq!(
        TokenRequest::parse(&"a".repeat(MAX_QUERY_BYTES + 1)),
        Err(ScopeError::BadQuery)
    );
}

fn acl() -> (Acl, Groups) {
    let rule = |p: &str, who: &[&str], actions: &[&str]| {
        Rule::new(
            p,
            who.iter().map(|s| s.to_string()).collect(),
            actions.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    };
    let acl = Acl::new(vec![
        rule("team/**", &["@team"], &["pull", "push", "delete"]),
        rule("org/app/**", &["@org"], &["pull", "push"]),
        rule("**", &["admin"], &["pull", "push", "delete", "catalog"]),
        rule("public/*", &["anonymous"], &["pull"]),
        rule("**", &["authenticated"], &["pull"]),
    ]);
    let groups = Groups::parse("team: alice\n").unwrap();
    (acl, groups)
}

#[test]
fn grant_is_the_intersection() {
    let (acl, groups) = acl();
    let alice = Identity::User("alice");
    let asked = parse_scopes(
        "repository:team/app:pull,push,delete,frobnicate repository:other/app:pull,push \
         registry:catalog:* repository:team/app:pull",
    )
    .unwrap();
    assert_eq!(
        grant(&acl, alice, &groups, &asked),
        [
            ra("repository", "team/app", &["pull", "push", "delete"]),
            ra("repository", "other/app", &["pull"]),
        ]
    );
    // `*` asks for each action; the catalog only for those the rules let.
    let asked = parse_scopes("repository:x/y:* registry:catalog:*").unwrap();
    assert_eq!(
        grant(&acl, Identity::User("admin"), &groups, &asked),
        [
            ra("repository", "x/y", &["pull", "push", "delete"]),
            ra("registry", "catalog", &["*"])
        ]
    );
    assert_eq!(
        grant(&acl, Identity::User("bob"), &groups, &asked),
        [ra("repository", "x/y", &["pull"])]
    );
    // Anonymous: public pulls only; nothing granted is no error.
    let asked = parse_scopes("repository:public/a:pull,push repository:team/app:pull").unwrap();
    assert_eq!(
        grant(&acl, Identity::Anonymous, &groups, &asked),
        [ra("repository", "public/a", &["pull"])]
    );
    assert!(grant(
        &acl,
        Identity::Anonymous,
        &groups,
        &parse_scopes("foo:bar:baz").unwrap()
    )
    .is_empty());
}

#[test]
fn claim_groups_widen_the_grant_for_their_user_only() {
    let (acl, groups) = acl();
    let claimed = vec!["org".to_owned()];
    let m = WithClaimGroups {
        groups: &groups,
        user: "org/app",
        claimed: &claimed,
    };
    let asked = parse_scopes("repository:org/app/web:pull,push repository:org/other:push").unwrap();
    assert_eq!(
        grant(&acl, Identity::User("org/app"), &m, &asked),
        [ra("repository", "org/app/web", &["pull", "push"])]
    );
    assert_eq!(
        grant(&acl, Identity::User("someone"), &m, &asked),
        [ra("repository", "org/app/web", &["pull"])]
    );
}

fn make_issuer(alg: Alg) -> (TokenIssuer, TokenVerifier) {
    let k = key(alg);
    let verifier = TokenVerifier {
        keys: KeySet::from_own_keys([k.verify_key().clone()]).unwrap(),
        issuer: "regproxy".into(),
        service: "registry.test".into(),
        leeway_secs: 60,
    };
    let issuer = TokenIssuer::new(k, "regproxy", "registry.test", Duration::from_secs(300));
    (issuer, verifier)
}

#[test]
fn issue_verify_and_answer() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let (issuer, verifier) = make_issuer(alg);
        let access = [ra("repository", "team/app", &["pull", "push"])];
        let issued = issuer.issue(Some("alice"), &access, NOW).unwrap();
        let got = verifier.verify(issued.token.as_bytes(), NOW + 10).unwrap();
        assert_eq!(got.subject.as_deref(), Some("alice"));
        assert_eq!(got.expires_at, NOW + 300);
        assert_eq!(got.access, access);
        let answer: serde_json::Value = serde_json::from_str(&issued.response_json()).unwrap();
        assert_eq!(answer["token"], issued.token.as_str());
        assert_eq!(answer["access_token"], issued.token.as_str());
        assert_eq!(answer["expires_in"], 300);
        assert_eq!(answer["issued_at"], "2027-01-15T08:00:00Z");
        // The header carries the libtrust kid distribution 2.8 looks up.
        let v = jwt::verify(issued.token.as_bytes(), &verifier.keys).unwrap();
        assert_eq!(
            v.header.kid.as_deref(),
            issuer.key().verify_key().libtrust_kid().as_deref()
        );
        assert_eq!(v.claims["aud"], "registry.test");
        assert_eq!(v.claims["nbf"], NOW);
        let anon = issuer.issue(None, &[], NOW).unwrap();
        let got = verifier.verify(anon.token.as_bytes(), NOW).unwrap();
        assert_eq!((got.subject, got.access), (None, vec![]));
        assert_ne!(
            issuer.issue(None, &[], NOW).unwrap().token,
            anon.token,
            "each token has its own jti"
        );
    }
}

#[test]
fn what_each_request_needs() {
    let token = |entries: Vec<ResourceActions>| AccessToken {
        subject: Some("alice".into()),
        expires_at: NOW,
        access: entries,
    };
    const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
    let pull = token(vec![ra("repository", "app", &["pull"])]);
    let push_only = token(vec![ra("repository", "app", &["push"])]);
    let both = token(vec![ra("repository", "app", &["pull", "push"])]);
    let star = token(vec![ra("repository", "app", &["*"])]);
    let head = target("HEAD", "/v2/app/manifests/latest");
    let put = target("PUT", "/v2/app/manifests/latest");
    let upload = target("POST", "/v2/app/blobs/uploads/");
    let delete = target("DELETE", &format!("/v2/app/manifests/{D}"));
    let mount = target(
        "POST",
        &format!("/v2/app/blobs/uploads/?mount={D}&from=lib/base"),
    );
    assert!(pull.permits(&head) && !pull.permits(&put) && !pull.permits(&upload));
    assert!(!push_only.permits(&head), "push does not imply pull");
    assert!(
        !push_only.permits(&put),
        "writes need pull and push, as the registry checks"
    );
    assert!(both.permits(&put) && both.permits(&upload) && !both.permits(&delete));
    assert!(star.permits(&delete) && star.permits(&put));
    assert!(!both.permits(&mount), "a mount needs pull on its source");
    let mut with_source = both.clone();
    with_source
        .access
        .push(ra("repository", "lib/base", &["pull"]));
    assert!(with_source.permits(&mount));
    // A scope for another repository covers nothing here.
    let other = token(vec![ra("repository", "app2", &["pull", "push"])]);
    assert!(!other.permits(&head));
    let catalog = target("GET", "/v2/_catalog");
    assert!(!both.permits(&catalog));
    assert!(token(vec![ra("registry", "catalog", &["*"])]).permits(&catalog));
    let mut plugin = ra("repository", "app", &["pull"]);
    plugin.class = Some("plugin".into());
    assert!(!token(vec![plugin]).permits(&head));
    assert!(token(vec![]).permits(&target("GET", "/v2/")));
}

#[test]
fn challenges() {
    fn c(method: &str, uri: &str, e: Option<BearerError>) -> String {
        challenge(
            "https://r.test/token",
            "r.test",
            Some(&target(method, uri)),
            e,
        )
    }
    assert_eq!(
        c("PUT", "/v2/team/app/manifests/v1", None),
        r#"Bearer realm="https://r.test/token",service="r.test",scope="repository:team/app:pull,push""#
    );
    assert_eq!(
        c(
            "HEAD",
            "/v2/app/manifests/v1",
            Some(BearerError::InsufficientScope)
        ),
        r#"Bearer realm="https://r.test/token",service="r.test",scope="repository:app:pull",error="insufficient_scope""#
    );
    const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
    assert!(c(
        "POST",
        &format!("/v2/app/blobs/uploads/?mount={D}&from=lib/b"),
        None
    )
    .ends_with(r#"scope="repository:app:pull,push repository:lib/b:pull""#));
    assert!(c("GET", "/v2/_catalog", None).ends_with(r#"scope="registry:catalog:*""#));
    assert_eq!(
        c("GET", "/v2/", Some(BearerError::InvalidToken)),
        r#"Bearer realm="https://r.test/token",service="r.test",error="invalid_token""#
    );
}

/// The forged and broken tokens of the issue's proof list, at the
/// verifier the request path uses.
#[test]
fn forged_tokens_are_refused() {
    let (issuer, verifier) = make_issuer(Alg::Es256);
    let kid = issuer.key().kid().to_owned();
    let claims = |iss: &str, aud: &str, exp: u64, nbf: u64| {
        format!(
            r#"{{"iss":"{iss}","sub":"alice","aud":"{aud}","exp":{exp},"nbf":{nbf},"access":[{{"type":"repository","name":"app","actions":["pull","push"]}}]}}"#
        )
    };
    let good = claims("regproxy", "registry.test", NOW + 300, NOW);
    let header = format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#);
    let v = |t: &str| verifier.verify(t.as_bytes(), NOW);
    v(&signed_by(issuer.key(), &header, &good)).unwrap();
    let jwt_err = |e| Err(TokenError::Jwt(e));
    let none = forge(
        &format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
        &good,
        |_| vec![],
    );
    assert_eq!(v(&none), jwt_err(JwtError::AlgNone));
    let spki = issuer.key().verify_key().spki_der().unwrap();
    let hs = forge(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &good, |m| {
        hs256(&spki, m)
    });
    assert_eq!(v(&hs), jwt_err(JwtError::AlgHmac));
    let unknown = signed_by(issuer.key(), r#"{"alg":"ES256","kid":"NOPE"}"#, &good);
    assert_eq!(v(&unknown), jwt_err(JwtError::UnknownKid));
    let expired = claims("regproxy", "registry.test", NOW - 61, NOW - 400);
    assert_eq!(
        v(&signed_by(issuer.key(), &header, &expired)),
        jwt_err(JwtError::Expired)
    );
    let early = claims("regproxy", "registry.test", NOW + 900, NOW + 300);
    assert_eq!(
        v(&signed_by(issuer.key(), &header, &early)),
        jwt_err(JwtError::NotYetValid)
    );
    let aud = claims("regproxy", "other.test", NOW + 300, NOW);
    assert_eq!(
        v(&signed_by(issuer.key(), &header, &aud)),
        jwt_err(JwtError::WrongAudience)
    );
    let iss = claims("someone", "registry.test", NOW + 300, NOW);
    assert_eq!(
        v(&signed_by(issuer.key(), &header, &iss)),
        jwt_err(JwtError::WrongIssuer)
    );
    let token = signed_by(issuer.key(), &header, &good);
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let (h, _) = signed.split_once('.').unwrap();
    let changed = claims("regproxy", "registry.test", NOW + 300, NOW).replace("\"app\"", "\"apq\"");
    let changed = format!("{h}.{}.{sig}", crate::auth::testkeys::b64(changed));
    assert_eq!(v(&changed), jwt_err(JwtError::BadSignature));
    let huge = format!("{h}.{}.{sig}", "A".repeat(1 << 20));
    assert_eq!(v(&huge), jwt_err(JwtError::TooLong));
    // A second, untrusted signer using its own (valid-looking) kid.
    let (stranger, _) = make_issuer(Alg::Es256);
    let t = stranger
        .issue(Some("alice"), &[ra("repository", "app", &["pull"])], NOW)
        .unwrap();
    assert_eq!(v(&t.token), jwt_err(JwtError::UnknownKid));
    let bad_access =
        r#"{"iss":"regproxy","aud":"registry.test","exp":1900000000,"access":{"type":"x"}}"#;
    assert_eq!(
        v(&signed_by(issuer.key(), &header, bad_access)),
        Err(TokenError::BadAccess)
    );
}
