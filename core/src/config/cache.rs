//! `[cache]`: the edge blob cache's folder, its size bound, and how long a
//! registry's confirmation stands. Without the table there is no cache.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration, parse_size, ConfigError, Loader};

/// Smallest `max_size`: below it a few layers would evict each other on
/// every pull, and the cache would only add disk writes.
pub const MIN_CACHE_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Where entries live (`blobs/`, `tmp/`); resolved against the config
    /// file's folder. Created at start if missing.
    pub dir: PathBuf,
    /// Bytes of cached bodies, least recently used evicted past it.
    pub max_size: u64,
    /// How long a registry's confirmation that a repository holds a digest
    /// lets hits skip the `HEAD`; 0: every hit asks.
    pub confirm_ttl: Duration,
    /// How long past its last confirmation a blob may still be served
    /// when the registry cannot answer (connect failure, 5xx, 429); 0: off.
    pub stale_if_error: Duration,
}

/// A size as `[client] discard_limit` takes it, kept raw for its span.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    dir: Spanned<PathBuf>,
    max_size: Spanned<RawSize>,
    #[serde(default, deserialize_with = "duration")]
    confirm_ttl: Duration,
    #[serde(default, deserialize_with = "duration")]
    stale_if_error: Duration,
}

impl RawCache {
    pub(super) fn build(self, l: &Loader) -> Result<CacheConfig, ConfigError> {
        if self.dir.get_ref().as_os_str().is_empty() {
            return Err(l.located(self.dir.span(), "cache.dir must not be empty".into()));
        }
        let dir = l.resolve(self.dir.get_ref());
        if l.host.is_not_directory(&dir) {
            return Err(l.located(
                self.dir.span(),
                format!("cache.dir: {} exists and is not a directory", dir.display()),
            ));
        }
        let span = self.max_size.span();
        let max_size = match self.max_size.into_inner() {
            RawSize::Bytes(n) => n,
            RawSize::Text(t) => parse_size(&t).ok_or_else(|| {
                l.located(
                    span.clone(),
                    format!(
                        "cache.max_size: invalid size {t:?}; write bytes, or a number with K, M or G (\"50GiB\")"
                    ),
                )
            })?,
        };
        if max_size < MIN_CACHE_SIZE {
            return Err(l.located(
                span,
                format!("cache.max_size = {max_size} bytes is below the 16 MiB minimum"),
            ));
        }
        Ok(CacheConfig {
            dir,
            max_size,
            confirm_ttl: self.confirm_ttl,
            stale_if_error: self.stale_if_error,
        })
    }
}

#[cfg(test)]
mod tests;
