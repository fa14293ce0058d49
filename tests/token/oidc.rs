//! CI identity tokens: a test issuer shaped like GitHub Actions (RS256,
//! JWKS served over HTTPS by a local server whose CA is the table's
//! `ca_file`) and one shaped like GitLab CI (ES256, JWKS in a file).
//! Claim-mapped rules allow exactly what they say, at `/token` (scheme
//! bearer) and as a Basic password (scheme basic); keys rotate without a
//! restart; a JWKS endpoint that hangs or lies does not stall requests
//! whose keys are cached; other issuers get 401.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regproxy_core::auth::jwt::Alg;
use serde_json::Value;

use crate::support::http::{self, Endpoint, RawResponse};
use crate::support::oidc::{github_claims, gitlab_claims, jwks, IssuerKey, JwksServer, Mode};
use crate::support::skopeo::{docker_ref, make_image_dir, skopeo_copy, CopyOpts};
use crate::support::tls::Tls;
use crate::support::token::{
    assert_bearer_401, bearer, claims_of, fetch_token, granted, header_of, token_of, KeyFile,
    StackOpts, TokenStack, SERVICE,
};
use crate::support::wait_for;
use crate::{openssl_or_skip, MIB};

const GITHUB: &str = "https://token.actions.example.test";
const GITLAB: &str = "https://gitlab.example.test";
/// A request whose issuer keys are cached must be answered within this,
/// whatever the JWKS endpoint does (a liveness bound, not a timing test).
const PROMPT: Duration = Duration::from_secs(3);

/// Rules naming the mapped users (`org/app`, `group/app`).
const USER_RULES: &str = r#"
[[access]]
repository = "org/app/**"
who = ["org/app"]
actions = ["pull", "push"]

[[access]]
repository = "group/app/**"
who = ["group/app"]
actions = ["pull", "push"]
"#;

/// Rules naming the mapped groups (`org`, `group`): groups that exist
/// only in the claims.
const GROUP_RULES: &str = r#"
[[access]]
repository = "org/**"
who = ["@org"]
actions = ["pull"]

[[access]]
repository = "group/**"
who = ["@group"]
actions = ["pull"]
"#;

/// The two test issuers and where their keys are published.
struct Issuers {
    dir: tempfile::TempDir,
    tls: Tls,
    github: IssuerKey,
    server: JwksServer,
    gitlab: IssuerKey,
}

impl Issuers {
    fn start() -> Issuers {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::generate(&dir.path().join("jwks-tls"));
        let github = IssuerKey::rsa();
        let server = JwksServer::start(&tls, Mode::Serve(jwks(&[("gh-1", &github)])));
        let gitlab = IssuerKey::p256();
        std::fs::write(
            dir.path().join("gitlab-jwks.json"),
            jwks(&[("gl-1", &gitlab)]),
        )
        .unwrap();
        Issuers {
            dir,
            tls,
            github,
            server,
            gitlab,
        }
    }

    fn gitlab_file(&self) -> PathBuf {
        self.dir.path().join("gitlab-jwks.json")
    }

    /// Both `[[auth.oidc]]` tables.
    fn tables(&self) -> String {
        format!(
            "{}\n{}",
            github_table(&self.server.url(), &self.tls.ca_cert()),
            gitlab_table(&self.gitlab_file())
        )
    }

    fn github_token(&self, repository: &str) -> String {
        self.github
            .token("gh-1", &github_claims(GITHUB, repository))
    }

    fn gitlab_token(&self, project: &str) -> String {
        self.gitlab.token("gl-1", &gitlab_claims(GITLAB, project))
    }
}

fn github_table(url: &str, ca: &Path) -> String {
    format!(
        "[[auth.oidc]]\nissuer = \"{GITHUB}\"\naudience = \"{aud}\"\njwks = \"{url}\"\n\
         ca_file = \"{ca}\"\nuser = \"{{repository}}\"\ngroups = [\"{{repository_owner}}\"]\n",
        aud = crate::support::oidc::AUDIENCE,
        ca = ca.display(),
    )
}

fn gitlab_table(file: &Path) -> String {
    format!(
        "[[auth.oidc]]\nissuer = \"{GITLAB}\"\naudience = \"{aud}\"\njwks = \"{file}\"\n\
         user = \"{{project_path}}\"\ngroups = [\"{{namespace_path}}\"]\n",
        aud = crate::support::oidc::AUDIENCE,
        file = file.display(),
    )
}

