//! The heap: block alignment for bulk copies, cheap over-aligned small
//! blocks, and giving freed memory back to the kernel.
//!
//! glibc keeps what a burst of connections freed in its arenas: after a
//! flood of 20,000 connections closes, RSS would otherwise stay at the
//! flood's peak. `malloc_trim(0)` returns every free page of every arena
//! (`MADV_DONTNEED`), not just the top of the main heap. Nothing in the
//! Rust crates we use offers it.
//!
//! Why glibc and not jemalloc or mimalloc (measured side by side in
//! `bench/journal/2026-12-08-crypto-alloc.md`): on TLS transfers neither
//! beat this wrapper beyond run-to-run noise. jemalloc took about 5% fewer
//! instructions per small TLS request, but kept a flood's memory until
//! told to purge (an FFI call like `malloc_trim`) and even then held about
//! 1 MiB more after a flood and 8% more per waiting connection; mimalloc
//! about tripled peak RSS on a transfer and kept a flood's memory.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Returns free heap pages to the kernel; `true` if any were. A no-op
/// where the C library is not glibc.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer, touches only the
        // allocator's own state under its arena locks, and is safe to call
        // from any thread at any time (glibc MT-Safe).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Allocations at least this large are aligned to [`BULK_ALIGN`]: a full
/// TLS record's blocks (16 KiB of plaintext, the 16,406-byte record, the
/// deframer's buffer) and body buffers, whose copies move the bytes of a
/// transfer. glibc's `memcpy` takes `REP MOVSB` from 2,112 bytes on CPUs
/// with fast short `REP MOV` (FSRM), but a smaller copy that hits the slow
/// zone costs microseconds once, not CPU per GiB; and `posix_memalign`
/// costs about 860 instructions against `malloc`'s 100, which at 2 KiB
/// added 1,700 per small request (two boxed futures of a few KiB).
pub const BULK_MIN: usize = 16 * 1024;
/// One cache line.
pub const BULK_ALIGN: usize = 64;
/// Blocks below [`BULK_MIN`] that ask for more than C `malloc`'s alignment,
/// up to this, come from `malloc` with room to align them and a header.
/// Why: monoio's timer entries are cache-padded (`align(128)` on x86-64),
/// so every boxed future that holds a timeout is 128-aligned, and a small
/// request boxes two (its read of the next head, and the request itself).
/// Through glibc's `posix_memalign` they cost 1,700 instructions per
/// request; through `malloc`, 900 fewer (`bench/profile`: 31,503 → 30,586
/// per plain small request, 39,734 → 39,015 over TLS).
const HEADER_ALIGN_MAX: usize = 128;

/// The system allocator, with blocks of [`BULK_MIN`] bytes or more aligned
/// to a cache line instead of glibc's 16 bytes.
///
/// Why: on AMD Zen 4, `REP MOVSB` runs about 25 times slower (3.5 against
/// 86 GB/s here, `bench/journal/2026-11-29-rep-movsb-page-aliasing.md`) when the destination lies 1 to 15
/// bytes past the source modulo 4 KiB, and glibc before 2.39 uses it for
/// every copy above 2 KiB (glibc bug 30994). rustls copies each decrypted
/// record out of its receive buffer, from 5 bytes past the buffer's start
/// into a fresh 16 KiB block. With 16-byte alignment that block lands 16
/// bytes past the receive buffer modulo 4 KiB often enough that some TLS
/// uploads cost twice the CPU of others, depending only on where the heap
/// put two buffers. With both on cache lines the distance is 59 modulo 64,
/// never 1 to 15; likewise the copy from rustls into our relay buffer
/// (distance 0 modulo 64). Blocks that size are few (records, body
/// buffers), so the padding and `posix_memalign`'s extra work cost nothing
/// measurable (callgrind: 42,430 instructions per small TLS request, as
/// before this allocator).
#[derive(Debug, Clone, Copy, Default)]
pub struct BulkAligned;

