//! The edge blob cache: blobs and manifests fetched by digest, kept on
//! local disk and served from it (see docs/caching.md).
//!
//! One [`Cache`] is shared by every worker. Its only lock guards the index
//! and the fills in flight, and a cacheable request takes it once, for its
//! lookup ([`Cache::lookup`]); a fill takes it again to reserve room and to
//! commit. Everything else, reading and sending files included, is done by
//! the worker alone.
//!
//! - `store`: the files on disk, the start-up rebuild and the purge tool.
//! - `flight`: one fill in progress, which other requests follow.
//! - `fill`: the registry's body to the client and the file at once,
//!   hashed as it passes.
//! - `serve`: a file, or the part of it already written, to a client.
//!
//! The request-path decisions (confirming with the registry, falling back
//! to plain forwarding) are in `conn/cached.rs`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use regproxy_core::cache::digest::BlobDigest;
#[cfg(test)]
use regproxy_core::cache::entry::HEADER_LEN;
use regproxy_core::cache::entry::{self, EntryMeta, Kind};
use regproxy_core::cache::index::Index;

use crate::config::CacheConfig;

pub mod fill;
pub mod flight;
pub mod serve;
pub mod store;

use flight::{Flight, Known, Stage};
use store::Store;

/// The cache shared by all workers.
#[derive(Debug)]
pub struct Cache {
    pub config: CacheConfig,
    store: Store,
    state: Mutex<State>,
    /// Gauges for `/metrics`, kept beside the index so a scrape takes no lock.
    bytes: AtomicU64,
    entries: AtomicU64,
}

#[derive(Debug)]
struct State {
    index: Index,
    flights: HashMap<BlobDigest, Arc<Flight>>,
}

/// What the cache holds for a digest, from one lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A whole, checked file (`Cache::path`).
    Hit,
    /// Another request is filling it: follow that fill.
    Follow(Arc<Flight>),
    /// Nothing, and this request fills it.
    Fill(Filler),
    /// Nothing, and this request does not fill (a range, a HEAD).
    Miss,
}

impl Cache {
    /// Opens the cache folder and rebuilds the index from it. `None` when
    /// that fails: the reason is logged and regproxy runs as a plain proxy.
    pub fn open(config: &CacheConfig) -> Option<Arc<Cache>> {
        let started = std::time::Instant::now();
        let (store, rebuilt) = match Store::open(config) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(dir = %config.dir.display(), error = %e,
                    "cache disabled: the cache folder cannot be used; serving as a plain proxy");
                return None;
            }
        };
        let mut index = Index::new(config.max_size);
        let over = index.load(rebuilt.entries);
        for d in &over {
            let _ = store.remove(d);
        }
        let cache = Cache {
            config: config.clone(),
            store,
            state: Mutex::new(State {
                index,
                flights: HashMap::new(),
            }),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        };
        cache.publish(&cache.lock());
        tracing::info!(dir = %config.dir.display(), entries = cache.entries.load(Ordering::Relaxed),
            bytes = cache.bytes.load(Ordering::Relaxed), evicted = over.len(),
            ms = started.elapsed().as_millis() as u64, "cache index rebuilt");
        Some(Arc::new(cache))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // while it was held does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        self.bytes.store(state.index.used(), Ordering::Relaxed);
        self.entries
            .store(state.index.len() as u64, Ordering::Relaxed);
    }

    /// The one lookup a cacheable request makes. `may_fill`: on a miss,
    /// this request will fetch the whole body and fill the cache.
    pub fn lookup(self: &Arc<Self>, d: &BlobDigest, may_fill: bool) -> Lookup {
        let mut state = self.lock();
        if state.index.get(d).is_some() {
            return Lookup::Hit;
        }
        if let Some(f) = state.flights.get(d) {
            return Lookup::Follow(f.clone());
        }
        if !may_fill {
            return Lookup::Miss;
        }
        let flight = Arc::new(Flight::default());
        state.flights.insert(d.clone(), flight.clone());
        Lookup::Fill(Filler {
            cache: self.clone(),
            digest: d.clone(),
            flight,
            reserved: 0,
            tmp: None,
            over: false,
        })
    }

    /// Where a whole file lives.
    pub fn path(&self, d: &BlobDigest) -> PathBuf {
        self.store.path(d)
    }

    /// A hit's file is gone (purged by `regproxy cache purge`, or removed
    /// by hand): the index lets go of it.
    pub fn forget(&self, d: &BlobDigest) {
        let mut state = self.lock();
        state.index.remove(d);
        self.publish(&state);
    }

    /// A damaged file: out of the index and off the disk.
    pub fn discard(&self, d: &BlobDigest) {
        self.forget(d);
        self.unlink(std::slice::from_ref(d));
    }

    /// Bytes and entries held, for `/metrics`.
    pub fn gauges(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }

    /// Unlinks evicted files. A reader that has one open keeps reading it:
    /// the inode lives until its last descriptor closes.
    fn unlink(&self, evicted: &[BlobDigest]) {
        for d in evicted {
            if let Err(e) = self.store.remove(d) {
                tracing::warn!(digest = %d, error = %e, "cache: cannot remove an evicted file");
            }
        }
    }
}

