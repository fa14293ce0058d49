//! OIDC identity tokens from CI (GitHub Actions, GitLab CI `id_tokens`,
//! Kubernetes service-account tokens), the pure half: the issuer's JWKS,
//! verifying a token for one configured issuer, and mapping its claims to
//! a user and groups for `auth::acl`.
//!
//! Pipeline role: *authenticate*. A job sends its token as a Basic
//! password (`docker login -u oidc -p "$ID_TOKEN"`) or to `/token`. The
//! proxy picks the [`Provider`] by the token's unverified `iss`
//! ([`select`]), verifies it with that issuer's keys ([`Provider::verify`]),
//! and decides with the mapped [`OidcIdentity`] (its groups through
//! `auth::groups::WithClaimGroups`). Fetching and refreshing the JWKS (on a
//! `kid` miss, [`OidcError::is_kid_miss`]) is the proxy's I/O; this module
//! only parses what it fetched ([`parse_jwks`]).
//!
//! Claim templates (`user = "{repository}"`, `groups = ["ci-{namespace_path}"]`)
//! read string claims only: a claim that is missing, not a string, or
//! empty fails the whole mapping (401), so a rule can never match a
//! half-filled name.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::auth::jwt::{self, Alg, Expect, JsonError, JwtError, KeySet, VerifyKey};

/// Largest JWKS document read; GitHub's and GitLab's are 2–5 KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The usable keys of a JWKS, and why the others were skipped (for a log
/// line; a key regproxy cannot use is not an error).
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    pub keys: KeySet,
    pub skipped: Vec<String>,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksError {
    TooLarge,
    /// Not a JSON object, or one with a duplicate key.
    Json,
    /// No `keys` array.
    NoKeys,
    /// Not one key regproxy can verify with.
    NoUsableKey,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwksError::TooLarge => "JWKS larger than 256 KiB",
            JwksError::Json => "JWKS is not a JSON object (or repeats a key)",
            JwksError::NoKeys => "JWKS has no \"keys\" array",
            JwksError::NoUsableKey => {
                "JWKS has no usable signing key (RSA 2048-8192, EC P-256 or Ed25519)"
            }
        })
    }
}

impl std::error::Error for JwksError {}

/// Parses a JWKS (RFC 7517): RSA (`n`, `e`) for RS256, EC P-256 (`x`, `y`)
/// for ES256, OKP Ed25519 (`x`) for EdDSA. A key with `use` other than
/// `sig`, an `alg` that disagrees with its type, another type or curve, a
/// malformed value or a repeated `kid` is skipped with a reason.
pub fn parse_jwks(json: &[u8]) -> Result<Jwks, JwksError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc = jwt::strict_json_object(json).map_err(|_: JsonError| JwksError::Json)?;
    let Some(Value::Array(list)) = doc.get("keys") else {
        return Err(JwksError::NoKeys);
    };
    let mut out = Jwks::default();
    for (i, jwk) in list.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let added = match jwk.as_object().ok_or("not an object").and_then(jwk_key) {
            Ok(key) => out
                .keys
                .insert(kid.clone(), key)
                .map_err(|_| "its kid is already taken"),
            Err(e) => Err(e),
        };
        if let Err(reason) = added {
            out.skipped.push(format!("key {i} (kid {kid:?}): {reason}"));
        }
    }
    if out.keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(out)
}

fn jwk_key(jwk: &Map<String, Value>) -> Result<VerifyKey, &'static str> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, &'static str> {
        let v = text(name).ok_or("a key parameter is missing or not a string")?;
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| "a key parameter is not base64url")
    };
    if jwk.contains_key("kid") && text("kid").is_none() {
        return Err("kid is not a string");
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("use is not \"sig\""),
    }
    let (key, alg) = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => (
            VerifyKey::rs256(&bytes("n")?, &bytes("e")?).map_err(|_| "RSA key size or exponent")?,
            Alg::Rs256,
        ),
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes");
            }
            let point = [&[4u8][..], &x, &y].concat();
            (
                VerifyKey::es256(&point).map_err(|_| "bad P-256 point")?,
                Alg::Es256,
            )
        }
        (Some("OKP"), Some("Ed25519")) => (
            VerifyKey::ed25519(&bytes("x")?).map_err(|_| "Ed25519 key is not 32 bytes")?,
            Alg::EdDsa,
        ),
        _ => return Err("unsupported key type or curve"),
    };
    match jwk.get("alg") {
        None => Ok(key),
        Some(Value::String(a)) if a == alg.as_str() => Ok(key),
        Some(_) => Err("alg disagrees with the key type"),
    }
}

/// A claim template: literal text and `{claim}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Claim(String),
}

