//! The least-recently-used index of cached blobs: digest → size, and the
//! order they were last used in, bounded by `max_size` bytes including
//! the room reserved for fills still in flight. Every operation is
//! O(log n): a hash map finds an entry, a B-tree keyed by a use counter
//! gives the oldest. One index serves all workers (behind the proxy's one
//! lock), so it holds 100,000s of entries.
//!
//! It only decides: the digests it returns as evicted are for the caller
//! to unlink. A reader that already opened an evicted file keeps reading
//! it (an open file outlives its unlink).

use std::collections::{BTreeMap, HashMap};

use super::digest::BlobDigest;

#[derive(Debug)]
pub struct Index {
    max_size: u64,
    /// Bytes of the entries held.
    used: u64,
    /// Bytes promised to fills in flight ([`reserve`](Self::reserve)).
    reserved: u64,
    /// Digest → (size, its key in `by_use`).
    entries: HashMap<BlobDigest, (u64, u64)>,
    /// Use counter → digest, oldest first.
    by_use: BTreeMap<u64, BlobDigest>,
    /// The next use counter; 2⁶⁴ uses never come.
    tick: u64,
}

impl Index {
    pub fn new(max_size: u64) -> Index {
        Index {
            max_size,
            used: 0,
            reserved: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Whether a body of `size` bytes can be kept at all; larger ones are
    /// never filled.
    pub fn fits(&self, size: u64) -> bool {
        size <= self.max_size
    }

    /// Bytes of the entries held (reservations not included).
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, d: &BlobDigest) -> bool {
        self.entries.contains_key(d)
    }

    /// The size of `d`, marking it the most recently used.
    pub fn get(&mut self, d: &BlobDigest) -> Option<u64> {
        let tick = self.next_tick();
        let (size, used_at) = self.entries.get_mut(d)?;
        let old = std::mem::replace(used_at, tick);
        if let Some(digest) = self.by_use.remove(&old) {
            self.by_use.insert(tick, digest);
        }
        Some(*size)
    }

    /// Adds `d` (or updates its size) as the most recently used, and
    /// returns what had to go, least recently used first, so that
    /// `used + reserved <= max_size`; `d` itself is never evicted for
    /// others. A body larger than `max_size` is not kept: `d` is in the
    /// list then (and any older entry of it is removed).
    pub fn insert(&mut self, d: BlobDigest, size: u64) -> Vec<BlobDigest> {
        self.remove(&d);
        if !self.fits(size) {
            return vec![d];
        }
        let tick = self.next_tick();
        self.used += size;
        self.entries.insert(d.clone(), (size, tick));
        self.by_use.insert(tick, d);
        self.evict(Some(tick))
    }

    /// Promises `size` bytes to a fill in flight, evicting so that
    /// `used + reserved <= max_size`. Undo with [`unreserve`](Self::unreserve)
    /// when the fill ends, before [`insert`](Self::insert)ing its entry.
    /// Callers reserve only sizes that [`fit`](Self::fits); several fills
    /// in flight may together promise more than `max_size`, and then the
    /// index holds nothing until they end.
    pub fn reserve(&mut self, size: u64) -> Vec<BlobDigest> {
        self.reserved = self.reserved.saturating_add(size);
        self.evict(None)
    }

    pub fn unreserve(&mut self, size: u64) {
        self.reserved = self.reserved.saturating_sub(size);
    }

    /// Forgets `d` (its file is the caller's to unlink); its size if held.
    pub fn remove(&mut self, d: &BlobDigest) -> Option<u64> {
        let (size, used_at) = self.entries.remove(d)?;
        self.by_use.remove(&used_at);
        self.used -= size;
        Some(size)
    }

    /// The start-up rebuild: `entries` oldest first (by the files'
    /// modification times). Returns what does not fit under `max_size`,
    /// oldest first, for the caller to unlink.
    pub fn load(
        &mut self,
        entries: impl IntoIterator<Item = (BlobDigest, u64)>,
    ) -> Vec<BlobDigest> {
        let mut too_big = Vec::new();
        for (d, size) in entries {
            self.remove(&d);
            if !self.fits(size) {
                too_big.push(d);
                continue;
            }
            let tick = self.next_tick();
            self.used += size;
            self.entries.insert(d.clone(), (size, tick));
            self.by_use.insert(tick, d);
        }
        too_big.extend(self.evict(None));
        too_big
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Removes least recently used entries, other than the one used at
    /// `keep`, until `used + reserved <= max_size` or nothing else is left.
    fn evict(&mut self, keep: Option<u64>) -> Vec<BlobDigest> {
        let mut evicted = Vec::new();
        while self.used.saturating_add(self.reserved) > self.max_size {
            let oldest = self.by_use.keys().copied().find(|&t| Some(t) != keep);
            let Some(digest) = oldest.and_then(|t| self.by_use.get(&t)).cloned() else {
                break;
            };
            self.remove(&digest);
            evicted.push(digest);
        }
        evicted
    }
}

#[cfg(test)]
mod tests;