fn start(issuers: &Issuers, scheme: &'static str, token_extra: String) -> TokenStack {
    start_with_rules(issuers, scheme, token_extra, USER_RULES.into())
}

fn start_with_rules(
    issuers: &Issuers,
    scheme: &'static str,
    token_extra: String,
    rules: String,
) -> TokenStack {
    TokenStack::start(StackOpts {
        scheme,
        // Tokens refused on purpose, and polls while a rate-limited
        // refetch is due, would trip the per-address failure limit.
        auth_extra: "max_failures = 0".into(),
        oidc: issuers.tables(),
        tail: rules,
        token_extra,
        ..StackOpts::default()
    })
}

/// `/token` with the identity token as the Basic password.
fn token_with(ep: &Endpoint, jwt: &str, scopes: &[&str]) -> RawResponse {
    fetch_token(
        ep,
        SERVICE,
        scopes,
        Some(&http::basic_auth_value("oidc", jwt)),
    )
}

/// `/token` until it answers 200 (keys fetched in the background at
/// start, or refreshed on a kid miss), at most `limit`.
fn token_eventually(ep: &Endpoint, jwt: &str, scopes: &[&str], limit: Duration) -> String {
    let got = wait_for(limit, || {
        let r = token_with(ep, jwt, scopes);
        (r.status == 200).then(|| token_of(&r))
    });
    got.unwrap_or_else(|| {
        panic!(
            "/token never took the token: {:?}",
            token_with(ep, jwt, scopes)
        )
    })
}