impl Template {
    /// Parses `"ci-{project_path}"`. Claim names are letters, digits, `_`
    /// and `-`; a `{` or `}` outside a placeholder is refused (the error
    /// says what is wrong, for a located config error).
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let open = rest.find(['{', '}']).unwrap_or(rest.len());
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            let Some(after) = rest.strip_prefix('{') else {
                if rest.starts_with('}') {
                    return Err(format!("template {source:?}: '}}' without '{{'"));
                }
                break;
            };
            let Some((name, tail)) = after.split_once('}') else {
                return Err(format!("template {source:?}: '{{' without '}}'"));
            };
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(format!(
                    "template {source:?}: claim name {name:?} is not letters, digits, '_' or '-'"
                ));
            }
            pieces.push(Piece::Claim(name.to_owned()));
            rest = tail;
        }
        if pieces.is_empty() {
            return Err("template is empty".to_owned());
        }
        Ok(Template {
            source: source.to_owned(),
            pieces,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The claims the template reads.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Claim(c) => Some(c.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Fills the template from `claims`: each placeholder's claim must be
    /// a non-empty string.
    pub fn render(&self, claims: &Map<String, Value>) -> Result<String, OidcError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Claim(c) => match claims.get(c) {
                    Some(Value::String(v)) if !v.is_empty() => out.push_str(v),
                    _ => return Err(OidcError::MissingClaim),
                },
            }
        }
        Ok(out)
    }
}

/// One trusted issuer (`[[auth.oidc]]`), without its keys: those are
/// fetched and refreshed apart, and handed to [`Provider::verify`].
#[derive(Debug, Clone)]
pub struct Provider {
    /// Exactly the tokens' `iss`.
    pub issuer: String,
    /// The `aud` the job asked its token for.
    pub audience: String,
    pub leeway_secs: u64,
    pub user: Template,
    pub groups: Vec<Template>,
}

/// Who a verified identity token says the job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub user: String,
    pub groups: Vec<String>,
    /// The token's `exp`: a cached verification must not outlive it.
    pub expires_at: u64,
}

/// Why an identity token was refused; every variant is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcError {
    Jwt(JwtError),
    /// No configured issuer has the token's `iss` (or it has none).
    UntrustedIssuer,
    /// A template's claim is missing, empty or not a string.
    MissingClaim,
    /// A mapped user or group is not a valid name (a ':', whitespace or
    /// control characters; for groups also '@').
    BadName,
}

impl fmt::Display for OidcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OidcError::Jwt(e) => e.fmt(f),
            OidcError::UntrustedIssuer => f.write_str("identity token from an untrusted issuer"),
            OidcError::MissingClaim => {
                f.write_str("identity token lacks a string claim the mapping needs")
            }
            OidcError::BadName => {
                f.write_str("identity token maps to an invalid user or group name")
            }
        }
    }
}

impl std::error::Error for OidcError {}

impl From<JwtError> for OidcError {
    fn from(e: JwtError) -> Self {
        OidcError::Jwt(e)
    }
}

impl OidcError {
    /// Whether the issuer may have rotated its keys: the proxy refetches
    /// the JWKS (rate-limited) and tries once more.
    pub fn is_kid_miss(self) -> bool {
        matches!(
            self,
            OidcError::Jwt(JwtError::UnknownKid | JwtError::MissingKid)
        )
    }
}

/// The provider whose issuer the token claims. The claim is read without
/// verifying anything; it only chooses the keys that then must verify it.
pub fn select<'a>(providers: &'a [Provider], token: &[u8]) -> Result<&'a Provider, OidcError> {
    let peeked = jwt::peek(token)?;
    let iss = peeked.claims.get("iss").and_then(Value::as_str);
    providers
        .iter()
        .find(|p| Some(p.issuer.as_str()) == iss)
        .ok_or(OidcError::UntrustedIssuer)
}

/// A user name as Basic credentials and the rules allow it.
fn valid_user(name: &str) -> bool {
    !name.contains(':') && !name.chars().any(|c| c.is_control()) && name.trim() == name
}

/// A group name as a rule's `@group` allows it.
fn valid_group(name: &str) -> bool {
    !name.contains([':', '@']) && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Provider {
    /// Verifies `token` with `keys` (this issuer's JWKS): signature, `iss`,
    /// `aud`, `exp` (required), `nbf` and `iat`, with the leeway; then maps
    /// the claims to the user and groups.
    pub fn verify(&self, keys: &KeySet, token: &[u8], now: u64) -> Result<OidcIdentity, OidcError> {
        let verified = jwt::verify(token, keys)?;
        let expect = Expect {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway_secs: self.leeway_secs,
            now,
        };
        let registered = jwt::check_claims(&verified.claims, &expect)?;
        let user = self.user.render(&verified.claims)?;
        if !valid_user(&user) {
            return Err(OidcError::BadName);
        }
        let mut groups = Vec::with_capacity(self.groups.len());
        for template in &self.groups {
            let group = template.render(&verified.claims)?;
            if !valid_group(&group) {
                return Err(OidcError::BadName);
            }
            groups.push(group);
        }
        Ok(OidcIdentity {
            user,
            groups,
            expires_at: registered.exp,
        })
    }
}

#[cfg(test)]
mod tests;
