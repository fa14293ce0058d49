//! Signals and graceful shutdown. SIGTERM/SIGINT reach a signal thread, which tells each
//! worker once; the worker stops accepting and sets its local [`Drain`], which
//! wakes idle keep-alive connections so they close, while requests in flight
//! finish and their connections close after them (responses whose head is
//! written after the drain began also say `Connection: close`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_channel::oneshot;

/// Installs the signal thread: SIGHUP calls `on_hup` (a reload), the first
/// SIGTERM or SIGINT tells every worker to drain. Returns one stop receiver
/// per worker.
pub fn on_signals(
    workers: usize,
    on_hup: impl Fn() + Send + 'static,
) -> std::io::Result<Vec<oneshot::Receiver<()>>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| oneshot::channel()).unzip();
    std::thread::Builder::new()
        .name("regproxy-signals".into())
        .spawn(move || {
            let mut stops = Some(txs);
            for sig in signals.forever() {
                if sig == SIGHUP {
                    on_hup();
                    continue;
                }
                if let Some(txs) = stops.take() {
                    tracing::info!(signal = sig, "shutting down: no new connections, draining");
                    for tx in txs {
                        let _ = tx.send(());
                    }
                }
            }
        })?;
    Ok(rxs)
}

/// A worker-local "we are draining" flag that idle connections can await.
#[derive(Debug, Default)]
pub struct Drain {
    draining: Cell<bool>,
    next_id: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Drain {
    pub fn start(&self) {
        self.draining.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves once draining has started.
    pub fn wait(self: &Rc<Self>) -> DrainWait {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        DrainWait {
            drain: self.clone(),
            id,
        }
    }
}

/// Unregisters itself when dropped, so connections that close while idle
/// leave no waker behind.
#[derive(Debug)]
pub struct DrainWait {
    drain: Rc<Drain>,
    id: u64,
}

impl Future for DrainWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        self.drain
            .waiters
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for DrainWait {
    fn drop(&mut self) {
        let mut waiters = self.drain.waiters.borrow_mut();
        waiters.remove(&self.id);
        // After a flood of idle connections, give the table's room back.
        if waiters.capacity() > 1024 && waiters.len() < waiters.capacity() / 8 {
            let keep = waiters.len() * 2;
            waiters.shrink_to(keep);
        }
    }
}
