//! What a client asks `/token` for: the query of `GET /token` (token.md),
//! the OAuth 2 password grant of `POST /token` (oauth.md, containerd's first
//! try), and the default realm a challenge points clients to.

use std::fmt;

use zeroize::Zeroizing;

use super::{parse_scopes, ResourceActions, ScopeError, MAX_QUERY_BYTES, MAX_SCOPES};

/// The parameters of `GET /token?service=…&scope=…&scope=…` (token.md).
/// `account`, `client_id` and `offline_token` are read by nobody here:
/// the identity comes from the Authorization header, and no refresh
/// tokens are issued.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRequest {
    pub service: Option<String>,
    pub scopes: Vec<ResourceActions>,
}

impl TokenRequest {
    /// Parses the query (without the `?`), form-decoded as Go's
    /// `url.Values.Encode` writes it (`+` is a space, `%3A` a ':').
    /// Unknown parameters are ignored; a repeated `service` keeps the first.
    pub fn parse(query: &str) -> Result<TokenRequest, ScopeError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(ScopeError::BadQuery);
        }
        let mut req = TokenRequest::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match form_decode(key)?.as_str() {
                "service" if req.service.is_none() => req.service = Some(form_decode(value)?),
                "scope" => {
                    req.scopes.extend(parse_scopes(&form_decode(value)?)?);
                    if req.scopes.len() > MAX_SCOPES {
                        return Err(ScopeError::TooMany);
                    }
                }
                _ => {}
            }
        }
        Ok(req)
    }
}

pub(super) fn form_decode(s: &str) -> Result<String, ScopeError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
                match (hex(bytes.next()), hex(bytes.next())) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return Err(ScopeError::BadQuery),
                }
            }
            b => b,
        });
    }
    String::from_utf8(out).map_err(|_| ScopeError::BadQuery)
}

/// `POST /token` with `grant_type=password` (distribution's `oauth.md`):
/// the scopes and service as in a query, and the credentials in the form
/// rather than an Authorization header.
pub struct PasswordGrant {
    pub request: TokenRequest,
    pub username: String,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for PasswordGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordGrant")
            .field("request", &self.request)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a `POST /token` form was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    Scope(ScopeError),
    /// A grant type other than `password`: regproxy issues no refresh
    /// tokens, so `refresh_token` grants cannot be honoured.
    UnsupportedGrant,
    /// `username` or `password` is missing.
    MissingCredentials,
}

impl GrantError {
    /// What a 400 tells the client.
    pub fn reason(self) -> &'static str {
        match self {
            GrantError::Scope(e) => e.reason(),
            GrantError::UnsupportedGrant => "unsupported grant_type (only password)",
            GrantError::MissingCredentials => "username and password are required",
        }
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for GrantError {}

impl PasswordGrant {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &str) -> Result<PasswordGrant, GrantError> {
        let request = TokenRequest::parse(body).map_err(GrantError::Scope)?;
        let (mut grant, mut username, mut password) = (None, None, None);
        for pair in body.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match form_decode(key).map_err(GrantError::Scope)?.as_str() {
                "grant_type" => &mut grant,
                "username" => &mut username,
                "password" => &mut password,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(Zeroizing::new(
                    form_decode(value).map_err(GrantError::Scope)?,
                ));
            }
        }
        if grant.as_deref().map(String::as_str) != Some("password") {
            return Err(GrantError::UnsupportedGrant);
        }
        match (username, password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(PasswordGrant {
                request,
                username: u.to_string(),
                password: p,
            }),
            _ => Err(GrantError::MissingCredentials),
        }
    }
}

/// The realm a Bearer challenge names when `[auth.token] realm` is not
/// set: this listener's own `/token`, at the host the client asked for.
/// `None` when the `Host` is missing or holds anything but a host name or
/// address and a port, so that nothing the client sent can break out of
/// the quoted challenge parameter.
pub fn default_realm(tls: bool, host: Option<&str>) -> Option<String> {
    let host = host?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b);
    if host.is_empty() || host.len() > 255 || !host.bytes().all(plain) {
        return None;
    }
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}/token"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn password_grant_reads_the_form() {
        let g = PasswordGrant::parse(
            "grant_type=password&username=ci&password=p%40ss+word&service=r.test&scope=repository%3Aapp%3Apull&client_id=containerd-client",
        )
        .unwrap();
        assert_eq!(g.username, "ci");
        assert_eq!(g.password.as_str(), "p@ss word");
        assert_eq!(g.request.service.as_deref(), Some("r.test"));
        assert_eq!(g.request.scopes.len(), 1);
        assert!(!format!("{g:?}").contains("p@ss"));
    }

    #[test]
    fn password_grant_refusals() {
        let p = PasswordGrant::parse;
        assert_eq!(
            p("grant_type=refresh_token&refresh_token=x").unwrap_err(),
            GrantError::UnsupportedGrant
        );
        assert_eq!(
            p("username=a&password=b").unwrap_err(),
            GrantError::UnsupportedGrant
        );
        assert_eq!(
            p("grant_type=password&username=a").unwrap_err(),
            GrantError::MissingCredentials
        );
        assert_eq!(
            p("grant_type=password&username=&password=b").unwrap_err(),
            GrantError::MissingCredentials
        );
        assert_eq!(
            p("grant_type=password&username=a&password=b&scope=nope").unwrap_err(),
            GrantError::Scope(ScopeError::Malformed)
        );
        assert_eq!(
            p("grant_type=password&username=%zz&password=b").unwrap_err(),
            GrantError::Scope(ScopeError::BadQuery)
        );
    }

    #[test]
    fn default_realm_takes_only_plain_hosts() {
        assert_eq!(
            default_realm(true, Some("r.test:5000")).as_deref(),
            Some("https://r.test:5000/token")
        );
        assert_eq!(
            default_realm(false, Some("[::1]:80")).as_deref(),
            Some("http://[::1]:80/token")
        );
        assert_eq!(default_realm(true, None), None);
        assert_eq!(default_realm(true, Some("")), None);
        assert_eq!(default_realm(true, Some("a\",x=\"b")), None);
        assert_eq!(default_realm(true, Some("a b")), None);
        assert_eq!(default_realm(true, Some("a/b")), None);
    }
}
