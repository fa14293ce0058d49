use std::path::Path;

use super::super::{Config, ConfigError};
use super::*;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in [
        "users",
        "token.key",
        "old.pub",
        "github-jwks.json",
        "ca.pem",
    ] {
        std::fs::write(dir.path().join(f), "").expect("write");
    }
    dir
}

const HEAD: &str = r#"
listen = "127.0.0.1:5043"
[upstream]
servers = ["127.0.0.1:5000"]
[auth]
htpasswd = "users"
"#;

/// The block of the issue's "configuration users will write", as is.
const ISSUE: &str = r#"
scheme = "bearer"
[auth.token]
signing_key = "token.key"
issuer = "regproxy"
service = "registry.example.com"
lifetime = "5m"
[[auth.oidc]]
issuer = "https://token.actions.githubusercontent.com"
audience = "regproxy"
jwks = "github-jwks.json"
user = "{repository}"
groups = ["{repository_owner}"]
"#;

fn parse(dir: &Path, auth: &str) -> Result<Config, ConfigError> {
    super::super::tests::parse(dir, &format!("{HEAD}{auth}"))
}

fn err(dir: &Path, auth: &str) -> String {
    parse(dir, auth).expect_err("invalid").to_string()
}

#[test]
fn the_issues_configuration_parses() {
    let dir = fixture();
    let c = parse(dir.path(), ISSUE).expect("valid").auth;
    assert_eq!(c.scheme, AuthScheme::Bearer);
    let t = c.token.expect("token table");
    assert_eq!(t.signing_key, dir.path().join("token.key"));
    assert_eq!(
        (t.issuer.as_str(), t.service.as_str()),
        ("regproxy", "registry.example.com")
    );
    assert_eq!(t.lifetime, Duration::from_secs(300));
    assert_eq!(
        (t.realm, t.leeway, t.verify_keys.len()),
        (None, Duration::from_secs(60), 0)
    );
    let [o] = c.oidc.as_slice() else {
        panic!("one issuer")
    };
    assert_eq!(
        o.provider.issuer,
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(o.provider.audience, "regproxy");
    assert_eq!(o.provider.user.source(), "{repository}");
    assert_eq!(o.provider.groups[0].source(), "{repository_owner}");
    assert_eq!(o.provider.leeway_secs, 60);
    assert_eq!(
        o.jwks,
        JwksSource::File(dir.path().join("github-jwks.json"))
    );
    assert_eq!(o.ca_file, None);
}

#[test]
fn defaults_and_options() {
    let dir = fixture();
    let c = parse(dir.path(), "").expect("valid").auth;
    assert_eq!(
        (c.scheme, c.token.is_none(), c.oidc.len()),
        (AuthScheme::Basic, true, 0)
    );
    let full = r#"
scheme = "bearer"
[auth.token]
signing_key = "token.key"
verify_keys = ["old.pub"]
service = "r.test"
lifetime = "15m"
realm = "https://r.test/token"
leeway = "30s"
[[auth.oidc]]
issuer = "https://gitlab.com"
audience = "https://r.test"
jwks = "https://gitlab.com/oauth/discovery/keys"
ca_file = "ca.pem"
user = "ci-{project_path}"
leeway = "0s"
[[auth.oidc]]
issuer = "https://token.actions.githubusercontent.com"
audience = "regproxy"
jwks = "github-jwks.json"
user = "{repository}"
"#;
    let c = parse(dir.path(), full).expect("valid").auth;
    let t = c.token.expect("token");
    assert_eq!(t.issuer, "regproxy");
    assert_eq!(t.verify_keys, [dir.path().join("old.pub")]);
    assert_eq!(t.lifetime, Duration::from_secs(900));
    assert_eq!(t.realm.as_deref(), Some("https://r.test/token"));
    assert_eq!(t.leeway, Duration::from_secs(30));
    assert_eq!(
        c.oidc[0].jwks,
        JwksSource::Url("https://gitlab.com/oauth/discovery/keys".into())
    );
    assert_eq!(c.oidc[0].provider.leeway_secs, 0);
    assert_eq!(c.oidc[0].ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(c.oidc[1].ca_file, None);
    // OIDC alone, with Basic: tokens as passwords.
    let oidc_only = full
        .split("[[auth.oidc]]")
        .skip(1)
        .collect::<Vec<_>>()
        .join("[[auth.oidc]]");
    let c = parse(dir.path(), &format!("[[auth.oidc]]{oidc_only}"))
        .expect("valid")
        .auth;
    assert_eq!((c.scheme, c.oidc.len()), (AuthScheme::Basic, 2));
}

#[test]
fn located_errors() {
    let dir = fixture();
    let d = dir.path();
    let token = |extra: &str| {
        format!("scheme = \"bearer\"\n[auth.token]\nsigning_key = \"token.key\"\nservice = \"r.test\"\n{extra}")
    };
    let oidc = |extra: &str| {
        format!(
            "[[auth.oidc]]\nissuer = \"https://i.test\"\naudience = \"regproxy\"\njwks = \"github-jwks.json\"\n{extra}"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "scheme = \"bearer\"\n".into(),
            ":7:10:",
            "needs an [auth.token]",
        ),
        ("scheme = \"digest\"\n".into(), ":7:", "unknown variant"),
        (
            token("").replace("scheme = \"bearer\"\n", ""),
            ":7:",
            "only used with auth.scheme",
        ),
        (
            token("").replace("token.key", "nope.key"),
            ":9:",
            "no such file",
        ),
        (
            token("verify_keys = [\"gone.pub\"]"),
            ":11:",
            "verify_keys: no such file",
        ),
        (
            token("").replace("r.test", "r \\\"x"),
            ":10:",
            "service must be",
        ),
        (token("lifetime = \"10s\""), ":11:", "outside 1m to 1day"),
        (
            token("lifetime = \"5 fortnights\""),
            ":11:",
            "invalid duration",
        ),
        (token("leeway = \"1h\""), ":11:", "auth.token.leeway"),
        (
            token("realm = \"r.test/token\""),
            ":11:",
            "http:// or https:// URL",
        ),
        (token("issuer = \"\""), ":11:", "issuer must be"),
        (token("signing_kee = \"x\""), ":11:", "unknown field"),
        (oidc("user = \"{repo\""), ":11:", "'{' without '}'"),
        (
            oidc("user = \"{a}\"\ngroups = [\"ok\", \"{b c}\"]"),
            ":12:",
            "claim name",
        ),
        (
            oidc("user = \"{a}\"").replace("github-jwks.json", "http://i.test/jwks"),
            ":10:",
            "must be https://",
        ),
        (
            oidc("user = \"{a}\"").replace("github-jwks.json", "missing.json"),
            ":10:",
            "no such file",
        ),
        (oidc("").to_owned(), ":7:", "missing field `user`"),
        (
            oidc("user = \"{a}\"\nca_file = \"ca.pem\""),
            ":12:",
            "ca_file is only used with an https:// jwks URL",
        ),
        (
            oidc("user = \"{a}\"\nca_file = \"gone.pem\"")
                .replace("github-jwks.json", "https://i.test/jwks"),
            ":12:",
            "auth.oidc.ca_file: no such file",
        ),
        (
            format!("{}\n{}", oidc("user = \"{a}\""), oidc("user = \"{b}\"")),
            ":12:",
            "configured twice",
        ),
    ];
    for (auth, at, what) in cases {
        let e = err(d, &auth);
        assert!(e.contains(at) && e.contains(what), "{auth}\n=> {e}");
    }
}
