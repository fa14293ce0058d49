//! `[auth] scheme`, `[auth.token]` and `[[auth.oidc]]`: the Bearer token
//! service (regproxy signs short-lived scoped tokens, as distribution's
//! token spec has it) and the CI issuers whose identity tokens are taken
//! instead of passwords.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Loader};
use crate::auth::oidc::{Provider, Template};

/// `[auth] scheme`: which challenge a 401 carries and which credentials
/// requests bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `WWW-Authenticate: Basic`, credentials on every request (the default).
    Basic,
    /// `WWW-Authenticate: Bearer`: clients fetch a token at `/token` with
    /// Basic credentials or an OIDC token, then send the token.
    Bearer,
}

/// `[auth.token]`, validated.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// PEM PKCS#8, EC P-256 (ES256) or Ed25519 (EdDSA).
    pub signing_key: PathBuf,
    /// Retired keys (PEM public or private) whose tokens are still
    /// accepted until they expire: rotation without a 401 wave.
    pub verify_keys: Vec<PathBuf>,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The challenge's `service=` and the tokens' `aud`.
    pub service: String,
    pub lifetime: Duration,
    /// The challenge's `realm=`; `None`: this listener's own `/token`.
    pub realm: Option<String>,
    /// Clock leeway for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// Fetched over TLS by the proxy; never over plain HTTP.
    Url(String),
}

/// One `[[auth.oidc]]` issuer, validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub provider: Provider,
    pub jwks: JwksSource,
    /// The CA bundle (PEM) an https `jwks` URL's certificate is checked
    /// against; `None`: the system bundle.
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    signing_key: Spanned<PathBuf>,
    #[serde(default)]
    verify_keys: Vec<Spanned<PathBuf>>,
    issuer: Option<Spanned<String>>,
    service: Spanned<String>,
    lifetime: Option<Spanned<String>>,
    realm: Option<Spanned<String>>,
    leeway: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    issuer: Spanned<String>,
    audience: Spanned<String>,
    jwks: Spanned<String>,
    ca_file: Option<Spanned<PathBuf>>,
    user: Spanned<String>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    leeway: Option<Spanned<String>>,
}

const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The token spec's floor (clients take less as 60 s) and a day.
const LIFETIME_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(86_400);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Text that goes inside a quoted challenge parameter or is compared with
/// a claim: non-empty, without quotes, backslashes, blanks or controls.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_whitespace() || c.is_control())
}

impl Loader<'_> {
    fn plain(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        if plain(v.get_ref()) {
            Ok(v.get_ref().clone())
        } else {
            Err(self.located(
                v.span(),
                format!("{key} must be non-empty, without quotes, backslashes, blanks or control characters"),
            ))
        }
    }

    /// An optional duration given as text, located when it is malformed or
    /// outside `range`.
    fn bounded_duration(
        &self,
        key: &str,
        v: Option<&Spanned<String>>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else {
            return Ok(default);
        };
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.located(
                v.span(),
                format!(
                    "{key}: invalid duration {:?} ({e}); write it like \"5m\"",
                    v.get_ref()
                ),
            )
        })?;
        if !range.contains(&d) {
            return Err(self.located(
                v.span(),
                format!(
                    "{key} = {:?} is outside {} to {}",
                    v.get_ref(),
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end())
                ),
            ));
        }
        Ok(d)
    }
}

impl RawToken {
    pub(super) fn build(self, l: &Loader) -> Result<TokenConfig, ConfigError> {
        let signing_key = l.existing_file("auth.token.signing_key", &self.signing_key)?;
        let verify_keys = self
            .verify_keys
            .iter()
            .map(|p| l.existing_file("auth.token.verify_keys", p))
            .collect::<Result<_, _>>()?;
        let issuer = match &self.issuer {
            None => "regproxy".to_owned(),
            Some(i) => l.plain("auth.token.issuer", i)?,
        };
        let realm = match &self.realm {
            None => None,
            Some(r)
                if !r.get_ref().starts_with("https://") && !r.get_ref().starts_with("http://") =>
            {
                return Err(l.located(
                    r.span(),
                    "auth.token.realm must be an http:// or https:// URL".into(),
                ))
            }
            Some(r) => Some(l.plain("auth.token.realm", r)?),
        };
        Ok(TokenConfig {
            signing_key,
            verify_keys,
            issuer,
            service: l.plain("auth.token.service", &self.service)?,
            lifetime: l.bounded_duration(
                "auth.token.lifetime",
                self.lifetime.as_ref(),
                DEFAULT_LIFETIME,
                LIFETIME_RANGE,
            )?,
            realm,
            leeway: l.bounded_duration(
                "auth.token.leeway",
                self.leeway.as_ref(),
                DEFAULT_LEEWAY,
                Duration::ZERO..=MAX_LEEWAY,
            )?,
        })
    }
}

