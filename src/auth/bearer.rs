//! Tokens on the request path: regproxy's own Bearer tokens (the
//! registry's token flow, `regproxy_core::auth::token`) and CI systems'
//! identity tokens (`regproxy_core::auth::oidc`).
//!
//! What is loaded with the auth snapshot (`live`): the token service's
//! signing and verification keys ([`TokenService`]) and the OIDC issuers
//! with their keys ([`OidcIssuers`]: a JWKS file read at load, or an https
//! JWKS kept fresh by the background fetcher, `auth/jwks.rs`).
//!
//! What each worker keeps: a map of tokens it has verified ([`TokenCache`]),
//! keyed by a keyed BLAKE3 hash of the token's bytes, so a token costs one
//! signature check per worker per key set, not one per request, and no
//! thread pool: a signature check (tens of microseconds) runs inline, as
//! cheap password schemes do. A verification is kept until the token's
//! `exp` (plus the leeway) and only for the key set it was checked
//! against: a reload or a JWKS refresh starts over. Failures are never
//! kept, so a token refused for its `nbf` is accepted once it is due.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};

use super::cache::{CredKey as TokenKey, KeyMap};
use super::jwks::JwksHandle;
use crate::config::{JwksSource, OidcConfig, TokenConfig};
use regproxy_core::auth::jwt::{KeySet, SigningKey, VerifyKey};
use regproxy_core::auth::oidc::{self, OidcError, OidcIdentity, Provider};
use regproxy_core::auth::token::{AccessToken, TokenError, TokenIssuer, TokenVerifier};

/// regproxy's own token service (`[auth.token]`).
#[derive(Debug)]
pub struct TokenService {
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    /// `[auth.token] realm`; `None`: the listener's own `/token`.
    pub realm: Option<String>,
    pub service: String,
}

impl TokenService {
    /// Reads the signing key and the retired keys still trusted. Errors
    /// name the file.
    pub fn load(cfg: &TokenConfig) -> anyhow::Result<TokenService> {
        let signing = read_key_file(&cfg.signing_key, SigningKey::from_pem)?;
        let mut trusted = vec![signing.verify_key().clone()];
        for path in &cfg.verify_keys {
            trusted.push(read_key_file(path, |text| {
                VerifyKey::from_pem(text)
                    .or_else(|_| SigningKey::from_pem(text).map(|k| k.verify_key().clone()))
            })?);
        }
        let keys = KeySet::from_own_keys(trusted).map_err(|e| {
            anyhow!(
                "[auth.token]: {e} (is the signing key also listed in verify_keys, or a key listed twice?)"
            )
        })?;
        Ok(TokenService {
            verifier: TokenVerifier {
                keys,
                issuer: cfg.issuer.clone(),
                service: cfg.service.clone(),
                leeway_secs: cfg.leeway.as_secs(),
            },
            issuer: TokenIssuer::new(signing, &cfg.issuer, &cfg.service, cfg.lifetime),
            realm: cfg.realm.clone(),
            service: cfg.service.clone(),
        })
    }
}

fn read_key_file<T, E: std::fmt::Display>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Where one issuer's keys are.
#[derive(Clone)]
pub enum IssuerKeys {
    /// A JWKS file, read with the snapshot.
    File(Arc<KeySet>),
    /// An https JWKS, fetched in the background.
    Fetched(Arc<JwksHandle>),
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuerKeys::File(set) => write!(f, "File({} keys)", set.len()),
            IssuerKeys::Fetched(h) => write!(f, "Fetched({} keys)", h.keys().len()),
        }
    }
}

/// The trusted CI issuers (`[[auth.oidc]]`), in config order.
#[derive(Debug, Clone, Default)]
pub struct OidcIssuers {
    providers: Vec<Provider>,
    keys: Vec<IssuerKeys>,
}

/// The background fetchers of https JWKS documents, by URL: made once at
/// start, kept across reloads.
pub type Fetchers = HashMap<String, Arc<JwksHandle>>;