/// What C `malloc` and `realloc` align every block to on 64-bit Linux.
const MALLOC_ALIGN: usize = 16;

impl BulkAligned {
    /// The layout a block of `layout`'s size and alignment gets here.
    fn widen(layout: Layout) -> Layout {
        if layout.size() >= BULK_MIN && layout.align() < BULK_ALIGN {
            // Fails only for a size within 64 bytes of `isize::MAX`, which
            // then keeps its own alignment.
            Layout::from_size_align(layout.size(), BULK_ALIGN).unwrap_or(layout)
        } else {
            layout
        }
    }

    /// Whether a block of `layout` is served by [`BulkAligned::alloc_headered`].
    /// Depends only on size and alignment, like [`BulkAligned::widen`].
    fn headered(layout: Layout) -> bool {
        layout.size() < BULK_MIN
            && layout.align() > MALLOC_ALIGN
            && layout.align() <= HEADER_ALIGN_MAX
    }

    /// The `malloc` block behind a headered block of `layout`: its size plus
    /// its alignment, which covers both the way to the next aligned address
    /// and the header (`malloc`'s blocks are 16-aligned, so the aligned start
    /// is 16 to `align` bytes in).
    fn outer(layout: Layout) -> Option<Layout> {
        let size = layout.size().checked_add(layout.align())?;
        Layout::from_size_align(size, MALLOC_ALIGN).ok()
    }