fn actions(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

/// A POST opening an upload in `repo`, with Basic `oidc:<jwt>`.
fn basic_upload(ep: &Endpoint, repo: &str, jwt: &str) -> RawResponse {
    let path = format!("/v2/{repo}/blobs/uploads/");
    http::request(ep, "POST", &path, Some(("oidc", jwt)), &[], b"").unwrap()
}

#[test]
fn claim_mapped_rules_allow_exactly_what_they_say() {
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let rules = format!("{USER_RULES}{GROUP_RULES}");
    let s = start_with_rules(&issuers, "bearer", String::new(), rules);
    let ep = s.ep();
    let cases = [
        (
            "github",
            issuers.github_token("org/app"),
            "org/app",
            "org/other",
        ),
        (
            "gitlab",
            issuers.gitlab_token("group/app"),
            "group/app",
            "group/other",
        ),
    ];
    for (shape, jwt, user, sibling) in &cases {
        let mine = format!("repository:{user}/x:pull,push");
        let theirs = format!("repository:{sibling}:pull,push");
        let t = token_eventually(
            &ep,
            jwt,
            &[&mine, &theirs, "repository:elsewhere/x:pull"],
            Duration::from_secs(15),
        );
        let mut got = granted(&t);
        got.sort();
        assert_eq!(
            got,
            [
                (format!("{user}/x"), actions(&["pull", "push"])),
                ((*sibling).to_owned(), actions(&["pull"])),
            ],
            "{shape}: user rule on {user}/**, group rule on the namespace, nothing elsewhere"
        );
        assert_eq!(claims_of(&t)["sub"], Value::from(*user), "{shape}");
        // The token pushes where the rule says, and only there.
        let r = bearer(&ep, "POST", &format!("/v2/{user}/x/blobs/uploads/"), &t);
        assert_eq!(r.status, 202, "{shape} push to {user}/x: {r:?}");
        let r = bearer(&ep, "POST", &format!("/v2/{sibling}/blobs/uploads/"), &t);
        assert_bearer_401(
            &r,
            Some("insufficient_scope"),
            &format!("{shape} push to {sibling}"),
        );
        // `Authorization: Bearer <identity token>` at /token works too.
        let auth = format!("Bearer {jwt}");
        let r = fetch_token(&ep, SERVICE, &[&mine], Some(&auth));
        assert_eq!(
            granted(&token_of(&r)),
            [(format!("{user}/x"), actions(&["pull", "push"]))]
        );
    }

    // A real client with the identity token as its password.
    let image = make_image_dir(&s.path("image"), &[MIB]);
    let push = |repo: &str| {
        let opts = CopyOpts {
            dest_creds: Some(("oidc".into(), cases[0].1.clone())),
            dest_tls_verify: Some(false),
            preserve_digests: true,
            ..CopyOpts::default()
        };
        skopeo_copy(
            &image.reference(),
            &docker_ref(s.proxy.addr(), repo, "v1"),
            &opts,
        )
    };
    push("org/app/skopeo").assert_success();
    assert_eq!(
        s.registry.manifest_layers("org/app/skopeo", "v1"),
        image.layer_digests()
    );
    push("org/other").assert_failure();
}

/// Identity tokens that must not pass, at `/token` (401 with the Basic
/// challenge, as for a wrong password) and as a Basic password on /v2/;
/// nothing reaches the registry.
#[test]
fn untrusted_and_broken_identity_tokens_get_401() {
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let s = start(&issuers, "bearer", String::new());
    let ep = s.ep();
    let control = issuers.github_token("org/app");
    token_eventually(
        &ep,
        &control,
        &["repository:org/app/x:pull"],
        Duration::from_secs(15),
    );
    let scope = ["repository:org/app/x:pull"];
    let untrusted = IssuerKey::p256();
    let mut expired = github_claims(GITHUB, "org/app");
    expired["exp"] = Value::from(expired["iat"].as_u64().unwrap() - 3600);
    expired["iat"] = Value::from(expired["iat"].as_u64().unwrap() - 7200);
    expired["nbf"] = expired["iat"].clone();
    let mut wrong_aud = github_claims(GITHUB, "org/app");
    wrong_aud["aud"] = Value::from("someone-else");
    let mut missing_claim = github_claims(GITHUB, "org/app");
    missing_claim.as_object_mut().unwrap().remove("repository");
    let cases = [
        (
            "a second, untrusted issuer",
            untrusted.token("gh-1", &github_claims("https://issuer.invalid", "org/app")),
        ),
        (
            "our issuer's name, another key under its kid",
            untrusted.token("gh-1", &github_claims(GITHUB, "org/app")),
        ),
        ("expired", issuers.github.token("gh-1", &expired)),
        ("wrong audience", issuers.github.token("gh-1", &wrong_aud)),
        (
            "a claim the mapping needs is missing",
            issuers.github.token("gh-1", &missing_claim),
        ),
    ];
    let before = s.registry.settle(Duration::from_millis(300));
    for (what, jwt) in &cases {
        let r = token_with(&ep, jwt, &scope);
        assert_eq!(r.status, 401, "{what}: {r:?} {}", r.body_text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic ")),
            "{what}: {r:?}"
        );
        let r = basic_upload(&ep, "org/app/x", jwt);
        assert_eq!(r.status, 401, "{what} as a Basic password on /v2/: {r:?}");
    }
    assert_eq!(s.registry.settle(Duration::from_millis(300)), before);
}

/// scheme = "basic": the identity token is the Basic password on /v2/
/// (`docker login -u oidc -p "$ID_TOKEN"`); rules decide; /token is 404.
#[test]
fn identity_token_as_basic_password_with_scheme_basic() {
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let s = start(&issuers, "basic", String::new());
    let ep = s.ep();
    let gh = issuers.github_token("org/app");
    let up = wait_for(Duration::from_secs(15), || {
        let r = http::get(&ep, "/v2/", Some(("oidc", &gh)), &[]).unwrap();
        (r.status == 200).then_some(())
    });
    assert!(
        up.is_some(),
        "GET /v2/ with the GitHub token never answered 200"
    );
    assert_eq!(basic_upload(&ep, "org/app/x", &gh).status, 202);
    let r = basic_upload(&ep, "org/other", &gh);
    http::assert_registry_error(&r, 403, "DENIED", "push outside org/app/**");
    let gl = issuers.gitlab_token("group/app");
    assert_eq!(basic_upload(&ep, "group/app/x", &gl).status, 202);
    http::assert_registry_error(
        &basic_upload(&ep, "org/app/x", &gl),
        403,
        "DENIED",
        "gitlab in org",
    );
    // The Basic challenge, and no token service.
    let r = http::get(&ep, "/v2/", None, &[]).unwrap();
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic ")),
        "{r:?}"
    );
    assert_eq!(
        token_with(&ep, &gh, &["repository:org/app/x:pull"]).status,
        404
    );
    // The access log names the mapped user.
    let line = |l: &str| l.contains("org/app \"POST /v2/org/app/x/blobs/uploads/");
    let found = wait_for(Duration::from_secs(10), || {
        s.proxy.access_log_lines().into_iter().find(|l| line(l))
    });
    assert!(found.is_some(), "{}", s.proxy.access_log_text());
}

