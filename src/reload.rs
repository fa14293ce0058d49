//! Publishing a value (the user database, later rules and certificates) to
//! every worker without a lock on the hot path.
//!
//! The writer swaps the value under a mutex and bumps a generation counter.
//! Each worker keeps its own `Arc` and compares generations with one relaxed
//! load per use; only when the counter moved does it take the mutex to pick up
//! the new value. The counter's cache line is written once per reload, so in
//! steady state every core reads it from its own cache.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The process-wide current value.
#[derive(Debug)]
pub struct Published<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Self {
        Self {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(value)),
        }
    }

    /// Replaces the value; workers see it on their next [`Snapshot::get`].
    pub fn publish(&self, value: T) {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        *cur = Arc::new(value);
        // Release pairs with the Acquire in `Snapshot::get`: a worker that
        // sees the new generation also sees the new value under the mutex.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current value, taking the mutex. For cold paths.
    pub fn load(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A worker's view of a [`Published`] value.
#[derive(Debug)]
pub struct Snapshot<T> {
    source: Arc<Published<T>>,
    cached: RefCell<(u64, Arc<T>)>,
}

impl<T> Snapshot<T> {
    pub fn new(source: Arc<Published<T>>) -> Self {
        let generation = source.generation();
        let value = source.load();
        Self {
            source,
            cached: RefCell::new((generation, value)),
        }
    }

    /// The newest published value.
    pub fn get(&self) -> Arc<T> {
        let generation = self.source.generation();
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, self.source.load());
        }
        cached.1.clone()
    }
}

/// What identifies a file version on disk without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Polls `path` every `interval` on a thread of its own and calls
/// `on_change` whenever its mtime, size or inode moves (editors and
/// `htpasswd` both replace files in ways one of these catches).
pub fn watch_file(
    path: PathBuf,
    interval: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> std::io::Result<()> {
    let mut last = stamp(&path);
    std::thread::Builder::new()
        .name("regproxy-reload".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let now = stamp(&path);
            if now != last {
                last = now;
                on_change();
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_follows_publish() {
        let p = Arc::new(Published::new(1));
        let s = Snapshot::new(p.clone());
        assert_eq!(*s.get(), 1);
        p.publish(2);
        assert_eq!(*s.get(), 2);
        assert_eq!(*s.get(), 2);
    }
}