    /// An over-aligned small block: `malloc`, then the first address past
    /// the start that is aligned, with the `malloc` pointer stored in the
    /// word before it for [`BulkAligned::dealloc_headered`].
    ///
    /// # Safety
    /// `layout` has a non-zero size and [`BulkAligned::headered`] holds.
    unsafe fn alloc_headered(layout: Layout) -> *mut u8 {
        let Some(outer) = Self::outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` is larger than `layout`, so non-zero.
        let raw = unsafe { System.alloc(outer) };
        if raw.is_null() {
            return raw;
        }
        let offset = layout.align() - (raw as usize) % layout.align();
        // SAFETY: `raw` is 16-aligned and `align` a larger power of two, so
        // `offset` is 16 to `align`: the block (`offset + size` bytes from
        // `raw`) ends within `outer`, and the word before it lies inside
        // `outer` too and is pointer-aligned (the block is 32-aligned).
        unsafe {
            let block = raw.add(offset);
            block.cast::<*mut u8>().sub(1).write(raw);
            block
        }
    }

    /// Frees a block from [`BulkAligned::alloc_headered`].
    ///
    /// # Safety
    /// `ptr` came from `alloc_headered(layout)` and is live.
    unsafe fn dealloc_headered(ptr: *mut u8, layout: Layout) {
        // SAFETY: `alloc_headered` wrote the `malloc` pointer in the word
        // before `ptr`, and allocated it with `outer(layout)`, which was
        // `Some` then and is the same now.
        unsafe {
            let raw = ptr.cast::<*mut u8>().sub(1).read();
            if let Some(outer) = Self::outer(layout) {
                System.dealloc(raw, outer);
            }
        }
    }

    /// `layout` with C `malloc`'s alignment, for a block `realloc` returned.
    fn narrow(layout: Layout) -> Layout {
        Layout::from_size_align(layout.size(), MALLOC_ALIGN.min(layout.align())).unwrap_or(layout)
    }
}

// SAFETY: every method forwards to `System` with a layout of the same size
// and an alignment at least the caller's, so each block satisfies the
// caller's layout. `dealloc` and `realloc` get the same widened layout the
// block was allocated with, because widening depends only on size and
// alignment, which the caller must pass unchanged.
unsafe impl GlobalAlloc for BulkAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::headered(layout) {
            // SAFETY: the caller's contract (non-zero size) carries over.
            return unsafe { Self::alloc_headered(layout) };
        }
        // SAFETY: the caller's contract (non-zero size) carries over.
        unsafe { System.alloc(Self::widen(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::headered(layout) {
            // SAFETY: as for `alloc`; the block is `layout.size()` bytes.
            unsafe {
                let p = Self::alloc_headered(layout);
                if !p.is_null() {
                    p.write_bytes(0, layout.size());
                }
                return p;
            }
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(Self::widen(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::headered(layout) {
            // SAFETY: `alloc` took the headered path for this same layout.
            return unsafe { Self::dealloc_headered(ptr, layout) };
        }
        // SAFETY: `ptr` came from `alloc` with this same widened layout.
        unsafe { System.dealloc(ptr, Self::widen(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = Self::widen(layout);
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if Self::headered(layout) || Self::headered(new) {
            // Rare (a growing collection of over-aligned items): a fresh
            // block and a copy, each side through its own path.
            // SAFETY: `new` has a non-zero size; `ptr` is live with
            // `layout` and distinct from the fresh block; both hold the
            // smaller of the two sizes.
            unsafe {
                let fresh = self.alloc(new);
                if !fresh.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return fresh;
            }
        }
        let new = Self::widen(new);
        if old == layout && new.align() == layout.align() {
            // No bulk block on either side: the system's own `realloc`.
            // SAFETY: `ptr` was allocated with `layout`; `new_size` is
            // non-zero and fits `isize` aligned (`from_size_align` above).
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new_size <= layout.size() && layout.align() <= MALLOC_ALIGN {
            // Shrinking: C `realloc` does it in place (a heap block keeps
            // its address), where moving would copy the whole old block
            // (when the relay shrank its body buffer this way, a 64 KiB
            // copy per small TLS response).
            // SAFETY: `ptr` is a live block from `malloc` or
            // `posix_memalign`, both of which `realloc` takes (POSIX), and
            // what it returns is aligned to `MALLOC_ALIGN`, enough for the
            // caller's layout.
            let shrunk = unsafe { libc::realloc(ptr.cast(), new_size) }.cast::<u8>();
            if shrunk.is_null() || new == Self::narrow(new) || (shrunk as usize) % BULK_ALIGN == 0 {
                return shrunk;
            }
            // A bulk block moved off its cache line (an `mmap`ped block
            // remapped): realign it.
            // SAFETY: `shrunk` is a live block of `new_size` bytes from C
            // `realloc`, which `free` (`System.dealloc`) takes.
            return unsafe { Self::move_to(shrunk, Self::narrow(new), new) };
        }
        // Growing into a bulk block: C `realloc` may move it to a 16-byte
        // boundary, so allocate aligned and copy.
        // SAFETY: `ptr` is a live block allocated with `old`.
        unsafe { Self::move_to(ptr, old, new) }
    }
}

impl BulkAligned {
    /// Moves a live block allocated with `from` into a fresh one of layout
    /// `to` (as much as both hold) and frees it; null, keeping the old
    /// block, when memory is short.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator allocated with `from`.
    unsafe fn move_to(ptr: *mut u8, from: Layout, to: Layout) -> *mut u8 {
        // SAFETY: `to` has a non-zero size (a caller's `new_size`).
        let fresh = unsafe { System.alloc(to) };
        if !fresh.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes
            // and distinct; `ptr` was allocated with `from`.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, fresh, from.size().min(to.size()));
                System.dealloc(ptr, from);
            }
        }
        fresh
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn aligned(p: *mut u8) -> bool {
        (p as usize) % BULK_ALIGN == 0
    }

    #[test]
    fn bulk_blocks_sit_on_cache_lines_and_small_ones_are_untouched() {
        let a = BulkAligned;
        let small = Layout::from_size_align(100, 1).unwrap();
        let bulk = Layout::from_size_align(16 * 1024, 1).unwrap();
        // SAFETY: non-zero sizes; every block is freed with its layout.
        unsafe {
            let mut blocks = Vec::new();
            for _ in 0..64 {
                let p = a.alloc(bulk);
                assert!(aligned(p), "{p:?}");
                blocks.push(p);
            }
            let z = a.alloc_zeroed(bulk);
            assert!(
                aligned(z)
                    && std::slice::from_raw_parts(z, bulk.size())
                        .iter()
                        .all(|&b| b == 0)
            );
            let s = a.alloc(small);
            assert!(!s.is_null());
            a.dealloc(s, small);
            a.dealloc(z, bulk);
            for p in blocks {
                a.dealloc(p, bulk);
            }
        }
    }

    #[test]
    fn over_aligned_small_blocks_are_aligned_whole_and_keep_contents() {
        let a = BulkAligned;
        // SAFETY: non-zero sizes; each block is written only within its
        // size and freed with the layout it was last (re)allocated with.
        unsafe {
            let mut live = Vec::new();
            for align in [32, 64, 128] {
                for size in [1, 8, 100, 1152, 4608, BULK_MIN - 1] {
                    let l = Layout::from_size_align(size, align).unwrap();
                    assert!(BulkAligned::headered(l));
                    let p = a.alloc(l);
                    assert_eq!(p as usize % align, 0, "{size}/{align}");
                    p.write_bytes(0xa5, size);
                    let z = a.alloc_zeroed(l);
                    assert_eq!(z as usize % align, 0, "{size}/{align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    live.push((p, l));
                    live.push((z, l));
                }
            }
            // Every block still holds what was written: none overlaps
            // another's header.
            for &(p, l) in &live {
                let bytes = std::slice::from_raw_parts(p, l.size());
                assert!(bytes.iter().all(|&b| b == bytes[0]), "{l:?}");
            }
            // Growing one across BULK_MIN and back keeps its bytes and its
            // alignment.
            let (mut p, mut l) = live.pop().unwrap();
            for (i, b) in std::slice::from_raw_parts_mut(p, l.size())
                .iter_mut()
                .enumerate()
            {
                *b = i as u8;
            }
            let keep = l.size().min(100);
            for size in [BULK_MIN * 2, 100] {
                p = a.realloc(p, l, size);
                assert_eq!(p as usize % l.align(), 0, "{size}");
                for i in 0..keep {
                    assert_eq!(*p.add(i), i as u8, "{size}");
                }
                l = Layout::from_size_align(size, l.align()).unwrap();
            }
            a.dealloc(p, l);
            for (p, l) in live {
                a.dealloc(p, l);
            }
        }
    }

    /// A bulk block that shrinks (`Vec::shrink_to`) must not be copied: when
    /// the relay shrank its body buffer that way, that cost a 64 KiB copy
    /// per small TLS response.
    #[test]
    fn shrinking_a_bulk_block_keeps_it_in_place() {
        let a = BulkAligned;
        let big = Layout::from_size_align(64 * 1024, 1).unwrap();
        // SAFETY: non-zero sizes; the block is freed with its last layout.
        unsafe {
            let p = a.alloc(big);
            let q = a.realloc(p, big, 8 * 1024);
            assert_eq!(q, p);
            a.dealloc(q, Layout::from_size_align(8 * 1024, 1).unwrap());
        }
    }

    #[test]
    fn realloc_keeps_contents_and_alignment_across_the_threshold() {
        let a = BulkAligned;
        let mut layout = Layout::from_size_align(64, 1).unwrap();
        // SAFETY: non-zero sizes; each pointer is used with the layout it
        // was last (re)allocated with.
        unsafe {
            let mut p = a.alloc(layout);
            for i in 0..64 {
                *p.add(i) = i as u8;
            }
            // Grow past BULK_MIN, grow again, shrink below it, grow again.
            for size in [4096, 300_000, 1000, 70_000] {
                p = a.realloc(p, layout, size);
                assert!(!p.is_null());
                if size >= BULK_MIN {
                    assert!(aligned(p), "{size}: {p:?}");
                }
                for i in 0..64 {
                    assert_eq!(*p.add(i), i as u8, "{size}");
                }
                layout = Layout::from_size_align(size, 1).unwrap();
            }
            a.dealloc(p, layout);
        }
    }
}
