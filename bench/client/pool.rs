//! The connections of one client thread: `--connections` slots shared by
//! the thread's clients, handed out first come first served, with no lock
//! (everything here lives on one runtime).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures_channel::oneshot;

use super::{Conn, Connector};

/// The connections of one thread, shared by its clients.
pub struct Pool {
    pub connector: Connector,
    idle: RefCell<Vec<Conn>>,
    permits: RefCell<Permits>,
}

struct Permits {
    free: usize,
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl Pool {
    pub fn new(connector: Connector, connections: usize) -> Rc<Self> {
        Rc::new(Self {
            connector,
            idle: RefCell::new(Vec::with_capacity(connections)),
            permits: RefCell::new(Permits {
                free: connections.max(1),
                waiters: VecDeque::new(),
            }),
        })
    }

    /// Waits for one of the thread's connection slots.
    pub async fn lease(self: &Rc<Self>) -> Lease {
        let wait = {
            let mut p = self.permits.borrow_mut();
            if p.free > 0 {
                p.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                p.waiters.push_back(tx);
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            // The sender is only dropped with the pool, which we hold.
            let _ = rx.await;
        }
        let conn = self.idle.borrow_mut().pop();
        Lease {
            pool: self.clone(),
            conn,
        }
    }

    fn release(&self, conn: Option<Conn>) {
        if let Some(c) = conn.filter(|c| c.reusable) {
            self.idle.borrow_mut().push(c);
        }
        let mut p = self.permits.borrow_mut();
        // Hand the slot to the first waiter still waiting (one whose
        // operation was cut by the deadline has dropped its receiver).
        while let Some(tx) = p.waiters.pop_front() {
            if tx.send(()).is_ok() {
                return;
            }
        }
        p.free += 1;
    }
}

/// A connection slot, and the connection in it once one is made. Dropping
/// it returns both; a connection mid-request is never reusable.
pub struct Lease {
    pool: Rc<Pool>,
    conn: Option<Conn>,
}

impl Lease {
    /// The idle connection taken with the slot, if any: reused, so a
    /// failure on it may be a stale keep-alive.
    pub fn take_idle(&mut self) -> Option<Conn> {
        self.conn.take()
    }

    pub fn put(&mut self, conn: Conn) {
        self.conn = Some(conn);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.release(self.conn.take());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::client::Target;
    use std::cell::Cell;
    use std::sync::Arc;
    use std::time::Duration;

    fn pool(slots: usize) -> Rc<Pool> {
        let target = Arc::new(Target::parse("http://127.0.0.1:9").unwrap());
        Pool::new(Connector::new(target, None, Duration::from_secs(1)), slots)
    }

    #[test]
    fn slots_pass_to_waiters_in_order_and_skip_the_gone() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = pool(1);
            let first = p.lease().await;
            let order = Rc::new(Cell::new(0u32));
            // A waiter that gives up (its operation was cut) must not keep
            // the slot from the next one.
            let gone = monoio::spawn({
                let p = p.clone();
                async move {
                    monoio::time::timeout(Duration::from_millis(5), p.lease())
                        .await
                        .is_ok()
                }
            });
            let next = monoio::spawn({
                let (p, order) = (p.clone(), order.clone());
                async move {
                    let _lease = p.lease().await;
                    order.set(order.get() * 10 + 2);
                }
            });
            assert!(!gone.await, "the slot was still held");
            order.set(1);
            drop(first);
            next.await;
            assert_eq!(order.get(), 12);
            // The slot came back: a new lease gets it without waiting.
            let _a = p.lease().await;
            assert_eq!(p.permits.borrow().free, 0);
        });
    }
}
