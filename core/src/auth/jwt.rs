//! JSON Web Tokens (RFC 7519) in JWS compact form (RFC 7515), verified
//! strictly with ring, and signed for the tokens regproxy issues.
//!
//! Pipeline role: *authenticate*, for `Authorization: Bearer` (regproxy's
//! own tokens, `auth::token`) and for CI identity tokens (`auth::oidc`).
//! Pure: the caller hands in the time; the verified result is what the
//! proxy caches.
//!
//! Algorithm confusion is impossible by construction: every [`VerifyKey`]
//! carries the one [`Alg`] its configuration fixed, the token's `alg`
//! header must equal it, and there is no code path for `none` or HMAC at
//! all. Refused, each with its own [`JwtError`] for the logs (all of them
//! are a 401): tokens over [`MAX_TOKEN_BYTES`], anything but exactly three
//! segments, non-canonical base64url (padding, `+`, `/`, stray bits),
//! JSON with duplicate keys or trailing data, `alg: none`, `HS*`, any
//! `crit` header, a `kid` the key set does not hold (or none where the set
//! needs one), a bad signature; then, in [`check_claims`], a missing or
//! mistyped `exp`, `nbf` in the future, `iat` in the future, and `iss` or
//! `aud` other than expected. The signature is checked before the payload
//! is even decoded.

mod json;
mod keys;

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

pub use keys::{libtrust_key_id, Alg, KeyError, KeySet, SigningKey, VerifyKey};

pub(crate) use json::{object as strict_json_object, JsonError};

/// Longest token accepted, checked before anything is decoded: regproxy's
/// own tokens are well under 2 KiB, GitHub's and GitLab's about 1.5 KiB.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Default clock leeway for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Which segment of a token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

/// Why a token was refused. Every variant is a 401; they differ for the
/// logs, and carry nothing from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
    /// Not three '.'-separated segments with a non-empty header and payload.
    NotCompact,
    /// A segment that is not canonical unpadded base64url.
    Base64(Part),
    /// A segment that is not JSON, or has data after it.
    Json(Part),
    /// A JSON object with a key twice.
    DuplicateKey(Part),
    /// JSON, but not an object.
    NotObject(Part),
    /// `alg` missing or not a string, or `kid` not a string.
    BadHeader,
    /// `alg: none` (any case).
    AlgNone,
    /// `alg: HS256` and kin: no key here is a shared secret.
    AlgHmac,
    /// Some other algorithm regproxy does not verify.
    AlgUnknown,
    /// A `crit` header: no extension is understood, so none may be required.
    Crit,
    /// No `kid`, and the key set has more than one key or keyed ones.
    MissingKid,
    /// A `kid` the key set does not hold.
    UnknownKid,
    /// `alg` differs from the algorithm the named key is fixed to.
    AlgMismatch,
    /// The signature does not verify.
    BadSignature,
    /// No `exp` claim.
    MissingExp,
    /// A registered claim of the wrong JSON type (named).
    BadClaim(&'static str),
    /// `exp` passed, beyond the leeway.
    Expired,
    /// `nbf` still ahead, beyond the leeway.
    NotYetValid,
    /// `iat` ahead, beyond the leeway.
    IssuedInFuture,
    /// `iss` missing or other than expected.
    WrongIssuer,
    /// `aud` missing or not naming the expected audience.
    WrongAudience,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: &Part| match p {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        };
        match self {
            JwtError::TooLong => write!(f, "token longer than {MAX_TOKEN_BYTES} bytes"),
            JwtError::NotCompact => f.write_str("token is not header.payload.signature"),
            JwtError::Base64(p) => write!(f, "token {} is not canonical base64url", part(p)),
            JwtError::Json(p) => write!(f, "token {} is not valid JSON", part(p)),
            JwtError::DuplicateKey(p) => write!(f, "token {} repeats a JSON key", part(p)),
            JwtError::NotObject(p) => write!(f, "token {} is not a JSON object", part(p)),
            JwtError::BadHeader => {
                f.write_str("token header lacks a string alg, or kid is not a string")
            }
            JwtError::AlgNone => f.write_str("token is unsigned (alg none)"),
            JwtError::AlgHmac => f.write_str("token uses an HMAC algorithm"),
            JwtError::AlgUnknown => f.write_str("token uses an unsupported algorithm"),
            JwtError::Crit => f.write_str("token has a crit header"),
            JwtError::MissingKid => f.write_str("token has no kid and the key set needs one"),
            JwtError::UnknownKid => f.write_str("token kid names no known key"),
            JwtError::AlgMismatch => f.write_str("token alg differs from its key's algorithm"),
            JwtError::BadSignature => f.write_str("token signature does not verify"),
            JwtError::MissingExp => f.write_str("token has no exp claim"),
            JwtError::BadClaim(c) => write!(f, "token claim {c} has the wrong type"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            JwtError::IssuedInFuture => f.write_str("token issued in the future (iat)"),
            JwtError::WrongIssuer => f.write_str("token issuer is not the expected one"),
            JwtError::WrongAudience => f.write_str("token audience is not the expected one"),
        }
    }
}

impl std::error::Error for JwtError {}

impl JwtError {
    /// The HTTP status: always 401, whatever was wrong with the token.
    pub fn status(self) -> u16 {
        401
    }
}

