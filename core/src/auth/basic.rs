//! `Authorization: Basic` decoding (RFC 7617).
//!
//! Pipeline role: the *authenticate* step starts here. After the request head
//! is read, the raw `Authorization` value goes through [`decode`]; the
//! resulting [`Credentials`] are then checked against the user database
//! (`crate::auth::htpasswd`) before authorization and forwarding. Nothing in
//! this module does I/O or is slow, so it runs on the event loop.
//!
//! Secrets are the concern here: the password, and every buffer that ever
//! held it in decoded form, is wiped on drop, and neither `Debug` nor the
//! error messages can print it.

use std::fmt;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use zeroize::Zeroizing;

/// Largest accepted decoded `user:password`, in bytes. Passwords are tiny,
/// but a CI job's identity token stands in for one (`auth::oidc`): room for
/// a JWT of `jwt::MAX_TOKEN_BYTES` and a user name. The bound keeps a
/// hostile header from making us allocate and decode megabytes before we
/// even know who is asking.
pub const MAX_CREDENTIALS_BYTES: usize = crate::auth::jwt::MAX_TOKEN_BYTES + 1024;

/// Longest token68 that can decode to at most [`MAX_CREDENTIALS_BYTES`];
/// checked before decoding so oversized input costs nothing.
pub const MAX_TOKEN_BYTES: usize = MAX_CREDENTIALS_BYTES.div_ceil(3) * 4;

/// Standard alphabet; padding optional because some clients drop it and it
/// carries no information. Trailing bits stay strict (the crate's default),
/// so each credential has a single canonical encoding.
const LENIENT_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A user-id and password taken from a Basic header.
#[derive(Clone)]
pub struct Credentials {
    /// Valid UTF-8, non-empty, no control characters, no ':'.
    pub user: String,
    password: Zeroizing<Vec<u8>>,
}

impl Credentials {
    /// Builds credentials without validation (for callers and tests that
    /// already hold them); [`decode`] is the validating path.
    pub fn new(user: impl Into<String>, password: &[u8]) -> Self {
        Credentials {
            user: user.into(),
            password: Zeroizing::new(password.to_vec()),
        }
    }

    /// Raw password bytes: RFC 7617 does not promise UTF-8, and bcrypt works
    /// on bytes, so no conversion is attempted.
    pub fn password(&self) -> &[u8] {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials end up in tracing spans and panic messages; the
        // password must never follow them there.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

/// Why a header could not yield credentials. Carries no data, so it can be
/// logged freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    /// Some other scheme (Bearer, Digest, ...) or no scheme at all: the
    /// caller answers with a Basic challenge.
    NotBasic,
    /// The token is missing, not base64, or followed by something other
    /// than whitespace.
    BadBase64,
    /// Decoded fine but has no ':' separating user-id and password.
    NoColon,
    /// Longer than [`MAX_CREDENTIALS_BYTES`] once decoded.
    TooLong,
    /// User-id empty, not UTF-8, or containing control characters.
    BadUser,
}

impl fmt::Display for BasicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            BasicError::NotBasic => "authorization scheme is not Basic",
            BasicError::BadBase64 => "Basic credentials are not valid base64",
            BasicError::NoColon => "Basic credentials lack a ':' between user and password",
            BasicError::TooLong => "Basic credentials are too long",
            BasicError::BadUser => "Basic user-id is empty, not UTF-8, or has control characters",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for BasicError {}

/// SP and HTAB are the only whitespace RFC 9110 allows around tokens.
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether the header carries the empty credential `:` (`Basic Og==`),
/// which clients such as skopeo send when they have none: it means
/// anonymous, not a failed login.
pub fn is_empty_credentials(header_value: &[u8]) -> bool {
    let mut parts = header_value.trim_ascii().splitn(2, |b| *b == b' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default().trim_ascii();
    scheme.eq_ignore_ascii_case(b"Basic") && (token == b"Og==" || token == b"Og")
}

/// Parses an `Authorization` header value such as `Basic YWxpY2U6c2VjcmV0`.
pub fn decode(header_value: &[u8]) -> Result<Credentials, BasicError> {
    // Leading OWS is not part of a field value (RFC 9110 §5.5); a parser
    // upstream normally strips it, but accepting it costs nothing.
    let start = header_value
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(header_value.len());
    let value = &header_value[start..];

    const SCHEME: &[u8] = b"Basic";
    let Some(scheme) = value.get(..SCHEME.len()) else {
        return Err(BasicError::NotBasic);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(BasicError::NotBasic);
    }
    let after_scheme = &value[SCHEME.len()..];
    match after_scheme.first() {
        // "Basic" with nothing after it names the scheme but carries no
        // credentials: the client meant Basic, so this is a malformed token,
        // not a different scheme.
        None => return Err(BasicError::BadBase64),
        Some(&b) if is_ows(b) => {}
        // "Basicx ..." is some other token that merely starts with "Basic".
        Some(_) => return Err(BasicError::NotBasic),
    }

    let rest = &after_scheme[after_scheme.iter().take_while(|&&b| is_ows(b)).count()..];
    let token_len = rest.iter().take_while(|&&b| !is_ows(b)).count();
    let (token, tail) = rest.split_at(token_len);
    // Anything after the token other than whitespace (a second token, a
    // comma-separated auth-param list) is not a Basic credential.
    if token.is_empty() || !tail.iter().all(|&b| is_ows(b)) {
        return Err(BasicError::BadBase64);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(BasicError::TooLong);
    }

    // Decode into a zeroizing buffer sized up front, so the base64 crate
    // never reallocates and leaves an unwiped copy of the secret behind.
    let mut decoded = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(token.len())]);
    let written = LENIENT_PADDING
        .decode_slice(token, decoded.as_mut_slice())
        .map_err(|_| BasicError::BadBase64)?;
    decoded.truncate(written);
    if decoded.len() > MAX_CREDENTIALS_BYTES {
        return Err(BasicError::TooLong);
    }

    // RFC 7617 §2: the user-id cannot contain ':', the password can, so the
    // first colon is the separator.
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(BasicError::NoColon)?;
    let (user_bytes, password_with_colon) = decoded.split_at(colon);

    let user = std::str::from_utf8(user_bytes).map_err(|_| BasicError::BadUser)?;
    // Control characters in a user-id would end up verbatim in access logs
    // and upstream headers; RFC 7617 excludes CTLs anyway.
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(BasicError::BadUser);
    }

    Ok(Credentials {
        user: user.to_owned(),
        password: Zeroizing::new(password_with_colon[1..].to_vec()),
    })
}

#[cfg(test)]
mod tests;