impl OidcIssuers {
    /// Reads JWKS files; takes https sources from `fetchers`. A URL that
    /// was not there at start is an error: its fetcher needs a restart.
    pub fn load(cfgs: &[OidcConfig], fetchers: &Fetchers) -> anyhow::Result<OidcIssuers> {
        let mut out = OidcIssuers::default();
        for cfg in cfgs {
            let keys = match &cfg.jwks {
                JwksSource::File(path) => IssuerKeys::File(Arc::new(read_jwks_file(path)?)),
                JwksSource::Url(url) => IssuerKeys::Fetched(
                    fetchers
                        .get(url)
                        .ok_or_else(|| {
                            anyhow!("[[auth.oidc]] jwks {url} is new: a restart starts its fetcher")
                        })?
                        .clone(),
                ),
            };
            out.providers.push(cfg.provider.clone());
            out.keys.push(keys);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Whether `token` claims (unverified) to come from one of these
    /// issuers: whether a Basic password is an identity token.
    pub fn claims(&self, token: &[u8]) -> bool {
        !self.is_empty() && oidc::select(&self.providers, token).is_ok()
    }

    /// The generation of issuer `i`'s key set now (`0` for a file; a
    /// fetched set counts its refreshes).
    fn generation(&self, i: usize) -> u64 {
        match self.keys.get(i) {
            Some(IssuerKeys::Fetched(h)) => h.generation(),
            _ => 0,
        }
    }

    /// The issuer `token` claims (unverified), by index.
    fn issuer_of(&self, token: &[u8]) -> Option<usize> {
        let provider = oidc::select(&self.providers, token).ok()?;
        self.providers
            .iter()
            .position(|p| std::ptr::eq(p, provider))
    }

    /// Verifies an identity token. On a `kid` miss against a fetched JWKS
    /// the fetcher is asked for a refresh (rate-limited there), and the
    /// token is tried once more when it ends or after `wait`, whichever
    /// is first. Tokens whose keys are present never wait.
    async fn verify(
        &self,
        i: usize,
        token: &[u8],
        wait: Duration,
    ) -> Result<OidcIdentity, OidcError> {
        let (provider, keys) = (&self.providers[i], &self.keys[i]);
        match keys {
            IssuerKeys::File(set) => provider.verify(set, token, now()),
            IssuerKeys::Fetched(handle) => match provider.verify(&handle.keys(), token, now()) {
                Err(e) if e.is_kid_miss() => {
                    let refreshed = handle.kid_miss();
                    let _ = monoio::time::timeout(wait, refreshed).await;
                    provider.verify(&handle.keys(), token, now())
                }
                other => other,
            },
        }
    }
}

/// Reads and parses a JWKS file; errors name the file.
fn read_jwks_file(path: &Path) -> anyhow::Result<KeySet> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read JWKS file {}", path.display()))?;
    if bytes.len() > oidc::MAX_JWKS_BYTES {
        return Err(anyhow!(
            "{}: larger than {} bytes",
            path.display(),
            oidc::MAX_JWKS_BYTES
        ));
    }
    let jwks = oidc::parse_jwks(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(jwks.keys)
}

/// Seconds since the Unix epoch, as tokens count time.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a verified token said.
#[derive(Debug, Clone)]
enum Verified {
    Access(Rc<AccessToken>),
    /// With the index of its issuer, whose key set it was checked with.
    Identity(Rc<OidcIdentity>, usize),
}

struct Entry {
    verified: Verified,
    /// The token's `exp` plus the leeway it was checked with.
    until: u64,
    /// The key set it was checked against: the auth snapshot's epoch and,
    /// for a fetched JWKS, its generation.
    keys: (u64, u64),
}

/// Most verified tokens one worker keeps. A token lives minutes, so this
/// bounds what a client minting distinct valid tokens can make us hold.
const MAX_ENTRIES: usize = 16_384;

/// How long a request whose identity token names an unknown key waits
/// for the issuer's JWKS to be fetched again.
pub const KID_MISS_WAIT: Duration = Duration::from_secs(3);

/// One worker's verified tokens. Never shared across cores.
pub struct TokenCache {
    key: [u8; 32],
    entries: RefCell<KeyMap<Entry>>,
}

impl TokenCache {
    pub fn new() -> std::io::Result<TokenCache> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(TokenCache {
            key,
            entries: RefCell::new(KeyMap::default()),
        })
    }

    fn hash(&self, kind: u8, token: &[u8]) -> TokenKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&[kind]);
        h.update(token);
        *h.finalize().as_bytes()
    }

    fn get(&self, key: &TokenKey, keys: (u64, u64), now: u64) -> Option<Verified> {
        let entries = self.entries.borrow();
        let e = entries.get(key)?;
        (e.keys == keys && now <= e.until).then(|| e.verified.clone())
    }

    fn put(&self, key: TokenKey, entry: Entry, now: u64) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now <= e.until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, entry);
    }

    /// A regproxy token this worker verified against the keys of
    /// `epoch` (the auth snapshot's) and that has not expired.
    pub fn hit_access(&self, epoch: u64, token: &[u8]) -> Option<Rc<AccessToken>> {
        match self.get(&self.hash(b'a', token), (epoch, 0), now())? {
            Verified::Access(a) => Some(a),
            Verified::Identity(..) => None,
        }
    }

    /// Verifies a regproxy token from `Authorization: Bearer` with
    /// `service`'s keys, and keeps it.
    pub fn verify_access(
        &self,
        service: &TokenService,
        epoch: u64,
        token: &[u8],
    ) -> Result<Rc<AccessToken>, TokenError> {
        let now = now();
        let access = Rc::new(service.verifier.verify(token, now)?);
        let entry = Entry {
            verified: Verified::Access(access.clone()),
            until: access
                .expires_at
                .saturating_add(service.verifier.leeway_secs),
            keys: (epoch, 0),
        };
        self.put(self.hash(b'a', token), entry, now);
        Ok(access)
    }

    /// A CI identity token this worker verified against its issuer's
    /// current keys and that has not expired. Only a hash and a lookup:
    /// the token is not parsed.
    pub fn hit_identity(
        &self,
        issuers: &OidcIssuers,
        epoch: u64,
        token: &[u8],
    ) -> Option<Rc<OidcIdentity>> {
        let entries = self.entries.borrow();
        let e = entries.get(&self.hash(b'i', token))?;
        let Verified::Identity(id, i) = &e.verified else {
            return None;
        };
        let current = e.keys == (epoch, issuers.generation(*i)) && now() <= e.until;
        current.then(|| id.clone())
    }

    /// Verifies a CI identity token (a Basic password, or at `/token`)
    /// with its issuer's keys, and keeps it.
    pub async fn verify_identity(
        &self,
        issuers: &OidcIssuers,
        epoch: u64,
        token: &[u8],
    ) -> Result<Rc<OidcIdentity>, OidcError> {
        let i = issuers.issuer_of(token).ok_or(OidcError::UntrustedIssuer)?;
        let id = Rc::new(issuers.verify(i, token, KID_MISS_WAIT).await?);
        // The generation after a kid-miss refresh is the one it verified with.
        let entry = Entry {
            verified: Verified::Identity(id.clone(), i),
            until: id
                .expires_at
                .saturating_add(issuers.providers[i].leeway_secs),
            keys: (epoch, issuers.generation(i)),
        };
        self.put(self.hash(b'i', token), entry, now());
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
