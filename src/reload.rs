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
use std::rc::Rc;
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
///
/// The worker keeps its own copy behind an `Rc`, so handing the value to a
/// request is a non-atomic increment: sharing the publisher's `Arc` would
/// make every request on every core bump one shared refcount.
#[derive(Debug)]
pub struct Snapshot<T> {
    source: Arc<Published<T>>,
    cached: RefCell<(u64, Rc<T>)>,
}

impl<T: Clone> Snapshot<T> {
    pub fn new(source: Arc<Published<T>>) -> Self {
        let generation = source.generation();
        let value = Rc::new(T::clone(&source.load()));
        Self {
            source,
            cached: RefCell::new((generation, value)),
        }
    }

    /// The newest published value.
    pub fn get(&self) -> Rc<T> {
        let generation = self.source.generation();
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, Rc::new(T::clone(&self.source.load())));
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

/// Polls the files `files()` names every `interval` on a thread of its own
/// and calls `on_change` whenever one's mtime, size or inode moves (editors,
/// `htpasswd` and config management each replace files in a way one of
/// these catches). The list is asked for anew each round, since a reload
/// may point at other files.
pub fn watch_files(
    interval: Duration,
    files: impl Fn() -> Vec<PathBuf> + Send + 'static,
    mut on_change: impl FnMut() + Send + 'static,
) -> std::io::Result<()> {
    let stamps = |paths: &[PathBuf]| -> Vec<(PathBuf, Option<Stamp>)> {
        paths.iter().map(|p| (p.clone(), stamp(p))).collect()
    };
    let mut last = stamps(&files());
    std::thread::Builder::new()
        .name("regproxy-reload".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let now = stamps(&files());
            if now != last {
                // Remember what was seen *before* reloading: an edit that
                // lands while the reload runs must trigger another one. (A
                // reload that switches files costs one more reload.)
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
