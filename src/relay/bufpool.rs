//! Body buffers, pooled per worker thread.
//!
//! A connection holds a 64 KiB buffer only while a body moves through it;
//! between requests and while a head is read it has a small one
//! (`relay::HEAD_BUF_START`, grown as needed). Tens of thousands of idle
//! connections then cost a few KiB each instead of 64, and the big buffers
//! come back here to be reused by the next body instead of being freed and
//! allocated again per request.
//!
//! A body with TLS on an end may take a bulk batch instead
//! (`relay::BULK_BUF_BYTES`), a few at a time per worker ([`BulkSlot`]).
//!
//! Thread-local because workers are threads that never share a connection:
//! no lock, no cross-core traffic.

use std::cell::{Cell, RefCell};

use super::READ_BUF_BYTES;

/// Free buffers a worker keeps (1 MiB): enough for the bodies that move at
/// once on a busy worker; beyond it they are freed, so a burst's buffers
/// do not stay resident.
const POOL_KEEP: usize = 16;

/// Bodies a worker moves with bulk batches at once; more move with the
/// 64 KiB buffer. Each batch costs about 512 KiB while its body moves (the
/// relay's 256 KiB and as much again of TLS records in the stream), so
/// this bounds what concurrent transfers add to a worker (`bench/compare`'s
/// CI fleet mix over TLS, eight clients: 17.8 MiB peak RSS without it,
/// 17.0 with it). A lone large transfer, the case the batch is for, always
/// gets one.
pub const BULK_SLOTS: usize = 2;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static BULK_IN_USE: Cell<usize> = const { Cell::new(0) };
}

/// One of this worker's [`BULK_SLOTS`], held while a body moves in bulk
/// batches; given back when dropped (a cancelled relay included).
#[derive(Debug)]
pub struct BulkSlot(());

impl BulkSlot {
    /// A free slot, if this worker has one.
    pub fn take() -> Option<Self> {
        BULK_IN_USE.with(|n| {
            (n.get() < BULK_SLOTS).then(|| {
                n.set(n.get() + 1);
                BulkSlot(())
            })
        })
    }
}

impl Drop for BulkSlot {
    fn drop(&mut self) {
        BULK_IN_USE.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// An empty buffer of `READ_BUF_BYTES` capacity.
pub fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_BUF_BYTES))
}

/// Returns a buffer from [`take`]; others (a head buffer that grew, a
/// buffer a cancelled read replaced) are simply dropped.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() != READ_BUF_BYTES {
        return;
    }
    buf.clear();
    FREE.with(|f| {
        let mut free = f.borrow_mut();
        if free.len() < POOL_KEEP {
            free.push(buf);
        }
    });
}

/// Free buffers held by this thread's pool.
pub fn pooled() -> usize {
    FREE.with(|f| f.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_slots_are_bounded_and_come_back() {
        let held: Vec<_> = (0..BULK_SLOTS).map(|_| BulkSlot::take()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(
            BulkSlot::take().is_none(),
            "no more than BULK_SLOTS at once"
        );
        drop(held);
        assert!(BulkSlot::take().is_some());
    }

    #[test]
    fn buffers_come_back_and_the_pool_is_bounded() {
        let bufs: Vec<_> = (0..POOL_KEEP + 4).map(|_| take()).collect();
        assert!(bufs
            .iter()
            .all(|b| b.capacity() == READ_BUF_BYTES && b.is_empty()));
        for b in bufs {
            give(b);
        }
        assert_eq!(pooled(), POOL_KEEP);
        let mut b = take();
        b.extend_from_slice(b"left over");
        give(b);
        assert!(take().is_empty(), "a returned buffer is cleared");
        give(Vec::with_capacity(10));
        assert_eq!(pooled(), POOL_KEEP - 1, "odd sizes are not pooled");
    }
}