impl RawOidc {
    fn build(self, l: &Loader) -> Result<OidcConfig, ConfigError> {
        let template = |key: &str, t: &Spanned<String>| {
            Template::parse(t.get_ref()).map_err(|m| l.located(t.span(), format!("{key}: {m}")))
        };
        let jwks_text = self.jwks.get_ref();
        let jwks = if jwks_text.starts_with("https://") {
            JwksSource::Url(l.plain("auth.oidc.jwks", &self.jwks)?)
        } else if jwks_text.contains("://") {
            return Err(l.located(
                self.jwks.span(),
                "auth.oidc.jwks: a URL must be https:// (signing keys are never fetched in the clear)".into(),
            ));
        } else {
            let path = Spanned::new(self.jwks.span(), PathBuf::from(jwks_text));
            JwksSource::File(l.existing_file("auth.oidc.jwks", &path)?)
        };
        let ca_file = match (&self.ca_file, &jwks) {
            (None, _) => None,
            (Some(p), JwksSource::Url(_)) => Some(l.existing_file("auth.oidc.ca_file", p)?),
            (Some(p), JwksSource::File(_)) => {
                return Err(l.located(
                    p.span(),
                    "auth.oidc.ca_file is only used with an https:// jwks URL".into(),
                ))
            }
        };
        let leeway = l.bounded_duration(
            "auth.oidc.leeway",
            self.leeway.as_ref(),
            DEFAULT_LEEWAY,
            Duration::ZERO..=MAX_LEEWAY,
        )?;
        Ok(OidcConfig {
            provider: Provider {
                issuer: l.plain("auth.oidc.issuer", &self.issuer)?,
                audience: l.plain("auth.oidc.audience", &self.audience)?,
                leeway_secs: leeway.as_secs(),
                user: template("auth.oidc.user", &self.user)?,
                groups: self
                    .groups
                    .iter()
                    .map(|g| template("auth.oidc.groups", g))
                    .collect::<Result<_, _>>()?,
            },
            jwks,
            ca_file,
        })
    }
}

/// `[[auth.oidc]]` tables, each issuer at most once.
pub(super) fn build_oidc(
    l: &Loader,
    raw: Vec<Spanned<RawOidc>>,
) -> Result<Vec<OidcConfig>, ConfigError> {
    let mut out: Vec<OidcConfig> = Vec::with_capacity(raw.len());
    for table in raw {
        let span = table.span();
        let built = table.into_inner().build(l)?;
        if out
            .iter()
            .any(|o| o.provider.issuer == built.provider.issuer)
        {
            return Err(l.located(
                span,
                format!(
                    "[[auth.oidc]] issuer {:?} is configured twice",
                    built.provider.issuer
                ),
            ));
        }
        out.push(built);
    }
    Ok(out)
}

/// `scheme = "bearer"` needs `[auth.token]`, and `[auth.token]` only
/// means something with it; `[[auth.oidc]]` works with either scheme (as
/// a Basic password, or at `/token`).
pub(super) fn check_scheme(
    l: &Loader,
    scheme: Option<&Spanned<AuthScheme>>,
    token: Option<&Spanned<RawToken>>,
) -> Result<AuthScheme, ConfigError> {
    let value = scheme.map_or(AuthScheme::Basic, |s| *s.get_ref());
    match (value, token) {
        (AuthScheme::Bearer, None) => Err(l.located(
            scheme.map_or(0..0, |s| s.span()),
            "auth.scheme = \"bearer\" needs an [auth.token] table (signing_key, service)".into(),
        )),
        (AuthScheme::Basic, Some(t)) => Err(l.located(
            t.span(),
            "[auth.token] is only used with auth.scheme = \"bearer\"".into(),
        )),
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests;
