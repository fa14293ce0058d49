//! Bearer tokens as docker uses them (distribution's `token.md`), for
//! `--token-auth` and the `token` scenario.
//!
//! Before the run, `GET /v2/` without credentials must answer 401 with
//! `WWW-Authenticate: Bearer realm="…",service="…"` ([`parse_challenge`]).
//! Then each client keeps a [`TokenCache`]: on its first request for a
//! repository it asks the realm for
//! `?service=S&scope=repository:<repo>:pull,push` with its Basic
//! credentials, and sends `Authorization: Bearer <token>` on every request
//! for that repository until the token's `expires_in` is near
//! ([`refresh_margin`]); `GET /v2/` uses a token fetched without a scope,
//! as `docker login` does. A 401 on a request that carried a token drops
//! it, and the request is sent once more with a fresh one (the caller,
//! `registry::Ctx`, does that).
//!
//! The realm's path (and query) is used against the target regbench was
//! given, whatever host the realm names: regbench talks to one server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::Failure;

/// The `expires_in` distribution's spec tells clients to assume when the
/// token server leaves it out.
const DEFAULT_EXPIRES_IN: u64 = 60;
/// Longest a token is kept, whatever `expires_in` says.
const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// Where tokens come from, learnt from the target's challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    /// Origin-form path of the realm, query included if it had one.
    pub path: String,
    pub service: String,
    /// `Basic …` for `/token`, when credentials were given; without them
    /// tokens are asked for anonymously.
    pub basic: Option<String>,
}

impl Realm {
    /// The origin-form URL of a token request for `scope` (none: a token
    /// for `/v2/` only).
    pub fn token_path(&self, scope: Option<&str>) -> String {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        let mut out = format!("{}{sep}service={}", self.path, form_encode(&self.service));
        if let Some(scope) = scope {
            out.push_str("&scope=");
            out.push_str(&form_encode(scope));
        }
        out
    }
}

/// The scope regbench asks for a repository: always `pull,push`, so one
/// token per repository serves every request a CI job makes there.
pub fn scope_for(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// Percent-encodes all but RFC 3986's unreserved bytes, as Go's
/// `url.QueryEscape` does for ':', '/' and ','.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `realm` and `service` of a `Bearer` challenge (RFC 6750 §3, quoted
/// values); `None` for a Basic or malformed challenge.
pub fn parse_challenge(value: &str) -> Option<(String, String)> {
    let rest = value.trim_start();
    let scheme_len = rest.find(' ')?;
    if !rest[..scheme_len].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut rest = rest[scheme_len..].trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let end = after.find('"')?;
        let value = after[..end].to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some((realm?, service.unwrap_or_default()))
}

/// The origin-form path of an absolute realm URL (or of a path).
pub fn realm_path(realm: &str) -> Option<String> {
    let path = if realm.starts_with('/') {
        realm
    } else {
        let rest = realm
            .strip_prefix("http://")
            .or_else(|| realm.strip_prefix("https://"))?;
        &rest[rest.find('/')?..]
    };
    path.bytes()
        .all(|b| b.is_ascii_graphic())
        .then(|| path.to_owned())
}

/// A `/token` answer: the token and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub token: String,
    pub expires_in: Duration,
}

/// Reads a `/token` answer: `token` (or its OAuth 2 alias
/// `access_token`) and `expires_in` (60 s when missing).
pub fn parse_answer(body: &[u8]) -> Result<Answer, Failure> {
    let bad = |why: &str| Failure::new("token", format!("/token answer: {why}"));
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
    let token = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| bad("no usable token"))?;
    let expires_in = match v.get("expires_in") {
        None => DEFAULT_EXPIRES_IN,
        Some(e) => e
            .as_u64()
            .ok_or_else(|| bad("expires_in is not a number"))?,
    };
    Ok(Answer {
        token: token.to_owned(),
        expires_in: Duration::from_secs(expires_in),
    })
}

/// How long before its expiry a token is replaced: a tenth of its life,
/// at least a second, so a request never leaves with a token about to
/// lapse on the way.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).max(Duration::from_secs(1))
}

#[derive(Debug, Clone)]
struct Held {
    header: String,
    replace_at: Instant,
}

/// One client's tokens, by repository (`None`: the scope-less token for
/// `/v2/`).
#[derive(Debug, Default)]
pub struct TokenCache {
    held: HashMap<Option<String>, Held>,
}

