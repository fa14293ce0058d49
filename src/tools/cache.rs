//! `regproxy cache stats | purge <digest> | purge --all`: what the edge
//! cache's folder holds, and emptying it, from the configuration's
//! `[cache]` table. Works on the folder alone, so it runs beside a serving
//! regproxy: a purged entry that process still lists is a miss there (its
//! file is gone), and nothing under `tmp/` is touched.

use std::fmt::Write;

use anyhow::Context;
use regproxy_core::cache::BlobDigest;
use regproxy_core::config::{CacheConfig, Config};

use crate::cache::store::Store;

/// What `purge` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    One(BlobDigest),
    All,
}

/// A digest as the cache names entries; the error says what is expected.
pub fn parse_digest(text: &str) -> Result<BlobDigest, String> {
    BlobDigest::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a digest the cache keeps: write sha256: and 64 lower-case hex digits, \
             or sha512: and 128"
        )
    })
}

fn cache_of(config: &Config) -> anyhow::Result<&CacheConfig> {
    config.cache.as_ref().with_context(|| {
        format!(
            "{} has no [cache] table: there is no cache to show or purge",
            config.path.display()
        )
    })
}

/// `key value` lines: `dir`, `entries`, `bytes`, `max_size`, `tmp_files`,
/// `tmp_bytes`.
pub fn stats(config: &Config) -> anyhow::Result<String> {
    let cache = cache_of(config)?;
    let s = Store::at(&cache.dir).stats()?;
    let mut out = String::new();
    let _ = writeln!(out, "dir        {}", cache.dir.display());
    let _ = writeln!(out, "entries    {}", s.entries);
    let _ = writeln!(out, "bytes      {}{}", s.bytes, human(s.bytes));
    let _ = writeln!(
        out,
        "max_size   {}{}",
        cache.max_size,
        human(cache.max_size)
    );
    let _ = writeln!(
        out,
        "tmp_files  {}  (fills in progress, or left by a killed regproxy: the next start removes those)",
        s.tmp_files
    );
    let _ = writeln!(out, "tmp_bytes  {}{}", s.tmp_bytes, human(s.tmp_bytes));
    Ok(out)
}

/// Removes one entry or all of them; a line saying what went.
pub fn purge(config: &Config, what: &Purge) -> anyhow::Result<String> {
    let store = Store::at(&cache_of(config)?.dir);
    match what {
        Purge::One(d) => {
            let path = store.path(d);
            if std::fs::symlink_metadata(&path).is_err() {
                return Ok(format!("{d} is not in the cache\n"));
            }
            store
                .remove(d)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            Ok(format!("removed {d}\n"))
        }
        Purge::All => {
            let removed = store.purge_all()?;
            Ok(format!(
                "removed {} entries, {} bytes{}\n",
                removed.entries,
                removed.bytes,
                human(removed.bytes)
            ))
        }
    }
}

/// ` (1.5 GiB)` for sizes of a KiB or more.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    unit.map_or_else(String::new, |u| format!(" ({value:.1} {u})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "");
        assert_eq!(human(1023), "");
        assert_eq!(human(1024), " (1.0 KiB)");
        assert_eq!(human(50 << 30), " (50.0 GiB)");
        assert_eq!(human(3 << 29), " (1.5 GiB)");
    }

    #[test]
    fn digests_are_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_digest(&d).map(|d| d.to_string()), Ok(d));
        let err = parse_digest("sha256:ABC").expect_err("bad");
        assert!(err.contains("64 lower-case hex"), "{err}");
    }
}
