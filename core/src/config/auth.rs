//! `[auth]`: the htpasswd file, the credential cache and hash pool, the
//! brute-force limiter, and groups; the scheme, the token service and the
//! OIDC issuers are in `config/token.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::token::{self, AuthScheme, OidcConfig, RawOidc, RawToken, TokenConfig};
use super::{duration, ConfigError, Loader};

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub realm: String,
    pub htpasswd: PathBuf,
    /// `None`: every valid user may push.
    pub push_users: Option<Vec<String>>,
    pub cache_ttl: Duration,
    /// Threads that run bcrypt, shared by all workers.
    pub hash_threads: usize,
    /// Cache misses allowed to wait for a hash thread before new ones get 503.
    pub hash_queue: usize,
    /// How often the htpasswd file's mtime is checked.
    pub reload_interval: Duration,
    /// An Apache htgroup file, if any.
    pub groups_file: Option<PathBuf>,
    /// Failed checks allowed per client address and per user name within
    /// `failure_window` before further checks get 429 (0: no limit).
    pub max_failures: u32,
    pub failure_window: Duration,
    /// `basic` (the default) or `bearer`.
    pub scheme: AuthScheme,
    /// `[auth.token]`: present exactly when `scheme` is `bearer`.
    pub token: Option<TokenConfig>,
    /// `[[auth.oidc]]`: CI issuers whose identity tokens stand for passwords.
    pub oidc: Vec<OidcConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default = "default_realm")]
    realm: Spanned<String>,
    htpasswd: Spanned<PathBuf>,
    pub(super) push_users: Option<Vec<String>>,
    #[serde(default = "default_cache_ttl", deserialize_with = "duration")]
    cache_ttl: Duration,
    #[serde(default)]
    hash_threads: usize,
    #[serde(default = "default_hash_queue")]
    hash_queue: usize,
    #[serde(default = "default_reload_interval", deserialize_with = "duration")]
    reload_interval: Duration,
    groups: Option<Spanned<PathBuf>>,
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    #[serde(default = "default_failure_window", deserialize_with = "duration")]
    failure_window: Duration,
    scheme: Option<Spanned<AuthScheme>>,
    token: Option<Spanned<RawToken>>,
    #[serde(default)]
    oidc: Vec<Spanned<RawOidc>>,
}

fn default_realm() -> Spanned<String> {
    Spanned::new(0..0, "Registry realm".to_owned())
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_hash_queue() -> usize {
    256
}
fn default_reload_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_failures() -> u32 {
    10
}
fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}
/// A file watch more eager than this is a busy loop.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(50);

impl RawAuth {
    pub(super) fn build(self, l: &Loader) -> Result<AuthConfig, ConfigError> {
        let htpasswd = l.existing_file("auth.htpasswd", &self.htpasswd)?;
        let realm = self.realm.get_ref().clone();
        if realm.is_empty()
            || realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(l.located(
                self.realm.span(),
                "auth.realm must be non-empty, without quotes, backslashes or control characters"
                    .into(),
            ));
        }
        let groups_file = match &self.groups {
            None => None,
            Some(g) => Some(l.existing_file("auth.groups", g)?),
        };
        let scheme = token::check_scheme(l, self.scheme.as_ref(), self.token.as_ref())?;
        let token = self.token.map(|t| t.into_inner().build(l)).transpose()?;
        let oidc = token::build_oidc(l, self.oidc)?;
        let cores = l.host.cores().max(1);
        Ok(AuthConfig {
            realm,
            htpasswd,
            push_users: self.push_users,
            cache_ttl: self.cache_ttl,
            hash_threads: if self.hash_threads == 0 {
                cores
            } else {
                self.hash_threads
            },
            hash_queue: self.hash_queue.max(1),
            reload_interval: self.reload_interval.max(MIN_RELOAD_INTERVAL),
            groups_file,
            max_failures: self.max_failures,
            failure_window: self.failure_window,
            scheme,
            token,
            oidc,
        })
    }
}
