//! The registry's Bearer token flow, the pure half: distribution's
//! `docs/content/spec/auth/token.md`, `jwt.md` and `scope.md`.
//!
//! Pipeline role, two places:
//! - `GET /token`: [`TokenRequest::parse`] reads the query (`POST /token`:
//!   [`PasswordGrant::parse`] reads the OAuth 2 form),
//!   [`grant`] intersects the requested scopes with what `auth::acl`
//!   allows the (already authenticated) identity, and
//!   [`TokenIssuer::issue`] signs the claims and writes the JSON answer.
//! - every other request with `Authorization: Bearer`: [`TokenVerifier`]
//!   checks the token (`auth::jwt`), and [`AccessToken::permits`] checks
//!   its `access` claims against the request's needs; a refusal carries
//!   [`challenge`]'s `WWW-Authenticate` value.
//!
//! Semantics, as distribution's registry (2.8, `registry/handlers/app.go`)
//! checks its own tokens, so that a token regproxy accepts is one the
//! registry behind it would accept too:
//! - `GET`/`HEAD` (a manifest HEAD included) need `pull`; writes (`POST`,
//!   `PUT`, `PATCH`: every upload request, a manifest PUT) need `pull` AND
//!   `push` — push never implies pull, a token must say both; `DELETE`
//!   needs `delete`. regproxy's [`Action::Push`] stands for all upload
//!   requests, so it needs both; the one difference is an upload's status
//!   (`GET …/blobs/uploads/U`), which the registry lets `pull` alone do and
//!   which only a client in mid-push, holding a push token, ever asks.
//! - a blob mount needs `pull` on its source too; the catalog needs
//!   `registry:catalog:*`; `/v2/` needs any valid token.
//! - an action `*` grants every action (distribution's `actionSet`).
//! - entries with a resource class (`repository(plugin):…`) are granted
//!   and issued as asked, but never satisfy a request, since the
//!   registry's requests name no class.
//! - a partial grant is not an error: what the rules refuse is left out,
//!   and a scope granted nothing is left out whole.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::acl::{Acl, Identity};
use crate::auth::groups::Membership;
use crate::auth::jwt::{self, Expect, JwtError, KeyError, KeySet, SigningKey};
use crate::route::{is_repository_name, Action, Target};

/// Most scopes one `/token` request may ask for: docker asks one or two,
/// a mount three.
pub const MAX_SCOPES: usize = 32;
/// Longest query `/token` reads.
pub const MAX_QUERY_BYTES: usize = 8192;

/// One `access` entry of a token, and one requested scope
/// (`type[(class)]:name:action,…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub name: String,
    pub actions: Vec<String>,
}

impl fmt::Display for ResourceActions {
    /// The scope form, `repository:app:pull,push`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}:{}", self.name, self.actions.join(","))
    }
}

/// Why a `/token` request was refused (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    /// Not `type[(class)]:name:actions`, or a type or class outside `[a-z0-9]+`.
    Malformed,
    /// A repository name outside the route grammar, or a registry
    /// resource other than `catalog`.
    BadName,
    /// An action outside `[a-z]*` or `*`.
    BadAction,
    /// More than [`MAX_SCOPES`] scopes.
    TooMany,
    /// A query over [`MAX_QUERY_BYTES`], a bad percent escape, or not UTF-8.
    BadQuery,
}

