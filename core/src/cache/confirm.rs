//! When the registry last confirmed that a repository holds a digest (a
//! fill's 200, or a 200 to the `HEAD` sent on a hit). A cached body is
//! served to a pull of repository R only on such a confirmation, so a
//! blob cached through one repository never leaks to another the
//! registry would answer 404 for.
//!
//! One table per worker, no lock. Bounded: past [`Confirmations::new`]'s
//! capacity the least recently recorded confirmation is forgotten, which
//! only costs one more `HEAD`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::digest::BlobDigest;

/// A worker's default capacity.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What a hit may do, given the last confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Confirmed within `confirm_ttl`: serve without asking.
    Fresh,
    /// Older than `confirm_ttl` but within `stale_if_error`: ask, and serve
    /// only if the registry cannot answer (connect failure, 5xx, 429).
    Stale,
    /// Never confirmed, forgotten, or too old: ask, and do as today if the
    /// registry cannot answer.
    Unknown,
}

#[derive(Debug)]
pub struct Confirmations {
    capacity: usize,
    /// Digest → repository → (when confirmed, its key in `order`). Nested
    /// so a lookup by `(&str, &BlobDigest)` allocates nothing.
    by_digest: HashMap<BlobDigest, HashMap<String, (Instant, u64)>>,
    /// Record counter → (digest, repository), oldest first.
    order: BTreeMap<u64, (BlobDigest, String)>,
    seq: u64,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations::new(DEFAULT_CAPACITY)
    }
}

impl Confirmations {
    /// A table of at most `capacity` (at least 1) confirmations.
    pub fn new(capacity: usize) -> Confirmations {
        Confirmations {
            capacity: capacity.max(1),
            by_digest: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The registry said, at `now`, that `repo` holds `d`.
    pub fn record(&mut self, repo: &str, d: &BlobDigest, now: Instant) {
        self.forget(repo, d);
        while self.order.len() >= self.capacity {
            let Some((_, (od, orepo))) = self.order.pop_first() else {
                break;
            };
            self.unlink(&orepo, &od);
        }
        self.seq += 1;
        self.by_digest
            .entry(d.clone())
            .or_default()
            .insert(repo.to_owned(), (now, self.seq));
        self.order.insert(self.seq, (d.clone(), repo.to_owned()));
    }

    /// How fresh the confirmation that `repo` holds `d` is at `now`.
    /// `ttl` 0 is never fresh; `stale_if_error` 0 is never stale. Both are
    /// measured from the confirmation.
    pub fn check(
        &self,
        repo: &str,
        d: &BlobDigest,
        now: Instant,
        ttl: Duration,
        stale_if_error: Duration,
    ) -> Confirmed {
        let Some(&(at, _)) = self.by_digest.get(d).and_then(|r| r.get(repo)) else {
            return Confirmed::Unknown;
        };
        let age = now.saturating_duration_since(at);
        if age < ttl {
            Confirmed::Fresh
        } else if age < stale_if_error {
            Confirmed::Stale
        } else {
            Confirmed::Unknown
        }
    }

    /// The registry denied it (any answer but 200 to the `HEAD`).
    pub fn forget(&mut self, repo: &str, d: &BlobDigest) {
        if let Some(seq) = self.unlink(repo, d) {
            self.order.remove(&seq);
        }
    }

    /// Removes the `by_digest` entry; its record counter if there was one.
    fn unlink(&mut self, repo: &str, d: &BlobDigest) -> Option<u64> {
        let repos = self.by_digest.get_mut(d)?;
        let (_, seq) = repos.remove(repo)?;
        if repos.is_empty() {
            self.by_digest.remove(d);
        }
        Some(seq)
    }
}

#[cfg(test)]
mod tests;
