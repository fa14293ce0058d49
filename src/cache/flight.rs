//! One fill in progress, shared by every worker that wants the blob.
//!
//! The worker that fills owns the only writer; the others follow: they open
//! the fill's temporary file and send what is already written, then wait
//! for more. Progress is an atomic byte count; a follower that has caught
//! up parks its task's waker here and the filler wakes every parked task
//! after each write, across runtimes (monoio's `sync` feature lets a waker
//! from another thread wake a task). The waker list's lock is taken once
//! per written batch and once per wait, never per request.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

/// What a fill learned from the registry's 200, once it came.
#[derive(Debug, Clone)]
pub struct Known {
    /// Body bytes the registry announced (Content-Length).
    pub size: u64,
    pub content_type: String,
    /// The temporary file followers open; it keeps its inode when the
    /// fill renames it into place.
    pub tmp: PathBuf,
}

/// Where a fill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Sent to the registry; no answer yet.
    Asking = 0,
    /// A 200 came and its body is being written: [`Flight::known`] is set.
    Streaming = 1,
    /// Whole, checked, and renamed into place.
    Done = 2,
    /// Cut short, the wrong bytes, or the disk failed: what followers
    /// already sent cannot be completed, and they close.
    Failed = 3,
    /// The registry's answer was not a cacheable 200: followers ask the
    /// registry themselves.
    Abandoned = 4,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::Asking,
            1 => Stage::Streaming,
            2 => Stage::Done,
            3 => Stage::Failed,
            _ => Stage::Abandoned,
        }
    }

    /// Whether nothing more will change.
    pub fn is_over(self) -> bool {
        matches!(self, Stage::Done | Stage::Failed | Stage::Abandoned)
    }
}

#[derive(Debug)]
pub struct Flight {
    known: OnceLock<Known>,
    /// Body bytes in the temporary file, after its header.
    written: AtomicU64,
    stage: AtomicU8,
    wakers: Mutex<Vec<Waker>>,
}

impl Default for Flight {
    fn default() -> Self {
        Flight {
            known: OnceLock::new(),
            written: AtomicU64::new(0),
            stage: AtomicU8::new(Stage::Asking as u8),
            wakers: Mutex::new(Vec::new()),
        }
    }
}

impl Flight {
    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Acquire))
    }

    pub fn known(&self) -> Option<&Known> {
        self.known.get()
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The registry said 200 and the file exists: followers may open it.
    pub(super) fn start(&self, known: Known) {
        let _ = self.known.set(known);
        self.set_stage(Stage::Streaming);
    }

    /// `written` body bytes are in the file now.
    pub(super) fn advance(&self, written: u64) {
        self.written.store(written, Ordering::Release);
        self.wake_all();
    }

    pub(super) fn end(&self, stage: Stage) {
        self.set_stage(stage);
    }

    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.lock());
        for w in wakers {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A panic while holding it left a list of wakers, still valid.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once more than `written` bytes are in the file or the
    /// stage is no longer `stage`.
    pub fn changed(&self, written: u64, stage: Stage) -> Changed<'_> {
        Changed {
            flight: self,
            written,
            stage,
        }
    }

    fn moved_past(&self, written: u64, stage: Stage) -> bool {
        self.written() > written || self.stage() != stage
    }
}

/// See [`Flight::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    flight: &'a Flight,
    written: u64,
    stage: Stage,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let f = self.flight;
        if f.moved_past(self.written, self.stage) {
            return Poll::Ready(());
        }
        let mut wakers = f.lock();
        // Checked again under the lock: the filler stores its progress
        // before it takes the list, so a change made after the check above
        // either shows here or finds this waker in the list.
        if f.moved_past(self.written, self.stage) {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_follower_on_another_thread_sees_every_change() {
        let flight = Arc::new(Flight::default());
        let f = flight.clone();
        let follower = std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut seen = 0;
                let mut stage = f.stage();
                while !stage.is_over() {
                    f.changed(seen, stage).await;
                    seen = f.written();
                    stage = f.stage();
                }
                // The writes may all have come before the first look.
                (f.written(), stage)
            })
        });
        flight.start(Known {
            size: 30,
            content_type: "application/octet-stream".into(),
            tmp: PathBuf::from("x"),
        });
        for n in [10, 20, 30] {
            flight.advance(n);
        }
        flight.end(Stage::Done);
        let (seen, stage) = follower.join().expect("follower");
        assert_eq!((seen, stage), (30, Stage::Done));
    }
}