/// Three rotations, none with a restart: the issuer's JWKS URL serves a
/// new key (kid miss → refetch), the JWKS file is rewritten (reloaded),
/// regproxy's own signing key is replaced with the old one kept in
/// `verify_keys` (old tokens still work, new ones too).
#[test]
fn keys_rotate_without_a_restart() {
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let dir = tempfile::tempdir().unwrap();
    let retired = KeyFile::generate(&dir.path().join("retired.key"), Alg::Es256);
    let verify = dir.path().join("verify.pem");
    std::fs::write(&verify, retired.public_pem()).unwrap();
    let s = start(
        &issuers,
        "bearer",
        format!("verify_keys = [\"{}\"]\n", verify.display()),
    );
    let ep = s.ep();
    let scope = ["repository:org/app/x:pull"];
    let limit = Duration::from_secs(20);
    token_eventually(&ep, &issuers.github_token("org/app"), &scope, limit);

    // (a) The URL starts serving a second key; a token signed by it.
    let gh2 = IssuerKey::p256();
    issuers.server.set(Mode::Serve(jwks(&[
        ("gh-1", &issuers.github),
        ("gh-2", &gh2),
    ])));
    let hits = issuers.server.hits();
    let t = gh2.token("gh-2", &github_claims(GITHUB, "org/app"));
    token_eventually(&ep, &t, &scope, limit);
    assert!(issuers.server.hits() > hits, "no refetch of the JWKS");

    // (b) The file names a new key only: the new one passes, the old fails.
    let gl_scope = ["repository:group/app/x:pull"];
    token_eventually(&ep, &issuers.gitlab_token("group/app"), &gl_scope, limit);
    let gl2 = IssuerKey::rsa();
    let tmp = issuers.gitlab_file().with_extension("tmp");
    std::fs::write(&tmp, jwks(&[("gl-2", &gl2)])).unwrap();
    std::fs::rename(&tmp, issuers.gitlab_file()).unwrap();
    token_eventually(
        &ep,
        &gl2.token("gl-2", &gitlab_claims(GITLAB, "group/app")),
        &gl_scope,
        limit,
    );
    let old = issuers.gitlab_token("group/app");
    assert_eq!(
        token_with(&ep, &old, &gl_scope).status,
        401,
        "the removed key still verifies"
    );

    // (c) regproxy's own key: the current one retires into verify_keys,
    // a new one signs. SIGHUP for promptness (the mtime poll would do).
    let pull = |t: &str| bearer(&ep, "GET", "/v2/org/app/x/manifests/v1", t).status;
    let t1 = token_of(&token_with(&ep, &issuers.github_token("org/app"), &scope));
    assert_eq!(header_of(&t1)["kid"], s.signing.kid());
    assert_eq!(pull(&t1), 404, "a token of the first key");
    let next = KeyFile::generate(&dir.path().join("next.key"), Alg::Es256);
    std::fs::write(&verify, s.signing.public_pem()).unwrap();
    let tmp = s.signing.path.with_extension("tmp");
    std::fs::write(&tmp, &next.pem).unwrap();
    std::fs::rename(&tmp, &s.signing.path).unwrap();
    crate::support::cmd::signal(s.proxy.pid(), "HUP");
    let t2 = wait_for(limit, || {
        let t = token_of(&token_with(&ep, &issuers.github_token("org/app"), &scope));
        (header_of(&t)["kid"] == next.kid()).then_some(t)
    })
    .expect("regproxy never signed with the new key");
    assert_eq!(
        pull(&t1),
        404,
        "a token of the retired key, now in verify_keys"
    );
    assert_eq!(pull(&t2), 404, "a token of the new key");
    // The key verify_keys named before is no longer trusted.
    let t0 = retired.sign_claims(&KeyFile::claims(crate::support::token::repo_access(
        "org/app/x",
        &["pull"],
    )));
    assert_bearer_401(
        &bearer(&ep, "GET", "/v2/org/app/x/manifests/v1", &t0),
        Some("invalid_token"),
        "a token of the key verify_keys no longer names",
    );
}