/// The right, and the duty, to fill one digest. Dropped before
/// [`Filler::commit`], it fails the fill: the temporary file goes and
/// followers are told.
#[derive(Debug)]
pub struct Filler {
    cache: Arc<Cache>,
    digest: BlobDigest,
    flight: Arc<Flight>,
    /// Index room held for the body while it is written.
    reserved: u64,
    tmp: Option<PathBuf>,
    over: bool,
}

impl Filler {
    pub fn digest(&self) -> &BlobDigest {
        &self.digest
    }

    /// Whether a body of `size` bytes can be kept at all.
    pub fn fits(&self, size: u64) -> bool {
        size <= self.cache.config.max_size
    }

    /// The registry answered 200 with `size` bytes: makes the temporary
    /// file with its header, reserves room (evicting, returned as a count),
    /// and lets followers in.
    pub fn begin(
        &mut self,
        kind: Kind,
        size: u64,
        content_type: &str,
    ) -> io::Result<(std::fs::File, usize)> {
        let meta = EntryMeta {
            kind,
            digest: self.digest.clone(),
            content_type: content_type.to_owned(),
            size,
        };
        let header = entry::encode(&meta)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
        let (tmp, mut file) = self.cache.store.tmp_file()?;
        self.tmp = Some(tmp.clone());
        file.write_all(&header)?;
        let evicted = {
            let mut state = self.cache.lock();
            let evicted = state.index.reserve(size);
            self.cache.publish(&state);
            evicted
        };
        self.reserved = size;
        self.cache.unlink(&evicted);
        self.flight.start(Known {
            size,
            content_type: meta.content_type,
            tmp,
        });
        Ok((file, evicted.len()))
    }

    /// `written` body bytes are in the file.
    pub fn advance(&self, written: u64) {
        self.flight.advance(written);
    }

    /// The body is whole and its digest checked (and the file synced):
    /// renames it into place and indexes it. Returns how many entries were
    /// evicted for it.
    pub fn commit(mut self) -> io::Result<usize> {
        let Some(tmp) = self.tmp.take() else {
            return Err(io::Error::other("commit before begin"));
        };
        if let Err(e) = self.cache.store.commit(&tmp, &self.digest) {
            self.tmp = Some(tmp);
            return Err(e);
        }
        self.over = true;
        let evicted = {
            let mut state = self.cache.lock();
            state.flights.remove(&self.digest);
            state.index.unreserve(self.reserved);
            let evicted = state.index.insert(self.digest.clone(), self.reserved);
            self.cache.publish(&state);
            evicted
        };
        self.flight.end(Stage::Done);
        self.cache.unlink(&evicted);
        Ok(evicted.len())
    }

    /// The fill failed (wrong digest, cut short, disk error): nothing is
    /// kept, and followers close.
    pub fn fail(mut self) {
        self.close(Stage::Failed);
    }

    /// The registry's answer is not kept (not a 200, or too large):
    /// followers ask the registry themselves.
    pub fn abandon(mut self) {
        self.close(Stage::Abandoned);
    }

    fn close(&mut self, stage: Stage) {
        if self.over {
            return;
        }
        self.over = true;
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
        {
            let mut state = self.cache.lock();
            state.flights.remove(&self.digest);
            state.index.unreserve(self.reserved);
            self.cache.publish(&state);
        }
        self.flight.end(stage);
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let stage = if self.tmp.is_some() {
            Stage::Failed
        } else {
            Stage::Abandoned
        };
        self.close(stage);
    }
}

#[cfg(test)]
mod tests;