impl ScopeError {
    /// What a 400 tells the client.
    pub fn reason(self) -> &'static str {
        match self {
            ScopeError::Malformed => "scope is not type:name:actions",
            ScopeError::BadName => "scope names no valid repository (or registry:catalog)",
            ScopeError::BadAction => "scope has an action outside [a-z]* and *",
            ScopeError::TooMany => "too many scopes",
            ScopeError::BadQuery => "token request query is too long or badly escaped",
        }
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ScopeError {}

fn is_lower_alnum_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Parses one `scope` parameter: one or more scopes separated by spaces.
pub fn parse_scopes(param: &str) -> Result<Vec<ResourceActions>, ScopeError> {
    param
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(parse_scope)
        .collect()
}

/// One scope. The name is what lies between the first and the last ':'
/// (scope.md lets a name hold a `host:port`, which the route grammar then
/// refuses).
fn parse_scope(scope: &str) -> Result<ResourceActions, ScopeError> {
    let (kind, rest) = scope.split_once(':').ok_or(ScopeError::Malformed)?;
    let (name, actions) = rest.rsplit_once(':').ok_or(ScopeError::Malformed)?;
    let (kind, class) = match kind.split_once('(') {
        None => (kind, None),
        Some((kind, class)) => {
            let class = class.strip_suffix(')').ok_or(ScopeError::Malformed)?;
            if !is_lower_alnum_word(class) {
                return Err(ScopeError::Malformed);
            }
            (kind, Some(class.to_owned()))
        }
    };
    if !is_lower_alnum_word(kind) {
        return Err(ScopeError::Malformed);
    }
    let name_ok = match kind {
        "repository" => is_repository_name(name),
        "registry" => name == "catalog",
        // Other types are granted nothing, but their names must not be
        // able to smuggle separators into logs.
        _ => !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"'),
    };
    if !name_ok {
        return Err(ScopeError::BadName);
    }
    let mut list = Vec::new();
    for action in actions.split(',') {
        if !(action == "*" || action.bytes().all(|b| b.is_ascii_lowercase())) {
            return Err(ScopeError::BadAction);
        }
        if !action.is_empty() && !list.iter().any(|a| a == action) {
            list.push(action.to_owned());
        }
    }
    Ok(ResourceActions {
        kind: kind.to_owned(),
        class,
        name: name.to_owned(),
        actions: list,
    })
}

/// The rule action a repository scope action names; `None` for actions
/// regproxy does not know (granted nothing).
fn repository_action(action: &str) -> Option<Action> {
    match action {
        "pull" => Some(Action::Pull),
        "push" => Some(Action::Push),
        "delete" => Some(Action::Delete),
        _ => None,
    }
}

/// The grant for `requested`: each scope's actions that `acl` allows `id`
/// (with `groups`), in the order pull, push, delete; `*` on a repository
/// asks for each of them. `registry:catalog:*` is granted as `*` when the
/// catalog is allowed. Scopes on the same resource are merged; scopes
/// granted nothing are left out.
pub fn grant<M: Membership + ?Sized>(
    acl: &Acl,
    id: Identity<'_>,
    groups: &M,
    requested: &[ResourceActions],
) -> Vec<ResourceActions> {
    let mut out: Vec<ResourceActions> = Vec::new();
    for scope in requested {
        let granted: Vec<String> = match scope.kind.as_str() {
            "repository" => {
                let asked: BTreeSet<Action> = if scope.actions.iter().any(|a| a == "*") {
                    [Action::Pull, Action::Push, Action::Delete].into()
                } else {
                    scope
                        .actions
                        .iter()
                        .filter_map(|a| repository_action(a))
                        .collect()
                };
                asked
                    .into_iter()
                    .filter(|&a| acl.allows(id, groups, Some(&scope.name), a))
                    .map(|a| a.as_str().to_owned())
                    .collect()
            }
            "registry" if scope.name == "catalog" && scope.actions.iter().any(|a| a == "*") => {
                if acl.allows(id, groups, None, Action::Catalog) {
                    vec!["*".to_owned()]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        if granted.is_empty() {
            continue;
        }
        let same = |e: &&mut ResourceActions| {
            e.kind == scope.kind && e.class == scope.class && e.name == scope.name
        };
        match out.iter_mut().find(same) {
            Some(entry) => {
                for a in granted {
                    if !entry.actions.contains(&a) {
                        entry.actions.push(a);
                    }
                }
            }
            None => out.push(ResourceActions {
                actions: granted,
                ..scope.clone()
            }),
        }
    }
    out
}

/// Issues regproxy's tokens.
#[derive(Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    service: String,
    lifetime_secs: u64,
}

/// A signed token and what the `/token` answer says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
}

impl IssuedToken {
    /// The `/token` answer (token.md): `token` and its OAuth 2 alias
    /// `access_token`, `expires_in` in seconds, `issued_at` in RFC 3339.
    pub fn response_json(&self) -> String {
        let issued_at = UNIX_EPOCH + Duration::from_secs(self.issued_at);
        serde_json::json!({
            "token": self.token,
            "access_token": self.token,
            "expires_in": self.expires_in,
            "issued_at": humantime::format_rfc3339_seconds(issued_at).to_string(),
        })
        .to_string()
    }
}

impl TokenIssuer {
    /// `service` is the tokens' `aud` and the challenge's `service=`.
    /// Lifetimes under a second are taken as one second.
    pub fn new(key: SigningKey, issuer: &str, service: &str, lifetime: Duration) -> TokenIssuer {
        TokenIssuer {
            key,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            lifetime_secs: lifetime.as_secs().max(1),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a token for `subject` (`None`: anonymous, written as an empty
    /// `sub` as distribution's token servers do) granting `access`, valid
    /// from `now` (seconds since the epoch) for the lifetime. Claims: `iss`,
    /// `sub`, `aud` (one string, which registry 2.7 needs), `exp`, `nbf`,
    /// `iat`, a random `jti`, `access`.
    pub fn issue(
        &self,
        subject: Option<&str>,
        access: &[ResourceActions],
        now: u64,
    ) -> Result<IssuedToken, KeyError> {
        let mut jti = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| KeyError::Random)?;
        let exp = now.saturating_add(self.lifetime_secs);
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.as_str().into());
        claims.insert("sub".into(), subject.unwrap_or("").into());
        claims.insert("aud".into(), self.service.as_str().into());
        claims.insert("exp".into(), exp.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("iat".into(), now.into());
        claims.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
        let access = serde_json::to_value(access).unwrap_or(Value::Array(Vec::new()));
        claims.insert("access".into(), access);
        Ok(IssuedToken {
            token: jwt::sign(&self.key, &claims)?,
            expires_in: self.lifetime_secs,
            issued_at: now,
        })
    }
}

/// Why a Bearer token was refused: 401 with the challenge and
/// `error="invalid_token"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Jwt(JwtError),
    /// `access` is not a list of `{type, name, actions}` entries.
    BadAccess,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Jwt(e) => e.fmt(f),
            TokenError::BadAccess => f.write_str("token access claim is malformed"),
        }
    }
}

impl std::error::Error for TokenError {}

impl From<JwtError> for TokenError {
    fn from(e: JwtError) -> Self {
        TokenError::Jwt(e)
    }
}

/// Verifies regproxy's own tokens: the current signing key's public half
/// and any retired keys still trusted ([`KeySet::from_own_keys`]).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    pub keys: KeySet,
    pub issuer: String,
    /// The expected `aud`: the configured service.
    pub service: String,
    pub leeway_secs: u64,
}

