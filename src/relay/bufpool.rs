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
//! (`relay::BULK_BUF_BYTES`), a few at a time per worker ([`BulkSlot`]),
//! and a TLS stream takes its ciphertext buffers for a body from here too
//! ([`take_at_least`]).
//!
//! Every buffer of 64 KiB or more that a body uses comes from one of the
//! pool's few sizes ([`CLASSES`]) and goes back to it, so glibc never sees
//! them come and go. When it did, blocks of 256 KiB were freed into the
//! middle of a worker's heap after each body (glibc raises its `mmap`
//! threshold past a block once one is freed) and small allocations split
//! them, so the heap only grew: `bench/compare`'s CI fleet mix over TLS
//! peaked at 15–18 MiB, against 13–14 MiB with the blocks mapped and
//! unmapped each time, which instead cost 18% more CPU per request (and
//! TLB shootdowns on the other cores at each `munmap`).
//!
//! Thread-local because workers are threads that never share a connection:
//! no lock, no cross-core traffic.

use std::cell::{Cell, RefCell};

use super::{BULK_BUF_BYTES, READ_BUF_BYTES};

/// Room for the TLS records around a buffer's worth of plaintext: 22 bytes
/// of header, tag and content type per 16 KiB record (17 records for a
/// bulk batch, whose first is cut short), and the last record's partial
/// read; see `tls::stream`.
pub const TLS_SLACK: usize = 2 * 1024;

/// The sizes the pool keeps, smallest first, and how many free buffers of
/// each a worker keeps: enough for the bodies that move at once on a busy
/// worker; beyond it they are freed, so a burst's buffers do not stay
/// resident (2.5 MiB at most per worker, all classes full).
pub const CLASSES: [(usize, usize); 4] = [
    // The relay's body buffer.
    (READ_BUF_BYTES, 16),
    // A TLS stream's received or sent records for one.
    (READ_BUF_BYTES + TLS_SLACK, 8),
    // The relay's bulk batch, one per `BulkSlot`.
    (BULK_BUF_BYTES, BULK_SLOTS),
    // A TLS stream's records for one: the client's end only, as the
    // registry's is plain.
    (BULK_BUF_BYTES + TLS_SLACK, BULK_SLOTS),
];

/// Bodies a worker moves with bulk batches at once; more move with the
/// 64 KiB buffer. Each batch costs about 512 KiB while its body moves (the
/// relay's 256 KiB and as much again of TLS records in the stream), so
/// this bounds what concurrent transfers add to a worker (`bench/compare`'s
/// CI fleet mix over TLS, eight clients: 17.8 MiB peak RSS without it,
/// 17.0 with it). A lone large transfer, the case the batch is for, always
/// gets one.
pub const BULK_SLOTS: usize = 2;

thread_local! {
    static FREE: RefCell<[Vec<Vec<u8>>; CLASSES.len()]> =
        const { RefCell::new([const { Vec::new() }; CLASSES.len()]) };
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

/// A buffer for a body moved in batches: a bulk one while this worker has
/// a [`BulkSlot`] free (held as long as the returned slot lives), else a
/// read-sized one. Its capacity is the batch size.
pub fn batch() -> (Option<BulkSlot>, Vec<u8>) {
    let slot = BulkSlot::take();
    let buf = take_at_least(if slot.is_some() {
        BULK_BUF_BYTES
    } else {
        READ_BUF_BYTES
    });
    (slot, buf)
}

/// An empty buffer of `READ_BUF_BYTES` capacity.
pub fn take() -> Vec<u8> {
    take_at_least(READ_BUF_BYTES)
}

/// An empty buffer of the smallest class that holds `n` bytes, or of
/// exactly `n` bytes when none does.
pub fn take_at_least(n: usize) -> Vec<u8> {
    let Some(class) = CLASSES.iter().position(|&(cap, _)| cap >= n) else {
        return Vec::with_capacity(n);
    };
    FREE.with(|f| f.borrow_mut()[class].pop())
        .unwrap_or_else(|| Vec::with_capacity(CLASSES[class].0))
}

/// Returns a buffer; one whose capacity is not a class's (a head buffer
/// that grew, a buffer a cancelled read replaced) is simply dropped.
pub fn give(mut buf: Vec<u8>) {
    let Some(class) = CLASSES.iter().position(|&(cap, _)| cap == buf.capacity()) else {
        return;
    };
    buf.clear();
    // `try_with`: a stream dropped while the thread exits frees its buffer.
    let _ = FREE.try_with(|f| {
        let free = &mut f.borrow_mut()[class];
        if free.len() < CLASSES[class].1 {
            free.push(buf);
        }
    });
}

/// Free buffers held by this thread's pool, per class.
pub fn pooled() -> [usize; CLASSES.len()] {
    FREE.with(|f| f.borrow().each_ref().map(Vec::len))
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

    const POOL_KEEP: usize = CLASSES[0].1;

    #[test]
    fn buffers_come_back_and_the_pool_is_bounded() {
        let bufs: Vec<_> = (0..POOL_KEEP + 4).map(|_| take()).collect();
        assert!(bufs
            .iter()
            .all(|b| b.capacity() == READ_BUF_BYTES && b.is_empty()));
        for b in bufs {
            give(b);
        }
        assert_eq!(pooled()[0], POOL_KEEP);
        let mut b = take();
        b.extend_from_slice(b"left over");
        give(b);
        assert!(take().is_empty(), "a returned buffer is cleared");
        give(Vec::with_capacity(10));
        assert_eq!(pooled()[0], POOL_KEEP - 1, "odd sizes are not pooled");
    }

    #[test]
    fn each_size_goes_to_the_smallest_class_that_holds_it() {
        assert!(
            CLASSES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, distinct"
        );
        let mut below = 1;
        for (i, &(cap, keep)) in CLASSES.iter().enumerate() {
            for n in [below, cap] {
                assert_eq!(take_at_least(n).capacity(), cap, "{n} bytes");
            }
            below = cap + 1;
            let bufs: Vec<_> = (0..=keep).map(|_| take_at_least(cap)).collect();
            for b in bufs {
                give(b);
            }
            assert_eq!(pooled()[i], keep, "class {cap} keeps {keep}");
        }
        let odd = take_at_least(below);
        assert_eq!(odd.capacity(), below, "beyond every class: exact");
        give(odd);
        assert_eq!(pooled(), CLASSES.map(|(_, keep)| keep));
    }
}