/// A token's header, as far as regproxy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// A token whose signature verified: its header and its claims, not yet
/// checked against time, issuer or audience ([`check_claims`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: Header,
    pub claims: Map<String, Value>,
}

/// The three segments of a compact JWS.
struct Segments<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
    /// `header.payload`, what the signature covers.
    signed: &'a [u8],
}

fn split(token: &[u8]) -> Result<Segments<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotCompact);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::NotCompact);
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signed: &token[..header.len() + 1 + payload.len()],
    })
}

/// Decodes one segment: unpadded base64url, canonical (the base64 crate
/// refuses padding, the standard alphabet's `+/` and non-zero stray bits).
fn decode(segment: &[u8], part: Part) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Base64(part))
}

fn object(bytes: &[u8], part: Part) -> Result<Map<String, Value>, JwtError> {
    json::object(bytes).map_err(|e| match e {
        JsonError::Invalid => JwtError::Json(part),
        JsonError::Duplicate => JwtError::DuplicateKey(part),
        JsonError::NotObject => JwtError::NotObject(part),
    })
}

fn parse_header(segment: &[u8]) -> Result<Header, JwtError> {
    let map = object(&decode(segment, Part::Header)?, Part::Header)?;
    let alg = match map.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(JwtError::BadHeader),
    };
    let alg = match alg {
        "ES256" => Alg::Es256,
        "EdDSA" => Alg::EdDsa,
        "RS256" => Alg::Rs256,
        a if a.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
        a if a.starts_with("HS") => return Err(JwtError::AlgHmac),
        _ => return Err(JwtError::AlgUnknown),
    };
    if map.contains_key("crit") {
        return Err(JwtError::Crit);
    }
    let kid = match map.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::BadHeader),
    };
    Ok(Header { alg, kid })
}

/// Verifies a compact JWS against `keys`: the key the `kid` names, with
/// that key's one algorithm. Checks no claims; see [`check_claims`].
pub fn verify(token: &[u8], keys: &KeySet) -> Result<Verified, JwtError> {
    let s = split(token)?;
    let header = parse_header(s.header)?;
    let key = keys.find(header.kid.as_deref())?;
    if key.alg() != header.alg {
        return Err(JwtError::AlgMismatch);
    }
    let signature = decode(s.signature, Part::Signature)?;
    if !key.verify(s.signed, &signature) {
        return Err(JwtError::BadSignature);
    }
    let claims = object(&decode(s.payload, Part::Payload)?, Part::Payload)?;
    Ok(Verified { header, claims })
}

/// The header and claims of a token WITHOUT verifying it, with the same
/// strict parsing: only to choose which issuer's keys verify it (OIDC's
/// `iss`), never to decide anything.
pub fn peek(token: &[u8]) -> Result<Verified, JwtError> {
    let s = split(token)?;
    let header = parse_header(s.header)?;
    let claims = object(&decode(s.payload, Part::Payload)?, Part::Payload)?;
    Ok(Verified { header, claims })
}

/// What the registered claims must say. Times are seconds since the Unix
/// epoch; `now` comes from the caller.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
    pub now: u64,
}

/// The registered claims of a token that passed [`check_claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub jti: Option<String>,
}

/// Checks `exp` (required), `nbf` and `iat` (when present), all within the
/// leeway, and that `iss` is the issuer and `aud` (a string or an array of
/// strings) names the audience. A registered claim of the wrong type is
/// refused, never skipped.
pub fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expect<'_>,
) -> Result<Registered, JwtError> {
    let leeway = expect.leeway_secs;
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingExp)?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if expect.now >= exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > expect.now.saturating_add(leeway)) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > expect.now.saturating_add(leeway)) {
        return Err(JwtError::IssuedInFuture);
    }
    let iss = string_claim(claims, "iss")?.ok_or(JwtError::WrongIssuer)?;
    if iss != expect.issuer {
        return Err(JwtError::WrongIssuer);
    }
    let aud = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .ok_or(JwtError::BadClaim("aud"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::BadClaim("aud")),
    };
    if !aud.iter().any(|a| a == expect.audience) {
        return Err(JwtError::WrongAudience);
    }
    Ok(Registered {
        iss,
        sub: string_claim(claims, "sub")?,
        aud,
        exp,
        nbf,
        iat,
        jti: string_claim(claims, "jti")?,
    })
}

/// A NumericDate: non-negative seconds, fractions allowed (RFC 7519 §2)
/// and cut off.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                // 2^53: beyond it f64 skips integers; no date is that far.
                Some(f) if f.is_finite() && (0.0..9.007_199_254_740_992e15).contains(&f) => {
                    Ok(Some(f as u64))
                }
                _ => Err(JwtError::BadClaim(name)),
            }
        }
        Some(_) => Err(JwtError::BadClaim(name)),
    }
}

fn string_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::BadClaim(name)),
    }
}

/// Signs `claims` (a JSON object) into a compact JWS with header
/// `{"alg":…,"kid":<libtrust key id>,"typ":"JWT"}`.
pub fn sign(key: &SigningKey, claims: &Map<String, Value>) -> Result<String, KeyError> {
    let mut header = Map::new();
    header.insert("alg".into(), key.alg().as_str().into());
    header.insert("kid".into(), key.kid().into());
    header.insert("typ".into(), "JWT".into());
    let mut out = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()));
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(out)
}

#[cfg(test)]
mod tests;