/// The JWKS endpoint hangs (accepts, never answers), then lies (garbage):
/// tokens whose keys are cached still get their answer promptly, each one
/// while a refetch is stuck; an unknown kid waits a bounded time, then 401.
#[test]
fn hanging_or_lying_jwks_does_not_stall_cached_keys() {
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let s = start(&issuers, "bearer", String::new());
    let ep = s.ep();
    let scope = ["repository:org/app/x:pull"];
    token_eventually(
        &ep,
        &issuers.github_token("org/app"),
        &scope,
        Duration::from_secs(20),
    );
    let stranger = IssuerKey::p256();

    for mode in [Mode::Hang, Mode::Garbage] {
        let what = format!("{mode:?}").chars().take(8).collect::<String>();
        issuers.server.set(mode);
        // Unknown kids until regproxy refetches (rate-limited): each
        // waits a bounded time and is refused.
        let hits = issuers.server.hits();
        let mut fetched = None;
        for _ in 0..45 {
            let t = stranger.token("gh-unknown", &github_claims(GITHUB, "org/app"));
            let start = Instant::now();
            let r = token_with(&ep, &t, &scope);
            let took = start.elapsed();
            assert_eq!(r.status, 401, "{what}: unknown kid: {r:?}");
            assert!(
                took < Duration::from_secs(10),
                "{what}: unknown kid took {took:?}"
            );
            fetched = wait_for(Duration::from_secs(1), || {
                (issuers.server.hits() > hits).then_some(())
            });
            if fetched.is_some() {
                break;
            }
        }
        assert!(
            fetched.is_some(),
            "{what}: regproxy never refetched the JWKS"
        );
        // A refetch is under way (hanging) or just failed (garbage):
        // fresh tokens under the cached key, each answered promptly.
        for i in 0..5 {
            let jwt = issuers.github_token("org/app");
            let start = Instant::now();
            let r = token_with(&ep, &jwt, &scope);
            let took = start.elapsed();
            assert_eq!(r.status, 200, "{what} #{i}: {r:?}");
            assert!(took < PROMPT, "{what} #{i}: /token took {took:?}");
            let start = Instant::now();
            let r = basic_upload(&ep, "org/app/x", &jwt);
            assert_eq!(r.status, 202, "{what} #{i}: Basic upload {r:?}");
            assert!(
                start.elapsed() < PROMPT,
                "{what} #{i}: upload took {:?}",
                start.elapsed()
            );
        }
    }
    issuers
        .server
        .set(Mode::Serve(jwks(&[("gh-1", &issuers.github)])));
}

/// The harness itself, without regproxy: the JWKS server answers over
/// TLS, and regproxy-core's own verifier takes the test issuer's tokens
/// with the JWKS it serves, so a failure above is the proxy's.
#[test]
fn the_test_issuer_is_what_regproxy_core_accepts() {
    use regproxy_core::auth::oidc::{parse_jwks, Provider, Template};
    if openssl_or_skip().is_none() {
        return;
    }
    let issuers = Issuers::start();
    let port = issuers
        .server
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let ep = Endpoint::tls_named(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        issuers.tls.client_config(),
        "127.0.0.1",
    );
    let r = http::get(&ep, "/jwks", None, &[]).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let provider = |iss: &str, user: &str, group: &str| Provider {
        issuer: iss.to_owned(),
        audience: crate::support::oidc::AUDIENCE.to_owned(),
        leeway_secs: 60,
        user: Template::parse(user).unwrap(),
        groups: vec![Template::parse(group).unwrap()],
    };
    let now = crate::support::token::now();
    let served = parse_jwks(&r.body).unwrap();
    let id = provider(GITHUB, "{repository}", "{repository_owner}")
        .verify(
            &served.keys,
            issuers.github_token("org/app").as_bytes(),
            now,
        )
        .unwrap();
    assert_eq!(
        (id.user.as_str(), id.groups.as_slice()),
        ("org/app", &["org".to_owned()][..])
    );
    let file = parse_jwks(&std::fs::read(issuers.gitlab_file()).unwrap()).unwrap();
    let id = provider(GITLAB, "{project_path}", "{namespace_path}")
        .verify(
            &file.keys,
            issuers.gitlab_token("group/app").as_bytes(),
            now,
        )
        .unwrap();
    assert_eq!(
        (id.user.as_str(), id.groups.as_slice()),
        ("group/app", &["group".to_owned()][..])
    );
    issuers.server.set(Mode::Garbage);
    let r = http::get(&ep, "/jwks", None, &[]).unwrap();
    assert!(parse_jwks(&r.body).is_err());
    assert_eq!(issuers.server.hits(), 2);
}