/// A verified token: what the proxy caches (until `expires_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// `None` for an empty or missing `sub`: an anonymous token.
    pub subject: Option<String>,
    pub expires_at: u64,
    pub access: Vec<ResourceActions>,
}

impl TokenVerifier {
    /// Verifies the signature, the times, `iss` and `aud`, and reads the
    /// `access` claim (missing: nothing granted).
    pub fn verify(&self, token: &[u8], now: u64) -> Result<AccessToken, TokenError> {
        let verified = jwt::verify(token, &self.keys)?;
        let expect = Expect {
            issuer: &self.issuer,
            audience: &self.service,
            leeway_secs: self.leeway_secs,
            now,
        };
        let registered = jwt::check_claims(&verified.claims, &expect)?;
        let access = match verified.claims.get("access") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => Vec::<ResourceActions>::deserialize(v).map_err(|_| TokenError::BadAccess)?,
        };
        Ok(AccessToken {
            subject: registered.sub.filter(|s| !s.is_empty()),
            expires_at: registered.exp,
            access,
        })
    }
}

/// The scope actions a request's (repository, action) needs, as the
/// registry asks them (see the module docs).
fn scope_actions(action: Action) -> &'static [&'static str] {
    match action {
        Action::Pull => &["pull"],
        Action::Push => &["pull", "push"],
        Action::Delete => &["delete"],
        Action::Catalog => &["*"],
    }
}

impl AccessToken {
    fn has(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|e| {
            e.kind == kind
                && e.class.is_none()
                && e.name == name
                && e.actions.iter().any(|a| a == action || a == "*")
        })
    }

    /// Whether the token's `access` claims cover every (repository,
    /// action) `target` needs. `/v2/` needs nothing beyond a valid token.
    pub fn permits(&self, target: &Target) -> bool {
        target.needs().all(|(repository, action)| match repository {
            Some(name) => scope_actions(action)
                .iter()
                .all(|a| self.has("repository", name, a)),
            None => self.has("registry", "catalog", "*"),
        })
    }
}

/// The scope a request needs, in challenge form: `repository:app:pull,push`,
/// a mount's source after a space, `registry:catalog:*`; `None` for `/v2/`.
pub fn scope_for(target: &Target) -> Option<String> {
    let mut scopes: Vec<String> = Vec::new();
    for (repository, action) in target.needs() {
        scopes.push(match repository {
            Some(name) => format!("repository:{name}:{}", scope_actions(action).join(",")),
            None => "registry:catalog:*".to_owned(),
        });
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// The Basic challenge (RFC 7617): what a 401 carries with `scheme =
/// "basic"`, and what `/token` answers wrong credentials with. The realm is
/// validated at config load.
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm=\"{realm}\"")
}

/// The `error=` of a Bearer challenge (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The token was refused ([`TokenError`]).
    InvalidToken,
    /// The token is valid but does not cover the request: still a 401, as
    /// distribution answers it, so clients fetch a token with the scope.
    InsufficientScope,
}

/// The `WWW-Authenticate` value for a refused request:
/// `Bearer realm="…",service="…",scope="…"` (and `error="…"` when a token
/// was sent). `realm` and `service` come validated from the config
/// (no quotes, backslashes or controls), and scope names from the route
/// grammar, so nothing needs escaping.
pub fn challenge(
    realm: &str,
    service: &str,
    target: Option<&Target>,
    error: Option<BearerError>,
) -> String {
    let mut out = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(scope) = target.and_then(scope_for) {
        out.push_str(&format!(",scope=\"{scope}\""));
    }
    match error {
        None => {}
        Some(BearerError::InvalidToken) => out.push_str(",error=\"invalid_token\""),
        Some(BearerError::InsufficientScope) => out.push_str(",error=\"insufficient_scope\""),
    }
    out
}

mod request;

pub use request::{default_realm, GrantError, PasswordGrant, TokenRequest};

#[cfg(test)]
mod tests;