impl TokenCache {
    /// The `Authorization` value for `key`, if a token is held and not
    /// yet due for replacement at `now`.
    pub fn get(&self, key: &Option<String>, now: Instant) -> Option<&str> {
        self.held
            .get(key)
            .filter(|h| now < h.replace_at)
            .map(|h| h.header.as_str())
    }

    /// Keeps `answer`, fetched at `fetched`, for `key`; returns its header.
    pub fn put(&mut self, key: Option<String>, answer: &Answer, fetched: Instant) -> String {
        // Capped, so a server's huge expires_in cannot overflow the clock.
        let life = answer.expires_in.min(MAX_HOLD);
        let replace_at = fetched + life.saturating_sub(refresh_margin(life));
        let header = format!("Bearer {}", answer.token);
        self.held.insert(
            key,
            Held {
                header: header.clone(),
                replace_at,
            },
        );
        header
    }

    /// Drops the token for `key` (the server refused it).
    pub fn forget(&mut self, key: &Option<String>) {
        self.held.remove(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let v = r#"Bearer realm="https://localhost:5043/token",service="reg.example",scope="repository:a/b:pull""#;
        assert_eq!(
            parse_challenge(v),
            Some(("https://localhost:5043/token".into(), "reg.example".into()))
        );
        let v = r#"bearer realm="/token", error="invalid_token""#;
        assert_eq!(parse_challenge(v), Some(("/token".into(), String::new())));
        for bad in [
            r#"Basic realm="regproxy""#,
            "Bearer",
            r#"Bearer service="s""#,
            r#"Bearer realm=unquoted"#,
            r#"Bearer realm="open"#,
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad}");
        }
        assert_eq!(realm_path("https://h:1/token").as_deref(), Some("/token"));
        assert_eq!(
            realm_path("http://h/auth?x=1").as_deref(),
            Some("/auth?x=1")
        );
        assert_eq!(realm_path("/token").as_deref(), Some("/token"));
        assert_eq!(realm_path("https://h"), None);
        assert_eq!(realm_path("ftp://h/token"), None);
    }

    #[test]
    fn token_requests_are_form_encoded() {
        let realm = Realm {
            path: "/token".into(),
            service: "reg example".into(),
            basic: None,
        };
        assert_eq!(realm.token_path(None), "/token?service=reg%20example");
        assert_eq!(
            realm.token_path(Some(&scope_for("team/app"))),
            "/token?service=reg%20example&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
        );
        let realm = Realm {
            path: "/auth?x=1".into(),
            ..realm
        };
        assert!(realm.token_path(None).starts_with("/auth?x=1&service="));
    }

    #[test]
    fn answers() {
        let a = parse_answer(br#"{"token":"a.b.c","access_token":"a.b.c","expires_in":300,"issued_at":"2026-12-08T00:00:00Z"}"#).unwrap();
        assert_eq!(
            a,
            Answer {
                token: "a.b.c".into(),
                expires_in: Duration::from_secs(300)
            }
        );
        let a = parse_answer(br#"{"access_token":"x.y.z"}"#).unwrap();
        assert_eq!(a.token, "x.y.z");
        assert_eq!(a.expires_in, Duration::from_secs(60));
        for bad in [
            &b"nope"[..],
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            br#"{"token":"t","expires_in":"5"}"#,
            br#"{}"#,
        ] {
            assert_eq!(parse_answer(bad).unwrap_err().kind, "token");
        }
    }

    #[test]
    fn tokens_are_replaced_before_they_expire() {
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        let mut cache = TokenCache::default();
        let t0 = Instant::now();
        let key = Some("a/b".to_owned());
        assert_eq!(cache.get(&key, t0), None);
        let answer = Answer {
            token: "tok".into(),
            expires_in: Duration::from_secs(300),
        };
        assert_eq!(cache.put(key.clone(), &answer, t0), "Bearer tok");
        assert_eq!(
            cache.get(&key, t0 + Duration::from_secs(269)),
            Some("Bearer tok")
        );
        assert_eq!(cache.get(&key, t0 + Duration::from_secs(270)), None);
        assert_eq!(cache.get(&None, t0), None);
        let huge = Answer {
            token: "big".into(),
            expires_in: Duration::from_secs(u64::MAX),
        };
        cache.put(None, &huge, t0);
        assert_eq!(
            cache.get(&None, t0 + Duration::from_secs(3600)),
            Some("Bearer big")
        );
        cache.forget(&key);
        assert_eq!(cache.get(&key, t0), None);
    }
}
