//! Body buffers, pooled per worker thread.
//!
//! A connection holds a 64 KiB buffer only while a body moves through it;
//! between requests and while a head is read it has a small one
//! (`relay::HEAD_BUF_START`, grown as needed). Tens of thousands of idle
//! connections then cost a few KiB each instead of 64, and the big buffers
//! come back here to be reused by the next body instead of being freed and
//! allocated again per request.
//!
//! Thread-local because workers are threads that never share a connection:
//! no lock, no cross-core traffic.

use std::cell::RefCell;

use super::READ_BUF_BYTES;

/// Free buffers a worker keeps (1 MiB): enough for the bodies that move at
/// once on a busy worker; beyond it they are freed, so a burst's buffers
/// do not stay resident.
const POOL_KEEP: usize = 16;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
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
